"""ExperimentLog: every take recorded, durable, a DataFrame away.

A facade over the parts of ``log/`` (each given only what it uses; ``opening.py`` builds them
for a folder, SQLite, or a ``postgresql://`` URL): ``db``, ``audio_store``, ``rows``, ``table``,
``recovery``, ``annotations``, ``spoken``, ``exports``, ``bundles``. Every write is one
transaction, so threads, processes and machines can share a log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.catalog import LOG_BUSY_TIMEOUT_S, STALE_PENDING_S
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log import opening
from cosyvoice_lab.log.database import DB_NAME
from cosyvoice_lab.log.migrations import SCHEMA_VERSION
from cosyvoice_lab.take import Take

__all__ = ["DB_NAME", "SCHEMA_VERSION", "ExperimentLog", "LogError", "TakeNotFound"]


class ExperimentLog:
    """The experiment log in a folder (SQLite; created if missing) or a PostgreSQL database.

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
        self.recovery, self.annotations, self.listening, self.spoken = p.recovery, p.annotations, p.listening, p.spoken
        self.exports, self.bundles, self.schema_version = p.exports, p.bundles, p.schema_version
        self.rounds = p.rounds  # listening rounds: each rater's order and answers (rounds.py)
        self.folder: Path = p.folder  # absolute: the log folder, or a database log's local folder
        self.path: Path | str = p.path  # folder/log.sqlite3, or the URL without its password
        self.audio_dir: Path | None = p.audio_dir  # None: the audio is in the database
        self.location = str(self.path if self.audio_dir is None else self.folder)  # a URL shows no password
        self.stale_after: timedelta = self.recovery.stale_after
        self.interrupt_stale()

    def check(self) -> str:
        """Run SQLite's integrity check; returns ``'ok'``. Raises LogError listing any damage."""
        return self.db.check()

    def close(self) -> None:
        """Close every connection this log opened (safe to call twice)."""
        self.db.close()

    def __enter__(self) -> ExperimentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.table.count()

    def __repr__(self) -> str:
        state = "closed" if self.db.closed else f"{len(self)} takes"
        return f"{type(self).__name__}({self.location!r}, {state}, schema v{self.schema_version})"

    def interrupt_stale(self) -> int:
        """Mark abandoned ``pending`` takes ``interrupted`` (done on open; the rule is in
        ``recovery.py``: a live writer's takes are never touched); returns how many."""
        return self.recovery.interrupt_stale()

    # --- the write path ---------------------------------------------------------------------------
    def start(
        self,
        design: VoiceDesign,
        *,
        experiment: str | None = None,
        backend: str,
        region: str | None = None,
        host: str | None = None,
        prompt_spec: Any = None,
        parent_take_id: str | None = None,
        cell: str | None = None,
        repeat: int | None = None,
    ) -> Take:
        """Record a take as ``pending``; call this (it commits) before the request is sent.

        Args: design: the exact request. backend: 'dashscope' or 'offline'. region, host: where
        it goes. prompt_spec: the PromptSpec (dict, or with ``to_dict()``). experiment,
        parent_take_id, cell, repeat: where the take belongs.

        Returns the pending Take (a new, globally unique ``take_id``). Keep it while the request
        is in flight: a pending take whose Take this process no longer holds counts as abandoned,
        and the next open of the log marks it interrupted.

        Raises TypeError / ValueError (a bad design, backend or prompt_spec), LogError (cannot write).
        """
        return self.table.start(
            design,
            backend=backend,
            prompt_spec=prompt_spec,
            experiment=experiment,
            region=region,
            host=host,
            parent_take_id=parent_take_id,
            cell=cell,
            repeat=repeat,
        )

    def claim(self, design: VoiceDesign, *, experiment: str, cell: str, backend: str, **where: Any) -> Take | None:
        """``start`` for a compare's cell, claiming it first (one transaction, so two processes
        never send the same cell): None, with nothing written, when another take holds it (ok,
        pending in a live process, or of unknown outcome: reconcile settles those). Takes the
        keywords of ``start``."""
        return self.table.claim(design, experiment=experiment, cell=cell, backend=backend, **where)

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
        is a no-op. Raises TakeNotFound (no such take) / LogError (cannot write)."""
        return self.table.finish(
            take_id,
            voice_id=voice_id,
            request_id=request_id,
            audio=audio,
            voice_status=voice_status,
            latency_s=latency_s,
            metrics=metrics,
        )

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
        ``reconcile``) or 'interrupted'. Raises ValueError (another status) / TakeNotFound / LogError."""
        return self.table.fail(
            take_id,
            error_code=error_code,
            error_message=error_message,
            status=status,
            request_id=request_id,
            latency_s=latency_s,
        )

    def reconcile(self, take_id: str, *, voice_id: str, voice_status: str | None = None) -> Take:
        """Adopt a voice found in the service's list as the outcome of an 'unknown' take: it
        becomes 'ok' with ``preview_missing=True``. Raises TakeNotFound / LogError (as for
        ``finish``; also when the voice is already another take's outcome: adopted once, across processes)."""
        return self.table.reconcile(take_id, voice_id=voice_id, voice_status=voice_status)

    def set_metrics(self, take_id: str, metrics: dict) -> Take:
        """Merge ``metrics`` (name -> number/str/bool/None) into a take's measurements.
        Raises TypeError / ValueError (a bad name or value: ``rows.clean_metrics``) / TakeNotFound."""
        return self.table.set_metrics(take_id, metrics)

    def set_voice_status(self, statuses: dict[str, str]) -> int:
        """Record each voice's status as the service reported it (``{voice_id: status}``, e.g.
        from a listing). Voice ids the log does not know are ignored; returns how many takes
        were updated."""
        return self.table.set_voice_status(statuses)

    def mark_deleted(self, voice_ids: str | Iterable[str]) -> int:
        """Record these voices deleted from the account (``voice_status='DELETED'``); the takes
        keep everything else. Returns how many takes were updated (unknown voice ids are ignored)."""
        return self.table.mark_deleted(voice_ids)

    # --- the read path ----------------------------------------------------------------------------
    def get(self, take_id: str) -> Take:
        """The take with this id (or a unique prefix of it, as its repr shows).
        Raises TakeNotFound (no take matches) / LogError (the prefix matches several)."""
        return self.table.get(take_id)

    def takes(self, **filters: Any) -> list[Take]:
        """Takes matching ``filters`` (those of ``to_dataframe``), oldest first."""
        return self.table.takes(**filters)

    def to_dataframe(
        self,
        experiment: Any = None,
        model: Any = None,
        tag: Any = None,
        min_rating: int | None = None,
        status: Any = None,
        since: Any = None,
        until: Any = None,
        **more: Any,
    ):
        """The takes as a pandas DataFrame, one row each, oldest first (a fresh query).

        Args: experiment, model, status: one value or a list. tag: takes with this tag (or all
        of a list). min_rating: 1-5. since / until: ``started_at`` bounds (inclusive / exclusive;
        naive times are UTC). more: ``chosen``, ``cell``, ``backend``, ``voice_id``.

        Returns a DataFrame: ``datetime64[ns, UTC]`` times, categorical target_model/backend/status,
        ``Int64`` rating, bool chosen/played, tags as tuples, metrics as ``m_<name>``.
        """
        return self.table.to_dataframe(
            experiment=experiment,
            model=model,
            tag=tag,
            min_rating=min_rating,
            status=status,
            since=since,
            until=until,
            **more,
        )

    @property
    def df(self):
        """Every take as a DataFrame (``to_dataframe()``)."""
        return self.to_dataframe()

    def voice_ids(self):
        """The voices this log knows: DataFrame of voice_id, take_id, target_model, experiment,
        status, voice_status, chosen, started_at (oldest first)."""
        return self.table.voice_ids()

    # --- annotations --------------------------------------------------------------------------------
    # ``rater``: who (the history's ``author``); default $COSYVOICE_LAB_USER, else the login name.
    def rate(self, take_id: str, rating: int | None, *, rater: str | None = None) -> Take:
        """Rate a take 1-5 (None clears the rating). Raises ValueError (not 1-5) / TakeNotFound."""
        return self.annotations.rate(take_id, rating, rater=rater)

    def choose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Mark a take chosen (a keeper). Raises TakeNotFound if missing."""
        return self.annotations.choose(take_id, rater=rater)

    def unchoose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Clear a take's chosen mark. Raises TakeNotFound if missing."""
        return self.annotations.unchoose(take_id, rater=rater)

    def tag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Add tags (stripped, 1-64 printable characters; duplicates ignored).
        Raises ValueError (a bad tag) / TakeNotFound."""
        return self.annotations.tag(take_id, *tags, rater=rater)

    def untag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Remove tags (absent ones are ignored). Raises TakeNotFound if missing."""
        return self.annotations.untag(take_id, *tags, rater=rater)

    def note(self, take_id: str, text: str, *, rater: str | None = None) -> Take:
        """Set a take's notes to ``text`` (the history keeps earlier notes).
        Raises TypeError (not a string) / TakeNotFound."""
        return self.annotations.note(take_id, text, rater=rater)

    def add_rating(self, take_id: str, rating: int | None, *, rater=None, kind="preference", session_id=None) -> None:
        """A listening rating (1-5; None clears this rater's in this session), kept beside other
        raters' (``ratings.py``). Raises ValueError (rating, kind, rater) / TakeNotFound."""
        self.listening.add_rating(take_id, rating, rater=rater, kind=kind, session_id=session_id)

    def ratings(self, experiment: str | None = None, *, kind: str | None = None, session_id: str | None = None):
        """Listening ratings: take_id, rating, rater, kind, session_id, at (latest per session,
        take and rater; cleared ones dropped)."""
        return self.listening.ratings(experiment, kind=kind, session_id=session_id)

    def open_round(self, take_ids: list[str], *, session_id: str, seed: int, kind: str, rater: str | None) -> None:
        """Record a blind listening round, its seed kept out of every log view (``ratings.py``)."""
        self.listening.open_round(take_ids, session_id=session_id, seed=seed, kind=kind, rater=rater)

    def round_record(self, session_id: str) -> dict | None:
        """A round's ``{"seed", "kind", "rater", "take_ids"}`` as ``open_round`` recorded it, or None."""
        return self.listening.round_record(session_id)

    def mark_played(self, *take_ids: str) -> None:
        """Record that these takes were listened to. Raises TakeNotFound if one is missing
        (then none is marked)."""
        return self.annotations.mark_played(*take_ids)

    def history(self, take_id: str | None = None):
        """The annotation history (all takes, or one) as a DataFrame, oldest first:
        annotation_id, take_id, at (UTC), action, value, author."""
        return self.annotations.history(take_id)

    # --- utterances ---------------------------------------------------------------------------------
    def add_utterance(
        self,
        take_id: str,
        *,
        text: str,
        params: dict,
        characters: int,
        cost_cny: float,
        audio: Audio,
        request_id: str | None = None,
    ) -> str:
        """Record an utterance spoken with a take's voice (its audio is stored first); returns its id.
        ``params``: the synthesis parameters (JSON-serialisable); ``characters``: billed characters;
        ``cost_cny``: estimated cost. Raises TakeNotFound / TypeError / ValueError (bad arguments)."""
        return self.spoken.add_utterance(
            take_id,
            text=text,
            params=params,
            characters=characters,
            cost_cny=cost_cny,
            audio=audio,
            request_id=request_id,
        )

    def utterances(self, take_id: str | None = None):
        """Utterances (all, or of one take) as a DataFrame, oldest first."""
        return self.spoken.utterances(take_id)

    def utterance_audio(self, utterance_id: str) -> Audio:
        """The recording of an utterance. Raises TakeNotFound (no such utterance) / LogError
        (its audio file is missing)."""
        return self.spoken.utterance_audio(utterance_id)

    # --- exports and bundles ----------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame as CSV (tags as JSON lists); returns the path."""
        return self.exports.export_csv(path, **filters)

    def export_parquet(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame as Parquet (dtypes kept; tags as lists); returns the path."""
        return self.exports.export_parquet(path, **filters)

    def export_html(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write a self-contained HTML report (table + embedded players); returns the path."""
        return self.exports.export_html(path, **filters)

    def export_bundle(self, path: str | os.PathLike, experiment: str | None = None, **filters: Any) -> Path:
        """Write a zip of the takes, their annotations, utterances and audio; returns the path.
        Raises LogError: an audio file the rows name is missing, or the zip cannot be written."""
        return self.bundles.export_bundle(path, experiment=experiment, **filters)

    def import_bundle(self, path: str | os.PathLike) -> dict[str, int]:
        """Merge a bundle into this log without duplicates; returns counts of what was added.

        Takes already present are kept, except that an outcome settled in the source log
        replaces a local pending/unknown/interrupted one; a take pending when exported arrives
        'interrupted'. Raises LogError (nothing merged): not a bundle, a newer format, damaged
        audio, or a row naming audio outside the store (``/etc/passwd``) or absent from it."""
        return self.bundles.import_bundle(path)
