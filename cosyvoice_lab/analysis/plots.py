"""Figures of recordings and comparisons (matplotlib, imported only when a plot is drawn).

Each function returns a matplotlib ``Figure`` and closes it in pyplot, so a notebook shows it
once (as the cell's value) and a loop of plots does not pile up open figures.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.analysis.measures import FRAME_S, HOP_S, pitch_track, samples
from cosyvoice_lab.analysis.names import raw_label

_LABEL_MAX = 28  # characters of a prompt shown as a tick label


def _figure(nrows: int = 1, **kw):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, 1, **kw)
    plt.close(fig)  # returned, not shown by pyplot: displayed once, as the cell's value
    return fig, axes


@lru_cache(maxsize=1)
def _cjk_font() -> str | None:
    """A installed font that draws Chinese, if any (the default DejaVu Sans does not)."""
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(k in font.name for k in ("CJK", "WenQuanYi", "Hei", "Song", "Ming", "Kai")):
            return font.name
    return None


def _labels(prompts: list[str]) -> tuple[list[str], dict[str, str]]:
    """Tick labels for prompts: shortened text, or P1, P2 ... when Chinese cannot be drawn.

    Returns the labels and a key mapping each numbered label to its prompt.
    """
    if any(catalog.is_cjk(c) for p in prompts for c in p) and _cjk_font() is None:
        labels = [f"P{i + 1}" for i in range(len(prompts))]
        return labels, dict(zip(labels, prompts, strict=False))
    short = [p if len(p) <= _LABEL_MAX else p[: _LABEL_MAX - 1] + "…" for p in prompts]
    return short, {}


def _frame(data):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        from cosyvoice_lab.analysis.measures import measurement_columns

        return measurement_columns(data)
    return pd.DataFrame([d.to_dict() if hasattr(d, "to_dict") else dict(d) for d in data])


def plot_take(audio, *, title: str | None = None, sample_rate: int | None = None, max_hz: float = 5000):
    """Spectrogram of one take above its pitch contour.

    Args:
        audio: an Audio, or a float array with ``sample_rate``.
        title: figure title.
        max_hz: top of the spectrogram's frequency axis.

    Returns:
        matplotlib Figure with two axes (spectrogram, F0 in Hz over time).
    """
    from scipy.signal import spectrogram

    x, sr = samples(audio, sample_rate)
    fig, (top, bottom) = _figure(2, figsize=(9, 5), sharex=True, constrained_layout=True)
    if len(x) >= 256:  # the analysis frames of ``measure``: 25 ms windows every 10 ms
        f, t, s = spectrogram(x, sr, nperseg=int(FRAME_S * sr), noverlap=int((FRAME_S - HOP_S) * sr))
        top.pcolormesh(t, f, 10 * np.log10(s + 1e-12), shading="auto", cmap="magma")
    top.set_ylim(0, min(max_hz, sr / 2))
    top.set_ylabel("frequency (Hz)")
    pitch = pitch_track(x, sr)  # None when too short for pitch: an empty contour says so
    if pitch is not None:
        f0 = pitch.selected_array["frequency"]
        bottom.plot(pitch.xs(), np.where(f0 > 0, f0, np.nan), ".", markersize=2)
    bottom.set_ylabel("F0 (Hz)")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, max(len(x) / sr, HOP_S))
    if title:
        fig.suptitle(title)
    return fig


def plot_pitch_rate(data, *, color_by: str = "target_model"):
    """Median F0 against speaking rate, one point per take, coloured by ``color_by``.

    Args:
        data: a DataFrame (or list of dicts/Measurements) with ``median_f0_hz``,
            ``speaking_rate`` and, optionally, ``rate_unit`` and the ``color_by`` column.
        color_by: the column naming each point's group, e.g. the model.

    Returns:
        matplotlib Figure.
    """
    frame = _frame(data)
    fig, ax = _figure(figsize=(6, 4.5), constrained_layout=True)
    groups = frame.groupby(color_by, sort=True, observed=True) if color_by in frame else [("all takes", frame)]
    for name, part in groups:
        ax.scatter(part["speaking_rate"], part["median_f0_hz"], label=str(name), alpha=0.8)
    units = sorted(frame["rate_unit"].dropna().unique()) if "rate_unit" in frame else []
    ax.set_xlabel(f"speaking rate ({', '.join(units) or 'units/s'})")
    ax.set_ylabel(raw_label("m_median_f0_hz"))
    ax.legend(title=color_by if color_by in frame else None)
    return fig


def plot_measure_by_prompt(data, measure: str = "median_f0_hz", *, by: str = "voice_prompt"):
    """Box plot of one measure per prompt (or per any column ``by``).

    Args:
        data: a DataFrame (or list of dicts) with ``measure`` and ``by`` columns.
        measure: the column to plot, e.g. ``median_f0_hz``, ``speaking_rate``, ``loudness_lufs``.
        by: the grouping column.

    Returns:
        matplotlib Figure. When Chinese prompts cannot be drawn (no CJK font), ticks read
        P1, P2 ... and ``fig.prompt_key`` maps them to the prompts.

    Raises:
        KeyError: when ``measure`` or ``by`` is not a column.
    """
    frame = _frame(data)
    for column in (measure, by):
        if column not in frame:
            raise KeyError(f"no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
    names = list(dict.fromkeys(frame[by]))
    values = [frame.loc[frame[by] == n, measure].dropna().to_numpy(float) for n in names]
    labels, key = _labels([str(n) for n in names])
    fig, ax = _figure(figsize=(max(5, 1.2 * len(names) + 2), 4.5), constrained_layout=True)
    ax.boxplot(values, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), labels, rotation=20 if len(names) > 3 else 0, ha="right")
    ax.set_ylabel(raw_label(measure))
    fig.prompt_key = key
    return fig


def plot_sweep(data, values, panels, *, title: str | None = None):
    """One small panel per measure: each take's value (dots) and the mean per value (a bar),
    values along the x axis in the order swept.

    Args:
        data: a DataFrame with a ``value`` column (the swept value's label) and the measure columns.
        values: the value labels, in order.
        panels: ``(column, label, unit)`` per panel.
        title: figure title.

    Returns:
        matplotlib Figure (one axis per panel).
    """
    import matplotlib.pyplot as plt

    count = max(1, len(panels))
    fig, axes = plt.subplots(1, count, figsize=(max(4.0, 3.2 * count), 3.4), constrained_layout=True)
    plt.close(fig)  # returned, not shown by pyplot: displayed once, as the cell's value
    axes = list(np.atleast_1d(axes))
    labels, _ = _labels([str(v) for v in values])
    rng = np.random.default_rng(0)  # the same jitter every time the figure is drawn
    for ax, (column, name, unit) in zip(axes, panels, strict=False):
        for i, value in enumerate(values):
            y = data.loc[data["value"] == value, column].dropna().to_numpy(float)
            ax.plot(i + rng.uniform(-0.12, 0.12, len(y)), y, "o", alpha=0.7, color="C0")
            if len(y):
                ax.plot([i - 0.3, i + 0.3], [y.mean(), y.mean()], "-", color="C3", linewidth=2)
        ax.set_xticks(range(len(values)), labels, rotation=20 if len(values) > 3 else 0)
        ax.set_xlim(-0.6, len(values) - 0.4)
        ax.set_ylabel(f"{name} ({unit})" if unit else name)
    if title:
        fig.suptitle(title)
    return fig


def plot_history(table, measure: str = "median_f0_hz", *, label: str = "median F0 (Hz)"):
    """A take's versions, oldest first: the measure (top) and the rating (bottom) per version.

    Args:
        table: a History's ``table`` (``version``, ``kind``, ``rating`` and the measure column).
        measure: the column to plot on top. label: its axis label.

    Returns:
        matplotlib Figure with two axes sharing the versions as x.
    """
    fig, (top, bottom) = _figure(2, figsize=(max(4.5, 0.9 * len(table) + 2), 4), sharex=True, constrained_layout=True)
    x = np.arange(len(table))
    y = table[measure].astype(float).to_numpy() if measure in table else np.full(len(table), np.nan)
    top.plot(x, y, "o-")
    top.set_ylabel(label)
    ratings = table["rating"].astype(float).to_numpy() if "rating" in table else np.full(len(table), np.nan)
    bottom.bar(x, np.nan_to_num(ratings), color="C1")
    bottom.set_ylim(0, 5.5)
    bottom.set_ylabel("rating")
    bottom.set_xticks(x, [f"{v}\n{k}" for v, k in zip(table["version"], table["kind"], strict=False)])
    return fig


def plot_tuning(table, path, goals):
    """A tuning's path toward its target: one panel per target measure; every candidate's mean with
    its 90 % interval against the designs used when it was first measured is not known here, so
    candidates are drawn in the order they were proposed (dots, the start first), the best
    candidate after each round as a line, the goal as a dashed line inside its tolerance band.

    Args:
        table: a Tuning's ``table`` (``candidate``, each target's column, ``_low``/``_high``).
        path: rows of ``candidate`` per round (the best so far), in round order.
        goals: per target: ``column``, ``name``, ``unit``, ``goal``, ``low``, ``high`` (raw scale).

    Returns:
        matplotlib Figure.
    """
    fig, axes = _figure(len(goals), figsize=(6.5, 2.4 * len(goals) + 0.4), sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    order = table.sort_values("candidate")
    x = order["candidate"].to_numpy()
    for ax, goal in zip(axes, goals, strict=True):
        column = goal["column"]
        y = order[column].astype(float).to_numpy()
        low = order[f"{column}_low"].astype(float).to_numpy()
        high = order[f"{column}_high"].astype(float).to_numpy()
        err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)])
        ax.errorbar(x, y, yerr=err, fmt="o", color="0.5", ms=4, capsize=2, label="candidates (90 % interval)")
        best = [p["candidate"] for p in path]
        by_index = dict(zip(order["candidate"], y, strict=True))
        ax.plot(best, [by_index.get(b, np.nan) for b in best], "-", color="C0", label="best so far")
        ax.axhspan(goal["low"], goal["high"], color="C2", alpha=0.15, label="tolerance")
        ax.axhline(goal["goal"], color="C2", ls="--")
        ax.set_ylabel(raw_label("m_" + column))
    axes[0].legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("candidate (in the order proposed; 0 = the start)")
    return fig
