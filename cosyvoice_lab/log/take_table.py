"""The ``takes`` table's write path (``log.table``): a pending row, then its outcome.

``start`` commits a ``pending`` row before the request leaves; ``finish``/``fail``/``reconcile``
record its outcome in the same row, each as one statement (atomic on its own). A preview is
written to the audio store before the row that names it. The runner, the account and the
measuring stage write through here; what a user reads (``get``, ``takes``, ``df``) is the log's
own (``experiment_log.py``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Float,
    String,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    union_all,
    update,
)

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.catalog import STALE_PENDING_S
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log import recovery
from cosyvoice_lab.log.audio_store import AudioStore
from cosyvoice_lab.log.database import Database, Prepared
from cosyvoice_lab.log.functions import dialect_insert, seconds_between
from cosyvoice_lab.log.rows import (
    SELECT_TAKE,
    TakeRows,
    audio_columns,
    clean_metrics,
    dumps_or_null,
    package_version,
)
from cosyvoice_lab.log.schema import TAKE_COLUMNS, cell_claims, takes
from cosyvoice_lab.take import BACKENDS, Take, check_experiment, iso, now_utc, redact

_RETURNING = tuple(takes.c[name] for name in TAKE_COLUMNS)
_OPEN = ("pending", "unknown", "interrupted")  # outcomes not yet known: the ones a settle may record
_OPEN_SQL: list[Any] = [literal_column(f"'{status}'") for status in _OPEN]  # constants in a prepared statement


def _holder_query():
    """The take holding a cell, in one query (one round trip to a database server): its claimant,
    else (for takes from before claims, or a bundle's) the cell's latest take; ``rank`` orders the two."""
    t = takes.alias("t")
    experiment, cell = bindparam("experiment", type_=String), bindparam("cell", type_=String)
    columns = (t.c.take_id, t.c.writer_host, t.c.writer_pid, t.c.writer_start, t.c.started_at, t.c.status)
    claimant = (
        select(literal(0).label("rank"), *columns)
        .select_from(cell_claims.join(t, t.c.take_id == cell_claims.c.take_id))
        .where(cell_claims.c.experiment == experiment, cell_claims.c.cell == cell, t.c.status != "failed")
        .subquery("claimant")
    )
    latest = (
        select(literal(1).label("rank"), *columns)
        .where(t.c.experiment == experiment, t.c.cell == cell, t.c.status != "failed")
        .order_by(t.c.started_at.desc())
        .limit(1)
        .subquery("latest")
    )
    both = union_all(select(claimant), select(latest)).subquery("holders")
    return select(both).order_by(both.c.rank).limit(1)


_HOLDER = _holder_query()
# A new take's fields' defaults (``metrics``, a factory's, is given fresh for each take by ``_new``).
_PENDING = {f.name: f.default for f in dataclasses.fields(Take) if f.default is not dataclasses.MISSING}
_INSERT_TAKE: dict[tuple[str, ...], Prepared] = {}  # by the columns given
_SETTLE: dict[tuple, Prepared] = {}  # by the columns set and how


def _insert_take(columns: tuple[str, ...]) -> Prepared:
    if columns not in _INSERT_TAKE:
        _INSERT_TAKE[columns] = Prepared(insert(takes).values({c: bindparam(c) for c in columns}))
    return _INSERT_TAKE[columns]


def _settle_statement(columns: tuple[str, ...], keep_timing: bool) -> Prepared:
    """The outcome's UPDATE ... RETURNING: ``columns`` from parameters of their names, the latency
    given (``latency_s``) or else the time since the start, ``now`` the finish time; only on a take
    whose outcome is still open. ``keep_timing`` keeps an earlier finish time and latency."""
    key = (columns, keep_timing)
    if key not in _SETTLE:
        now = bindparam("now", type_=String)
        latency: Any = func.coalesce(bindparam("latency", type_=Float), seconds_between(now, takes.c.started_at))
        finished: Any = now
        if keep_timing:
            latency, finished = func.coalesce(takes.c.latency_s, latency), func.coalesce(takes.c.finished_at, now)
        _SETTLE[key] = Prepared(
            update(takes)
            .where(takes.c.take_id == bindparam("id", type_=String), takes.c.status.in_(_OPEN_SQL))
            .values({**{c: bindparam(f"set_{c}") for c in columns}, "latency_s": latency, "finished_at": finished})
            .returning(*_RETURNING)
        )
    return _SETTLE[key]


class TakeTable:
    """Records takes and their outcomes (each method documents its contract).

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

    # --- the write path ---------------------------------------------------------------------------
    def start(self, design: VoiceDesign, *, backend: str, prompt_spec: Any = None, **where: Any) -> Take:
        """Record a take as ``pending``; call this (it commits) before the request is sent.

        Args:
            design: the exact request. backend: 'dashscope' or 'offline'. prompt_spec: the
                PromptSpec (dict, or with ``to_dict()``). where: ``experiment``, ``region``,
                ``host``, ``parent_take_id``, ``cell``, ``repeat``: where the take belongs and goes.

        Returns:
            the pending Take (a new, globally unique ``take_id``), counted in flight. Keep it while
            the request is out: a pending take whose Take this process no longer holds counts as
            abandoned, and the next open of the log marks it interrupted (``recovery.py``).

        Raises:
            TypeError / ValueError: a bad design, backend or prompt_spec. LogError: cannot write.
        """
        take, row = self._new(design, backend=backend, prompt_spec=prompt_spec, **where)
        recovery.hold(take)  # before the insert, so no concurrent open can judge it stale
        try:
            self._db.run(_insert_take(tuple(row)), row)
        except BaseException:
            recovery.release(take.take_id)
            raise
        return take

    def claim(
        self, design: VoiceDesign, *, experiment: str, cell: str, backend: str, prompt_spec: Any = None, **where: Any
    ) -> Take | None:
        """``start`` for a compare's cell, claiming it first (one transaction, so two processes
        never send the same cell): None, with nothing written, when another take holds it (ok,
        pending in a live process, or of unknown outcome: ``reconcile`` settles those). Takes the
        keywords of ``start``."""
        take, row = self._new(
            design, backend=backend, prompt_spec=prompt_spec, experiment=experiment, cell=cell, **where
        )
        recovery.hold(take)

        def claim_cell(conn: Any) -> Take | None:
            holder = self._holder(conn, experiment, cell)
            if holder == take.take_id:  # run again after a lost connection: the lost attempt committed
                return take
            if holder is not None:
                return None
            conn.execute(insert(takes), row)
            claim = dialect_insert(conn.dialect.name, cell_claims).values(
                experiment=experiment, cell=cell, take_id=take.take_id, claimed_at=row["started_at"]
            )
            conn.execute(
                claim.on_conflict_do_update(
                    index_elements=["experiment", "cell"],
                    set_={"take_id": claim.excluded.take_id, "claimed_at": claim.excluded.claimed_at},
                )
            )
            return take

        try:
            claimed = self._db.write(claim_cell)  # BEGIN IMMEDIATE: one claimant at a time, across processes
        except BaseException:
            recovery.release(take.take_id)
            raise
        if claimed is None:
            recovery.release(take.take_id)
        return claimed

    def _holder(self, conn: Any, experiment: str, cell: str) -> str | None:
        """The id of the take that holds the cell, if one does: its claimant (or, for takes from
        before claims, any take of the cell) is ok, may hold a voice, or is pending. A pending take
        whose writer is gone is marked interrupted here: reconcile then adopts its voice or frees the cell."""
        holder = conn.execute(_HOLDER, {"experiment": experiment, "cell": cell}).fetchone()
        if holder is None:
            return None
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
                    update(takes)
                    .where(takes.c.take_id == holder[0], takes.c.status == "pending")
                    .values(
                        status="interrupted",
                        error_code="Interrupted",
                        error_message=recovery.abandoned_message(holder[1], holder[2]),
                    )
                )
        return holder[0]

    def _new(self, design: VoiceDesign, *, backend: str, prompt_spec: Any, **where: Any) -> tuple[Take, dict]:
        """A new pending Take and its row (with this process as the writer)."""
        if not isinstance(design, VoiceDesign):
            raise TypeError(f"design must be a VoiceDesign, got {type(design).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        check_experiment(where.get("experiment"))
        if prompt_spec is not None and hasattr(prompt_spec, "to_dict"):
            prompt_spec = prompt_spec.to_dict()
        given = {
            "take_id": uuid.uuid4().hex,
            "design": design,
            "status": "pending",
            "backend": backend,
            "package_version": package_version(),
            "started_at": now_utc(),
            "prompt_spec": prompt_spec,
        }
        refused = (where.keys() - _PENDING.keys() - {"metrics"}) | (where.keys() & given.keys())
        if refused:  # as Take(**given, **where) refuses them
            raise TypeError(f"unexpected or repeated keyword arguments: {sorted(refused)}")
        take = Take.from_fields({**_PENDING, "metrics": {}, **given, **where})
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
        """Record a designed voice: status 'ok', its id and preview (stored, atomically, before
        the row names it). ``latency_s`` defaults to the time since ``start``. A take that already
        has its outcome (settled first, e.g. by another process) is returned as stored: settling
        is a no-op.

        Raises:
            TakeNotFound: no such take. LogError: cannot write.
        """
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
        """Record that a take did not produce a voice. ``status``: 'failed' (the service refused
        or an error ended it), 'unknown' (sent, result unknown: a voice may exist; see
        ``reconcile``) or 'interrupted'.

        Raises:
            ValueError: another status. TakeNotFound: no such take. LogError: cannot write.
        """
        if status not in ("failed", "unknown", "interrupted"):
            raise ValueError(f"status must be 'failed', 'unknown' or 'interrupted', got {status!r}")
        values = {"status": status, "error_code": error_code, "error_message": redact(error_message)}
        if request_id is not None:
            values["request_id"] = request_id
        return self._settle(take_id, values, latency_s)

    def reconcile(self, take_id: str, *, voice_id: str, voice_status: str | None = None) -> Take:
        """Adopt a voice found in the service's list as the outcome of an 'unknown' take: it
        becomes 'ok' with ``preview_missing=True``.

        Raises:
            TakeNotFound: no such take. LogError: as for ``finish``; also when the voice is already
                another take's outcome (adopted once, across processes).
        """
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
        params = {f"set_{c}": v for c, v in values.items()} | {"id": take_id, "latency": latency_s}
        params["now"] = iso(now_utc())  # to the millisecond: precise enough for a fallback latency
        prepared = _settle_statement(tuple(values), keep_timing)
        if unique_voice is None:
            rows = self._db.run(prepared, params)
        else:  # check-then-write: under the write lock, so two adoptions of one voice are serialised
            other = takes.alias("other")
            statement = prepared.statement.where(~exists().where(other.c.voice_id == unique_voice))
            # run again after a lost connection: a committed adoption leaves no open take to update
            rows = self._db.write(lambda conn: list(conn.execute(statement, params).fetchall()))
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
        rows = self._db.query(SELECT_TAKE.where(takes.c.take_id == take_id))
        if not rows:
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        return self._rows.to_take(rows[0])

    def update(self, conn: Any, take_id: str, values: dict) -> Take:
        """Set ``values`` on a take inside the caller's transaction; returns the take as updated.

        Raises:
            TakeNotFound: no such take.
        """
        if not values:
            row = conn.execute(SELECT_TAKE.where(takes.c.take_id == take_id)).fetchone()
        else:
            row = conn.execute(
                update(takes).where(takes.c.take_id == take_id).values(values).returning(*_RETURNING)
            ).fetchone()
        if row is None:
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        return self._rows.to_take(row)

    def set_metrics(self, take_id: str, metrics: dict) -> Take:
        """Merge ``metrics`` (name -> number/str/bool/None) into a take's measurements.

        Raises:
            TypeError / ValueError: a bad name or value (``rows.clean_metrics``). TakeNotFound.
        """
        new = clean_metrics(metrics)

        def merge(conn: Any) -> Take:  # safe to run again: merging the same figures twice is merging them once
            row = conn.execute(select(takes.c.metrics).where(takes.c.take_id == take_id)).fetchone()
            if row is None:
                raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
            merged = {**json.loads(row[0] or "{}"), **new}
            return self.update(conn, take_id, {"metrics": dumps_or_null(merged)})

        return self._db.write(merge)

    def set_voice_status(self, statuses: dict[str, str]) -> int:
        """Record each voice's status as the service reported it (``{voice_id: status}``, e.g.
        from a listing). Voice ids the log does not know are ignored; returns how many takes
        were updated."""
        if not statuses:
            return 0
        with self._db.transaction() as conn:
            changed = sum(
                conn.execute(update(takes).where(takes.c.voice_id == vid).values(voice_status=status)).rowcount
                for vid, status in statuses.items()
            )
        if changed:
            self._voices_changed(set(statuses))
        return changed

    def mark_deleted(self, voice_ids: str | Iterable[str]) -> int:
        """Record these voices deleted from the account (``voice_status='DELETED'``); the takes
        keep everything else. Returns how many takes were updated (unknown voice ids are ignored)."""
        ids = [voice_ids] if isinstance(voice_ids, str) else list(voice_ids)
        return self.set_voice_status(dict.fromkeys(ids, "DELETED"))
