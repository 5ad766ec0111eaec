"""Sweep: what changing one word of a prompt does to the voice, measure by measure.

``Lab.sweep`` designs one PromptSpec across the values of one dimension (pitch low / high,
timbre warm / breathy / bright ...) and builds a :class:`Sweep` from its takes. For each value
other than the baseline, and each measure, the table says how far the value moves the measure
from the baseline value: the difference of means with its 95 % interval, the p-value, and the
p-value adjusted across the whole table (Holm), because every value × measure is a question
asked at once. The noise a move is judged against is the spread between takes of the same
value, pooled over the values (Student's t with N − k degrees of freedom, as ``analysis.stats``
pools the spread within cells): with three takes per value, a pair of values alone leaves too
few degrees of freedom to find anything once the table's questions are counted. Welch's
interval (each pair on its own spreads) is the alternative when values vary unalike. A
verdict names a move only when its adjusted p is below 5 %; everything else is "no evidence
either way", with the estimate and interval still shown.

Pure: a DataFrame in, a table out; :func:`pooled_differences` and :func:`welch_difference` are vectorised so that the
validation in ``tests/test_sweep.py`` can run thousands of simulated sweeps at once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _st

from cosyvoice_lab import html
from cosyvoice_lab.analysis import stats
from cosyvoice_lab.views.evidence import result_cells

# measurement column -> (what it is called, unit). Pitch is compared in semitones.
MEASURES: dict[str, tuple[str, str]] = {
    "m_median_f0_hz": ("pitch", "st"),
    "m_f0_sd_semitones": ("pitch variation", "st"),
    "m_speaking_rate": ("speaking rate", "/s"),
    "m_loudness_lufs": ("loudness", "LU"),
    "m_intensity_sd_db": ("loudness variation", "dB"),
    "m_hnr_db": ("harmonics-to-noise ratio", "dB"),
    "m_cpp_db": ("cepstral peak (CPP)", "dB"),
    "m_jitter_percent": ("jitter", "%"),
    "m_shimmer_percent": ("shimmer", "%"),
    "m_spectral_tilt_db_oct": ("spectral tilt", "dB/oct"),
    "m_spectral_centroid_hz": ("spectral centroid", "Hz"),
    "m_dnsmos_ovrl": ("predicted quality", "MOS"),
}
COLUMNS = (
    "value",
    "baseline",
    "measure",
    "column",
    "unit",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
    "p_value",
    "p_adjusted",
    "verdict",
)
PITCH_REFERENCE_HZ = 100.0  # semitones are counted from here (only differences are shown)
UNSPECIFIED = "(unspecified)"  # the label of the value None: the dimension left out of the prompt


def label(value: Any) -> str:
    """How a dimension's value is shown: itself, or "(unspecified)" for None."""
    return UNSPECIFIED if value is None else str(value)


