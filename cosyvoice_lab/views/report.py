"""The report worth sending: the log's HTML report with each experiment's evidence and plots on top.

``log.export.export_html`` writes the page (grouped by experiment, then prompt × model; previews
compressed; fits the window; one file that opens from disk). The log may not compute evidence or
draw plots (they live in ``views`` and ``analysis``), so this module hands it ``section_extras``:
for each experiment the Evidence table (``Comparison.evidence``, with the listening rounds' ratings
when the log holds any) and two figures (pitch against speaking rate by model, pitch by prompt),
embedded as PNG data URIs. ``ExperimentLog.export_html`` writes the same page without them.
"""

from __future__ import annotations

import base64
import io
import os
from functools import partial
from pathlib import Path
from typing import Any

from cosyvoice_lab import catalog
from cosyvoice_lab.log import export
from cosyvoice_lab.views.comparison import Comparison

PLOT_DPI = 80  # small PNGs: a report is read on a screen, and mailed


def write_report(log, path: str | os.PathLike, experiment: str | None = None, **filters: Any) -> Path:
    """Write the shareable HTML report of ``log`` (one experiment, or all) to ``path``.

    Each experiment opens with its Evidence (models compared within prompts; ratings of
    listening rounds included) and plots; then prompt by prompt, one row per take with its
    player (Opus, about ``catalog.SHARE_AUDIO_KBPS`` kbit/s; the WAVs stay in the log).

    Args:
        log: an ExperimentLog.
        path: the file to write (``.html``); readable by others (0666 less the umask).
        experiment: only this experiment; None for every take.
        filters: more ``ExperimentLog.takes`` filters (``model``, ``status``, ...).
    Returns:
        the path written.
    Raises:
        LogError: the report cannot be written.
    """
    if experiment is not None:
        filters["experiment"] = experiment
    return export.export_html(log, path, extras=partial(section_extras, log), **filters)


def report(lab: Any, path: str | os.PathLike, experiment: str | None = None) -> Path:
    """A notebook's one call, ``report(lab, "report.html")``: the shareable HTML report of the
    lab's log (every experiment, or one; see ``write_report``), once the measures the lab is still
    computing are written (a report right after ``compare`` has them all)."""
    lab.measuring.wait()
    return write_report(lab.log, path, experiment=experiment)


def section_extras(log, experiment: str, takes: list) -> dict[str, Any]:
    """The top of an experiment's section: its Evidence table (when it compares two or more
    models) and its plots (when its previews were measured)."""
    prompts = list(dict.fromkeys(t.prompt for t in takes))
    models = catalog.model_order(t.target_model for t in takes)
    comparison = Comparison(log, experiment, prompts, models)
    extras: dict[str, Any] = {"plots": plots(comparison.df)}
    if len(models) > 1:
        extras["evidence"] = comparison.evidence(ratings=ratings(log, experiment)).html()
    return extras


def ratings(log, experiment: str):
    """The listening rounds' ratings of ``experiment`` (``log.ratings.to_dataframe``), or None
    when no round rated it yet."""
    frame = log.ratings.to_dataframe(experiment=experiment)
    return frame if len(frame) else None


def plots(df) -> list[tuple[str, str]]:
    """(title, PNG data URI) of pitch against speaking rate by model and of pitch by prompt
    (numbered as the report's prompts), for the ok takes that were measured; [] if none."""
    from cosyvoice_lab.analysis.plots import plot_measure_by_prompt, plot_pitch_rate

    ok = df[(df["status"] == "ok")]
    if "m_median_f0_hz" not in ok or not ok["m_median_f0_hz"].notna().any():
        return []
    figures = [("pitch by prompt (the prompts' numbers below)", plot_measure_by_prompt(ok, by="prompt_index"))]
    if "m_speaking_rate" in ok and ok["m_speaking_rate"].notna().any():
        figures.insert(0, ("median pitch against speaking rate, one point per take", plot_pitch_rate(ok)))
    return [(title, png_data_uri(figure)) for title, figure in figures]


def png_data_uri(figure) -> str:
    """A matplotlib figure as a ``data:image/png`` URI (an image cannot run script, unlike inline SVG)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=PLOT_DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
