"""The experiment log as pandas DataFrames: a view built by querying, never a stored copy.

Each column has a declared kind, so dtypes never depend on the data: timestamps are
``datetime64[ns, UTC]``, target_model/backend/status categoricals, ratings and counts nullable
``Int64``, flags ``bool``, texts pandas strings, tags tuples; metrics become one ``m_<name>``
column each.

Speed (100k takes in about a second) shapes the code. Python's sqlite3 pays about the same
for every cell it hands over, so cells are few: columns with few distinct values (status,
model, region...) arrive packed in one text per row (``functions.pack``) and are decoded once per
distinct text; columns empty for most takes (errors, lineage, annotations) come from a second query
only for the rows that have them; the preview's path is derived from its hash (by the audio
store, which alone names audio files). Conversions are per column and vectorised (Arrow parses
the timestamps and the metrics JSON). On PostgreSQL with ADBC's driver the dense and packed
columns come instead as one Arrow table read in C (``Database.arrow``: no Python object per
cell, so nothing is packed), converted column by column to the very same dtypes and values.

SQLite has no such path: a second SQLite library in the process (ADBC's) would break the other's
POSIX locks, and having SQLite build fewer, longer cells (CSV lines of ``quote()``d values, one
``printf`` per row, ``group_concat`` per column) costs SQLite 3.40 more than the cells it saves.
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import or_, select

from cosyvoice_lab.log import schema
from cosyvoice_lab.log.audio_store import AudioStore
from cosyvoice_lab.log.functions import pack, unpack
from cosyvoice_lab.take import BACKENDS, STATUSES

Query = Callable[..., list[Any]]
Arrow = Callable[[Any], Any]

# The order of the takes DataFrame's first columns; any other column of ``schema.takes`` shown in
# the frame (its ``info["load"]`` is not ``none``) follows them, in table order.
_LEADING = (
    "take_id",
    "started_at",
    "finished_at",
    "experiment",
    "status",
    "backend",
    "target_model",
    "voice_prompt",
    "preview_text",
    "prefix",
    "language",
    "sample_rate",
    "response_format",
    "design_region",
    "region",
    "host",
    "package_version",
    "request_id",
    "voice_id",
    "voice_status",
    "latency_s",
    "error_code",
    "error_message",
    "audio_sha256",
    "audio_path",
    "audio_format",
    "audio_sample_rate",
    "audio_duration_s",
    "preview_missing",
    "rating",
    "chosen",
    "played",
    "tags",
    "notes",
    "parent_take_id",
    "cell",
    "repeat",
    "prompt_spec",
)


def _spec(load: str) -> tuple[tuple[str, str, str], ...]:
    """(DataFrame column, table column, kind) of the takes columns fetched as ``load`` says."""
    return tuple(
        (c.name, c.name, schema.frame_kind(c)) for c in schema.takes.columns if c.info.get("load", "dense") == load
    )


# Fetched for every row, in one cell each.
TAKE_DENSE = _spec("dense")
# Few distinct values in a whole log: fetched as one text per row (``functions.pack``) and decoded once per
# distinct combination, instead of a dozen cells per row.
TAKE_PACKED = _spec("packed")
# Empty for most takes: fetched only where SPARSE_WHERE holds, defaults elsewhere.
TAKE_SPARSE = _spec("sparse")
_SPARSE_DEFAULTS = {"bool": 0, "notes": ""}


def _sparse_where() -> Any:
    held = []
    for name, _, kind in TAKE_SPARSE:
        column = schema.takes.c[name]
        held.append(column != _SPARSE_DEFAULTS[kind] if kind in _SPARSE_DEFAULTS else column.is_not(None))
    return or_(*held)


SPARSE_WHERE = _sparse_where()
_SHOWN = {name for spec in (TAKE_DENSE, TAKE_PACKED, TAKE_SPARSE) for name, _, _ in spec} - {"metrics", "audio_file"}
TAKE_ORDER = (*_LEADING, *sorted(_SHOWN - set(_LEADING), key=[c.name for c in schema.takes.columns].index))

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
    ("target_model", "target_model", "category"),
    ("experiment", "experiment", "str"),
    ("status", "status", "status"),
    ("voice_status", "voice_status", "str"),
    ("chosen", "chosen", "bool"),
    ("started_at", "started_at", "time"),
)


def select_list(spec, table) -> list[Any]:
    """The columns of ``table`` a frame spec selects."""
    return [table.c[expr] for _, expr, _ in spec]


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: a bulk load allocates millions of short-lived,
    cycle-free objects, which it would otherwise rescan again and again (20% of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def takes_frame(query: Query, where: list, store: AudioStore, arrow: Arrow | None = None) -> pd.DataFrame:
    """The takes DataFrame. ``query(statement)`` runs a statement; ``where``: filter conditions;
    ``store`` names each preview's file (the ``audio_path`` column); ``arrow(statement)``, when
    given, may answer a statement's rows as an Arrow table read in C (None: it cannot)."""
    with _no_gc():
        return _takes_frame(query, where, store, arrow)


