"""Getting takes out of the log: CSV, Parquet and an HTML report (bundles: ``bundle.py``).

Every file here is written atomically (temp file, fsync, rename), so a crash never leaves half
a table or report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cosyvoice_lab import files, html
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.take import Take, iso, now_utc


class TakeSource(Protocol):
    """What the exports read: the log folder, and takes or their DataFrame for a filter."""

    @property
    def folder(self) -> Path: ...

    def takes(self, **filters: Any) -> list[Take]: ...

    def to_dataframe(self, **filters: Any) -> Any: ...


def atomic_write(
    path: str | os.PathLike, data: bytes | None = None, *, writer: Callable[[str], None] | None = None
) -> Path:
    """``files.atomic_write``, with a failure reported as a ``LogError`` naming the path."""
    try:
        return files.atomic_write(path, data, writer=writer)
    except OSError as exc:
        raise LogError(path, f"cannot write here: {exc}") from exc


# --- tables ----------------------------------------------------------------------------------


def export_csv(log: TakeSource, path: str | os.PathLike, **filters: Any) -> Path:
    """The filtered DataFrame as CSV: tags as JSON lists, times ISO 8601 UTC."""
    frame = log.to_dataframe(**filters)
    frame["tags"] = [json.dumps(list(t), ensure_ascii=False) for t in frame["tags"]]
    return atomic_write(path, writer=lambda tmp: frame.to_csv(tmp, index=False))


def export_parquet(log: TakeSource, path: str | os.PathLike, **filters: Any) -> Path:
    """The filtered DataFrame as Parquet (dtypes kept; tags as lists). See ``read_parquet``."""
    frame = log.to_dataframe(**filters)
    frame["tags"] = [list(t) for t in frame["tags"]]
    return atomic_write(path, writer=lambda tmp: frame.to_parquet(tmp, index=False))


def read_parquet(path):
    """Read an ``export_parquet`` file back into the DataFrame ``log.df`` gives (tags as tuples)."""
    import pandas as pd

    from cosyvoice_lab.log.frame import STRING_DTYPE

    frame = pd.read_parquet(path)
    frame["tags"] = [tuple(t) for t in frame["tags"]]
    text = pd.api.types.pandas_dtype(STRING_DTYPE)
    for name, dtype in frame.dtypes.items():  # pandas 2.x reads Arrow text back as string[python]
        if isinstance(dtype, pd.StringDtype) and dtype != text:
            frame[name] = frame[name].astype(text)
    return frame


# --- the HTML report ---------------------------------------------------------------------------


def export_html(log, path, **filters) -> Path:
    """A self-contained HTML report: one row per take, previews embedded as data-URI players.

    Opens from disk in any browser, with no server and no network (see ``html.report``).

    Raises:
        LogError: the report cannot be written.
    """
    page = html.report(log.takes(**filters), folder=log.folder, generated=iso(now_utc()))
    return atomic_write(path, page.encode("utf-8"))


class Exports:
    """Writes a log's takes as CSV, Parquet or an HTML report (the functions above).

    Args:
        source: where the takes come from (the log's takes table).
    """

    def __init__(self, source: TakeSource) -> None:
        self._source = source

    def export_csv(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame as CSV (tags as JSON lists); returns the path."""
        return export_csv(self._source, path, **filters)

    def export_parquet(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write the filtered DataFrame as Parquet (dtypes kept; tags as lists); returns the path."""
        return export_parquet(self._source, path, **filters)

    def export_html(self, path: str | os.PathLike, **filters: Any) -> Path:
        """Write a self-contained HTML report (table + embedded players); returns the path."""
        return export_html(self._source, path, **filters)
