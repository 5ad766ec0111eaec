"""The experiment log's schema, built and changed only by numbered migrations.

``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``; the version lives in
``PRAGMA user_version`` (SQLite) or the ``log_schema`` table (PostgreSQL). ``migrate`` applies
the missing ones on open, each inside its own transaction, re-reading the version after taking
the write lock so that two processes opening a new log at once do not both apply a step. Never
edit a released migration: add a new one. One list serves both databases: the statements are
written in SQLite's SQL and ``dialect.translate`` rewrites them for PostgreSQL; the database
object (``db.Database`` / ``postgres.PgDatabase``) supplies the version and the write lock.

Timestamps are fixed-width ISO 8601 UTC text (``2025-01-31T08:00:00.000000Z``): readable in
any SQLite shell, sortable as text, and parsed fast by pandas. JSON columns hold NULL rather
than an empty object/array so that a typical take costs no bytes for them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.db import Database
from cosyvoice_lab.log.rounds import STATEMENTS as ROUND_STATEMENTS


@dataclass(frozen=True)
class Migration:
    """One schema step: its resulting ``version``, a ``title`` and the SQL ``statements``."""

    version: int
    title: str
    statements: tuple[str, ...]


_V1_TAKES = """
CREATE TABLE takes (
    take_id           TEXT NOT NULL UNIQUE,      -- uuid4 hex, globally unique (bundles merge by it)
    status            TEXT NOT NULL CHECK (status IN ('pending','ok','failed','unknown','interrupted')),
    experiment        TEXT,
    backend           TEXT NOT NULL,             -- 'dashscope' or 'offline'
    region            TEXT,
    host              TEXT,                      -- the API host the request went to
    package_version   TEXT,
    -- the VoiceDesign, field by field: enough to send it again
    target_model      TEXT NOT NULL,
    prefix            TEXT NOT NULL,
    voice_prompt      TEXT NOT NULL,
    preview_text      TEXT NOT NULL,
    language          TEXT,
    sample_rate       INTEGER,
    response_format   TEXT,
    design_region     TEXT,
    -- the outcome
    request_id        TEXT,
    voice_id          TEXT,
    voice_status      TEXT,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    latency_s         REAL,
    error_code        TEXT,
    error_message     TEXT,
    audio_sha256      TEXT,
    audio_file        TEXT,                      -- relative to the log folder: audio/<sha256>.<ext>
    audio_format      TEXT,
    audio_sample_rate INTEGER,
    audio_duration_s  REAL,
    preview_missing   INTEGER NOT NULL DEFAULT 0,
    metrics           TEXT,                      -- JSON object, NULL when none
    prompt_spec       TEXT,                      -- JSON of the PromptSpec, NULL when none
    parent_take_id    TEXT,
    cell              TEXT,
    repeat            INTEGER,
    -- human annotations (current values; v2 adds their history)
    rating            INTEGER CHECK (rating BETWEEN 1 AND 5),
    chosen            INTEGER NOT NULL DEFAULT 0,
    tags              TEXT,                      -- JSON array, NULL when none
    notes             TEXT NOT NULL DEFAULT '',
    played            INTEGER NOT NULL DEFAULT 0,
    -- who wrote the pending row: decides when a 'pending' take is stale (see log.py)
    writer_host       TEXT,
    writer_pid        INTEGER,
    writer_start      TEXT
)
"""

V1 = Migration(
    1,
    "takes",
    (
        _V1_TAKES,
        "CREATE INDEX takes_started ON takes(started_at)",
        "CREATE INDEX takes_experiment ON takes(experiment, cell)",
        # Opening a log scans pending rows; a partial index keeps that free at 100k takes.
        "CREATE INDEX takes_pending ON takes(status) WHERE status = 'pending'",
    ),
)

_V2_ANNOTATIONS = """
CREATE TABLE annotations (
    annotation_id TEXT NOT NULL UNIQUE,          -- uuid4 hex: bundles merge by it
    take_id       TEXT NOT NULL,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('rate','choose','unchoose','tag','untag','note','played')),
    value         TEXT,                          -- the rating, tag or note text; NULL otherwise
    author        TEXT
)
"""

_V2_UTTERANCES = """
CREATE TABLE utterances (
    utterance_id      TEXT NOT NULL UNIQUE,
    take_id           TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    text              TEXT NOT NULL,
    params            TEXT NOT NULL,             -- JSON object of synthesis parameters
    characters        INTEGER NOT NULL,
    cost_cny          REAL NOT NULL,
    request_id        TEXT,
    audio_sha256      TEXT,
    audio_file        TEXT,
    audio_format      TEXT,
    audio_sample_rate INTEGER,
    audio_duration_s  REAL
)
"""

# A v1 log's annotations become history so that replaying history (bundle merges) gives
# back today's values. They are dated when their take finished, the best time known.
_V2_SEED = [
    f"""INSERT INTO annotations (annotation_id, take_id, at, action, value, author)
        SELECT lower(hex(randomblob(16))), take_id, COALESCE(finished_at, started_at), {action}, {value}, NULL
        FROM takes{source} WHERE {where}"""
    for action, value, source, where in (
        ("'rate'", "CAST(rating AS TEXT)", "", "rating IS NOT NULL"),
        ("'choose'", "NULL", "", "chosen = 1"),
        ("'tag'", "j.value", ", json_each(takes.tags) AS j", "takes.tags IS NOT NULL"),
        ("'note'", "notes", "", "notes != ''"),
        ("'played'", "NULL", "", "played = 1"),
    )
]

V2 = Migration(
    2,
    "annotation history and utterances",
    (
        _V2_ANNOTATIONS,
        "CREATE INDEX annotations_take ON annotations(take_id, at)",
        _V2_UTTERANCES,
        "CREATE INDEX utterances_take ON utterances(take_id)",
        *_V2_SEED,
    ),
)

_V3_CLAIMS = """
CREATE TABLE cell_claims (
    experiment  TEXT NOT NULL,
    cell        TEXT NOT NULL,                   -- '<prompt hash>|<model>|r<repeat>' (planning.py)
    take_id     TEXT NOT NULL,                   -- the take sent for it; its row names the writer
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (experiment, cell)
)
"""

# An existing log's cells are claimed by their best take so far: one that may hold a voice
# before a failed one, the newest first (INSERT OR IGNORE keeps the first row of each cell).
_V3_SEED = """
INSERT OR IGNORE INTO cell_claims (experiment, cell, take_id, claimed_at)
SELECT experiment, cell, take_id, started_at FROM takes
WHERE experiment IS NOT NULL AND cell IS NOT NULL
ORDER BY status = 'failed', started_at DESC, rowid DESC
"""

V3 = Migration(3, "cell claims: a compare's cell is claimed in the log before it is sent", (_V3_CLAIMS, _V3_SEED))

_V4_RATINGS = """
CREATE TABLE ratings (
    rating_id   TEXT NOT NULL UNIQUE,             -- uuid4 hex: bundles merge by it
    take_id     TEXT NOT NULL,
    session_id  TEXT,                             -- the listening round; NULL outside one
    seed        INTEGER CHECK (seed >= 0),        -- the round's shuffle seed (31 bits; kept out of log views)
    kind        TEXT NOT NULL CHECK (kind IN ('preference','adherence')),
    rater       TEXT NOT NULL,
    rating      INTEGER CHECK (rating BETWEEN 1 AND 5),  -- NULL: not rated yet (round opened) or cleared
    at          TEXT NOT NULL
)
"""

V4 = Migration(
    4,
    "ratings: dated listening ratings, several raters per take (log/ratings.py)",
    (
        _V4_RATINGS,
        "CREATE INDEX ratings_take ON ratings(take_id, at)",
        "CREATE INDEX ratings_session ON ratings(session_id, at)",
    ),
)

# Listening rounds (log/rounds.py holds the table definitions, the one place they are written).
V5 = Migration(
    5, "listening rounds: kind, items, seed, each rater's order, every answer (log/rounds.py)", ROUND_STATEMENTS
)

MIGRATIONS: tuple[Migration, ...] = (V1, V2, V3, V4, V5)
SCHEMA_VERSION = MIGRATIONS[-1].version


def version(conn: Any, books: Any = None) -> int:
    """The schema version stored in the database (0 for a new one)."""
    return _books(books).schema_version(conn)


def _books(books: Any) -> Any:
    """Who keeps the version and the write lock: ``books``, else SQLite's (``db.Database``)."""
    return Database if books is None else books


