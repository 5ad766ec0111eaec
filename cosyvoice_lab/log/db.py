"""The experiment log's database: the folder, per-thread connections, transactions, errors.

``Database`` knows nothing of takes: it opens ``folder/log.sqlite3`` (WAL, busy timeout) on a
connection per thread, runs queries and ``BEGIN IMMEDIATE`` transactions, and turns every
SQLite failure into a ``LogError`` that names the database and says what to do. The schema is
built by ``migrations.py``; what the tables mean lives in the other parts of ``log/``.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from cosyvoice_lab.catalog import LOG_BUSY_TIMEOUT_S
from cosyvoice_lab.errors import LogError

DB_NAME = "log.sqlite3"

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def is_busy(exc: BaseException) -> bool:
    """Whether a SQLite error means "another connection holds a lock" (SQLITE_BUSY/LOCKED, any
    extended code): the statement did nothing, so running it again is safe."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class BusyWait:
    """Runs a step again while SQLite answers busy, with jittered backoff, for up to ``timeout_s``.

    SQLite's own busy handler waits only where it can: some steps answer busy at once, without
    waiting at all (switching a new database to WAL while another process does the same, a write
    begun from a stale read snapshot). Those are retried here; a wait longer than
    ``say_after_s`` is said once in the log, so a process waiting for a slow neighbour says so
    instead of looking hung. ``elapsed`` is how long the last ``run`` waited (for error texts).
    """

    def __init__(self, timeout_s: float, *, what: str, say_after_s: float = 2.0) -> None:
        self.timeout_s, self.what, self.say_after_s = timeout_s, what, say_after_s
        self.elapsed = 0.0

    def run(self, step: Callable[[], T]) -> T:
        start = time.monotonic()
        pause, said = 0.002, False
        while True:
            try:
                return step()
            except sqlite3.Error as exc:
                self.elapsed = time.monotonic() - start
                if not is_busy(exc) or self.elapsed >= self.timeout_s:
                    raise
                if not said and self.elapsed >= self.say_after_s:
                    log.warning("waiting for another writer of %s (%.0f s so far)", self.what, self.elapsed)
                    said = True
            time.sleep(min(pause * random.uniform(0.5, 1.5), max(0.0, self.timeout_s - self.elapsed)))
            pause = min(pause * 2, 0.25)


