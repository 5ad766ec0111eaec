"""Opening a log: a folder (SQLite, the default) or a ``postgresql://`` URL (a team's database).

``open_parts`` builds the parts ``ExperimentLog`` holds, each given only what it uses (the log
adds those that read its takes through it: bundles).
The two kinds differ only in their database (``database.Database``: SQLAlchemy's SQLite or
PostgreSQL dialect) and their audio store (files in ``folder/audio`` / a table of the same
database); every other part is the same code.

A log on PostgreSQL still has a local ``folder`` for what belongs to one machine, not to the
team: the offline simulator's voices, reports, temporary files. It is the lab folder
(``folders.default_lab_folder()``) unless one is given; nothing of the log's record is kept there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosyvoice_lab import catalog, folders
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log import migrations
from cosyvoice_lab.log.annotations import Utterances
from cosyvoice_lab.log.audio_store import AudioStore, TableAudioStore
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.ratings import Ratings
from cosyvoice_lab.log.recovery import Recovery
from cosyvoice_lab.log.rounds import Rounds
from cosyvoice_lab.log.rows import TakeRows
from cosyvoice_lab.log.take_table import TakeTable
from cosyvoice_lab.log.urls import ambiguous_password, is_url, redact_url


@dataclass
class LogParts:
    """The parts of one open log (``ExperimentLog`` documents what each is for)."""

    db: Database
    audio_store: Any  # AudioStore or TableAudioStore: the same interface
    schema_version: int
    rows: TakeRows
    table: TakeTable
    recovery: Recovery
    ratings: Ratings
    rounds: Rounds
    utterances: Utterances
    folder: Path  # the log folder (SQLite), or this machine's lab folder (PostgreSQL)
    path: Path | str  # folder/log.sqlite3, or the URL without its password
    audio_dir: Path | None  # folder/audio, or None: the audio is in the database


def open_parts(
    location: str | os.PathLike,
    *,
    folder: str | os.PathLike | None = None,
    stale_after_s: float = catalog.STALE_PENDING_S,
    busy_timeout_s: float = catalog.LOG_BUSY_TIMEOUT_S,
) -> LogParts:
    """Open (creating or migrating) the log at ``location``: a folder or a PostgreSQL URL.

    Raises:
        LogError: as ``ExperimentLog`` documents (the URL named without its password).
        ImportError: a URL, and psycopg is not installed (``pip install 'cosyvoice-lab[postgres]'``).
    """
    if is_url(location):
        if ambiguous_password(str(location)):
            raise LogError(
                redact_url(str(location)),
                "the password in this URL holds a character libpq reads as part of the address "
                "(a raw / @ or %, or an @ after the host): percent-encode it "
                "(urllib.parse.quote(password, safe='')), or leave it out and put it in ~/.pgpass or PGPASSWORD",
            )

        db = Database(str(location), busy_timeout_s=busy_timeout_s)
        local = Path(folder if folder is not None else folders.default_lab_folder()).expanduser().absolute()
        try:
            local.mkdir(parents=True, exist_ok=True)  # for this machine's files (reports, simulator voices)
        except OSError as exc:
            raise LogError(local, f"cannot create the lab folder for this machine's files ({exc})") from exc
        store: Any = TableAudioStore(db)
    else:
        db = Database(location, busy_timeout_s=busy_timeout_s)
        assert db.folder is not None  # a folder log
        local, store = db.folder, AudioStore(db.folder)
    version = migrations.upgrade(db)
    rows = TakeRows(store)
    table = TakeTable(db, rows, store)
    return LogParts(
        db=db,
        audio_store=store,
        schema_version=version,
        rows=rows,
        table=table,
        recovery=Recovery(db, stale_after_s=stale_after_s),
        ratings=Ratings(db),
        rounds=Rounds(db),
        utterances=Utterances(db, store),
        folder=local,
        path=db.path,
        audio_dir=getattr(store, "directory", None),
    )
