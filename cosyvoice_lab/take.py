"""Take: one attempt at designing a voice, as the experiment log records it.

A take is a frozen value. The log creates it (``log.table.start``), and every change —
the outcome, a rating, a tag — produces a new ``Take`` (``dataclasses.replace``) read back
from the database. ``take.design`` is the exact ``VoiceDesign`` to send again.

No field can hold an API key: the request is recorded as its ``VoiceDesign`` fields, never as
headers, and error messages are scrubbed of anything shaped like a key (``redact``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from cosyvoice_lab import catalog, html
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError, Problem, ValidationError

STATUSES = ("pending", "ok", "failed", "unknown", "interrupted")
"""pending: written before the request left; ok/failed: its outcome; unknown: sent but the
result is unknown (a voice may exist; ``log.table.reconcile`` may settle it later);
interrupted: the process that sent it died or was stopped before recording an outcome."""
FINAL_STATUSES = ("ok", "failed")
BACKENDS = ("dashscope", "offline")


def experiment_problems(name: object) -> list[Problem]:
    """The one rule for an experiment's name, applied where a name enters (``Lab``, the CLI,
    the log's write path) and where a bundle brings one: text, 1-200 printable characters (no
    tabs, newlines, private-use or invisible characters), not only spaces. Empty when it is fine."""
    if not isinstance(name, str):
        return [Problem("experiment", "type", f"must be a string, got {type(name).__name__}")]
    limit = catalog.BUNDLE_MAX_NAME_CHARS  # one short text, as the bundle schema reads it
    if not name.strip() or len(name) > limit or not name.isprintable():
        shown = name if len(name) <= 60 else name[:59] + "…"
        rule = f"must be 1-{limit} printable characters (no tabs, newlines or invisible characters)"
        return [Problem("experiment", "printable_name", f"{rule}, got {shown!r} ({len(name)} characters)")]
    return []


def check_experiment(name: str | None) -> str | None:
    """``name`` if it keeps ``experiment_problems``' rule (None passes: no experiment).

    Raises:
        ValidationError: the name breaks the rule.
    """
    if name is not None and (found := experiment_problems(name)):
        raise ValidationError(found, context="invalid experiment name")
    return name


# Anything shaped like a DashScope key ("sk-" + 16 or more key characters). Defence in depth:
# the key is never handed to the log, but an exception message could one day quote a header.
_KEY_RE = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")


def redact(text: str | None) -> str | None:
    """``text`` with anything shaped like an API key replaced by ``sk-***``."""
    return _KEY_RE.sub("sk-***", text) if text else text


def utc(dt: datetime | None) -> datetime | None:
    """``dt`` as a tz-aware UTC datetime (naive datetimes are taken to be UTC)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def now_utc() -> datetime:
    """The current time, tz-aware UTC (the log's clock)."""
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """Fixed-width ISO 8601 UTC text (sorts as time does): ``2025-01-31T08:00:00.000000Z``."""
    if dt is None:
        return None
    naive = dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt
    return naive.isoformat(timespec="microseconds") + "Z"  # 4x faster than strftime


def parse_iso(text: str | None) -> datetime | None:
    """The inverse of ``iso`` (accepts any ISO 8601 form); tz-aware UTC."""
    return None if text is None else utc(datetime.fromisoformat(text))


