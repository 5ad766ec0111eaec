"""The experiment log's rows: rows <-> takes, filters, value checks.

``TakeRows`` converts between a ``takes`` row and a ``Take``; it holds the log's audio store,
which names the preview file of each row and loads it for each take. The rest are pure
functions; nothing here opens a database.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import operator
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any, cast

from sqlalchemy import ColumnElement, select

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.log.audio_store import AudioStore
from cosyvoice_lab.log.functions import json_has
from cosyvoice_lab.log.schema import TAKE_COLUMNS, takes
from cosyvoice_lab.take import STATUSES, Take, iso, parse_iso, redact, utc
from cosyvoice_lab.version import __version__


def package_version() -> str:
    """The cosyvoice-lab version each take and bundle records (``cosyvoice_lab.__version__``)."""
    return __version__


# Columns read back into a Take (``schema.TAKE_COLUMNS``, in table order), and their SELECT.
SELECT_TAKE = select(*(takes.c[name] for name in TAKE_COLUMNS))
_DESIGN_COLUMNS = {
    "target_model": "target_model",
    "prefix": "prefix",
    "voice_prompt": "voice_prompt",
    "preview_text": "preview_text",
    "language": "language",
    "sample_rate": "sample_rate",
    "response_format": "response_format",
    "design_region": "region",
}
# Columns a Take holds (a column the Take does not know, e.g. one added for the DataFrame only, stays
# in the log and its frames).
_READ = frozenset(f.name for f in dataclasses.fields(Take)) | set(_DESIGN_COLUMNS) | {"audio_file"}
_BOOL_COLUMNS = tuple(c.name for c in takes.columns if c.info.get("kind") == "bool")
# What ``to_take`` reads where, worked out once (it runs for each take recorded or read): the
# design's fields, the columns given to the Take as they are, and the flags, by position in a row.
_AT = {name: i for i, name in enumerate(TAKE_COLUMNS)}
_CONVERTED = {"audio_file", "started_at", "finished_at", "metrics", "prompt_spec", "tags", "notes"}
_DESIGN_FIELDS = tuple(_DESIGN_COLUMNS.values())
_DESIGN_VALUES = operator.itemgetter(*(_AT[column] for column in _DESIGN_COLUMNS))
_AS_IS = tuple(
    name
    for name in TAKE_COLUMNS
    if name in _READ and name not in _DESIGN_COLUMNS and name not in _CONVERTED and name not in _BOOL_COLUMNS
)
_AS_IS_VALUES = operator.itemgetter(*(_AT[name] for name in _AS_IS))
_FLAGS = tuple((name, _AT[name]) for name in _BOOL_COLUMNS)

# What ``to_row`` reads from a Take (its fields, and properties named as columns) and its design.
_TAKE_ATTRS = tuple(
    name
    for name in TAKE_COLUMNS
    if name not in _DESIGN_COLUMNS and (name in {f.name for f in dataclasses.fields(Take)} or hasattr(Take, name))
)
_TAKE_VALUES = operator.attrgetter(*_TAKE_ATTRS)
_DESIGN_ATTRS = operator.attrgetter(*_DESIGN_FIELDS)


# --- rows <-> takes --------------------------------------------------------------------


class TakeRows:
    """Converts ``takes`` rows to ``Take`` objects and back.

    Args:
        audio_store: the log's audio store: it turns a row's ``audio_file`` into the take's
            ``audio_path`` (and back), and is each take's ``audio_loader``.
    """

    def __init__(self, audio_store: AudioStore) -> None:
        self._store = audio_store

    def to_take(self, row: tuple) -> Take:
        """A ``Take`` from a row selected with ``SELECT_TAKE``."""
        if len(row) != len(TAKE_COLUMNS):
            raise ValueError(f"a takes row has {len(TAKE_COLUMNS)} columns, got {len(row)}")
        at = _AT
        values = dict(zip(_AS_IS, _AS_IS_VALUES(row), strict=True))
        for name, i in _FLAGS:
            values[name] = bool(row[i])
        audio_file, metrics, prompt_spec, tags = (
            row[at["audio_file"]],
            row[at["metrics"]],
            row[at["prompt_spec"]],
            row[at["tags"]],
        )
        values["design"] = VoiceDesign(**dict(zip(_DESIGN_FIELDS, _DESIGN_VALUES(row), strict=True)))
        values["audio_path"] = str(self._store.path(audio_file)) if audio_file else None
        values["audio_loader"] = self._store.take_audio
        values["started_at"] = parse_iso(row[at["started_at"]])
        values["finished_at"] = parse_iso(row[at["finished_at"]])
        values["metrics"] = json.loads(metrics) if metrics else {}
        values["prompt_spec"] = json.loads(prompt_spec) if prompt_spec else None
        values["tags"] = tuple(json.loads(tags)) if tags else ()
        values["notes"] = row[at["notes"]] or ""
        return Take.from_fields(values)  # every field has its column: a new one without is a TypeError here

    def to_row(self, take: Take) -> dict[str, Any]:
        """The column values of ``take``: its ``audio_path`` as the store's name for it, its
        ``error_message`` with anything shaped like an API key redacted.

        Raises:
            ValueError: the audio path is not a file of the store; a bad metric.
        """
        row = dict(zip(_TAKE_ATTRS, _TAKE_VALUES(take), strict=True))
        row.update(zip(_DESIGN_COLUMNS, _DESIGN_ATTRS(take.design), strict=True))
        row["audio_file"] = self._store.name_for_path(take.audio_path) if take.audio_path else None
        row["error_message"] = redact(take.error_message)  # a bundle from elsewhere is scrubbed too
        row["started_at"] = iso(take.started_at)
        row["finished_at"] = iso(take.finished_at)
        row["metrics"] = dumps_or_null(clean_metrics(take.metrics))
        row["prompt_spec"] = dumps_or_null(take.prompt_spec)
        row["tags"] = dumps_or_null(list(take.tags))
        for name in _BOOL_COLUMNS:
            row[name] = int(bool(row[name]))
        return row


def audio_columns(audio: Audio, name: str) -> dict[str, Any]:
    """The audio columns (``audio_sha256``, ``audio_file``...) of ``audio`` stored as ``name``."""
    try:
        duration = audio.duration
    except Exception:  # an undecodable preview is still recorded, without a duration
        duration = None
    return {
        "audio_sha256": audio.sha256,
        "audio_file": name,
        "audio_format": audio.format,
        "audio_sample_rate": audio.sample_rate,
        "audio_duration_s": duration,
    }


def dumps_or_null(value) -> str | None:
    """Compact JSON, or None for an empty/None value (so empty costs no bytes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else None


# --- value checks -------------------------------------------------------------------------

_METRIC_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def clean_metrics(metrics: Mapping | None) -> dict[str, Any]:
    """Metrics as stored: identifier names; None, bool, int, float (NaN/inf become None) or str.

    Raises:
        TypeError: ``metrics`` is not a mapping, or a value is not a scalar.
        ValueError: a name is not an identifier (it becomes the DataFrame column ``m_<name>``).
    """
    if metrics is None:
        return {}
    if type(metrics) is not dict and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise ValueError(
                f"metric name {name!r} must be an identifier of at most 64 characters (it becomes the column m_{name})"
            )
        out[name] = _scalar(name, value)
    return out


def _scalar(name: str, value):
    kind = type(value)
    if kind is float:  # the usual case first: plain Python numbers and text
        return value if math.isfinite(value) else None
    if kind is int or kind is str or kind is bool or value is None:
        return value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    raise TypeError(f"metric {name!r} must be a number, string, bool or None, got {type(value).__name__}")


def clean_tag(tag: str) -> str:
    """A tag as stored: stripped, 1-64 printable characters.

    Raises:
        ValueError: empty, too long, or holding control characters.
    """
    if not isinstance(tag, str):
        raise ValueError(f"a tag must be a string, got {type(tag).__name__}")
    text = tag.strip()
    if not text or len(text) > 64 or not text.isprintable():
        raise ValueError(f"a tag must be 1-64 printable characters, got {tag!r}")
    return text


def check_rating(rating) -> int | None:
    """``rating`` if it is an int from 1 to 5 (or None, which clears it).

    Raises:
        ValueError: anything else (including bools and floats).
    """
    if rating is None:
        return None
    if isinstance(rating, bool) or not isinstance(rating, numbers.Integral) or not 1 <= int(rating) <= 5:
        raise ValueError(f"a rating must be an integer from 1 to 5, got {rating!r}")
    return int(rating)


def to_utc(when) -> datetime:
    """A time filter as a tz-aware UTC datetime.

    Accepts datetimes, dates (midnight UTC), ISO 8601 strings and pandas/numpy timestamps;
    anything without a time zone is taken to be UTC (the log's clock).

    Raises:
        ValueError: a string that is not ISO 8601; TypeError: any other type.
    """
    if isinstance(when, datetime):  # includes pandas.Timestamp
        return cast(datetime, utc(when))
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    if isinstance(when, str):
        return cast(datetime, parse_iso(when.strip()))
    if hasattr(when, "astype"):  # numpy.datetime64
        import pandas as pd

        return cast(datetime, utc(pd.Timestamp(when).to_pydatetime()))
    raise TypeError(f"a time must be a datetime, date or ISO 8601 string, got {type(when).__name__}")


# --- filters ------------------------------------------------------------------------------


def _one_or_many(value) -> list:
    return [value] if isinstance(value, str) or not isinstance(value, Iterable) else list(value)


def where_clause(
    *,
    experiment=None,
    target_model=None,
    tag=None,
    min_rating=None,
    status=None,
    since=None,
    until=None,
    chosen=None,
    cell=None,
    backend=None,
    voice_id=None,
) -> list[ColumnElement]:
    """The conditions (on ``schema.takes``; all must hold) for the log's take filters.

    ``experiment``, ``target_model``, ``status``, ``cell``, ``backend``, ``voice_id``: one value
    or a list (any of them); ``tag``: one tag or a list (takes with all of them); ``min_rating``:
    1-5; ``since`` (inclusive) / ``until`` (exclusive): times of ``started_at``; ``chosen``: True/False.

    Raises:
        ValueError: an unknown status or a rating outside 1-5.
    """
    parts: list[ColumnElement] = []
    for column, value in (
        ("experiment", experiment),
        ("target_model", target_model),
        ("status", status),
        ("cell", cell),
        ("backend", backend),
        ("voice_id", voice_id),
    ):
        if value is not None:
            values = _one_or_many(value)
            if column == "status" and (bad := [s for s in values if s not in STATUSES]):
                raise ValueError(f"status must be one of {STATUSES}, got {bad}")
            parts.append(takes.c[column].in_(values))
    for one in _one_or_many(tag) if tag is not None else []:
        parts.append(json_has(takes.c.tags, one))
    if min_rating is not None:
        parts.append(takes.c.rating >= check_rating(min_rating))
    if since is not None:
        parts.append(takes.c.started_at >= iso(to_utc(since)))
    if until is not None:
        parts.append(takes.c.started_at < iso(to_utc(until)))
    if chosen is not None:
        parts.append(takes.c.chosen == int(bool(chosen)))
    return parts