def welch_difference(a, b, *, alpha: float = stats.ALPHA) -> stats.Difference:
    """The difference of means ``b − a`` with Welch's t interval and two-sided p.

    Args:
        a, b: arrays shaped ``(..., n)``; NaN marks a missing value. Leading axes are independent
            experiments (vectorised).
        alpha: two-sided error rate (0.05: 95 % intervals).
    Returns:
        a :class:`~cosyvoice_lab.analysis.stats.Difference` (``blocks`` is 1, ``sd`` the pooled
        standard deviation). NaN where either side has fewer than two values. When neither
        side varies at all, the interval is the difference itself and p is 1 for no difference,
        0 for any other.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.sum(~np.isnan(a), axis=-1), np.sum(~np.isnan(b), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # too few values: NaN is the answer
        ma, mb = np.nanmean(a, axis=-1), np.nanmean(b, axis=-1)
        va, vb = np.nanvar(a, axis=-1, ddof=1), np.nanvar(b, axis=-1, ddof=1)
        ea, eb = va / na, vb / nb
        se = np.sqrt(ea + eb)
        df = (ea + eb) ** 2 / (ea**2 / (na - 1) + eb**2 / (nb - 1))
        estimate = mb - ma
        sd = np.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    enough = (na >= 2) & (nb >= 2)
    return _t_difference(estimate, se, df, enough, na + nb, np.ones_like(na), np.where(enough, sd, np.nan), alpha)


def pooled_differences(groups, *, alpha: float = stats.ALPHA) -> stats.Difference:
    """Each group's difference of means from group 0, judged against the spread within groups
    pooled over all of them (Student's t with the residual degrees of freedom, N − k: exact for
    normal data of equal spread; the one-way ANOVA's error term).

    Args:
        groups: an array shaped ``(..., k, n)``: k values (the baseline first), up to n takes
            each; NaN marks a missing value. Leading axes are independent experiments.
    Returns:
        a :class:`~cosyvoice_lab.analysis.stats.Difference` of arrays shaped ``(..., k − 1)``
        (``sd`` is the pooled standard deviation). NaN where a group is empty or no spread can
        be estimated; with no spread at all, the interval is the difference itself and p is 1
        for no difference, 0 for any other.
    """
    g = np.asarray(groups, dtype=float)
    counts = np.sum(~np.isnan(g), axis=-1)  # (..., k)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty groups: NaN is the answer
        means = np.nanmean(g, axis=-1)
        ss = np.nansum((g - means[..., None]) ** 2, axis=-1).sum(-1)
        present = counts > 0
        df = (counts.sum(-1) - present.sum(-1)).astype(float)
        var = ss / df
        estimate = means[..., 1:] - means[..., :1]
        se = np.sqrt(var[..., None] * (1 / counts[..., 1:] + 1 / counts[..., :1]))
        dfs = np.broadcast_to(df[..., None], estimate.shape)
    enough = (counts[..., 1:] > 0) & (counts[..., :1] > 0) & (dfs >= 1)
    n = counts[..., 1:] + counts[..., :1]
    sd = np.broadcast_to(np.sqrt(var)[..., None], estimate.shape)
    return _t_difference(estimate, se, dfs, enough, n, np.ones_like(estimate), sd, alpha)


def _t_difference(estimate, se, df, enough, n, blocks, sd, alpha: float) -> stats.Difference:
    """A difference of means with its Student t interval (``df`` degrees of freedom) and two-sided
    p, NaN where not ``enough`` (``n``, ``blocks`` and ``sd`` are taken as they come). With no
    spread at all (``se`` 0) the interval is the difference itself and p is 1 for no difference,
    0 for any other."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # too few values: NaN is the answer
        p = 2 * _st.t.sf(np.abs(estimate / se), df)
        half = _st.t.ppf(1 - alpha / 2, df) * se
        still = se == 0  # every value the same: the difference is exact
        p = np.where(still, np.where(estimate == 0, 1.0, 0.0), p)
        half = np.where(still, 0.0, half)
    nan = np.nan
    return stats.Difference(
        np.where(enough, estimate, nan),
        np.where(enough, estimate - half, nan),
        np.where(enough, estimate + half, nan),
        np.where(enough, se, nan),
        np.where(enough, df, nan),
        np.where(enough, p, nan),
        n,
        blocks,
        sd,
    )


def compared_values(df, measures: Sequence[str] | None = None):
    """``df`` with each measure on the scale it is compared on (pitch in semitones), and the
    measure columns present, in :data:`MEASURES` order (or ``measures``' order)."""
    wanted = [c for c in (measures if measures is not None else MEASURES) if c in df]
    present = [c for c in wanted if _numeric(df[c]) and df[c].notna().any()]
    out = df.copy()
    if "m_median_f0_hz" in present:
        f0 = out["m_median_f0_hz"].astype(float)
        out["m_median_f0_hz"] = 12 * np.log2(f0.where(f0 > 0) / PITCH_REFERENCE_HZ)
    return out, present


def _numeric(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def sweep_table(
    df,
    values: Sequence[str],
    baseline: str,
    *,
    measures: Sequence[str] | None = None,
    method: str = "pooled",
    alpha: float = stats.ALPHA,
):
    """One row per value (other than ``baseline``) × measure: the move from the baseline.

    Args:
        df: one row per take with a ``value`` column (the label of the dimension's value) and the
            measurement columns (``m_*``); rows with a ``status`` other than "ok" are left out.
        values: the value labels, in order (``baseline`` among them).
        baseline: the value every other is compared with.
        measures: the measurement columns to ask about (default :data:`MEASURES`).
        method: ``"pooled"`` (:func:`pooled_differences`: the spread within values pooled over
            all of them; most power when the values' voices vary alike) or ``"welch"``
            (:func:`welch_difference`: each pair on its own spreads; safe when they do not).
    Returns:
        a DataFrame with :data:`COLUMNS`; ``p_adjusted`` is Holm across the whole table.
    """
    import pandas as pd

    if method not in ("pooled", "welch"):
        raise ValueError(f"method must be 'pooled' or 'welch', got {method!r}")
    ok = df[df["status"].astype(str) == "ok"] if "status" in df else df
    scaled, present = compared_values(ok, measures)
    others = [v for v in values if v != baseline]
    rows = []
    for column in present:
        word, unit = MEASURES.get(column, (column.removeprefix("m_").replace("_", " "), ""))
        found = [scaled.loc[scaled["value"] == v, column].dropna().to_numpy(dtype=float) for v in [baseline, *others]]
        groups = np.full((len(found), max([len(x) for x in found] + [1])), np.nan)
        for i, x in enumerate(found):
            groups[i, : len(x)] = x
        if method == "pooled":
            d = pooled_differences(groups, alpha=alpha)
        else:
            d = welch_difference(np.broadcast_to(groups[0], groups[1:].shape), groups[1:], alpha=alpha)
        for i, value in enumerate(others):
            rows.append(
                {
                    "value": value,
                    "baseline": baseline,
                    "measure": word,
                    "column": column,
                    "unit": unit,
                    "estimate": float(d.estimate[i]),
                    "ci_low": float(d.ci_low[i]),
                    "ci_high": float(d.ci_high[i]),
                    "n": int(len(found[0]) + len(found[i + 1])),
                    "p_value": float(d.p_value[i]),
                    "p_adjusted": math.nan,
                    "verdict": "",
                }
            )
    order = {v: i for i, v in enumerate(others)}
    rows.sort(key=lambda r: order[r["value"]])  # stable: value by value, measures in their order
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if len(table):
        table["p_adjusted"] = stats.holm(table["p_value"].to_numpy(dtype=float))
        table["verdict"] = [verdict(r, alpha=alpha, questions=len(table)) for r in table.itertuples()]
    return table


def verdict(row: Any, *, alpha: float = stats.ALPHA, questions: int = 1) -> str:
    """The plain sentence for one row: "high raises pitch vs low: +18.6 st [17.9, 19.3]", or
    "no evidence either way: ..." when the adjusted p is not below ``alpha``."""
    est, low, high = row.estimate, row.ci_low, row.ci_high
    if any(math.isnan(x) for x in (est, low, high)):
        return "not enough data"
    numbers = _numbers(est, low, high, row.unit)
    if math.isnan(row.p_adjusted) or row.p_adjusted >= alpha:
        hint = f" once {questions} questions are counted" if questions > 1 and (low > 0 or high < 0) else ""
        return f"{stats.NO_EVIDENCE}{hint}: {numbers}"
    return f"{row.value} {'raises' if est > 0 else 'lowers'} {row.measure} vs {row.baseline}: {numbers}"


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
    table.columns = ["takes_ok", *(MEASURES.get(c, (c, ""))[0] for c in present)]
    return table


@dataclass
class Sweep:
    """A PromptSpec designed across one dimension's values, and what each value moved.

    Attributes:
        table: one row per value × measure (see :data:`COLUMNS`): ``estimate`` is the value's
            mean minus the baseline's, ``ci_low``/``ci_high`` its 95 % interval, ``p_adjusted``
            Holm across the table, ``verdict`` the plain sentence.
        df: the takes (one row each, a ``value`` column naming the dimension's value).
        dimension, values, baseline: what was swept (value labels; None shows as "(unspecified)").
        prompts: value label → the voice prompt it rendered to.
        experiment, model: where the takes are logged, and the model that designed them.
    """

    table: Any
    df: Any = field(repr=False)
    dimension: str
    values: list[str]
    baseline: str
    prompts: dict[str, str] = field(default_factory=dict, repr=False)
    experiment: str = ""
    model: str = ""
    measures: tuple[str, ...] | None = None

    @property
    def found(self):
        """The rows whose verdict names a move (adjusted p below 5 %)."""
        return self.table[self.table["p_adjusted"] < stats.ALPHA]

    @property
    def levels(self):
        """Per value: takes ok and the mean of each measure (pitch in semitones from 100 Hz)."""
        return levels(self.df, self.values, measures=self.measures)

    def moved(self, value: str) -> list[str]:
        """The measures ``value`` moves (with evidence), e.g. ``["pitch", "spectral centroid"]``."""
        found = self.found
        return list(found.loc[found["value"] == value, "measure"])

    def plot(self, measures: Sequence[str] | None = None):
        """Each take's measure per value (dots) and the value's mean; measures by name or column
        (default: those with evidence, else pitch, speaking rate and loudness). A Figure."""
        from cosyvoice_lab.analysis.plots import plot_sweep

        by_name = {word: column for column, (word, _) in MEASURES.items()}
        found = set(self.found["column"])
        in_order = [c for c in dict.fromkeys([*MEASURES, *self.found["column"]]) if c in found]
        chosen = [by_name.get(m, m) for m in measures] if measures else in_order
        chosen = chosen or ["m_median_f0_hz", "m_speaking_rate", "m_loudness_lufs"]
        ok = self.df[self.df["status"].astype(str) == "ok"] if "status" in self.df else self.df
        scaled, present = compared_values(ok, chosen)
        panels = [(c, *MEASURES.get(c, (c, ""))) for c in chosen if c in present]
        title = f"{self.dimension} swept; baseline: {self.baseline}"
        return plot_sweep(scaled, self.values, panels, title=title)

    def __repr__(self) -> str:
        return (
            f"<Sweep {self.dimension} over {', '.join(self.values)} (baseline {self.baseline}): "
            f"{len(self.df)} take(s), {len(self.found)} move(s) with evidence>"
        )

    def to_text(self) -> str:
        """One line per move with evidence (what ``print`` shows)."""
        lines = [f"  {v}" for v in self.found["verdict"]] or ["  no value moved any measure (95 %, Holm)"]
        return "\n".join([repr(self), *lines])

    __str__ = to_text

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """Values × measures: the moves with evidence in bold, then the prompts swept."""
        rows = [{"value": r.value, "measure": r.measure, **result_cells(r)} for r in self.table.itertuples()]
        return html.sweep_table(
            dimension=self.dimension,
            baseline=self.baseline,
            experiment=self.experiment,
            model=self.model,
            rows=rows,
            prompts=list(self.prompts.items()),
        )