@dataclass(frozen=True)
class Take:
    """One voice-design attempt and everything learnt about it.

    Request: ``design`` (the exact ``VoiceDesign`` sent), ``backend`` ('dashscope' or
    'offline'), ``region``, ``host``, ``package_version``, ``prompt_spec`` (the PromptSpec
    JSON it was rendered from, if any), ``experiment``, ``parent_take_id`` (the take it
    varied), ``cell`` and ``repeat`` (its place in a comparison, used to resume).

    Outcome: ``status`` (see ``STATUSES``), ``request_id``, ``voice_id``, ``voice_status``,
    ``started_at``/``finished_at`` (UTC), ``latency_s``, ``error_code``/``error_message``,
    the preview's ``audio_sha256``/``audio_path``/``audio_format``/``audio_sample_rate``/
    ``audio_duration_s``, ``preview_missing`` (True for a take reconciled from a listed
    voice, which has no preview), and ``metrics`` (measurements of the preview).

    Annotations: ``rating`` (1-5 or None), ``chosen``, ``tags``, ``notes``, ``played``.
    """

    take_id: str
    design: VoiceDesign
    status: str = "pending"
    experiment: str | None = None
    backend: str = "offline"
    region: str | None = None
    host: str | None = None
    package_version: str | None = None
    request_id: str | None = None
    voice_id: str | None = None
    voice_status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    latency_s: float | None = None
    audio_sha256: str | None = None
    audio_path: str | None = None
    audio_format: str | None = None
    audio_sample_rate: int | None = None
    audio_duration_s: float | None = None
    preview_missing: bool = False
    metrics: dict = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    prompt_spec: dict | None = None
    parent_take_id: str | None = None
    cell: str | None = None
    repeat: int | None = None
    rating: int | None = None
    chosen: bool = False
    tags: tuple[str, ...] = ()
    notes: str = ""
    played: bool = False
    # How to read the preview: the log that builds a take gives it its audio store's loader.
    # Not part of the take's value: ignored by ==, repr, hash and to_dict (pickled along).
    audio_loader: Callable[[Take], Audio] | None = field(default=None, compare=False, repr=False)

    # Takes are values keyed by a global id; metrics (a dict) would make the generated hash fail.
    def __hash__(self):
        return hash(self.take_id)

    # --- convenience --------------------------------------------------------------------
    @property
    def target_model(self) -> str:
        """The model the voice was designed for (``design.target_model``)."""
        return self.design.target_model

    @property
    def design_family(self) -> str | None:
        """The design family of the target model ("cosyvoice" or "qwen", ``catalog.FAMILIES``):
        derived from the model, never stored (the log's frames derive it the same way,
        ``catalog.family_name``)."""
        return catalog.family_name(self.design.target_model)

    @property
    def prompt(self) -> str:
        """The voice prompt (``design.voice_prompt``)."""
        return self.design.voice_prompt

    @property
    def ok(self) -> bool:
        """True when a voice was designed (status 'ok')."""
        return self.status == "ok"

    @property
    def audio(self) -> Audio | None:
        """The preview recording; None if the take has none.

        A take read from the log loads it through the log's audio store (``audio_loader``); a
        take built by hand, without a loader, reads the file ``audio_path`` names.

        Raises:
            LogError: the take names an audio file that is missing or unreadable.
        """
        if not self.audio_path:
            return None
        if self.audio_loader is not None:
            return self.audio_loader(self)
        return _load_file(self, self.audio_path)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> Take:
        """A take from a dict holding every field (``dataclasses.fields``), as the log reads one
        per row: the values as given, without the generated ``__init__`` (which sets each of
        the frozen fields through ``object.__setattr__``: a twentieth of the cost).

        Raises:
            TypeError: a field is missing or a key is not a field.
        """
        if values.keys() != _FIELDS:
            missing, unknown = sorted(_FIELDS - values.keys()), sorted(values.keys() - _FIELDS)
            raise TypeError(f"Take.from_fields needs every field: missing {missing}, unknown {unknown}")
        take = object.__new__(cls)
        take.__dict__.update(values)
        return take

    def replace(self, **changes) -> Take:
        """A copy with ``changes`` applied (the take itself is frozen)."""
        return dataclasses.replace(self, **changes)

    # --- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the design nested, datetimes ISO 8601 UTC, tags a list."""
        out = {name: getattr(self, name) for name in _SERIALISED}
        out["design"] = self.design.to_dict()
        out["started_at"] = iso(self.started_at)
        out["finished_at"] = iso(self.finished_at)
        out["tags"] = list(self.tags)
        out["metrics"] = dict(self.metrics)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Take:
        """Build from ``to_dict()`` output, ignoring unknown keys.

        Raises:
            ValueError: the status is not one of ``STATUSES`` or a timestamp is malformed.
        """
        values = {k: v for k, v in data.items() if k in _SERIALISED}
        values["design"] = VoiceDesign.from_dict(data["design"])
        values["started_at"] = parse_iso(data.get("started_at"))
        values["finished_at"] = parse_iso(data.get("finished_at"))
        values["tags"] = tuple(data.get("tags") or ())
        values["metrics"] = dict(data.get("metrics") or {})
        if values.get("status", "pending") not in STATUSES:
            raise ValueError(f"take status must be one of {STATUSES}, got {values['status']!r}")
        return cls(**values)

    # --- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:39] + "…"
        outcome = self.voice_id or self.error_code or ""
        stars = f" {'★' * self.rating}" if self.rating else ""
        chosen = " chosen" if self.chosen else ""
        return f"<Take {self.take_id[:8]} {self.status} {self.target_model} {outcome} {prompt!r}{stars}{chosen}>"

    def _repr_html_(self) -> str:
        return html.render("take.html.j2", take=self)


# The fields to_dict writes and from_dict reads: the take's value, not how to load its audio.
_SERIALISED = tuple(f.name for f in dataclasses.fields(Take) if f.name != "audio_loader")
_FIELDS = frozenset(f.name for f in dataclasses.fields(Take))


def _load_file(take: Take, audio_path: str) -> Audio:
    """The preview of a take built by hand, from the file it names (``Audio.load``: format
    from the extension), with a missing or unreadable file reported as a ``LogError``."""
    path = Path(audio_path)
    try:
        return Audio.load(path, take.audio_sample_rate)
    except FileNotFoundError:
        raise LogError(
            path,
            f"the preview audio of take {take.take_id} is missing "
            f"(sha256 {take.audio_sha256}); restore it from a bundle or backup",
        ) from None
    except OSError as exc:
        raise LogError(path, f"cannot read the preview audio of take {take.take_id}: {exc}") from exc


class Takes(list):
    """A list of takes that shows itself in a notebook as their cards side by side (a plain
    list would print reprs and no players)."""

    def _repr_html_(self) -> str:
        return html.render("takes.html.j2", takes=list(self))


class TakeSource(Protocol):
    """What reads takes from a log expects of it (an ``ExperimentLog`` is one): the views, the
    exports. The one Protocol for it."""

    @property
    def folder(self) -> Path: ...

    def takes(self, **filters: Any) -> list[Take]: ...

    def to_dataframe(self, **filters: Any) -> Any: ...

    def get(self, take_id: str) -> Take: ...