def _takes_frame(query: Query, where: list, store: AudioStore, arrow: Arrow | None) -> pd.DataFrame:
    # No ORDER BY: walking the time index costs more than sorting here, and rows are stored
    # in about the order they were started, so usually nothing moves (see _time_order).
    takes = schema.takes
    table = None
    if arrow is not None:  # every column as it is: no Python object per cell, so nothing to pack
        dense = select_list(TAKE_DENSE, takes) + select_list(TAKE_PACKED, takes)
        table = arrow(select(schema.ROWID, *dense).select_from(takes).where(*where))
    if table is None:
        packed = pack(*select_list(TAKE_PACKED, takes))
        rows = query(select(schema.ROWID, *select_list(TAKE_DENSE, takes), packed).select_from(takes).where(*where))
    sparse = query(
        select(schema.ROWID, *select_list(TAKE_SPARSE, takes)).select_from(takes).where(*where, SPARSE_WHERE)
    )
    if table is None:
        columns = _columns(rows, 2 + len(TAKE_DENSE))
        rowids, sha256s = columns[0], columns[1 + [name for name, _, _ in TAKE_DENSE].index("audio_sha256")]
        data = {name: _convert(kind, values) for (name, _, kind), values in zip(TAKE_DENSE, columns[1:-1], strict=True)}
        data.update(_packed_columns(columns[-1]))
    else:
        started = _times(table.column("started_at"))
        order = _time_order(started, table.column(0).to_numpy())
        if order is not None:  # in order before converting: Arrow takes a table's rows 2x faster than pandas
            table, started = table.take(order), started.take(order)
        rowids, sha256s = table.column(0).to_numpy(), table.column("audio_sha256").to_pylist()
        data = {
            name: started if name == "started_at" else _from_arrow(kind, table.column(i))
            for i, (name, _, kind) in enumerate(TAKE_DENSE + TAKE_PACKED, 1)
        }
    data.update(_sparse_columns(rowids, sparse))
    data["audio_path"] = _strings(store.paths_for(sha256s, data["audio_format"].tolist()))
    metrics = data.pop("metrics")
    frame = pd.DataFrame({**{name: data[name] for name in TAKE_ORDER}, **metrics})
    return frame if table is not None else _in_time_order(frame, np.asarray(rowids, dtype="int64"))


def _in_time_order(frame: pd.DataFrame, rowids: np.ndarray) -> pd.DataFrame:
    """``frame`` sorted by start time, ties in the order they were written (rowid)."""
    order = _time_order(frame["started_at"].array, rowids)
    return frame if order is None else frame.take(order).reset_index(drop=True)


