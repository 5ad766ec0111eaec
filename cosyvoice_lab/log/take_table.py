"""The ``takes`` table: the write path (a pending row, then its outcome) and the read path.

Write path: ``start`` commits a ``pending`` row before the request leaves; ``finish``/``fail``/
``reconcile`` record its outcome in the same row, each as one statement (atomic on its own).
A preview is written to the audio store before the row that names it. Read path: takes by id
or filter, and the DataFrames (``frame.py``, loaded only when a frame is asked for).
"""

from __future__ import annotations

import json
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.catalog import STALE_PENDING_S
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log import recovery
from cosyvoice_lab.log.audio_store import AudioStore
from cosyvoice_lab.log.db import Database
from cosyvoice_lab.log.rows import (
    SELECT_TAKE,
    TAKE_COLUMNS,
    TakeRows,
    audio_columns,
    clean_metrics,
    dumps_or_null,
    package_version,
    where_clause,
)
from cosyvoice_lab.take import BACKENDS, Take, check_experiment, iso, now_utc, redact

_RETURNING = f"RETURNING {', '.join(TAKE_COLUMNS)}"
_HOLDER_COLUMNS = "t.take_id, t.writer_host, t.writer_pid, t.writer_start, t.started_at, t.status"
# The take holding a cell, in one query (one round trip to a database server): its claimant, else (for
# takes from before claims, or a bundle's) the cell's latest take; ``first`` orders the two.
_HOLDER_SQL = (
    f"SELECT * FROM (SELECT 0 AS first, {_HOLDER_COLUMNS} FROM cell_claims AS c JOIN takes AS t "
    "ON t.take_id = c.take_id WHERE c.experiment = ? AND c.cell = ? AND t.status != 'failed') AS claimant "
    f"UNION ALL SELECT * FROM (SELECT 1 AS first, {_HOLDER_COLUMNS} FROM takes AS t WHERE t.experiment = ? "
    "AND t.cell = ? AND t.status != 'failed' ORDER BY t.started_at DESC LIMIT 1) AS latest "
    "ORDER BY first LIMIT 1"
)


def _insert_sql(row: dict) -> str:
    return f"INSERT INTO takes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"


def _execute_all(conn: Any, statements: Iterable[tuple[str, Any]]) -> None:
    """Run ``(sql, params)`` statements in order inside the caller's transaction: on PostgreSQL in one
    round trip (the connection's ``execute_all``, pipeline mode), on SQLite one by one (no round trips)."""
    execute_all = getattr(conn, "execute_all", None)
    if execute_all is not None:
        execute_all(statements)
        return
    for sql, params in statements:
        conn.execute(sql, params)