class ThreadConnections(Generic[C]):
    """A database's connections (SQLite's or PostgreSQL's): one per thread, opened on first use
    by ``connect`` (a forked child opens its own; one ``usable`` refuses is replaced).

    Thread pools come and go: the connections of threads that have ended are closed when another
    opens, or a long notebook session would run out of file handles; ``close`` closes the rest."""

    def __init__(self, path: Path | str, connect: Callable[[], C], usable: Callable[[C], bool] | None = None) -> None:
        self._path, self._connect, self._usable = path, connect, usable
        self._local = threading.local()
        self._open: list[tuple[threading.Thread, C]] = []
        self._lock = threading.Lock()
        self.closed = False

    @property
    def count(self) -> int:
        """How many are open (one per thread that used the database and may still run)."""
        with self._lock:
            return len(self._open)

    def get(self) -> C:
        """This thread's connection.

        Raises:
            LogError: closed, or (from ``connect``) the database cannot be opened.
        """
        if self.closed:
            raise LogError(self._path, "this ExperimentLog is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid() and (self._usable is None or self._usable(conn)):
            return conn
        conn = self._connect()
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            ended = [c for thread, c in self._open if not thread.is_alive()]
            self._open = [(t, c) for t, c in self._open if t.is_alive()]
            self._open.append((threading.current_thread(), conn))
        for old in ended:
            old.close()
        return conn

    def close(self) -> None:
        """Close every connection opened (safe to call twice); ``get`` then refuses."""
        self.closed = True
        with self._lock:
            connections, self._open = self._open, []
        for _, conn in connections:
            conn.close()


class Database:
    """The SQLite file ``folder/log.sqlite3`` in WAL mode, shared by threads and processes.

    Args:
        folder: the log folder (created if missing; may hold other files).
        busy_timeout_s: how long a write waits for another writer before failing.

    Raises:
        LogError: the folder cannot be created or written, or the database path is not a file.
    """

    def __init__(self, folder: str | os.PathLike, *, busy_timeout_s: float = LOG_BUSY_TIMEOUT_S) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.path = self.folder / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        self._connections: ThreadConnections[sqlite3.Connection] = ThreadConnections(self.path, self._connect)
        _prepare_folder(self.folder, self.path)

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._connections.closed

    @property
    def open_connections(self) -> int:
        """How many connections are open (one per thread that used the log and may still run)."""
        return self._connections.count

    # --- connections ------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; a forked child opens its own).

        Raises:
            LogError: the database is closed, or cannot be opened.
        """
        return self._connections.get()

    def _connect(self) -> sqlite3.Connection:
        """A new connection: autocommit (transactions are explicit), WAL, busy timeout."""
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            BusyWait(self.busy_timeout_s, what=str(self.path)).run(lambda: _open(conn, self.path))
            # In WAL mode NORMAL never loses a commit to a crashed process, only (the last few)
            # to a power cut, and never corrupts: FULL would fsync every take, 10x slower.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Reading the DataFrame of a big log straight from the page cache saves a copy.
            conn.execute("PRAGMA mmap_size=268435456")
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self.error(exc) from exc
        except LogError:
            if conn is not None:
                conn.close()
            raise

    def error(self, exc: sqlite3.Error, waited_s: float | None = None) -> LogError:
        """A LogError naming the database for a SQLite failure, saying what to do (``waited_s``:
        how long a busy step was retried before giving up)."""
        text = str(exc)
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return LogError(self.path, f"is not a SQLite database or is corrupt ({text}); it was left untouched")
        if "readonly" in text or "unable to open" in text:
            return LogError(self.path, f"cannot be written ({text}); is the folder read-only?")
        if is_busy(exc):
            waited = f"waited {waited_s:.1f} s" if waited_s is not None else f"waited up to {self.busy_timeout_s:g} s"
            return LogError(self.path, f"another writer held the log too long ({waited}; {text})")
        return LogError(self.path, text)

    # --- statements -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: waits for other writers up front).

        Yields the connection; commits when the block ends, rolls back if it raises.

        Raises:
            LogError: a SQLite failure (the transaction was rolled back).
        """
        conn = self.connection()
        waiting = BusyWait(self.busy_timeout_s, what=str(self.path))
        try:
            waiting.run(lambda: self.begin_write(conn))
        except sqlite3.Error as exc:
            raise self.error(exc, waiting.elapsed) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.error(exc) from exc
            raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement and return its rows.

        A lone writing statement is its own transaction (SQLite makes it atomic, and waits
        for other writers with the busy timeout).

        Raises:
            LogError: a SQLite failure.
        """
        conn = self.connection()
        waiting = BusyWait(self.busy_timeout_s, what=str(self.path))
        try:  # busy: the statement did nothing, so it is safe to run again (outside a transaction)
            return waiting.run(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise self.error(exc, waiting.elapsed) from exc

    def check(self) -> str:
        """Run SQLite's ``PRAGMA integrity_check``; returns ``'ok'``.

        Raises:
            LogError: the database is damaged (the message lists what SQLite found).
        """
        found = [row[0] for row in self.query("PRAGMA integrity_check")]
        if found != ["ok"]:
            raise LogError(self.path, "integrity check failed: " + "; ".join(found[:10]))
        return "ok"

    def close(self) -> None:
        """Close every connection this object opened (safe to call twice)."""
        self._connections.close()

    # --- what migrations.py needs (postgres.PgDatabase has the same, for PostgreSQL) -----------
    KIND = "SQLite"

    @staticmethod
    def begin_write(conn: sqlite3.Connection) -> None:
        """Begin a transaction holding the write lock (``BEGIN IMMEDIATE``)."""
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def begin_migration(conn: sqlite3.Connection) -> None:
        """Begin a migration's transaction, holding the write lock."""
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def end_migration(conn: sqlite3.Connection) -> None:
        """After a migration's COMMIT or ROLLBACK (SQLite's lock ends with the transaction)."""

    @staticmethod
    def schema_version(conn: sqlite3.Connection) -> int:
        """The schema version (``PRAGMA user_version``; 0 for a new database)."""
        return conn.execute("PRAGMA user_version").fetchone()[0]

    @staticmethod
    def set_schema_version(conn: sqlite3.Connection, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""
        conn.execute(f"PRAGMA user_version = {int(version)}")

    @staticmethod
    def foreign_tables(conn: sqlite3.Connection) -> int:
        """How many tables the database has (a version-0 database with tables is another program's)."""
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]


def _prepare_folder(folder: Path, db: Path) -> None:
    """Create the folder if needed and prove it writable, with errors naming the path."""
    if folder.exists() and not folder.is_dir():
        raise LogError(folder, "is a file, not a folder; give the log a folder of its own")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise LogError(folder, f"cannot write the log folder ({exc.strerror or exc}); is it read-only?") from exc
    if db.exists() and not db.is_file():
        raise LogError(db, "is not a file; the log database must be a SQLite file")


def _open(conn: sqlite3.Connection, path: Path) -> None:
    """Check the file is a log (or new), then switch it to WAL once: a log already in WAL mode
    keeps it, and another process switching a new log at the same moment answers busy at once
    (no busy handler), which the caller retries."""
    _check_ours(conn, path)  # before WAL: a file that is not ours is never changed
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"database is locked (journal mode stayed {mode})")


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse another program's SQLite database, reading only (no journal mode set yet).

    Ours is empty (a new log) or carries a schema version; one with tables and no version is
    someone else's. A file that is not SQLite at all fails the first read (``Database.error``).

    Raises:
        LogError: the database has tables but no log schema version.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0]:
        return
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    # read again: a process creating this log may have committed its tables and version meanwhile
    if tables and not conn.execute("PRAGMA user_version").fetchone()[0]:
        raise LogError(
            path,
            "is a SQLite database but not a cosyvoice_lab experiment log "
            "(it has tables and no log schema version); it was left untouched",
        )