def _time_order(started_at: pd.arrays.DatetimeArray, rowids: np.ndarray) -> np.ndarray | None:
    """The positions that put rows in start order, ties in write order (rowid); None: they are."""
    order = np.lexsort((np.asarray(rowids, dtype="int64"), started_at.asi8))
    return None if (order == np.arange(len(order))).all() else order


def build(rows: list[tuple], spec, store: AudioStore | None = None) -> pd.DataFrame:
    """A DataFrame from query ``rows`` whose columns follow ``spec`` (``store`` turns the
    names of ``path`` columns into files)."""
    columns = _columns(rows, len(spec))
    return pd.DataFrame(
        {name: _convert(kind, values, store) for (name, _, kind), values in zip(spec, columns, strict=True)}
    )


def _columns(rows: list[tuple], width: int) -> list[tuple]:
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _packed_columns(keys: tuple) -> dict:
    """Full-length columns from per-row packed ``TAKE_PACKED`` values (``functions.pack``)."""
    import pyarrow as pa

    encoded = pa.array(keys, type=pa.string()).dictionary_encode()  # Arrow hashes 3x faster than pandas
    codes, decoded = encoded.indices.to_numpy(), [unpack(key) for key in encoded.dictionary.to_pylist()]
    out = {}
    for j, (name, _, kind) in enumerate(TAKE_PACKED):
        values = [values[j] for values in decoded]
        if kind == "Int64":  # PostgreSQL's pack gives numbers as their text
            values = [None if v is None else int(v) for v in values]
        per_key = _convert(kind, values)
        if isinstance(per_key, pd.Categorical):
            out[name] = pd.Categorical.from_codes(per_key.codes[codes], dtype=per_key.dtype)
        else:
            out[name] = per_key.take(codes)
    return out


def _from_arrow(kind: str, column):
    """A column of an Arrow table as ``_convert`` makes it from the same values as Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind in ("str", "notes", "time"):
        return _convert(kind, column)
    if kind == "float":
        return column.cast(pa.float64()).combine_chunks().to_numpy(zero_copy_only=False, writable=True)
    if kind == "Int64":
        return pd.Int64Dtype().__from_arrow__(column.cast(pa.int64()))
    if kind in ("status", "backend", "category"):  # few distinct values: converted once each
        encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
        per_key = _convert(kind, encoded.dictionary.to_pylist())
        return pd.Categorical.from_codes(per_key.codes[encoded.indices.to_numpy()], dtype=per_key.dtype)
    if kind == "metrics":
        return _metrics(column)
    return _convert(kind, column.to_pylist())


def _sparse_columns(rowids, sparse: list[tuple]) -> dict:
    """Full-length columns from the sparse rows, placed by rowid; defaults elsewhere (each column
    converted from its few values and the default, then spread: no per-row list of defaults)."""
    found = pd.Index(rowids, dtype="int64").get_indexer([r[0] for r in sparse]) if sparse else np.array([], np.intp)
    source = np.zeros(len(rowids), dtype=np.intp)  # 0: the default; k: the k-th sparse row
    held = found >= 0  # a row written between the two queries is not in the frame
    source[found[held]] = np.arange(1, len(sparse) + 1)[held]
    out = {}
    for j, (name, _, kind) in enumerate(TAKE_SPARSE, start=1):
        converted = _convert(kind, [_SPARSE_DEFAULTS.get(kind), *(row[j] for row in sparse)])
        if isinstance(converted, list):  # tags: tuples, one object each
            objects = np.empty(len(converted), dtype=object)
            for i, value in enumerate(converted):
                objects[i] = value
            converted = objects
        out[name] = converted.take(source)
    return out


def _convert(kind: str, values, store: AudioStore | None = None):
    if kind in ("str", "notes"):
        return _strings(values)
    if kind == "time":
        return _times(values)
    if kind == "float":
        return _floats(values)
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
    if kind == "metrics":
        return _metrics(values)
    if kind == "path":
        if store is None:
            raise ValueError("a frame with a path column needs the audio store")
        return _strings(store.paths_of(values))
    raise ValueError(f"unknown column kind {kind!r}")


# pandas 3's ``str`` dtype: Arrow-backed text whose missing value is NaN. pandas 2.x reads
# ``dtype="str"`` as numpy ``str`` and turns None into the text "None" (a voice id 'None', a
# path audio/None.None), so there the same dtype is asked for by name (pandas >= 2.1).
STRING_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else pd.StringDtype("pyarrow_numpy")


def _strings(values):
    """Texts (None = missing) as pandas' ``str`` dtype, built through Arrow: 3x faster."""
    import pyarrow as pa

    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=pa.string())
    return pd.array(values, dtype=STRING_DTYPE)


