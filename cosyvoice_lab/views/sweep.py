"""Sweep: what changing one word of a prompt does to the voice, measure by measure.

``Lab.sweep`` designs one PromptSpec across the values of one dimension (pitch low / high,
timbre warm / breathy / bright ...) and builds a :class:`Sweep` from its takes. For each value
other than the baseline, and each measure, the table says how far the value moves the measure
from the baseline value, by one procedure (``analysis.inference.welch``): Welch's t of the two
values' takes, each judged on its own spread (so a value whose voices vary three times more,
often the "(unspecified)" one, does not make a move out of noise), the interval its inversion.

The sweep's own measure is its **primary** question (a pitch sweep asks about pitch, a pace sweep
about speaking rate, a volume sweep about loudness; other dimensions ask about pitch, speaking
rate, loudness and predicted quality): Holm within the primary questions, each row's interval
read at the level Holm's rule gives it, so a verdict names a move exactly when its interval
excludes 0. Every other measure is **exploratory**: adjusted among themselves, shown apart, never
counted in :attr:`Sweep.found`. Names come from ``analysis.names``.

Pure: a DataFrame in, a table out; ``inference.welch`` is vectorised so that ``tests/test_sweep.py``
can run thousands of simulated sweeps at once. (A test pooling the spread over all values, as this
table once did, claimed a move in up to 68 % of null sweeps when one value varied 3x more.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosyvoice_lab import html
from cosyvoice_lab.analysis import inference, names, stats
from cosyvoice_lab.views.evidence import result_cells

# the measurement columns a sweep reports (plain names and units: analysis.names)
MEASURES = tuple(names.MEASURES)
COLUMNS = (
    "value",
    "baseline",
    "family",
    "measure",
    "column",
    "unit",
    "estimate",
    "ci_low",
    "ci_high",
    "level",
    "n",
    "p_value",
    "p_adjusted",
    "verdict",
    "found",
)
PITCH_REFERENCE_HZ = names.PITCH_REFERENCE_HZ
UNSPECIFIED = "(unspecified)"  # the label of the value None: the dimension left out of the prompt


def label(value: Any) -> str:
    """How a dimension's value is shown: itself, or "(unspecified)" for None."""
    return UNSPECIFIED if value is None else str(value)


def compared_values(df, measures: Sequence[str] | None = None):
    """``df`` with each measure on the scale it is compared on (pitch in semitones), and the
    measure columns present, in :data:`MEASURES` order (or ``measures``' order)."""
    wanted = [c for c in (measures if measures is not None else MEASURES) if c in df]
    present = [c for c in wanted if _numeric(df[c]) and df[c].notna().any()]
    out = df.copy()
    for column in present:
        out[column] = names.compared(out, column)
    return out, present


def _numeric(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def primary_measures(dimension: str | None) -> tuple[str, ...]:
    """The measures a sweep of ``dimension`` answers about first: its own (pitch, pace, volume),
    else the primary measurements of a comparison (``analysis.names.PRIMARY``)."""
    own = names.DIMENSION_MEASURES.get(dimension or "")
    return (own,) if own else names.PRIMARY


def sweep_table(
    df,
    values: Sequence[str],
    baseline: str,
    *,
    measures: Sequence[str] | None = None,
    primary: Sequence[str] | None = None,
    alpha: float = stats.ALPHA,
):
    """One row per value (other than ``baseline``) × measure: the move from the baseline.

    Args:
        df: one row per take with a ``value`` column (the label of the dimension's value) and the
            measurement columns (``m_*``); rows with a ``status`` other than "ok" are left out.
        values: the value labels, in order (``baseline`` among them).
        baseline: the value every other is compared with.
        measures: the measurement columns to ask about (default :data:`MEASURES`).
        primary: the primary measurement columns (default :func:`primary_measures` of no
            dimension); the rest are exploratory.
        alpha: the error rate of each family (Holm within it).
    Returns:
        a DataFrame with :data:`COLUMNS`, primary rows first: each row Welch's t of the value
        against the baseline, its interval at the row's Holm ``level`` within its ``family``.
    """
    import pandas as pd

    ok = df[df["status"].astype(str) == "ok"] if "status" in df else df
    scaled, present = compared_values(ok, measures)
    primary = tuple(primary) if primary is not None else primary_measures(None)
    others = [v for v in values if v != baseline]
    rows = []
    for column in present:
        base = scaled.loc[scaled["value"] == baseline, column].dropna().to_numpy(dtype=float)
        for value in others:
            moved = scaled.loc[scaled["value"] == value, column].dropna().to_numpy(dtype=float)
            rows.append(
                {
                    "value": value,
                    "baseline": baseline,
                    "family": "primary" if column in primary else "exploratory",
                    "measure": names.name(column),
                    "column": column,
                    "unit": names.unit(column),
                    "n": int(len(base) + len(moved)),
                    "x_test": inference.welch(base, moved),
                }
            )
    order = {v: i for i, v in enumerate(others)}
    rows.sort(key=lambda r: (r["family"] != "primary", order[r["value"]]))  # stable: measures in their order
    _judge(rows, alpha)
    return pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=list(COLUMNS)).astype(
        {"found": bool, "level": float, "p_adjusted": float}
    )


def _judge(rows: list[dict], alpha: float) -> None:
    for family in ("primary", "exploratory"):
        tested = [r for r in rows if r["family"] == family]
        judged = inference.judge_family([r["x_test"] for r in tested], alpha)
        for r, fields in zip(tested, judged, strict=True):
            side = fields.pop("side")
            fields.pop("said")
            r.update(fields, found=family == "primary" and side != 0)
            r["verdict"] = verdict(r, side)


