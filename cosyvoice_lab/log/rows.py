"""The experiment log's plumbing: rows <-> takes, filters, value checks, process identity.

Pure functions used by ``log.py`` (the ``ExperimentLog`` class) and ``export.py``; nothing
here opens a database.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
import socket
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.take import STATUSES, Take, iso, parse_iso, redact, utc

# Columns read back into a Take, in SELECT order.
TAKE_COLUMNS = (
    "take_id", "status", "experiment", "backend", "region", "host", "package_version",
    "target_model", "prefix", "voice_prompt", "preview_text", "language", "sample_rate",
    "response_format", "design_region", "request_id", "voice_id", "voice_status",
    "started_at", "finished_at", "latency_s", "error_code", "error_message",
    "audio_sha256", "audio_file", "audio_format", "audio_sample_rate", "audio_duration_s",
    "preview_missing", "metrics", "prompt_spec", "parent_take_id", "cell", "repeat",
    "rating", "chosen", "tags", "notes", "played",
)
SELECT_TAKE = f"SELECT {', '.join(TAKE_COLUMNS)} FROM takes"
_DESIGN_COLUMNS = {"target_model": "target_model", "prefix": "prefix", "voice_prompt": "voice_prompt",
                   "preview_text": "preview_text", "language": "language", "sample_rate": "sample_rate",
                   "response_format": "response_format", "design_region": "region"}
_BOOL_COLUMNS = ("preview_missing", "chosen", "played")


# --- rows <-> takes --------------------------------------------------------------------


def row_to_take(row: tuple, folder: Path) -> Take:
    """A ``Take`` from a row selected with ``SELECT_TAKE``; ``folder`` makes paths absolute."""
    data = dict(zip(TAKE_COLUMNS, row))
    design = VoiceDesign(**{field: data.pop(col) for col, field in _DESIGN_COLUMNS.items()})
    audio_file = data.pop("audio_file")
    for name in _BOOL_COLUMNS:
        data[name] = bool(data[name])
    return Take(
        design=design,
        audio_path=f"{folder}{os.sep}{audio_file}" if audio_file else None,
        started_at=parse_iso(data.pop("started_at")),
        finished_at=parse_iso(data.pop("finished_at")),
        metrics=json.loads(data.pop("metrics") or "{}"),
        prompt_spec=json.loads(data.pop("prompt_spec") or "null"),
        tags=tuple(json.loads(data.pop("tags") or "[]")),
        notes=data.pop("notes") or "",
        **data,
    )


def take_to_row(take: Take) -> dict[str, Any]:
    """The column values of ``take`` (its ``audio_path`` stored as ``audio/<file name>``,
    its ``error_message`` with anything shaped like an API key redacted)."""
    row = {name: getattr(take, name) for name in TAKE_COLUMNS
           if name not in _DESIGN_COLUMNS and hasattr(take, name)}
    row.update({col: getattr(take.design, field) for col, field in _DESIGN_COLUMNS.items()})
    row["audio_file"] = f"audio/{Path(take.audio_path).name}" if take.audio_path else None
    row["error_message"] = redact(take.error_message)  # a bundle from elsewhere is scrubbed too
    row["started_at"] = iso(take.started_at)
    row["finished_at"] = iso(take.finished_at)
    row["metrics"] = dumps_or_null(clean_metrics(take.metrics))
    row["prompt_spec"] = dumps_or_null(take.prompt_spec)
    row["tags"] = dumps_or_null(list(take.tags))
    for name in _BOOL_COLUMNS:
        row[name] = int(bool(row[name]))
    return row


def dumps_or_null(value) -> str | None:
    """Compact JSON, or None for an empty/None value (so empty costs no bytes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else None


# --- value checks -------------------------------------------------------------------------

_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def clean_metrics(metrics: Mapping | None) -> dict[str, Any]:
    """Metrics as stored: identifier names; None, bool, int, float (NaN/inf become None) or str.

    Raises:
        TypeError: ``metrics`` is not a mapping, or a value is not a scalar.
        ValueError: a name is not an identifier (it becomes the DataFrame column ``m_<name>``).
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise ValueError(f"metric name {name!r} must be an identifier of at most 64 characters "
                             f"(it becomes the column m_{name})")
        out[name] = _scalar(name, value)
    return out


def _scalar(name: str, value):
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
    if isinstance(rating, bool) or not isinstance(rating, numbers.Integral) or not 1 <= rating <= 5:
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
        return utc(when)
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    if isinstance(when, str):
        return parse_iso(when.strip())
    if hasattr(when, "astype"):  # numpy.datetime64
        import pandas as pd

        return utc(pd.Timestamp(when).to_pydatetime())
    raise TypeError(f"a time must be a datetime, date or ISO 8601 string, got {type(when).__name__}")


# --- filters ------------------------------------------------------------------------------


def _one_or_many(value) -> list:
    return [value] if isinstance(value, str) or not isinstance(value, Iterable) else list(value)


def where_clause(*, experiment=None, model=None, tag=None, min_rating=None, status=None,
                 since=None, until=None, chosen=None, cell=None, backend=None,
                 voice_id=None) -> tuple[str, list]:
    """SQL ``WHERE`` text (maybe empty) and its parameters for the log's take filters.

    ``experiment``, ``model``, ``status``, ``cell``, ``backend``, ``voice_id``: one value or a
    list (any of them); ``tag``: one tag or a list (takes with all of them); ``min_rating``:
    1-5; ``since`` (inclusive) / ``until`` (exclusive): times of ``started_at``;
    ``chosen``: True/False.

    Raises:
        ValueError: an unknown status or a rating outside 1-5.
    """
    parts, params = [], []
    for column, value in (("experiment", experiment), ("target_model", model), ("status", status),
                          ("cell", cell), ("backend", backend), ("voice_id", voice_id)):
        if value is not None:
            values = _one_or_many(value)
            if column == "status" and (bad := [s for s in values if s not in STATUSES]):
                raise ValueError(f"status must be one of {STATUSES}, got {bad}")
            parts.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
    for one in _one_or_many(tag) if tag is not None else []:
        parts.append("EXISTS (SELECT 1 FROM json_each(takes.tags) WHERE value = ?)")
        params.append(one)
    if min_rating is not None:
        parts.append("rating >= ?")
        params.append(check_rating(min_rating))
    if since is not None:
        parts.append("started_at >= ?")
        params.append(iso(to_utc(since)))
    if until is not None:
        parts.append("started_at < ?")
        params.append(iso(to_utc(until)))
    if chosen is not None:
        parts.append("chosen = ?")
        params.append(int(bool(chosen)))
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


# --- who is writing: the stale-pending rule -------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


_BOOT_ID = _read("/proc/sys/kernel/random/boot_id") or ""
_HAVE_PROC = os.path.exists("/proc/self/stat")


def process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that survives pid reuse: ``<boot id>:<start ticks>``.

    None when it cannot be known (no /proc) or the process does not exist.
    """
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return f"{_BOOT_ID}:{fields[19]}"  # field 22, counted from the state (field 3)


_IDENTITY: dict[int, tuple[str, int, str]] = {}


def writer_identity() -> tuple[str, int, str]:
    """(host name, pid, process start) of this process, recorded on each pending row."""
    pid = os.getpid()  # keyed by pid: a forked child is another writer
    if pid not in _IDENTITY:
        _IDENTITY[pid] = (socket.gethostname(), pid, process_start(pid) or "")
    return _IDENTITY[pid]


def process_alive(pid: int, start: str) -> bool:
    """Whether the process that wrote ``(pid, start)`` on this host still runs."""
    if _HAVE_PROC:
        return process_start(pid) == start if start else os.path.exists(f"/proc/{pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(row: tuple, *, me: tuple[str, int, str], live: set[str], now: datetime,
             stale_after: timedelta) -> bool:
    """Whether a pending row ``(take_id, writer_host, writer_pid, writer_start, started_at)``
    was abandoned by its writer.

    This host: stale when the writing process is gone (pid reuse is caught by the start
    identity), or when it is this very process and the take is not among its requests in
    flight (``live``: the takes whose pending Take object is still held, e.g. by a cell that
    was interrupted mid-request and so never recorded an outcome). Another host (or a row
    with no writer): stale once ``started_at`` is older than ``stale_after``.
    """
    take_id, host, pid, start, started_at = row
    if host and host == me[0] and pid is not None:
        if (pid, start) == (me[1], me[2]):
            return take_id not in live
        return not process_alive(pid, start)
    return now - parse_iso(started_at) > stale_after
