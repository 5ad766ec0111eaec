"""ExperimentLog: every take recorded, durable, a DataFrame away.

One folder holds the log::

    folder/log.sqlite3          SQLite in WAL mode; schema by numbered migrations (migrations.py)
    folder/audio/<sha256>.<ext> content-addressed previews, written atomically before their row

Write path: ``start`` commits a ``pending`` row before the request leaves; ``finish``/``fail``/
``reconcile`` record its outcome in the same row. Every write is one transaction — a single
statement (``start``, the outcomes: atomic on their own) or a ``BEGIN IMMEDIATE`` block
(annotations, imports) — with a busy timeout, on a connection of the calling thread, so
threads and processes can share a log.

Stale pending rows. Opening a log marks ``pending`` rows ``interrupted`` only when their
writer is certainly gone: each pending row records the writing process (host name, pid,
and its boot id + start time, which survive pid reuse). On the same host the row is stale
when that process no longer runs — or when it is this very process and nothing holds the
take's pending ``Take`` any more (a notebook cell interrupted before it recorded an outcome).
A row written on another host (a shared folder) is stale once it is older than
``stale_after_s`` (an hour by default, far beyond a create request's timeout and retries).
A live writer's rows are never touched; ``finish`` still succeeds on an interrupted take.

Durability: ``synchronous=NORMAL`` in WAL mode. A killed process loses nothing it committed;
a power cut may lose the last few commits but never corrupts the database.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import uuid
import weakref
from datetime import timedelta

from cosyvoice_lab.log import rows as logstore
from cosyvoice_lab.log.annotations import Annotations, Utterances
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.export import Exports
from cosyvoice_lab.log.db import DB_NAME
from cosyvoice_lab.log.rows import SELECT_TAKE, clean_metrics, dumps_or_null
from cosyvoice_lab.errors import TakeNotFound
from cosyvoice_lab.log.migrations import SCHEMA_VERSION, migrate
from cosyvoice_lab.take import BACKENDS, Take, iso, now_utc, redact

__all__ = ["DB_NAME", "SCHEMA_VERSION", "ExperimentLog", "LogError", "TakeNotFound"]

# Takes this process has sent and not yet settled, whichever ExperimentLog object sent them:
# a second log object opened in the same kernel must not mark them interrupted. Weak values:
# while a request is in flight its caller holds the pending Take; once the caller is gone
# without an outcome (a cell interrupted mid-request) the entry vanishes and the take is stale.
_IN_FLIGHT: weakref.WeakValueDictionary[str, Take] = weakref.WeakValueDictionary()
_IN_FLIGHT_LOCK = threading.Lock()


class ExperimentLog(Annotations, Utterances, Exports):
    """The experiment log in ``folder`` (created if missing).

    Annotation methods (``rate``, ``choose``, ``tag``, ``note``, ``mark_played``, ``history``)
    come from ``annotations.Annotations``; ``add_utterance``/``utterances`` from ``Utterances``;
    ``export_csv``/``export_parquet``/``export_html``/``export_bundle``/``import_bundle`` from
    ``export.Exports``; connections and transactions from ``logdb.LogDatabase``.

    Args:
        folder: the log folder; may already hold other files.
        stale_after_s: age after which a pending take written on another host is interrupted.
        busy_timeout_s: how long a write waits for another writer before failing.

    Raises:
        LogError: the folder cannot be created or written, ``log.sqlite3`` is not a SQLite
            database (or another program's), or the log was written by a newer cosyvoice_lab.
    """

    def __init__(self, folder, *, stale_after_s: float = 3600.0, busy_timeout_s: float = 30.0):
        super().__init__(folder, busy_timeout_s=busy_timeout_s)
        self.stale_after = timedelta(seconds=stale_after_s)
        try:
            self.schema_version = migrate(self._conn(), self.path)
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc) from exc
        except BaseException:
            self.close()
            raise
        self.interrupt_stale()

    # --- recovery ------------------------------------------------------------------------------
    def interrupt_stale(self) -> int:
        """Mark abandoned ``pending`` takes ``interrupted`` (the rule is in the module docstring).

        Returns:
            how many takes were marked.
        """
        rows = self._query("SELECT take_id, writer_host, writer_pid, writer_start, started_at "
                           "FROM takes WHERE status = 'pending'")
        if not rows:
            return 0
        with _IN_FLIGHT_LOCK:  # read after the rows: a take settled meanwhile is caught below
            live = set(_IN_FLIGHT.keys())
        me, now = logstore.writer_identity(), now_utc()
        stale = [r for r in rows if logstore.is_stale(r, me=me, live=live, now=now, stale_after=self.stale_after)]
        if not stale:
            return 0
        with self._tx() as conn:
            for take_id, host, pid, *_ in stale:
                message = (f"the process that sent it (pid {pid} on {host}) ended before recording an outcome; "
                           f"a voice may have been created: list voices to check" if host else
                           "no outcome was recorded; a voice may have been created: list voices to check")
                conn.execute("UPDATE takes SET status = 'interrupted', error_code = 'Interrupted', "
                             "error_message = ? WHERE take_id = ? AND status = 'pending'", (message, take_id))
        return len(stale)

    # --- the write path ---------------------------------------------------------------------------
    def start(self, design: VoiceDesign, *, experiment: str | None = None, backend: str,
              region: str | None = None, host: str | None = None, prompt_spec: dict | None = None,
              parent_take_id: str | None = None, cell: str | None = None,
              repeat: int | None = None) -> Take:
        """Record a take as ``pending``; call this (it commits) before the request is sent.

        Args:
            design: the exact request. backend: 'dashscope' or 'offline'. region, host: where
                it goes. prompt_spec: the PromptSpec (dict, or anything with ``to_dict()``).
            experiment, parent_take_id, cell, repeat: where the take belongs.

        Returns:
            the pending Take (its ``take_id`` is new and globally unique). Keep it while the
            request is in flight: a pending take whose Take object this process no longer
            holds counts as abandoned, and the next open of the log marks it interrupted.

        Raises:
            TypeError / ValueError: a bad design, backend or prompt_spec. LogError: cannot write.
        """
        if not isinstance(design, VoiceDesign):
            raise TypeError(f"design must be a VoiceDesign, got {type(design).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if prompt_spec is not None and hasattr(prompt_spec, "to_dict"):
            prompt_spec = prompt_spec.to_dict()
        from cosyvoice_lab import __version__

        take = Take(take_id=uuid.uuid4().hex, design=design, status="pending", experiment=experiment,
                    backend=backend, region=region, host=host, package_version=__version__,
                    started_at=now_utc(), prompt_spec=prompt_spec, parent_take_id=parent_take_id,
                    cell=cell, repeat=repeat)
        row = logstore.take_to_row(take)
        row["writer_host"], row["writer_pid"], row["writer_start"] = logstore.writer_identity()
        with _IN_FLIGHT_LOCK:  # before the insert, so no concurrent open can judge it stale
            _IN_FLIGHT[take.take_id] = take
        try:
            self._write_one(f"INSERT INTO takes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                            list(row.values()))
        except BaseException:
            _settled(take.take_id)
            raise
        return take

    def finish(self, take_id: str, *, voice_id: str, request_id: str | None = None,
               audio: Audio | None = None, voice_status: str | None = None,
               latency_s: float | None = None, metrics: dict | None = None) -> Take:
        """Record a designed voice: status 'ok', its id and preview.

        The preview is written to the audio store (atomically) before the row names it.
        ``latency_s`` defaults to the time since ``start``.

        Raises:
            TakeNotFound: no such take. LogError: it already has an outcome, or cannot write.
        """
        values = {"status": "ok", "voice_id": voice_id, "voice_status": voice_status,
                  "error_code": None, "error_message": None}
        if audio is not None:
            values.update(self._store_audio(audio))
        if metrics:
            values["metrics"] = dumps_or_null(clean_metrics(metrics))
        if request_id is not None:
            values["request_id"] = request_id
        return self._settle(take_id, values, latency_s)

    def fail(self, take_id: str, *, error_code: str, error_message: str, status: str = "failed",
             request_id: str | None = None, latency_s: float | None = None) -> Take:
        """Record that a take did not produce a voice.

        Args:
            status: 'failed' (the service refused or an error ended it), 'unknown' (sent, result
                unknown: a voice may exist; see ``reconcile``) or 'interrupted'.

        Raises:
            ValueError: another status. TakeNotFound / LogError: as for ``finish``.
        """
        if status not in ("failed", "unknown", "interrupted"):
            raise ValueError(f"status must be 'failed', 'unknown' or 'interrupted', got {status!r}")
        values = {"status": status, "error_code": error_code, "error_message": redact(error_message)}
        if request_id is not None:
            values["request_id"] = request_id
        return self._settle(take_id, values, latency_s)

    def reconcile(self, take_id: str, *, voice_id: str, voice_status: str | None = None) -> Take:
        """Adopt a voice found in the service's list as the outcome of an 'unknown' take.

        The take becomes 'ok' with ``preview_missing=True`` (the preview was never received).

        Raises:
            TakeNotFound / LogError: as for ``finish``.
        """
        values = {"status": "ok", "voice_id": voice_id, "voice_status": voice_status,
                  "preview_missing": 1, "error_code": None, "error_message": None}
        return self._settle(take_id, values, None, keep_timing=True)

    def _settle(self, take_id: str, values: dict, latency_s, *, keep_timing: bool = False) -> Take:
        """Record an outcome with one UPDATE (a lone statement is its own transaction), only on
        a take whose outcome is still open; ``keep_timing`` keeps an earlier finish time."""
        now = iso(now_utc())
        # julianday() reads times to the millisecond: precise enough for a fallback latency.
        latency = "COALESCE(?, (julianday(?) - julianday(started_at)) * 86400.0)"
        finished = "?"
        if keep_timing:
            latency, finished = f"COALESCE(latency_s, {latency})", "COALESCE(finished_at, ?)"
        sets = "".join(f"{name} = ?, " for name in values)
        rows = self._write_one(
            f"UPDATE takes SET {sets}latency_s = {latency}, finished_at = {finished} "
            f"WHERE take_id = ? AND status IN ('pending', 'unknown', 'interrupted') "
            f"RETURNING {', '.join(logstore.TAKE_COLUMNS)}",
            [*values.values(), latency_s, now, now, take_id])
        if not rows:
            self._refuse_outcome(take_id)
        _settled(take_id)
        return logstore.row_to_take(rows[0], self.folder)

    def _refuse_outcome(self, take_id: str):
        """Raise why an outcome cannot be recorded: no such take, or it already has one."""
        rows = self._query("SELECT status FROM takes WHERE take_id = ?", (take_id,))
        if not rows:
            raise TakeNotFound(self.path, f"no take {take_id!r} in this log")
        raise LogError(self.path, f"take {take_id} already has its outcome ({rows[0][0]}); start a new take")

    def set_metrics(self, take_id: str, metrics: dict) -> Take:
        """Merge ``metrics`` (name -> number/str/bool/None) into a take's measurements.

        Raises:
            TypeError / ValueError: a bad name or value (see ``logstore.clean_metrics``).
            TakeNotFound: no such take.
        """
        new = clean_metrics(metrics)
        with self._tx() as conn:
            row = conn.execute("SELECT metrics FROM takes WHERE take_id = ?", (take_id,)).fetchone()
            if row is None:
                raise TakeNotFound(self.path, f"no take {take_id!r} in this log")
            merged = {**json.loads(row[0] or "{}"), **new}
            return self._update(conn, take_id, {"metrics": dumps_or_null(merged)})

    def set_voice_status(self, statuses: dict) -> int:
        """Record each voice's status as the service reported it (``{voice_id: status}``, e.g.
        from a listing). Voice ids the log does not know are ignored.

        Returns:
            how many takes were updated.
        """
        if not statuses:
            return 0
        with self._tx() as conn:
            return sum(conn.execute("UPDATE takes SET voice_status = ? WHERE voice_id = ?", (status, vid)).rowcount
                       for vid, status in statuses.items())

    def mark_deleted(self, voice_ids) -> int:
        """Record that these voices were deleted from the account (``voice_status='DELETED'``).

        The takes keep everything else: their preview, ratings and design stay in the log.

        Returns:
            how many takes were updated (voice ids the log does not know are ignored).
        """
        ids = [voice_ids] if isinstance(voice_ids, str) else list(voice_ids)
        return self.set_voice_status({vid: "DELETED" for vid in ids})

    # --- the read path ----------------------------------------------------------------------------
    def get(self, take_id: str) -> Take:
        """The take with this id (or a unique prefix of it, as its repr shows).

        Raises:
            TakeNotFound: no take matches. LogError: the prefix matches several takes.
        """
        rows = self._query(f"{SELECT_TAKE} WHERE take_id = ?", (take_id,))
        if not rows and isinstance(take_id, str) and 4 <= len(take_id) < 32:
            rows = self._query(f"{SELECT_TAKE} WHERE take_id >= ? AND take_id < ? LIMIT 2",
                               (take_id, take_id + "\uffff"))
        if not rows:
            raise TakeNotFound(self.path, f"no take {take_id!r} in this log")
        if len(rows) > 1:
            raise LogError(self.path, f"{take_id!r} matches several takes; give more of the id")
        return logstore.row_to_take(rows[0], self.folder)

    def takes(self, **filters) -> list[Take]:
        """Takes matching ``filters`` (those of ``to_dataframe``), oldest first."""
        where, params = logstore.where_clause(**filters)
        rows = self._query(f"{SELECT_TAKE}{where} ORDER BY started_at, rowid", params)
        return [logstore.row_to_take(row, self.folder) for row in rows]

    def to_dataframe(self, experiment=None, model=None, tag=None, min_rating=None, status=None,
                     since=None, until=None, **more):
        """The takes as a pandas DataFrame, one row each, oldest first (a fresh query).

        Args:
            experiment, model, status: one value or a list. tag: takes with this tag (or all of
                a list). min_rating: 1-5. since / until: ``started_at`` bounds (inclusive /
                exclusive; naive times are UTC). more: ``chosen``, ``cell``, ``backend``,
                ``voice_id``.

        Returns:
            DataFrame: ``datetime64[ns, UTC]`` times, categorical model/backend/status,
            ``Int64`` rating, bool chosen/played, tags as tuples, metrics as ``m_<name>``.
        """
        from cosyvoice_lab.log import frame as logframe  # pandas: loaded when a frame is asked for, not with the log

        where, params = logstore.where_clause(experiment=experiment, model=model, tag=tag,
                                              min_rating=min_rating, status=status, since=since,
                                              until=until, **more)
        return logframe.takes_frame(self._query, where, params, self.folder)

    @property
    def df(self):
        """Every take as a DataFrame (``to_dataframe()``)."""
        return self.to_dataframe()

    def voice_ids(self):
        """The voices this log knows: DataFrame of voice_id, take_id, model, experiment,
        status, voice_status, chosen, started_at (oldest first)."""
        from cosyvoice_lab.log import frame as logframe

        spec = logframe.VOICES_FRAME
        rows = self._query(f"SELECT {logframe.select_list(spec)} FROM takes WHERE voice_id IS NOT NULL "
                           f"ORDER BY started_at, rowid")
        return logframe.build(rows, spec, self.folder)


def _settled(take_id: str) -> None:
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.pop(take_id, None)


# Public classes report the module users import them from.
ExperimentLog.__module__ = "cosyvoice_lab"
