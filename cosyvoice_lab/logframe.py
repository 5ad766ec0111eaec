"""The experiment log as pandas DataFrames: a view built from one query, never a stored copy.

Each column has a declared kind so the dtypes never depend on the data: timestamps are
``datetime64[ns, UTC]``, model/backend/status are categoricals, ratings and rates nullable
``Int64``, flags ``bool``, texts pandas strings. Metrics become one ``m_<name>`` column each.
Rows are built column-wise (one conversion per column) because that is what keeps 100k
takes under a second.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .take import BACKENDS, STATUSES

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# (DataFrame column, SQL expression, kind)
TAKE_FRAME = (
    ("take_id", "take_id", "str"),
    ("started_at", "started_at", "time"),
    ("finished_at", "finished_at", "time"),
    ("experiment", "experiment", "str"),
    ("status", "status", "status"),
    ("backend", "backend", "backend"),
    ("model", "target_model", "category"),
    ("voice_prompt", "voice_prompt", "str"),
    ("preview_text", "preview_text", "str"),
    ("prefix", "prefix", "str"),
    ("language", "language", "str"),
    ("sample_rate", "sample_rate", "Int64"),
    ("response_format", "response_format", "str"),
    ("design_region", "design_region", "str"),
    ("region", "region", "str"),
    ("host", "host", "str"),
    ("package_version", "package_version", "str"),
    ("request_id", "request_id", "str"),
    ("voice_id", "voice_id", "str"),
    ("voice_status", "voice_status", "str"),
    ("latency_s", "latency_s", "float"),
    ("error_code", "error_code", "str"),
    ("error_message", "error_message", "str"),
    ("audio_sha256", "audio_sha256", "str"),
    ("audio_path", "audio_file", "path"),
    ("audio_format", "audio_format", "str"),
    ("audio_sample_rate", "audio_sample_rate", "Int64"),
    ("audio_duration_s", "audio_duration_s", "float"),
    ("preview_missing", "preview_missing", "bool"),
    ("rating", "rating", "Int64"),
    ("chosen", "chosen", "bool"),
    ("played", "played", "bool"),
    ("tags", "tags", "tags"),
    ("notes", "notes", "str"),
    ("parent_take_id", "parent_take_id", "str"),
    ("cell", "cell", "str"),
    ("repeat", "repeat", "Int64"),
    ("prompt_spec", "prompt_spec", "str"),
    ("metrics", "metrics", "metrics"),
)

HISTORY_FRAME = (
    ("annotation_id", "annotation_id", "str"),
    ("take_id", "take_id", "str"),
    ("at", "at", "time"),
    ("action", "action", "category"),
    ("value", "value", "str"),
    ("author", "author", "str"),
)

UTTERANCE_FRAME = (
    ("utterance_id", "utterance_id", "str"),
    ("take_id", "take_id", "str"),
    ("created_at", "created_at", "time"),
    ("text", "text", "str"),
    ("params", "params", "str"),
    ("characters", "characters", "Int64"),
    ("cost_cny", "cost_cny", "float"),
    ("request_id", "request_id", "str"),
    ("audio_sha256", "audio_sha256", "str"),
    ("audio_path", "audio_file", "path"),
    ("audio_format", "audio_format", "str"),
    ("audio_sample_rate", "audio_sample_rate", "Int64"),
    ("audio_duration_s", "audio_duration_s", "float"),
)

VOICES_FRAME = (
    ("voice_id", "voice_id", "str"),
    ("take_id", "take_id", "str"),
    ("model", "target_model", "category"),
    ("experiment", "experiment", "str"),
    ("status", "status", "status"),
    ("voice_status", "voice_status", "str"),
    ("chosen", "chosen", "bool"),
    ("started_at", "started_at", "time"),
)


def select_list(spec) -> str:
    """The SQL select list for a frame spec."""
    return ", ".join(expr for _, expr, _ in spec)


def build(rows: list[tuple], spec, folder: Path) -> pd.DataFrame:
    """A DataFrame from query ``rows`` whose columns follow ``spec``."""
    columns = list(zip(*rows)) if rows else [()] * len(spec)
    data, metrics = {}, None
    for (name, _, kind), values in zip(spec, columns):
        if kind == "metrics":
            metrics = _metrics(values)
        else:
            data[name] = _convert(kind, values, folder)
    frame = pd.DataFrame(data)
    if metrics:
        frame = pd.concat([frame, pd.DataFrame(metrics, index=frame.index)], axis=1)
    return frame


def _convert(kind: str, values: tuple, folder: Path):
    if kind == "str":
        return pd.array(values, dtype="str")
    if kind == "time":
        return pd.to_datetime(pd.Series(values, dtype=object), format=_TIME_FORMAT, utc=True).astype(
            "datetime64[ns, UTC]").array
    if kind == "float":
        return np.array(values, dtype="float64")
    if kind == "Int64":
        return pd.array(values, dtype="Int64")
    if kind == "bool":
        return np.array(values, dtype=bool)
    if kind in ("status", "backend", "category"):
        fixed = {"status": STATUSES, "backend": BACKENDS}.get(kind, ())
        extra = sorted({v for v in set(values) if v is not None} - set(fixed))
        return pd.Categorical(values, categories=[*fixed, *extra])
    if kind == "tags":
        cache: dict = {None: ()}
        return [cache[v] if v in cache else cache.setdefault(v, tuple(json.loads(v))) for v in values]
    if kind == "path":
        prefix = str(folder).rstrip(os.sep) + os.sep
        return pd.array([prefix + v if v else None for v in values], dtype="str")
    raise ValueError(f"unknown column kind {kind!r}")


def _metrics(values: tuple) -> dict[str, list]:
    """``{"m_<name>": [value per row]}`` from the rows' metrics JSON."""
    n = len(values)
    out: dict[str, list] = {}
    for i, text in enumerate(values):
        if text:
            for key, value in json.loads(text).items():
                column = out.get(key)
                if column is None:
                    column = out[key] = [None] * n
                column[i] = value
    return {f"m_{key}": pd.Series(column).array for key, column in sorted(out.items())}