def _floats(values) -> np.ndarray:
    """Numbers (None = missing) as float64, through Arrow (10x faster where many are None)."""
    import pyarrow as pa

    try:
        return pa.array(values, type=pa.float64()).to_numpy(zero_copy_only=False, writable=True)
    except (pa.ArrowException, TypeError):  # e.g. an integer no float holds exactly: as numpy rounds it
        return np.array(values, dtype="float64")


def _times(values) -> pd.arrays.DatetimeArray:
    """ISO 8601 UTC texts as ``datetime64[ns, UTC]`` (Arrow parses them about 10x faster)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=pa.string())
    parsed = texts.cast(pa.timestamp("us", tz="UTC"))
    # A time pandas cannot hold (after 2262) is missing, not the end of every reader of the log.
    first, last = (pa.scalar(t.value // 1000, type=parsed.type) for t in (pd.Timestamp.min, pd.Timestamp.max))
    held = pc.and_(pc.greater_equal(parsed, first), pc.less_equal(parsed, last))
    parsed = pc.if_else(held, parsed, pa.scalar(None, parsed.type))
    return pd.Series(parsed.to_pandas()).astype("datetime64[ns, UTC]").array


def _metrics(values) -> dict[str, object]:
    """``{"m_<name>": column}`` from the rows' metrics JSON objects."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    if isinstance(values, pa.ChunkedArray):
        text = _json_lines(values)
        if text is None:
            return {}
    elif not any(values):
        return {}
    else:
        text = io.BytesIO("\n".join([v or "{}" for v in values]).encode())
    try:  # Arrow parses all rows at once; it refuses a metric whose type varies between rows
        table = pa_json.read_json(text)
    except pa.ArrowInvalid:
        return _metrics_slow(values.to_pylist() if isinstance(values, pa.ChunkedArray) else values)
    return {f"m_{name}": table.column(name).to_pandas().array for name in sorted(table.column_names)}


def _json_lines(column):
    """An Arrow column of JSON texts as one file of lines, as ``_metrics`` joins a list's (NULL and
    empty texts read ``{}``); None when every text is NULL or empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    if texts.null_count == len(texts):
        return None
    texts = pc.fill_null(texts.cast(pa.large_string()), "{}")
    empty, newline = pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(texts, empty, newline).combine_chunks()  # each text, a newline
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    first, last = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return pa.BufferReader(lines.buffers()[2].slice(first, last - first))


def _metrics_slow(values) -> dict[str, object]:
    """Metrics whose type varies between rows. A metric that holds numbers is a number: a text
    in it (``"median_f0_hz": "high"`` from a teammate's bundle) is unreadable, so it is missing,
    and the evidence, the report and the plots still read the column."""
    n = len(values)
    out: dict[str, list] = {}
    for i, text in enumerate(values):
        for key, value in json.loads(text).items() if text else ():
            out.setdefault(key, [None] * n)[i] = value
    return {f"m_{key}": _metric_column(column) for key, column in sorted(out.items())}


def _metric_column(column: list):
    numeric = any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column)
    if numeric:
        return pd.to_numeric(pd.Series(column, dtype=object), errors="coerce").astype("float64").array
    return pd.Series(column).array
