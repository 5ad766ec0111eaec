"""Estimates with uncertainty: is a difference between models real?

Pure functions over numbers and DataFrames; no I/O. What ``Comparison.evidence()`` is built on,
together with ``analysis.inference`` (the one procedure per question: a stratified permutation
test within prompts, its interval by test inversion, Holm's levels) and ``analysis.planning``
(repeats for a difference that matters).

The design is the one ``lab.compare`` runs: prompts × models × repeats. Prompts are *blocks*:
a model difference is estimated within each prompt and averaged over the prompts, so a prompt
that makes every voice low does not pass for a model difference. The inference is about the
prompts compared (fixed blocks): the question answered is "on these prompts, does flash come
out higher than plus?", and the noise it is judged against is the spread between repeats of
the same prompt on the same model.

- :func:`frame_arrays` — one DataFrame column as the ``(prompts, repeats)`` arrays of two
  groups, the shape ``analysis.inference.shift`` takes.
- :func:`block_difference` — Student's t within blocks: the pooled within-cell spread (and its
  degrees of freedom) that planning sizes experiments against. Not a verdict: the evidence table
  uses the permutation test.
- :func:`take_scores` — several raters' ratings of the same takes as one score per take (each
  rater centred on their own mean, averaged over raters): the take is the unit a rating
  question counts, so three raters of one voice are not three voices, and a harsh rater who
  happened to hear more of one model does not pass for a model difference.
- :func:`preference` — blind A/B choices: the share preferring one model, exact binomial test
  and the Clopper-Pearson interval that inverts it (``inference.Binomial``). For two models
  this *is* the Bradley-Terry model; ``analysis.preferences`` fits it for more.
- :func:`holm` — Holm's step-down adjusted p-values.

Validated on planted effects in ``tests/test_stats.py`` and ``benchmarks/evidence_validation.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosyvoice_lab.analysis import inference

ALPHA = 0.05  # two-sided error rate of every interval and test here: 95 % intervals
NO_EVIDENCE = "no evidence either way"


@dataclass(frozen=True)
class Difference:
    """Arrays (or floats, for one experiment) from :func:`block_difference`.

    Attributes:
        estimate: mean over prompts of (mean of ``b`` − mean of ``a``) within the prompt.
        ci_low, ci_high: the 1 − alpha interval. se: its standard error. df: degrees of freedom.
        p_value: two-sided, for "no difference". n: values used (both models). blocks: prompts
            holding values of both models. sd: the within-cell standard deviation (pooled), the
            noise a planned experiment is sized against.
    """

    estimate: Any
    ci_low: Any
    ci_high: Any
    se: Any
    df: Any
    p_value: Any
    n: Any
    blocks: Any
    sd: Any


def block_difference(a, b, *, alpha: float = ALPHA) -> Difference:
    """The difference ``b − a`` estimated within blocks (prompts), with its interval and p.

    Args:
        a, b: arrays shaped ``(..., blocks, repeats)``: one measure, for model a and model b;
            NaN marks a missing value (a failed take, fewer repeats). Leading axes are
            independent experiments (vectorised).
        alpha: two-sided error rate (0.05: 95 % intervals).
    Returns:
        a :class:`Difference`; NaN where there is not enough data (no block with both models,
        or no way to estimate the noise).
    """
    from cosyvoice_lab.analysis import distributions as dist

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.sum(~np.isnan(a), axis=-1), np.sum(~np.isnan(b), axis=-1)
    both = (na > 0) & (nb > 0)  # (..., blocks)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty cells: NaN is the answer
        ma, mb = (
            np.nanmean(np.where(both[..., None], a, np.nan), -1),
            np.nanmean(np.where(both[..., None], b, np.nan), -1),
        )
        d = np.where(both, mb - ma, 0.0)
        k = both.sum(-1)
        estimate = d.sum(-1) / k
        # pooled within-cell variance, over blocks with both models
        ss = np.where(both, _ss(a, ma) + _ss(b, mb), 0.0).sum(-1)
        df_within = np.where(both, na + nb - 2, 0).sum(-1)
        var_within = ss / df_within
        inv_n = np.where(both, 1.0 / np.maximum(na, 1) + 1.0 / np.maximum(nb, 1), 0.0).sum(-1)
        se_within = np.sqrt(var_within * inv_n) / k
        # one value per cell everywhere: paired over blocks (the interaction is the noise)
        dev = np.where(both, d - estimate[..., None], 0.0)
        var_paired = (dev**2).sum(-1) / (k - 1)
        se_paired = np.sqrt(var_paired / k)
        paired = df_within < 1
        se = np.where(paired, se_paired, se_within)
        df = np.where(paired, k - 1, df_within).astype(float)
        df = np.where(df >= 1, df, np.nan)
        t = estimate / se
        p = 2 * dist.t_sf(np.abs(t), df)
        p = np.where((se == 0) & (estimate == 0), 1.0, np.where((se == 0) & (estimate != 0), 0.0, p))
        half = dist.t_ppf(1 - alpha / 2, df) * se
        sd = np.where(paired, np.sqrt(var_paired / 2), np.sqrt(var_within))
    n = np.where(both, na + nb, 0).sum(-1)
    return Difference(estimate, estimate - half, estimate + half, se, df, p, n, k, sd)


def take_scores(ratings) -> np.ndarray:
    """One score per take from the ratings of several raters: each rater's ratings centred on
    that rater's own mean (a harsh rater and a generous one then agree on what they both heard
    as better), averaged over the raters who rated the take, on the scale of the ratings.

    The take, not the rating, is the unit the comparison counts: three raters hearing one take
    are three opinions of one voice, not three voices. The scores are a function of the ratings
    alone (not of which model made a take), so a test over takes keeps its error rate.

    Args:
        ratings: shaped ``(..., takes, raters)``, NaN where a rater did not rate a take;
            leading axes are independent experiments (vectorised).
    Returns:
        ``(..., takes)``: NaN for a take nobody rated. With one rater: the ratings themselves.
    """
    x = np.asarray(ratings, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a rater or take without ratings: NaN
        rater_mean = np.nanmean(x, axis=-2, keepdims=True)
        grand = np.nanmean(x, axis=(-2, -1), keepdims=True)
        return np.nanmean(x - rater_mean + grand, axis=-1)


def _ss(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.nansum((x - mean[..., None]) ** 2, axis=-1)


def frame_arrays(df, value: str, *, group: str, a, b, block: str = "prompt_index") -> tuple[np.ndarray, np.ndarray]:
    """One DataFrame column as two arrays shaped ``(blocks, repeats)`` (NaN-padded): the values of
    ``a`` and of ``b`` (values of ``group``) per value of ``block``, blocks in order of appearance.

    Args:
        df: one row per observation (a take); rows whose value is NaN are left out.
        value: the measure's column. group: the column naming the model. block: the blocking column.
    """
    rows = df[df[group].isin([a, b]) & df[value].notna()]
    blocks = list(dict.fromkeys(rows[block]))
    cells = {(k, g): grp[value].to_numpy(dtype=float) for (k, g), grp in rows.groupby([block, group], observed=True)}
    width = max([len(v) for v in cells.values()], default=1)
    arr = np.full((2, max(len(blocks), 1), width), np.nan)
    for i, name in enumerate((a, b)):
        for j, k in enumerate(blocks):
            values = cells.get((k, name), np.array([]))
            arr[i, j, : len(values)] = values
    return arr[0], arr[1]


@dataclass(frozen=True)
class Preference:
    """Blind A/B choices between two models (arrays, or floats for one experiment).

    Attributes:
        share: the share of choices for model b. ci_low, ci_high: its exact interval.
        p_value: exact two-sided binomial test of "no preference" (share 0.5). n: choices made
            (ties left out).
    """

    share: Any
    ci_low: Any
    ci_high: Any
    p_value: Any
    n: Any


def preference(wins_b, n, *, alpha: float = ALPHA) -> Preference:
    """How often model b was preferred over model a in ``n`` blind choices: the share, its exact
    Clopper-Pearson interval and the exact equal-tailed binomial test it inverts (the interval
    excludes 0.5 exactly when p <= alpha). For two models the Bradley-Terry model reduces to this
    binomial: b's strength relative to a's is ``share / (1 - share)``. Vectorised."""
    out = inference.Binomial(wins_b, n).judge(alpha)
    return Preference(out.estimate, out.ci_low, out.ci_high, out.p_value, np.asarray(n, dtype=float))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a question)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