class TakeTable:
    """Records takes and reads them back (``ExperimentLog`` documents each method).

    Args:
        db: the log's database. rows: row <-> Take conversion. audio_store: where previews go.
    """

    def __init__(self, db: Database, rows: TakeRows, audio_store: AudioStore) -> None:
        self._db = db
        self._rows = rows
        self._store = audio_store
        self._voice_watchers: list[weakref.WeakMethod] = []

    def watch_voices(self, method: Callable[[set[str]], None]) -> None:
        """Call ``method(voice_ids)`` after this process records a change of voices' statuses
        (a clean-up deleted them, a listing saw them change), so that what shows a take (a card
        in a notebook) can redraw. Held weakly: a card that is gone is not kept alive by this."""
        self._voice_watchers = [w for w in self._voice_watchers if w() is not None]
        self._voice_watchers.append(weakref.WeakMethod(method))

    def _voices_changed(self, voice_ids: set[str]) -> None:
        for watcher in list(self._voice_watchers):
            method = watcher()
            if method is None:
                continue
            try:
                method(voice_ids)
            except Exception:  # a watcher's failure never undoes or fails the write
                logging.getLogger(__name__).exception("a voice-status watcher failed")

    @property
    def folder(self) -> Path:
        """The log folder (reports name it)."""
        return self._db.folder

    def count(self) -> int:
        """How many takes the log holds."""
        return self._db.query("SELECT count(*) FROM takes")[0][0]

    # --- the write path ---------------------------------------------------------------------------
    def start(self, design: VoiceDesign, *, backend: str, prompt_spec: Any = None, **where: Any) -> Take:
        """Commit a ``pending`` take and count it in flight (see ``ExperimentLog.start``)."""
        take, row = self._new(design, backend=backend, prompt_spec=prompt_spec, **where)
        recovery.hold(take)  # before the insert, so no concurrent open can judge it stale
        try:
            self._db.query(_insert_sql(row), list(row.values()))
        except BaseException:
            recovery.release(take.take_id)
            raise
        return take

    def claim(
        self, design: VoiceDesign, *, experiment: str, cell: str, backend: str, prompt_spec: Any = None, **where: Any
    ) -> Take | None:
        """Claim a compare's cell and commit its ``pending`` take in one transaction, unless
        another take holds the cell (see ``ExperimentLog.claim``); returns the take or None."""
        take, row = self._new(
            design, backend=backend, prompt_spec=prompt_spec, experiment=experiment, cell=cell, **where
        )
        recovery.hold(take)
        try:
            with self._db.transaction() as conn:  # BEGIN IMMEDIATE: one claimant at a time, across processes
                if self._held(conn, experiment, cell):
                    recovery.release(take.take_id)
                    return None
                _execute_all(
                    conn,
                    (
                        (_insert_sql(row), list(row.values())),
                        (  # an upsert both databases speak
                            "INSERT INTO cell_claims (experiment, cell, take_id, claimed_at) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (experiment, cell) DO UPDATE SET take_id = excluded.take_id, "
                            "claimed_at = excluded.claimed_at",
                            (experiment, cell, take.take_id, row["started_at"]),
                        ),
                    ),
                )
        except BaseException:
            recovery.release(take.take_id)
            raise
        return take

    def _held(self, conn: Any, experiment: str, cell: str) -> bool:
        """Whether a take holds the cell: its claimant (or, for takes from before claims, any
        take of the cell) is ok, may hold a voice, or is pending. A pending take whose writer
        is gone is marked interrupted here: reconcile then adopts its voice or frees the cell."""
        holder = conn.execute(_HOLDER_SQL, (experiment, cell, experiment, cell)).fetchone()
        if holder is None:
            return False
        holder = holder[1:]
        if holder[5] == "pending":
            stale = recovery.is_stale(
                holder[:5],
                me=recovery.writer_identity(),
                live=recovery.in_flight(),
                now=now_utc(),
                stale_after=timedelta(seconds=STALE_PENDING_S),
            )
            if stale:
                conn.execute(
                    "UPDATE takes SET status = 'interrupted', error_code = 'Interrupted', error_message = ? "
                    "WHERE take_id = ? AND status = 'pending'",
                    (recovery.abandoned_message(holder[1], holder[2]), holder[0]),
                )
        return True

    def _new(self, design: VoiceDesign, *, backend: str, prompt_spec: Any, **where: Any) -> tuple[Take, dict]:
        """A new pending Take and its row (with this process as the writer)."""
        if not isinstance(design, VoiceDesign):
            raise TypeError(f"design must be a VoiceDesign, got {type(design).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        check_experiment(where.get("experiment"))
        if prompt_spec is not None and hasattr(prompt_spec, "to_dict"):
            prompt_spec = prompt_spec.to_dict()
        take = Take(
            take_id=uuid.uuid4().hex,
            design=design,
            status="pending",
            backend=backend,
            package_version=package_version(),
            started_at=now_utc(),
            prompt_spec=prompt_spec,
            **where,
        )
        row = self._rows.to_row(take)
        row["writer_host"], row["writer_pid"], row["writer_start"] = recovery.writer_identity()
        return take, row

    def finish(
        self,
        take_id: str,
        *,
        voice_id: str,
        request_id: str | None = None,
        audio: Audio | None = None,
        voice_status: str | None = None,
        latency_s: float | None = None,
        metrics: dict | None = None,
    ) -> Take:
        """Record a designed voice; its preview is stored first (see ``ExperimentLog.finish``)."""
        values: dict[str, Any] = {
            "status": "ok",
            "voice_id": voice_id,
            "voice_status": voice_status,
            "error_code": None,
            "error_message": None,
        }
        if audio is not None:
            values.update(audio_columns(audio, self._store.put(audio)))
        if metrics:
            values["metrics"] = dumps_or_null(clean_metrics(metrics))
        if request_id is not None:
            values["request_id"] = request_id
        return self._settle(take_id, values, latency_s)

    def fail(
        self,
        take_id: str,
        *,
        error_code: str,
        error_message: str,
        status: str = "failed",
        request_id: str | None = None,
        latency_s: float | None = None,
    ) -> Take:
        """Record that a take produced no voice (see ``ExperimentLog.fail``)."""
        if status not in ("failed", "unknown", "interrupted"):
            raise ValueError(f"status must be 'failed', 'unknown' or 'interrupted', got {status!r}")
        values = {"status": status, "error_code": error_code, "error_message": redact(error_message)}
        if request_id is not None:
            values["request_id"] = request_id
        return self._settle(take_id, values, latency_s)

    def reconcile(self, take_id: str, *, voice_id: str, voice_status: str | None = None) -> Take:
        """Adopt a listed voice as an 'unknown' take's outcome (see ``ExperimentLog.reconcile``)."""
        values = {
            "status": "ok",
            "voice_id": voice_id,
            "voice_status": voice_status,
            "preview_missing": 1,
            "error_code": None,
            "error_message": None,
        }
        return self._settle(take_id, values, None, keep_timing=True, unique_voice=voice_id)

    def _settle(
        self,
        take_id: str,
        values: dict,
        latency_s: float | None,
        *,
        keep_timing: bool = False,
        unique_voice: str | None = None,
    ) -> Take:
        """Record an outcome with one UPDATE (a lone statement is its own transaction), only on
        a take whose outcome is still open; ``keep_timing`` keeps an earlier finish time;
        ``unique_voice``: only if no take has that voice yet (an adoption, across processes).
        A take settled first (by another process, or another thread) is returned as stored."""
        now = iso(now_utc())
        # julianday() reads times to the millisecond: precise enough for a fallback latency.
        latency = "COALESCE(?, (julianday(?) - julianday(started_at)) * 86400.0)"
        finished = "?"
        if keep_timing:
            latency, finished = f"COALESCE(latency_s, {latency})", "COALESCE(finished_at, ?)"
        sets = "".join(f"{name} = ?, " for name in values)
        unique, params = "", [*values.values(), latency_s, now, now, take_id]
        if unique_voice is not None:
            unique, params = " AND NOT EXISTS (SELECT 1 FROM takes WHERE voice_id = ?)", [*params, unique_voice]
        sql = (
            f"UPDATE takes SET {sets}latency_s = {latency}, finished_at = {finished} "
            f"WHERE take_id = ? AND status IN ('pending', 'unknown', 'interrupted'){unique} {_RETURNING}"
        )
        if unique_voice is None:
            rows = self._db.query(sql, params)
        else:  # check-then-write: under the write lock, so two adoptions of one voice are serialised
            with self._db.transaction() as conn:
                rows = conn.execute(sql, params).fetchall()
        recovery.release(take_id)
        if not rows:
            return self._settled_first(take_id, unique_voice)
        return self._rows.to_take(rows[0])

    def _settled_first(self, take_id: str, voice_id: str | None) -> Take:
        """The stored take when its outcome was recorded first; raises when there is no such
        take, or when the voice to adopt is already another take's outcome."""
        take = self.get_exact(take_id)
        if take.status in ("pending", "unknown", "interrupted"):
            raise LogError(self._db.path, f"voice {voice_id} is already the outcome of another take")
        return take

    def get_exact(self, take_id: str) -> Take:
        """The take with exactly this id. Raises TakeNotFound."""
        rows = self._db.query(f"{SELECT_TAKE} WHERE take_id = ?", (take_id,))
        if not rows:
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        return self._rows.to_take(rows[0])

    def update(self, conn: Any, take_id: str, values: dict) -> Take:
        """Set ``values`` on a take inside the caller's transaction; returns the take as updated.

        Raises:
            TakeNotFound: no such take.
        """
        if not values:
            row = conn.execute(f"{SELECT_TAKE} WHERE take_id = ?", (take_id,)).fetchone()
        else:
            assignments = ", ".join(f"{name} = ?" for name in values)
            row = conn.execute(
                f"UPDATE takes SET {assignments} WHERE take_id = ? {_RETURNING}", [*values.values(), take_id]
            ).fetchone()
        if row is None:
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        return self._rows.to_take(row)

    def set_metrics(self, take_id: str, metrics: dict) -> Take:
        """Merge measurements into a take's (see ``ExperimentLog.set_metrics``)."""
        new = clean_metrics(metrics)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT metrics FROM takes WHERE take_id = ?", (take_id,)).fetchone()
            if row is None:
                raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
            merged = {**json.loads(row[0] or "{}"), **new}
            return self.update(conn, take_id, {"metrics": dumps_or_null(merged)})

    def set_voice_status(self, statuses: dict[str, str]) -> int:
        """Record voices' statuses; returns how many takes changed (see ``ExperimentLog``)."""
        if not statuses:
            return 0
        with self._db.transaction() as conn:
            changed = sum(
                conn.execute("UPDATE takes SET voice_status = ? WHERE voice_id = ?", (status, vid)).rowcount
                for vid, status in statuses.items()
            )
        if changed:
            self._voices_changed(set(statuses))
        return changed

    def mark_deleted(self, voice_ids: str | Iterable[str]) -> int:
        """Record voices deleted from the account (see ``ExperimentLog.mark_deleted``)."""
        ids = [voice_ids] if isinstance(voice_ids, str) else list(voice_ids)
        return self.set_voice_status(dict.fromkeys(ids, "DELETED"))

    # --- the read path ----------------------------------------------------------------------------
    def get(self, take_id: str) -> Take:
        """The take with this id or unique prefix (see ``ExperimentLog.get``)."""
        rows = self._db.query(f"{SELECT_TAKE} WHERE take_id = ?", (take_id,))
        if not rows and isinstance(take_id, str) and 4 <= len(take_id) < 32:
            # substr, not a range: a database's collation may not sort text by code point
            rows = self._db.query(f"{SELECT_TAKE} WHERE substr(take_id, 1, ?) = ? LIMIT 2", (len(take_id), take_id))
        if not rows:
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        if len(rows) > 1:
            raise LogError(self._db.path, f"{take_id!r} matches several takes; give more of the id")
        return self._rows.to_take(rows[0])

    def takes(self, **filters: Any) -> list[Take]:
        """Takes matching ``filters`` (those of ``where_clause``), oldest first."""
        where, params = where_clause(**filters)
        rows = self._db.query(f"{SELECT_TAKE}{where} ORDER BY started_at, rowid", params)
        return [self._rows.to_take(row) for row in rows]

    def to_dataframe(self, **filters: Any):
        """The takes matching ``filters`` as a DataFrame (see ``ExperimentLog.to_dataframe``)."""
        from cosyvoice_lab.log import frame  # pandas: loaded when a frame is asked for, not with the log

        where, params = where_clause(**filters)
        return frame.takes_frame(self._db.query, where, params, self._store)

    def voice_ids(self):
        """The voices this log knows, as a DataFrame (see ``ExperimentLog.voice_ids``)."""
        from cosyvoice_lab.log import frame

        spec = frame.VOICES_FRAME
        rows = self._db.query(
            f"SELECT {frame.select_list(spec)} FROM takes WHERE voice_id IS NOT NULL ORDER BY started_at, rowid"
        )
        return frame.build(rows, spec)
