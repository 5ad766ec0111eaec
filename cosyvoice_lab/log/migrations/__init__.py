"""The log's schema, built and changed only by migrations: Alembic revisions shipped in the
package (``versions/``), run programmatically (no ``alembic.ini``), as MLflow's tracking store
does on SQLite and PostgreSQL.

``upgrade`` runs on every open. When the log is at the head revision it reads one row and
returns. Otherwise it takes the log's write lock (``Database.transaction``: SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), reads the version again (another process may
have migrated while it waited), and applies the missing revisions in that one transaction (DDL is
transactional on both databases), so two processes opening a new log at once never both apply
a step, and a failed step leaves the log as it was.

Logs made before Alembic (numbered migrations v1..v4) carry their version in ``PRAGMA
user_version`` (SQLite) or the ``log_schema`` table (PostgreSQL); revision ``000N`` is exactly
migration vN, so such a log is *stamped* at ``000N`` and upgraded from there. Both markers stay
up to date after every upgrade (the revision's number): older cosyvoice_lab releases of a team
then refuse a newer log with their own message, and SQLite's marker is what tells our file from
another program's before anything is written (``database._check_ours``).

Never edit a released revision: add a new one (``versions/000N_what.py``, numbered in order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect, text

from cosyvoice_lab.errors import LogError

HERE = Path(__file__).resolve().parent
# The newest revision: the highest number of versions/NNNN_*.py (a test checks Alembic agrees).
HEAD = max(p.name[:4] for p in (HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
SCHEMA_VERSION = int(HEAD)
# What a PostgreSQL log keeps besides the record (not another program's tables).
_BOOKKEEPING = ("alembic_version", "log_schema", "audio")


def upgrade(db: Any, *, target: str = HEAD) -> int:
    """Bring the log's database up to ``target`` (a revision); returns its schema version.

    A failure closes ``db`` (the log is unusable) and is raised as a ``LogError`` naming it.

    Raises:
        LogError: the database is newer than this package, or is some other program's database.
    """
    try:
        with db.errors():
            with db.connect() as conn:  # no lock: a log at the head is only read
                current, legacy = _current(conn, db.kind), _legacy_version(conn, db.kind)
            if current == target == HEAD and legacy == SCHEMA_VERSION:
                return SCHEMA_VERSION
            with db.transaction() as conn:
                return _upgrade_locked(conn, db, target)
    except BaseException:
        db.close()
        raise


def _upgrade_locked(conn: Connection, db: Any, target: str) -> int:
    from alembic import command
    from alembic.config import Config

    revision = _current(conn, db.kind)
    legacy = _legacy_version(conn, db.kind)
    _check_known(db, revision, legacy)
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = conn
    if revision is None and legacy:
        command.stamp(config, f"{legacy:04d}")  # a log from before Alembic: migration vN is revision 000N
        revision = f"{legacy:04d}"
    elif revision is None and _foreign_tables(conn, db.kind):
        raise LogError(
            db.path,
            f"is a {db.kind} database but not a cosyvoice_lab experiment log "
            "(it has tables and no log schema version); it was left untouched",
        )
    if revision is None or int(revision) < int(target):
        command.upgrade(config, target)
    version = int(_current(conn, db.kind) or 0)
    _set_legacy_version(conn, db.kind, version)
    return version


def _current(conn: Connection, kind: str) -> str | None:
    """The Alembic revision the database is at (None: no ``alembic_version`` table, or empty)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _legacy_version(conn: Connection, kind: str) -> int:
    """The version in the pre-Alembic marker (0 when none)."""
    if kind == "SQLite":
        return int(conn.execute(text("PRAGMA user_version")).scalar() or 0)
    if not inspect(conn).has_table("log_schema"):
        return 0
    return int(conn.execute(text("SELECT max(version) FROM log_schema")).scalar() or 0)


def _set_legacy_version(conn: Connection, kind: str, version: int) -> None:
    if kind == "SQLite":
        conn.execute(text(f"PRAGMA user_version = {int(version)}"))
        return
    conn.execute(text("CREATE TABLE IF NOT EXISTS log_schema (version INTEGER NOT NULL)"))
    conn.execute(text("DELETE FROM log_schema"))
    conn.execute(text("INSERT INTO log_schema (version) VALUES (:v)"), {"v": int(version)})


def _foreign_tables(conn: Connection, kind: str) -> int:
    names = inspect(conn).get_table_names()
    return len([n for n in names if kind == "SQLite" or n not in _BOOKKEEPING])


def _check_known(db: Any, revision: str | None, legacy: int) -> None:
    """Refuse a log written by a newer schema (a revision this package does not ship, or a
    higher number in the pre-Alembic marker)."""
    newer = revision is not None and (not revision.isdigit() or int(revision) > SCHEMA_VERSION)
    if newer or legacy > SCHEMA_VERSION:
        from cosyvoice_lab.log.rows import package_version

        current = int(revision) if revision and revision.isdigit() else legacy
        raise LogError(
            db.path,
            f"this log has schema version {max(current, legacy)}, written by a newer cosyvoice_lab; "
            f"cosyvoice_lab {package_version()} understands up to version {SCHEMA_VERSION}. "
            f"Upgrade cosyvoice_lab (pip install -U cosyvoice-lab) to open it.",
        )
