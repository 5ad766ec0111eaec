"""The simulator's voice registry: designed voices, their status lifecycle, quota and storage.

A voice is a plain dict::

    {"voice_id", "target_model", "prefix", "voice_prompt", "preview_text", "language",
     "created", "modified",            # epoch seconds
     "status", "ready_at",             # DEPLOYING until ready_at (epoch seconds), then OK
     "seq",                            # creation order, to break ties of equal timestamps
     "settings": {...}}                # engine.VoiceSettings.to_dict(), so synthesis sounds
                                       # like the preview; the audio itself is not kept

The voices live in one SQLite database (``voices.sqlite3`` in WAL mode in ``state_dir``, or in
memory without one). Several simulators on one state dir are normal (a notebook and the CLI
on one lab folder): every change is a transaction, so each sees and keeps the others' voices,
the quota counts them all and a delete is seen by all. A ``voices.json`` written by earlier
versions is imported once, on the first open, and renamed ``voices.json.migrated``.

All methods are thread-safe: the server's event loop and the test or notebook thread use the
registry at the same time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cosyvoice_lab import catalog

DB_FILE = "voices.sqlite3"
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's transaction
_SERVICE_TZ = timezone(timedelta(hours=catalog.SERVICE_UTC_OFFSET_HOURS))
# columns of their own (queried or ordered on); everything else of a voice is the JSON body
_COLUMNS = ("voice_id", "prefix", "created", "modified", "status", "ready_at")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    voice_id TEXT NOT NULL UNIQUE,
    prefix TEXT,
    created REAL NOT NULL,
    modified REAL NOT NULL,
    status TEXT NOT NULL,
    ready_at REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS voices_by_prefix ON voices (prefix);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class QuotaExceeded(Exception):
    """The account already holds ``quota`` voices."""

    def __init__(self, quota: int):
        super().__init__(f"Your current quota is {quota}")
        self.quota = quota


class NotAVoiceStore(Exception):
    """``state_dir`` holds a SQLite file of something else; it was left untouched."""


def service_zone() -> timezone:
    """The service's time zone, UTC+8 (its printed times and the Qwen family's voice names)."""
    return _SERVICE_TZ


def service_time(epoch: float) -> str:
    """``epoch`` as the service prints it: ``YYYY-MM-DD HH:MM:SS`` in UTC+8."""
    return datetime.fromtimestamp(epoch, _SERVICE_TZ).strftime(catalog.TIME_FORMAT)


def _connect(path: Path | None) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit), usable from any thread."""
    db = sqlite3.connect(
        ":memory:" if path is None else str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    if path is not None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "voices" not in tables:  # checked before WAL changes anything in the file
            db.close()
            raise NotAVoiceStore(f"{path} is not a simulator voice store; it was left untouched")
        # readers never wait for the other process's writer
        _when_unlocked(lambda: db.execute("PRAGMA journal_mode = WAL"))
        db.execute("PRAGMA synchronous = NORMAL")
    _when_unlocked(lambda: db.executescript(_SCHEMA))
    return db


def _when_unlocked(step):
    """Run ``step``, retrying while another process holds the lock: switching to WAL can fail
    with "database is locked" at once, without waiting (when two processes open a new store)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _row_to_voice(row: sqlite3.Row, now: float) -> dict:
    voice = dict(json.loads(row["body"]), seq=row["seq"], **{k: row[k] for k in _COLUMNS})
    ready_at = voice["ready_at"]
    if voice["status"] == "DEPLOYING" and ready_at is not None and now >= ready_at:
        # a DEPLOYING voice whose time has come is OK, as of ready_at (derived on read, so
        # every process agrees without writing)
        voice.update(status="OK", ready_at=None, modified=ready_at)
    return voice


class Registry:
    """Designed voices of one simulated account.

    ``quota`` is the number of voices the account may hold (the service's 1000; tests set it
    low); it counts the voices of every simulator sharing the store. ``state_dir``, when given,
    is where the store persists them.

    Raises:
        NotAVoiceStore: ``state_dir`` holds an unrelated ``voices.sqlite3``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike | None = None,
        *,
        quota: int = catalog.VOICE_QUOTA,
        clock: Callable[[], float] = time.time,
    ):
        self.quota = quota
        self._clock = clock  # epoch seconds: the simulator's clock (a test may move it forward)
        self._lock = threading.RLock()
        self.path = Path(state_dir) / DB_FILE if state_dir is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)

    def __repr__(self):
        return f"<Registry {self.path or 'in memory'} quota={self.quota}>"

    def _write(self):
        """A write transaction: BEGIN IMMEDIATE takes the store's write lock at once, so a
        count-then-insert cannot interleave with another process's."""
        return _Transaction(self._db, self._lock)

    @staticmethod
    def _insert(db: sqlite3.Connection, voice: dict) -> int:
        body = {k: v for k, v in voice.items() if k not in (*_COLUMNS, "seq")}
        cur = db.execute(
            "INSERT INTO voices (voice_id, prefix, created, modified, status, ready_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*(voice.get(k) for k in _COLUMNS), json.dumps(body, ensure_ascii=False)),
        )
        return int(cur.lastrowid or 0)

    # --- the account's voices ------------------------------------------------------------------
    def add(self, voice: dict, *, deploying_seconds: float = 0.0, family: str | None = None) -> dict:
        """Store a new voice (fills in times, status and order); raises :class:`QuotaExceeded`
        when ``family`` (each design family has its own quota, contract §12; None: all voices)
        already holds ``quota`` voices, and ``sqlite3.IntegrityError`` for an id already taken."""
        now = self._clock()
        voice = dict(
            voice,
            created=now,
            modified=now,
            status="DEPLOYING" if deploying_seconds > 0 else "OK",
            ready_at=now + deploying_seconds if deploying_seconds > 0 else None,
        )
        where, args = _where(None, family)
        with self._write() as db:
            if db.execute("SELECT COUNT(*) FROM voices" + where, args).fetchone()[0] >= self.quota:
                raise QuotaExceeded(self.quota)
            voice["seq"] = self._insert(db, voice)
        return voice

    def get(self, voice_id: str) -> dict | None:
        """A copy of the voice, or None when the account has no such voice."""
        with self._lock:
            row = self._db.execute("SELECT * FROM voices WHERE voice_id = ?", (voice_id,)).fetchone()
        return _row_to_voice(row, self._clock()) if row else None

    def voices(self, prefix: str | None = None, *, family: str | None = None) -> list[dict]:
        """Copies of all voices (only those created with ``prefix``, of ``family``, if given),
        newest first."""
        where, args = _where(prefix, family)
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM voices" + where + " ORDER BY created DESC, seq DESC", args
            ).fetchall()
        now = self._clock()
        return [_row_to_voice(r, now) for r in rows]

    def delete(self, voice_id: str) -> bool:
        """Remove a voice (frees a quota slot); False if there was none."""
        with self._write() as db:
            return db.execute("DELETE FROM voices WHERE voice_id = ?", (voice_id,)).rowcount > 0

    def set_status(self, voice_id: str, status: str) -> None:
        """Force a voice's status (e.g. ``UNDEPLOYED``, as after a failed review)."""
        if status not in catalog.STATUSES:
            raise ValueError(f"status must be one of {catalog.STATUSES}, got {status!r}")
        with self._write() as db:
            cur = db.execute(
                "UPDATE voices SET status = ?, ready_at = NULL, modified = ? WHERE voice_id = ?",
                (status, self._clock(), voice_id),
            )
            if cur.rowcount == 0:
                raise KeyError(voice_id)

    def count(self, family: str | None = None) -> int:
        """How many voices the account holds (of ``family`` if given: what its quota counts)."""
        where, args = _where(None, family)
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM voices" + where, args).fetchone()[0])

    def clear(self) -> None:
        """Forget every voice (of every simulator sharing the store)."""
        with self._write() as db:
            db.execute("DELETE FROM voices")

    def close(self) -> None:
        """Close the store (the registry is unusable afterwards)."""
        with self._lock:
            self._db.close()


def _where(prefix: str | None, family: str | None) -> tuple[str, list]:
    """The WHERE clause of voices of ``prefix`` and ``family`` (told by the id: Qwen-family names
    start ``qwen-tts-vd-``, catalog.QWEN_VOICE_PREFIX)."""
    conditions, args = [], []
    if prefix is not None:
        conditions.append("prefix = ?")
        args.append(prefix)
    if family is not None:
        conditions.append("voice_id LIKE ?" if family == catalog.QWEN_FAMILY else "voice_id NOT LIKE ?")
        args.append(catalog.QWEN_VOICE_PREFIX + "%")
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


class _Transaction:
    """``with``: hold the thread lock and one IMMEDIATE transaction; commit, or roll back on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type, *_exc) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
