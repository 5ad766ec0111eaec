"""The experiment log's database handle: folder checks, per-thread connections, transactions,
SQLite errors turned into ``LogError``s naming the path, and the audio store.

``LogDatabase`` is the base of ``ExperimentLog`` (log.py) and its mixins (annotations.py,
export.py); the log's behaviour lives there, the mechanics here.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from cosyvoice_lab.log import rows as logstore
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.rows import SELECT_TAKE
from cosyvoice_lab.errors import TakeNotFound
from cosyvoice_lab.take import Take

DB_NAME = "log.sqlite3"


class LogDatabase:
    """The SQLite file ``folder/log.sqlite3`` (WAL) and the audio store ``folder/audio/``.

    Args:
        folder: the log folder (created if missing; may hold other files).
        busy_timeout_s: how long a write waits for another writer before failing.

    Raises:
        LogError: the folder cannot be created or written.
    """

    def __init__(self, folder, *, busy_timeout_s: float = 30.0):
        self.folder = Path(folder).expanduser().absolute()
        self.path = self.folder / DB_NAME
        self.audio_dir = self.folder / "audio"
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.schema_version = 0  # set by the migrations when the log opens
        _prepare_folder(self.folder, self.path)

    # --- connections ------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        if self._closed:
            raise LogError(self.path, "this ExperimentLog is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = self._connect()
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            # Thread pools come and go: close the connections of threads that have ended, or
            # a long notebook session would run out of file handles.
            ended = [c for thread, c in self._connections if not thread.is_alive()]
            self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
            self._connections.append((threading.current_thread(), conn))
        for old in ended:
            old.close()
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection: autocommit (transactions are explicit), WAL, busy timeout."""
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL never loses a commit to a crashed process, only (the last few)
            # to a power cut, and never corrupts: FULL would fsync every take, 10x slower.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Reading the DataFrame of a big log straight from the page cache saves a copy.
            conn.execute("PRAGMA mmap_size=268435456")
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> LogError:
        """A LogError naming the database for a SQLite failure, saying what to do."""
        text = str(exc)
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return LogError(self.path, f"is not a SQLite database or is corrupt ({text}); it was left untouched")
        if "readonly" in text or "unable to open" in text:
            return LogError(self.path, f"cannot be written ({text}); is the folder read-only?")
        if "locked" in text or "busy" in text:
            return LogError(self.path, f"another writer held the log for over {self._busy_timeout_s:g} s ({text})")
        return LogError(self.path, text)

    @contextmanager
    def _tx(self):
        """One write transaction (``BEGIN IMMEDIATE``: waits for other writers up front)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def _write_one(self, sql: str, params=()) -> list[tuple]:
        """Run one writing statement as its own transaction (SQLite makes a lone statement
        atomic, and waits for other writers with the busy timeout); returns its rows."""
        return self._query(sql, params)

    def _query(self, sql: str, params=()) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        """Close every connection this object opened (safe to call twice)."""
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM takes")[0][0]

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} takes"
        return f"{type(self).__name__}({str(self.folder)!r}, {state}, schema v{self.schema_version})"

    def check(self) -> str:
        """Run SQLite's ``PRAGMA integrity_check``; returns ``'ok'``.

        Raises:
            LogError: the database is damaged (the message lists what SQLite found).
        """
        found = [row[0] for row in self._query("PRAGMA integrity_check")]
        if found != ["ok"]:
            raise LogError(self.path, "integrity check failed: " + "; ".join(found[:10]))
        return "ok"

    def _update(self, conn, take_id: str, values: dict) -> Take:
        """Set ``values`` on a take and return it as updated (inside a transaction)."""
        if not values:
            row = conn.execute(f"{SELECT_TAKE} WHERE take_id = ?", (take_id,)).fetchone()
            return logstore.row_to_take(row, self.folder)
        assignments = ", ".join(f"{name} = ?" for name in values)
        row = conn.execute(f"UPDATE takes SET {assignments} WHERE take_id = ? RETURNING "
                           f"{', '.join(logstore.TAKE_COLUMNS)}", [*values.values(), take_id]).fetchone()
        if row is None:
            raise TakeNotFound(self.path, f"no take {take_id!r} in this log")
        return logstore.row_to_take(row, self.folder)

    def _store_audio(self, audio: Audio) -> dict:
        """Write ``audio`` to the store (unless there already) and return its columns."""
        if not isinstance(audio, Audio):
            raise TypeError(f"audio must be an Audio, got {type(audio).__name__}")
        sha = audio.sha256
        relative = f"audio/{sha}.{audio.extension}"
        path = self.folder / relative
        try:
            # Same name, same size: the same bytes (files appear only by atomic rename).
            if not (path.is_file() and path.stat().st_size == len(audio.data)):
                audio.save(path)
        except OSError as exc:
            raise LogError(path, f"cannot write audio to the log's store: {exc}") from exc
        try:
            duration = audio.duration
        except Exception:  # an undecodable preview is still recorded, without a duration
            duration = None
        return {"audio_sha256": sha, "audio_file": relative, "audio_format": audio.format,
                "audio_sample_rate": audio.sample_rate, "audio_duration_s": duration}


def _prepare_folder(folder: Path, db: Path) -> None:
    """Create the folder if needed and prove it writable, with errors naming the path."""
    if folder.exists() and not folder.is_dir():
        raise LogError(folder, "is a file, not a folder; give the log a folder of its own")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "audio").mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise LogError(folder, f"cannot write the log folder ({exc.strerror or exc}); "
                               f"is it read-only?") from exc
    if db.exists() and not db.is_file():
        raise LogError(db, "is not a file; the log database must be a SQLite file")
