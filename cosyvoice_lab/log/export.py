"""Getting takes out of the log: CSV, Parquet and an HTML report (bundles: ``bundle.py``).

Every file here is written atomically (temp file, fsync, rename), so a crash never leaves half
a table or report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cosyvoice_lab import catalog, files, html
from cosyvoice_lab.audio import Audio, Recent
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.take import Take, TakeSource, iso, now_utc


def atomic_write(
    path: str | os.PathLike, data: bytes | None = None, *, writer: Callable[[str], None] | None = None
) -> Path:
    """``files.atomic_write`` for a file made to be shared (CSV, Parquet, report, bundle): every
    export gets the mode a new file gets here (``readable``), and a failure is a ``LogError``
    naming the path."""

    def write_shared(tmp: str) -> None:
        if writer is not None:
            writer(tmp)
        readable(tmp)

    try:
        return files.atomic_write(path, data, writer=write_shared)
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

NO_EXPERIMENT = "(no experiment)"

# What a report adds at the top of an experiment's section: ``extras(experiment, takes)`` returns
# ``{"evidence": html text, "plots": [(title, image data URI), ...]}`` (either may be missing).
# The log cannot compute evidence or plots (they live in ``views``/``analysis``): ``views.report``
# passes this in; ``ExperimentLog.export_html`` writes the same report without it.
Extras = Callable[[str, list[Take]], dict[str, Any]]


def report_sections(takes: list[Take], extras: Extras | None = None) -> list[dict[str, Any]]:
    """Takes grouped as the report shows them: by experiment (in order of first take; takes
    without one last), then by prompt (first appearance), each prompt's takes by model
    (``catalog.model_order``), repeat and start time."""
    by_experiment: dict[str | None, list[Take]] = {}
    for take in takes:
        by_experiment.setdefault(take.experiment or None, []).append(take)
    if None in by_experiment:
        by_experiment[None] = by_experiment.pop(None)  # unfiled takes go last
    return [_section(name, group, extras) for name, group in by_experiment.items()]


def _section(name: str | None, takes: list[Take], extras: Extras | None) -> dict[str, Any]:
    models = catalog.model_order(t.target_model for t in takes)
    rank = {m: i for i, m in enumerate(models)}
    prompts: dict[str, list[Take]] = {}
    for take in takes:
        prompts.setdefault(take.prompt, []).append(take)
    added = extras(name, takes) if extras is not None and name is not None else {}
    return {
        "name": name or NO_EXPERIMENT,
        "total": len(takes),
        "ok": sum(t.ok for t in takes),
        "models": models,
        "prompts": [
            {
                "prompt": prompt,
                "preview_texts": list(dict.fromkeys(t.design.preview_text for t in group)),
                "takes": sorted(group, key=lambda t: (rank[t.target_model], t.repeat or 0, t.started_at)),
            }
            for prompt, group in prompts.items()
        ],
        "evidence": added.get("evidence") or "",
        "plots": list(added.get("plots") or ()),
    }


# Previews already compressed in this process, by (content hash, kbps): exporting the report again
# (after a few more ratings) encodes only what is new. ~15 KB a 5 s preview; the oldest go first.
_SHARED = Recent(512)


def shared_audio(takes: list[Take], kbps: float = catalog.SHARE_AUDIO_KBPS) -> dict[str, Audio]:
    """take id → its preview compressed for sharing (``Audio.compressed``), for takes whose
    preview can be read; the others are left to the report's player, which says why. Previews
    are read here one by one (the store may be a database connection) and encoded on every core,
    each content once per process (a preview compressed before is reused)."""
    shared, originals = {}, {}
    for take in takes:
        if take.preview_missing or not take.audio_path:
            continue
        known = _SHARED.get((take.audio_sha256, kbps)) if take.audio_sha256 else None
        if known is not None:
            shared[take.take_id] = known
            continue
        try:
            audio = take.audio
        except (LogError, ValueError):
            continue  # shown as its error message
        if audio is not None:
            originals[take.take_id] = audio
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # the encoder releases the GIL
        encoded = dict(zip(originals, pool.map(lambda audio: audio.compressed(kbps), originals.values()), strict=True))
    for take_id, audio in originals.items():
        _SHARED.put((audio.sha256, kbps), encoded[take_id])
    shared.update(encoded)
    return {take.take_id: shared[take.take_id] for take in takes if take.take_id in shared}


def readable(tmp: str) -> None:
    """Give a file written by ``atomic_write`` (mode 0600, as every temp file) the mode a new
    file gets here: 0666 less the umask, so an export can be read by whom it is shared with."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)


def export_html(log, path, *, extras: Extras | None = None, kbps: float = catalog.SHARE_AUDIO_KBPS, **filters) -> Path:
    """A self-contained HTML report: experiment by experiment, prompt by prompt, one row per take
    (model, repeat, player, status, annotations, measurements), with ``extras`` (evidence, plots)
    at the top of each experiment. Previews are embedded compressed (Opus at ``kbps`` kbit/s;
    the originals stay in the log); the page fits a phone's width and opens from disk with no
    server or network. The file is readable by others (0666 less the umask).

    Raises:
        LogError: the report cannot be written.
    """
    takes = log.takes(**filters)
    page = html.report(
        report_sections(takes, extras),
        players=shared_audio(takes, kbps),
        folder=log.folder,
        generated=iso(now_utc()),
        kbps=kbps,
    )
    return atomic_write(path, page.encode("utf-8"))
