"""ExperimentLog: every take recorded, durable, a DataFrame away.

The log reads its takes (``get``, ``takes``, ``df``), annotates them (``rate``, ``choose``,
``tag``, ``note``, ...) and exports them (``export_csv``, ...) itself; what else it holds is a
part with its own API, documented where it is written (``opening.py`` builds them for a folder,
SQLite, or a ``postgresql://`` URL). Every write is one transaction, so threads, processes and
machines can share a log.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, func, literal, select, union_all, update

from cosyvoice_lab.catalog import LOG_BUSY_TIMEOUT_S, STALE_PENDING_S
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log import export, opening, schema
from cosyvoice_lab.log.annotations import Change, insert_events
from cosyvoice_lab.log.bundle import Bundles
from cosyvoice_lab.log.database import DB_NAME
from cosyvoice_lab.log.migrations import SCHEMA_VERSION
from cosyvoice_lab.log.ratings import ANONYMOUS, OWN, cache_own, insert_rating, who
from cosyvoice_lab.log.rows import SELECT_TAKE, check_rating, clean_tag, dumps_or_null, where_clause
from cosyvoice_lab.log.schema import ROWID, takes
from cosyvoice_lab.take import Take

__all__ = ["DB_NAME", "SCHEMA_VERSION", "ExperimentLog", "LogError", "TakeNotFound"]


class ExperimentLog:
    """The experiment log in a folder (SQLite; created if missing) or a PostgreSQL database.

    Its own verbs read takes (``get``, ``takes``, ``to_dataframe`` / ``df``, ``voice_ids``,
    ``len(log)``), annotate them with a dated history (``rate``, ``choose``, ``unchoose``,
    ``tag``, ``untag``, ``note``, ``mark_played``; every event: ``annotations``) and export them
    (``export_csv``, ``export_parquet``, ``export_html``). Its parts, each with its own API:

    - ``table`` (``take_table.py``): the write path the runner, the account and the measuring
      stage use: ``start`` / ``claim`` before a request, ``finish`` / ``fail`` / ``reconcile``
      after it, ``set_metrics``, ``set_voice_status``, ``mark_deleted``, ``watch_voices``.
    - ``ratings`` (``ratings.py``): every star rating, the one store: own (``rate``) and
      listening ones, several raters' per take: ``add``, ``to_dataframe``, ``rebuild_own_cache``.
    - ``rounds`` (``rounds.py``): listening rounds, each rater's order and answers, ``round_record``.
    - ``utterances`` (``annotations.py``): speech made with a take's voice: ``add``,
      ``to_dataframe``, ``audio``.
    - ``bundles`` (``bundle.py``): a zip of takes for a teammate: ``export``, ``merge``.
    - ``recovery`` (``recovery.py``): stale pending takes, interrupted on open.
    - ``db`` (``database.py``: ``check``, ``transaction``), ``audio_store``, ``rows``: the machinery.

    Args:
        location: the log folder (may hold other files), or ``postgresql://user:pw@host/db``.
        folder: a database log's local folder (the offline simulator's voices, reports);
            default the lab folder. stale_after_s: age after which another host's pending take
            is interrupted (``recovery.py``). busy_timeout_s: how long a write waits for others.

    Raises:
        LogError: the folder cannot be written, the database cannot be reached, is not a log
            (another program's), or was written by a newer cosyvoice_lab.
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        folder: str | os.PathLike | None = None,
        stale_after_s: float = STALE_PENDING_S,
        busy_timeout_s: float = LOG_BUSY_TIMEOUT_S,
    ) -> None:
        p = opening.open_parts(location, folder=folder, stale_after_s=stale_after_s, busy_timeout_s=busy_timeout_s)
        self.db, self.audio_store, self.rows, self.table = p.db, p.audio_store, p.rows, p.table
        self.recovery, self.ratings, self.rounds, self.utterances = p.recovery, p.ratings, p.rounds, p.utterances
        self.bundles = Bundles(p.db, p.audio_store, p.rows, self)  # a bundle's takes are read as the log reads them
        self.schema_version = p.schema_version
        self.folder: Path = p.folder  # absolute: the log folder, or a database log's local folder
        self.path: Path | str = p.path  # folder/log.sqlite3, or the URL without its password
        self.audio_dir: Path | None = p.audio_dir  # None: the audio is in the database
        self.location = str(self.path if self.audio_dir is None else self.folder)  # a URL shows no password
        self.stale_after: timedelta = self.recovery.stale_after
        self.recovery.interrupt_stale()

    def close(self) -> None:
        """Close every connection this log opened (safe to call twice)."""
        self.db.close()

    def __enter__(self) -> ExperimentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.db.closed else f"{len(self)} takes"
        return f"{type(self).__name__}({self.location!r}, {state}, schema v{self.schema_version})"

    def __len__(self) -> int:
        return self.db.query(select(func.count()).select_from(takes))[0][0]

    # --- reading takes ----------------------------------------------------------------------------
    def get(self, take_id: str) -> Take:
        """The take with this id (or a unique prefix of it, as its repr shows).

        Raises:
            TakeNotFound: no take matches. LogError: the prefix matches several.
        """
        rows = self.db.query(SELECT_TAKE.where(takes.c.take_id == take_id))
        if not rows and isinstance(take_id, str) and 4 <= len(take_id) < 32:
            # substr, not a range: a database's collation may not sort text by code point
            rows = self.db.query(SELECT_TAKE.where(func.substr(takes.c.take_id, 1, len(take_id)) == take_id).limit(2))
        if not rows:
            raise TakeNotFound(self.db.path, f"no take {take_id!r} in this log")
        if len(rows) > 1:
            raise LogError(self.db.path, f"{take_id!r} matches several takes; give more of the id")
        return self.rows.to_take(rows[0])

    def takes(self, **filters: Any) -> list[Take]:
        """Takes matching ``filters`` (those of ``to_dataframe``), oldest first."""
        rows = self.db.rows(SELECT_TAKE.where(*where_clause(**filters)).order_by(takes.c.started_at, ROWID))
        return [self.rows.to_take(row) for row in rows]

    def to_dataframe(
        self,
        experiment: Any = None,
        target_model: Any = None,
        tag: Any = None,
        min_rating: int | None = None,
        status: Any = None,
        since: Any = None,
        until: Any = None,
        **more: Any,
    ):
        """The takes as a pandas DataFrame, one row each, oldest first (a fresh query).

        Args: experiment, target_model, status: one value or a list. tag: takes with this tag (or all
        of a list). min_rating: 1-5. since / until: ``started_at`` bounds (inclusive / exclusive;
        naive times are UTC). more: ``chosen``, ``cell``, ``backend``, ``voice_id``.

        Returns a DataFrame: ``datetime64[ns, UTC]`` times, categorical target_model/backend/status,
        ``Int64`` rating, bool chosen/played, tags as tuples, metrics as ``m_<name>``.
        """
        from cosyvoice_lab.log import frame  # pandas: loaded when a frame is asked for, not with the log

        where = where_clause(
            experiment=experiment,
            target_model=target_model,
            tag=tag,
            min_rating=min_rating,
            status=status,
            since=since,
            until=until,
            **more,
        )
        return frame.takes_frame(self.db.rows, where, self.audio_store, self.db.arrow)

    @property
    def df(self):
        """Every take as a DataFrame (``to_dataframe()``)."""
        return self.to_dataframe()

    def voice_ids(self):
        """The voices this log knows: DataFrame of voice_id, take_id, target_model, experiment,
        status, voice_status, chosen, started_at (oldest first)."""
        from cosyvoice_lab.log import frame

        spec = frame.VOICES_FRAME
        rows = self.db.query(
            select(*frame.select_list(spec, takes))
            .where(takes.c.voice_id.is_not(None))
            .order_by(takes.c.started_at, ROWID)
        )
        return frame.build(rows, spec)

    # --- annotations ------------------------------------------------------------------------------
    # Every verb updates the take's column *and* appends a dated event (``annotations.py``; a rating:
    # an 'own' row of ``ratings``) in one transaction. ``rater``: who (the event's ``author``);
    # default $COSYVOICE_LAB_USER, else the login name (``ratings.who``).
    def rate(self, take_id: str, rating: int | None, *, rater: str | None = None) -> Take:
        """Rate a take 1-5 (None clears the rating): an 'own' row of ``log.ratings`` (every rating
        is kept: ``log.ratings.to_dataframe(kind="own")``, ``annotations()``), and the take's
        ``rating``, the latest own rating, in the same transaction.

        Raises:
            ValueError: not an integer from 1 to 5, or a bad rater name. TakeNotFound: no such take.
        """
        rating = check_rating(rating)
        name = who(rater) or ANONYMOUS
        with self.db.transaction() as conn:
            insert_rating(conn, self.db.path, take_id, rating, kind=OWN, rater=name)
            cache_own(conn, [take_id])
        return self.get(take_id)

    def choose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Mark a take chosen (a keeper). Raises TakeNotFound if missing."""
        return self._annotate(take_id, lambda tags: ({"chosen": 1}, [("choose", None)]), rater)

    def unchoose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Clear a take's chosen mark. Raises TakeNotFound if missing."""
        return self._annotate(take_id, lambda tags: ({"chosen": 0}, [("unchoose", None)]), rater)

    def tag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Add tags (stripped, 1-64 printable characters; duplicates ignored).

        Raises:
            ValueError: a bad tag or rater name. TakeNotFound: no such take.
        """
        wanted = [clean_tag(t) for t in tags]

        def change(current):
            added = [t for t in dict.fromkeys(wanted) if t not in current]
            return {"tags": dumps_or_null(current + added)}, [("tag", t) for t in added]

        return self._annotate(take_id, change, rater)

    def untag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Remove tags (absent ones are ignored). Raises TakeNotFound if missing."""
        unwanted = {clean_tag(t) for t in tags}

        def change(current):
            removed = [t for t in current if t in unwanted]
            kept = [t for t in current if t not in unwanted]
            return {"tags": dumps_or_null(kept)}, [("untag", t) for t in removed]

        return self._annotate(take_id, change, rater)

    def note(self, take_id: str, text: str, *, rater: str | None = None) -> Take:
        """Set a take's notes to ``text`` (its annotation events keep earlier notes).

        Raises:
            TypeError: text is not a string. TakeNotFound: no such take.
        """
        if not isinstance(text, str):
            raise TypeError(f"a note must be a string, got {type(text).__name__}")
        return self._annotate(take_id, lambda tags: ({"notes": text}, [("note", text)]), rater)

    def mark_played(self, *take_ids: str) -> None:
        """Record that these takes were listened to (played, whether chosen or not).

        Raises:
            TakeNotFound: one of them is missing (then none is marked).
        """
        author = who()
        with self.db.transaction() as conn:
            for take_id in take_ids:
                if conn.execute(update(takes).where(takes.c.take_id == take_id).values(played=1)).rowcount != 1:
                    raise TakeNotFound(self.db.path, f"no take {take_id!r} in this log")
                insert_events(conn, take_id, [("played", None)], author)

    def annotations(self, take_id: str | None = None):
        """Every annotation event (of all takes, or of one) as a DataFrame, oldest first:
        annotation_id, take_id, at (UTC), action, value, author. A "rate" event is an own rating
        (its row of ``log.ratings``: ``rating_id``, the rating as text, the rater). (A take's
        lineage, its earlier versions, is ``Lab.history``.)"""
        from cosyvoice_lab.log import frame  # pandas: loaded when a frame is asked for, not with the log

        a, r = schema.annotations.c, schema.ratings.c
        events = select(*frame.select_list(frame.HISTORY_FRAME, schema.annotations), ROWID.label("seq"))
        rates = select(r.rating_id, r.take_id, r.at, literal("rate"), cast(r.rating, Text), r.rater, ROWID).where(
            r.kind == OWN
        )
        if take_id:
            events, rates = events.where(a.take_id == take_id), rates.where(r.take_id == take_id)
        both = union_all(events, rates).subquery()
        rows = self.db.query(select(*list(both.c)[:-1]).order_by(both.c.at, both.c.seq))
        return frame.build(rows, frame.HISTORY_FRAME)

    def _annotate(self, take_id: str, change: Change, rater: str | None = None) -> Take:
        """Apply ``change(tags) -> (column values, events)`` to a take in one transaction,
        the events recorded as ``rater``'s (``ratings.who``)."""
        author = who(rater)
        with self.db.transaction() as conn:
            row = conn.execute(select(takes.c.tags).where(takes.c.take_id == take_id)).fetchone()
            if row is None:
                raise TakeNotFound(self.db.path, f"no take {take_id!r} in this log")
            values, events = change(json.loads(row[0] or "[]"))
            insert_events(conn, take_id, events, author)
            return self.table.update(conn, take_id, values)

    # --- exports (the log is their source; bundles: ``log.bundles``) ------------------------------
    def export_csv(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame (``to_dataframe``'s filters) as CSV (tags as JSON lists,
        times ISO 8601 UTC), atomically; returns the path. Raises LogError (cannot write)."""
        return export.export_csv(self, path, **filters)

    def export_parquet(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame as Parquet (dtypes kept; tags as lists; read it back with
        ``log.export.read_parquet``), atomically; returns the path. Raises LogError."""
        return export.export_parquet(self, path, **filters)

    def export_html(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write a self-contained HTML report of the filtered takes (grouped, compressed players;
        no evidence: see ``views.report.report``), atomically; returns the path. Raises LogError."""
        return export.export_html(self, path, **filters)