def verdict(row: dict[str, Any], side: int) -> str:
    """The plain sentence for one row: "high raises pitch vs low: +18.6 st [17.9, 19.3]", or
    "no evidence either way: ..." when the interval at the row's level holds 0."""
    get = row.__getitem__
    est, low, high = get("estimate"), get("ci_low"), get("ci_high")
    if any(math.isnan(x) for x in (est, low, high)):
        return "not enough data (at least two takes of each value)"
    numbers = _numbers(est, low, high, get("unit"))
    if side == 0:
        return f"{stats.NO_EVIDENCE}: {numbers}"
    return f"{get('value')} {'raises' if side > 0 else 'lowers'} {get('measure')} vs {get('baseline')}: {numbers}"


def _numbers(estimate: float, low: float, high: float, unit: str) -> str:
    width = high - low
    digits = 2 if not np.isfinite(width) or width <= 1e-9 else int(min(4, max(0, 1 - np.floor(np.log10(width)))))
    return f"{estimate:+.{digits}f}{' ' + unit if unit else ''} [{low:.{digits}f}, {high:.{digits}f}]"


def levels(df, values: Sequence[str], *, measures: Sequence[str] | None = None):
    """Per value (rows, in order): takes ok and the mean of each measure (pitch in semitones)."""
    ok = df[df["status"].astype(str) == "ok"] if "status" in df else df
    scaled, present = compared_values(ok, measures)
    table = scaled.groupby("value", sort=False)[present].mean().reindex(list(values))
    table.insert(0, "takes_ok", ok.groupby("value", sort=False).size().reindex(list(values)).fillna(0).astype(int))
    table.columns = ["takes_ok", *(names.name(c) for c in present)]
    return table


@dataclass
class Sweep:
    """A PromptSpec designed across one dimension's values, and what each value moved.

    Attributes:
        table: one row per value × measure (see :data:`COLUMNS`): ``estimate`` is the value's
            mean minus the baseline's (Welch's t), ``family`` primary (the sweep's own measure) or
            exploratory, ``ci_low``/``ci_high`` its interval at the row's Holm ``level`` within the
            family, ``p_adjusted`` Holm, ``verdict`` the plain sentence, ``found`` a primary move.
        df: the takes (one row each, a ``value`` column naming the dimension's value).
        dimension, values, baseline: what was swept (value labels; None shows as "(unspecified)").
        prompts: value label → the voice prompt it rendered to.
        experiment, target_model: where the takes are logged, and the model that designed them.
    """

    table: Any
    df: Any = field(repr=False)
    dimension: str
    values: list[str]
    baseline: str
    prompts: dict[str, str] = field(default_factory=dict, repr=False)
    experiment: str = ""
    target_model: str = ""
    measures: tuple[str, ...] | None = None

    @property
    def found(self):
        """The primary rows whose verdict names a move (the interval at the row's level excludes 0)."""
        return self.table[self.table["found"].astype(bool)]

    @property
    def exploratory(self):
        """The exploratory rows: every measure other than the sweep's own; never counted as found."""
        return self.table[self.table["family"] != "primary"]

    @property
    def levels(self):
        """Per value: takes ok and the mean of each measure (pitch in semitones from 100 Hz)."""
        return levels(self.df, self.values, measures=self.measures)

    def moved(self, value: str) -> list[str]:
        """The measures ``value`` moves (with evidence), e.g. ``["pitch", "spectral centroid"]``."""
        found = self.found
        return list(found.loc[found["value"] == value, "measure"])

    def plot(self, measures: Sequence[str] | None = None):
        """Each take's measure per value (dots) and the value's mean; measures by plain name or
        column (default: the sweep's primary measures, its own first). A Figure."""
        from cosyvoice_lab.analysis.plots import plot_sweep

        by_name = {names.name(column): column for column in MEASURES}
        primary = list(dict.fromkeys(self.table.loc[self.table["family"] == "primary", "column"]))
        chosen = [by_name.get(m, m) for m in measures] if measures else primary
        chosen = chosen or ["m_median_f0_hz", "m_speaking_rate", "m_loudness_lufs"]
        ok = self.df[self.df["status"].astype(str) == "ok"] if "status" in self.df else self.df
        scaled, present = compared_values(ok, chosen)
        panels = [(c, names.name(c), names.unit(c)) for c in chosen if c in present]
        title = f"{self.dimension} swept; baseline: {self.baseline}"
        return plot_sweep(scaled, self.values, panels, title=title)

    def __repr__(self) -> str:
        return (
            f"<Sweep {self.dimension} over {', '.join(self.values)} (baseline {self.baseline}): "
            f"{len(self.df)} take(s), {len(self.found)} move(s) with evidence>"
        )

    def to_text(self) -> str:
        """One line per primary move with evidence, then the exploratory moves (what ``print`` shows)."""
        primary = ", ".join(dict.fromkeys(self.table.loc[self.table["family"] == "primary", "measure"]))
        lines = [f"  {v}" for v in self.found["verdict"]] or [f"  no value moved {primary or 'any measure'} (Holm)"]
        rest = self.exploratory
        named = rest.loc[~rest["verdict"].str.startswith(("no ", "not ")), "verdict"]
        lines += [f"  exploratory (not counted): {v}" for v in named]
        return "\n".join([repr(self), *lines])

    __str__ = to_text

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """Values × measures: the moves with evidence in bold, then the prompts swept."""
        rows = [
            {"value": r.value, "measure": r.measure, "exploratory": r.family != "primary", **result_cells(r)}
            for r in self.table.itertuples()
        ]
        return html.render(
            "sweep.html.j2",
            dimension=self.dimension,
            baseline=self.baseline,
            experiment=self.experiment,
            model=self.target_model,
            rows=rows,
            prompts=list(self.prompts.items()),
        )
