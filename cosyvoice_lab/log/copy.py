"""Copying a whole log into another: a folder into a team's database, a database into a folder,
or a folder into another folder (``cosyvoice-lab log copy SRC DST``).

What moves: every take with all its columns, the preview and utterance audio, the annotation
history (the current values are replayed from it), utterances, ratings and cell claims. Takes,
annotation events, utterances and ratings carry global ids, so the copy *merges*: DST may
already hold takes of its own (a team's database gathering several people's folders), and
copying twice adds nothing.

How: the takes travel in slices of ``catalog.LOG_COPY_CHUNK_TAKES`` (by start time) as bundles
with their history, utterances, ratings and audio, so a copy follows exactly the rules of
``log.bundles.merge`` (every row checked, audio stored before the rows that name it, each slice one
transaction): a take pending in SRC arrives ``interrupted`` (its outcome was not known when it
was copied; copying again once SRC has settled it brings the outcome), and the ``writer_*``
bookkeeping of pending rows is not carried. Cell claims follow as rows; a cell DST has already
claimed keeps DST's claim. Copy a log nobody is writing to, or copy again afterwards.

Refused, before anything is written: SRC and DST being the same log, and a DST holding a take
with one of SRC's ids but another content (another request, start time or experiment; or
another final outcome). That is never two honest copies of one take, so nothing is guessed.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.bundle import TAKE_IDENTITY
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.log.functions import dialect_insert
from cosyvoice_lab.log.schema import cell_claims, takes
from cosyvoice_lab.take import FINAL_STATUSES

CLAIM_COLUMNS = tuple(c.name for c in cell_claims.columns)
COUNTS = ("takes", "takes_updated", "annotations", "utterances", "audio_files", "ratings", "cell_claims")


def copy_log(
    src: ExperimentLog | str | os.PathLike,
    dst: ExperimentLog | str | os.PathLike,
    *,
    progress: bool | None = None,
    chunk_takes: int = catalog.LOG_COPY_CHUNK_TAKES,
) -> dict[str, int]:
    """Copy every take of ``src`` (with audio, annotation history, utterances, ratings and cell
    claims) into ``dst``, merging by global ids: copying twice adds nothing.

    Args:
        src, dst: an open ``ExperimentLog``, a log folder, or a ``postgresql://`` URL (opened
            here, and closed again, when not already open; ``dst`` is created if missing).
        progress: show a tqdm bar; None (default): only when the copy takes several slices.
        chunk_takes: takes per slice (each slice is one bundle and one transaction in ``dst``).

    Returns:
        what was added to ``dst``: ``{"takes", "takes_updated", "annotations", "utterances",
        "audio_files", "ratings", "cell_claims"}`` (all zero when it already held everything).

    Raises:
        LogError: ``src`` and ``dst`` are the same log; ``dst`` holds a take with one of ``src``'s
            ids but another content (nothing was copied); either log cannot be opened or written.
    """
    if chunk_takes < 1:
        raise ValueError(f"chunk_takes must be at least 1, got {chunk_takes!r}")
    with ExitStack() as stack:
        source = stack.enter_context(_opened(src))
        target = stack.enter_context(_opened(dst))
        if _location(source) == _location(target):
            raise LogError(_location(target), "is both the source and the destination of the copy")
        _refuse_conflicts(source, target)
        counts = Counter(dict.fromkeys(COUNTS, 0))
        starts = [row[0] for row in source.db.query(select(takes.c.started_at).order_by(takes.c.started_at))]
        ranges = slices(starts, chunk_takes)
        bar = _bar(len(starts), progress if progress is not None else len(ranges) > 1)
        try:
            with tempfile.TemporaryDirectory(prefix="cosyvoice-copy-") as tmp:
                bundle = Path(tmp) / "slice.zip"
                for since, until, n in ranges:
                    if not n:
                        continue
                    source.bundles.export(bundle, since=since, until=until)
                    counts.update(target.bundles.merge(bundle))
                    bar.update(n)
        finally:
            bar.close()
        counts["cell_claims"] += _copy_claims(source, target)
        return {name: int(counts[name]) for name in COUNTS}


@contextmanager
def _opened(log: ExperimentLog | str | os.PathLike) -> Iterator[ExperimentLog]:
    """``log`` itself if it is open, else the log it names, closed afterwards."""
    if isinstance(log, ExperimentLog):
        yield log
        return
    with ExperimentLog(log) as opened:
        yield opened


def _location(log: ExperimentLog) -> str:
    """Where a log lives, as its errors name it (a folder's database file, or the URL without
    its password): two handles of one log give the same text."""
    return str(log.db.path)


def slices(starts: list[Any], size: int) -> list[tuple[Any, Any, int]]:
    """``(since, until, count)`` ranges covering the sorted start times ``starts``: about ``size``
    each, never splitting one instant between two (``since`` inclusive, ``until`` exclusive,
    None for open ends), so every take falls in exactly one range."""
    edges: list[Any] = [None]
    counts: list[int] = []
    n = 0
    for i, start in enumerate(starts):
        if n >= size and start != starts[i - 1]:
            edges.append(start)
            counts.append(n)
            n = 0
        n += 1
    return [*zip(edges, [*edges[1:], None], [*counts, n], strict=True)]


def _refuse_conflicts(source: ExperimentLog, target: ExperimentLog) -> None:
    """Raise LogError (naming ``target``) when it holds one of ``source``'s take ids with other
    content: another identity, or both settled with another status or voice."""
    if not len(target):
        return
    keep = ["take_id", *TAKE_IDENTITY, "status", "voice_id"]
    both = source.to_dataframe()[keep].merge(target.to_dataframe()[keep], on="take_id", suffixes=("", "__dst"))
    if both.empty:
        return
    problems = []
    for row in both.itertuples(index=False):
        values = row._asdict()
        differ = [c for c in TAKE_IDENTITY if not _same(values[c], values[f"{c}__dst"])]
        if values["status"] in FINAL_STATUSES and values["status__dst"] in FINAL_STATUSES:
            differ += [c for c in ("status", "voice_id") if not _same(values[c], values[f"{c}__dst"])]
        if differ:
            problems.append(f"take {values['take_id']} ({', '.join(differ)})")
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise LogError(
            _location(target),
            f"already holds takes with the ids of other takes of {_location(source)}: "
            f"{'; '.join(problems[:5])}{more}; nothing was copied",
        )


def _same(a: Any, b: Any) -> bool:
    missing_a, missing_b = _missing(a), _missing(b)
    return missing_a and missing_b if missing_a or missing_b else bool(a == b)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (str, tuple, list, dict)) and bool(pd.isna(value)))


def _copy_claims(source: ExperimentLog, target: ExperimentLog) -> int:
    """Insert the cell claims ``target`` lacks (a cell it has claimed keeps its claim; the
    claiming takes are all there by now); returns how many were added."""
    rows = [row._asdict() for row in source.db.query(select(cell_claims))]
    if not rows:
        return 0
    count = select(func.count()).select_from(cell_claims)
    with target.db.transaction() as conn:
        before = conn.execute(count).scalar_one()
        conn.execute(dialect_insert(conn.dialect.name, cell_claims).on_conflict_do_nothing(), rows)
        return conn.execute(count).scalar_one() - before


def _bar(total: int, show: bool):
    from tqdm.auto import tqdm  # a notebook widget in Jupyter, text in a terminal

    return tqdm(total=total, desc="copy", unit="take", disable=not show, leave=False)