def migrate(conn: Any, path: Path | str, *, target: int = SCHEMA_VERSION, books: Any = None) -> int:
    """Bring the database up to ``target``, one transaction per step; returns the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``); ``books``: the database
    class or object keeping the version and the write lock (default SQLite's).

    Raises:
        LogError: the database is newer than this package, or is some other program's database.
    """
    books = _books(books)
    current = books.schema_version(conn)
    _check_known(conn, path, current, books)
    for step in MIGRATIONS:
        if current >= step.version or step.version > target:
            continue
        books.begin_migration(conn)
        try:
            current = books.schema_version(conn)  # another process may have migrated while we waited
            if current < step.version:
                for statement in step.statements:
                    conn.execute(statement)
                books.set_schema_version(conn, step.version)
                current = step.version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            books.end_migration(conn)
    return current


def upgrade(db: Any) -> int:
    """``migrate`` the log's database on its connection; returns the schema version.

    A failure closes ``db`` (the log is unusable) and is raised as a ``LogError`` naming it.
    """
    try:
        return migrate(db.connection(), db.path, books=db)
    except sqlite3.Error as exc:
        db.close()
        raise db.error(exc) from exc
    except BaseException:
        db.close()
        raise


def _check_known(conn: Any, path: Path | str, current: int, books: Any) -> None:
    if current > SCHEMA_VERSION:
        from cosyvoice_lab.log.rows import package_version

        raise LogError(
            path,
            f"this log has schema version {current}, written by a newer cosyvoice_lab; "
            f"cosyvoice_lab {package_version()} understands up to version {SCHEMA_VERSION}. "
            f"Upgrade cosyvoice_lab (pip install -U cosyvoice-lab) to open it.",
        )
    # Tables and no version: another program's, unless a process creating this log committed
    # both (in one transaction) between the two reads, so the version is read again after.
    if current == 0 and books.foreign_tables(conn) and not books.schema_version(conn):
        raise LogError(
            path,
            f"is a {books.KIND} database but not a cosyvoice_lab experiment log "
            "(it has tables and no log schema version); it was left untouched",
        )
