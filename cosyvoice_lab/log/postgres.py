"""The experiment log's database on PostgreSQL: a team's one live record, written by many machines.

``PgDatabase`` speaks the interface of ``db.Database`` (per-thread connections, ``query``,
``transaction``, ``error``, ``close``, the schema version), so every other part of the log is
the same code on both. Its connections speak sqlite3's little interface (``execute`` returning
a cursor, ``executemany``, ``in_transaction``) and translate the log's SQL (``dialect.py``).
Driver errors are raised as sqlite3's DB-API classes with SQLite-like texts, so the log's one
error path turns them into the same ``LogError`` messages (naming the URL without its password).

Concurrency, as on SQLite: a write transaction first takes one advisory lock of the database
(``pg_advisory_xact_lock``), as ``BEGIN IMMEDIATE`` takes SQLite's write lock, and waits for it
at most ``busy_timeout_s`` (``lock_timeout``). A cell claim (check, then insert) is therefore
never interleaved with another's; a lone statement (a pending row, an outcome's conditional
UPDATE) is atomic on its own, under READ COMMITTED, which re-checks an UPDATE's WHERE against a
concurrent writer's committed row. psycopg is imported only here, so a folder log never loads it.

Round trips (each costs a wake-up of the client and of the server, which dominates on a busy
machine): a take is two, its pending INSERT and its outcome's UPDATE ... RETURNING, each its own
transaction; a write transaction sends ``BEGIN`` and the lock as one simple query, then its
statements, then ``COMMIT``. Statements whose results nothing waits for go together in one round
trip (``execute_all``, pipeline mode): a cell claim is four round trips (begin and lock, who holds
the cell, the pending row with its claim, commit). psycopg prepares a statement on the server after its fifth run
(``prepare_threshold``), and ``translate`` caches the PostgreSQL text of each statement.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.types.string import TextLoader

from cosyvoice_lab.catalog import LOG_BUSY_TIMEOUT_S
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.db import ThreadConnections
from cosyvoice_lab.log.dialect import redact_url, translate, url_secrets, without_password

# The advisory lock every write transaction takes (one per database: the log's "write lock").
WRITE_LOCK = 0x636F7379  # "cosy"
# What SQLite keeps outside its tables, kept in two of the database's: the schema version
# (``PRAGMA user_version``) and the audio files (content-addressed, keyed by sha256).
_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS log_schema (version INTEGER NOT NULL)",
    "INSERT INTO log_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM log_schema)",
    "CREATE TABLE IF NOT EXISTS audio (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, data BYTEA NOT NULL)",
)
_OURS = ("log_schema", "audio")
_BEGIN_WRITE = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
_PIPELINE = psycopg.Pipeline.is_supported()  # libpq 14 or later (psycopg[binary] ships one)
# The URL (with its password) of each database opened in this process, by its URL without the
# password: what a pickled ``PgDatabase`` (which holds no password) reconnects with.
_OPENED: dict[str, str] = {}


class _BoolAsInt(Dumper):
    """True/False stored as 1/0, as SQLite stores them (the log's flag columns are INTEGER)."""

    oid = psycopg.adapters.types["int2"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class PgConnection:
    """One psycopg connection (autocommit; transactions explicit) speaking the log's SQL."""

    def __init__(self, raw: psycopg.Connection, scrub: tuple[str, ...]) -> None:
        self.raw = raw
        self._scrub = scrub
        self.pid = os.getpid()  # a forked child never closes its parent's connection
        self._spare: psycopg.Cursor | None = None  # ``rows``'s cursor, kept while it holds no big result

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor (``fetchone``, ``fetchall``, ``rowcount``, iteration)."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(translate(sql, bool(params)), list(params) if params else None)
        except psycopg.Error as exc:
            raise as_dbapi_error(exc, self._scrub) from None
        return cursor

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement and return its rows (none for a statement without a result set).

        The write path's fast lane: the cursor is reused while its last result was one row (not
        a blob) or none (a big result is let go with its cursor), and the result's status is
        read rather than ``description`` (which builds an object per column, on every call)."""
        cursor, self._spare = self._spare or self.raw.cursor(), None
        try:
            cursor.execute(translate(sql, bool(params)), list(params) if params else None)
            result = cursor.pgresult
            rows = cursor.fetchall() if result is not None and result.status == ExecStatus.TUPLES_OK else []
        except psycopg.Error as exc:
            raise as_dbapi_error(exc, self._scrub) from None
        if not rows or (len(rows) == 1 and not any(isinstance(value, bytes) for value in rows[0])):
            self._spare = cursor  # holds no result worth freeing (a blob, a frame's rows)
        return rows

    def execute_all(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in order in one round trip (psycopg's pipeline mode; one by one where the
        client library cannot pipeline). Inside a transaction they are part of it; an error stops
        the rest and is raised (the caller's transaction then rolls back)."""
        if not _PIPELINE:
            for sql, params in statements:
                self.execute(sql, params)
            return
        try:
            with self.raw.pipeline():
                for sql, params in statements:
                    self.raw.execute(translate(sql, bool(params)), list(params) if params else None)
        except psycopg.Error as exc:
            raise as_dbapi_error(exc, self._scrub) from None

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(translate(sql, True), [list(p) for p in seq])
        except psycopg.Error as exc:
            raise as_dbapi_error(exc, self._scrub) from None
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        if self.pid == os.getpid():
            self.raw.close()


def as_dbapi_error(exc: psycopg.Error, scrub: tuple[str, ...]) -> sqlite3.Error:
    """The sqlite3 DB-API error for a driver error, its text SQLite-like where the log reads it
    (``locked``: another writer held the lock too long) and never holding the password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in scrub:  # longest first: each form of the password, as typed and decoded
        text = text.replace(secret, "***")
    if isinstance(exc, psycopg.errors.LockNotAvailable):  # lock_timeout: busy_timeout_s passed
        return sqlite3.OperationalError(f"database is locked ({text})")
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError):
        return sqlite3.OperationalError(f"unable to open the database ({text})")
    return sqlite3.DatabaseError(text)


class PgDatabase:
    """The log's database at a ``postgresql://`` URL, shared by threads, processes and machines.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (libpq's URL; the database must exist).
        busy_timeout_s: how long a write waits for another writer before failing.

    Pickling (a take read from the log holds this object, to load its audio): the pickle holds the
    URL *without* its password. Unpickled in this process or a child forked after the log was
    opened here, it takes the password this process was given for that URL; elsewhere libpq's own
    sources (``PGPASSWORD``, ``~/.pgpass``) supply it, or the login fails on first use.

    Raises:
        LogError: (on first use) the server cannot be reached or refuses the login.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = LOG_BUSY_TIMEOUT_S) -> None:
        self._url = url.strip()
        self.path = redact_url(self._url)  # what errors and reprs name: never the password
        if without_password(self._url) != self._url:
            _OPENED[without_password(self._url)] = self._url
        self.busy_timeout_s = busy_timeout_s
        self._connections: ThreadConnections[PgConnection] = ThreadConnections(
            self.path, self._connect, usable=lambda conn: not conn.raw.closed
        )

    def __repr__(self) -> str:
        return f"PgDatabase({self.path!r})"

    # A take read from the log loads its audio through the store, which holds this object: a
    # pickled take (sent to a worker process) reconnects there. The pickle holds no password.
    def __getstate__(self) -> dict:
        return {"url": without_password(self._url), "busy_timeout_s": self.busy_timeout_s}

    def __setstate__(self, state: dict) -> None:
        url = _OPENED.get(state["url"], state["url"])
        self.__init__(url, busy_timeout_s=state["busy_timeout_s"])  # type: ignore[misc]

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._connections.closed

    @property
    def open_connections(self) -> int:
        """How many connections are open (one per thread that used the log and may still run)."""
        return self._connections.count

    def connection(self) -> PgConnection:
        """This thread's connection (opened on first use; a forked child opens its own).

        Raises:
            LogError: the database is closed, or cannot be reached.
        """
        return self._connections.get()

    def _connect(self) -> PgConnection:
        timeout_ms = max(1, int(self.busy_timeout_s * 1000))
        try:
            raw = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, int(self.busy_timeout_s)),
                options=f"-c lock_timeout={timeout_ms} -c TimeZone=UTC",
                application_name="cosyvoice-lab",
            )
        except psycopg.Error as exc:
            raise self.error(as_dbapi_error(exc, url_secrets(self._url))) from None
        raw.adapters.register_loader("json", TextLoader)  # JSON arrives as text, as from SQLite
        raw.adapters.register_dumper(bool, _BoolAsInt)
        return PgConnection(raw, url_secrets(self._url))

    def error(self, exc: sqlite3.Error) -> LogError:
        """A LogError naming the database (without its password) and saying what to do."""
        text = str(exc)
        if "locked" in text:
            waited = f"waited {self.busy_timeout_s:g} s"
            return LogError(self.path, f"another writer held the log too long ({waited}; {text})")
        if text.startswith("unable to open"):
            return LogError(self.path, f"cannot reach the log's database ({text}); is the server up and the URL right?")
        return LogError(self.path, text)

    # --- statements -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """One write transaction holding the log's write lock (as SQLite's ``BEGIN IMMEDIATE``).

        Raises:
            LogError: a database failure (the transaction was rolled back).
        """
        conn = self.connection()
        try:
            self.begin_write(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self.error(exc) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction and not conn.raw.closed:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.error(exc) from None
            raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement (a lone write is its own transaction) and return its rows.

        Raises:
            LogError: a database failure.
        """
        try:
            return self.connection().rows(sql, params)
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def check(self) -> str:
        """Check that the log's tables answer and its schema version is readable; returns ``'ok'``."""
        self.query("SELECT count(*) FROM takes")
        return "ok"

    def close(self) -> None:
        """Close every connection this object opened (safe to call twice)."""
        self._connections.close()

    # --- what migrations.py needs (SQLite's PRAGMA user_version and BEGIN IMMEDIATE) -----------
    KIND = "PostgreSQL"

    @staticmethod
    def begin_write(conn: PgConnection) -> None:
        """Begin a transaction holding the log's write lock, in one round trip (two statements
        without parameters go as one simple query; the lock is taken inside the transaction)."""
        conn.execute(_BEGIN_WRITE)

    @staticmethod
    def begin_migration(conn: PgConnection) -> None:
        """Take the write lock for the session, then begin: a transaction begun after another
        process's migration committed sees its tables (one begun before, then waiting for the
        lock, would look them up in a stale catalog and create them again)."""
        conn.execute(f"SELECT pg_advisory_lock({WRITE_LOCK})")
        conn.execute("BEGIN")

    @staticmethod
    def end_migration(conn: PgConnection) -> None:
        """Release the session's write lock (after the migration's COMMIT or ROLLBACK)."""
        if not conn.raw.closed:
            conn.execute(f"SELECT pg_advisory_unlock({WRITE_LOCK})")

    @staticmethod
    def schema_version(conn: PgConnection) -> int:
        """The schema version (0 for a new database)."""
        if conn.execute("SELECT to_regclass('log_schema')").fetchone()[0] is None:
            return 0
        row = conn.execute("SELECT version FROM log_schema").fetchone()
        return row[0] if row else 0

    @staticmethod
    def set_schema_version(conn: PgConnection, version: int) -> None:
        """Record the schema version (inside the migration's transaction), with the bookkeeping tables."""
        for statement in _BOOKKEEPING:
            conn.execute(statement)
        conn.execute("UPDATE log_schema SET version = ?", (int(version),))

    @staticmethod
    def foreign_tables(conn: PgConnection) -> int:
        """How many tables of the current schema are not the log's bookkeeping (another program's)."""
        return conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
            f"AND table_name NOT IN ({', '.join('?' * len(_OURS))})",
            _OURS,
        ).fetchone()[0]
