"""Estimates with uncertainty: is a difference between models real, and how many repeats settle it?

Pure functions over numbers and DataFrames; no I/O. What ``Comparison.evidence()`` is built on.

The design is the one ``lab.compare`` runs: prompts × models × repeats. Prompts are *blocks*:
a model difference is estimated within each prompt and averaged over the prompts, so a prompt
that makes every voice low does not pass for a model difference. The inference is about the
prompts compared (fixed blocks): the question answered is "on these prompts, does flash come
out higher than plus?", and the noise it is judged against is the spread between repeats of
the same prompt on the same model.

- :func:`block_difference` — the estimate, its 95 % interval, n and p for one measure and two
  models: the mean of the per-prompt differences, judged against the pooled within-cell spread
  (Student's t with the residual degrees of freedom: exact for normal data). Cells holding a
  single value each (a per-cell statistic such as variability) fall back to a paired t-test
  over the prompts. Vectorised over leading axes, so the validation can run thousands of
  simulated experiments at once.
- :func:`block_rank_difference` — the same question by ranks (stratified Wilcoxon-Mann-Whitney,
  continuity-corrected; Hodges-Lehmann shift, interval by inverting the test): what the evidence
  table uses for measurements and ratings, because voices of one prompt can come out in two clusters (a
  prompt that names no gender) and a mean is at the mercy of that.
- :func:`take_scores` — several raters' ratings of the same takes as one score per take (each
  rater centred on their own mean, averaged over raters): the take is the unit a rating
  question counts, so three raters of one voice are not three voices, and a harsh rater who
  happened to hear more of one model does not pass for a model difference.
- :func:`preference` — blind A/B choices: the share preferring one model, with an exact
  (Clopper-Pearson) interval and an exact binomial test. For two models this *is* the
  Bradley-Terry model (strength ratio = p / (1 - p)).
- :func:`holm` — Holm's step-down adjustment across the questions asked at once.
- :func:`verdict` — the plain sentence ("flash higher pitch: +2.8 st [1.9, 3.7]").
- :func:`repeats_needed` / :func:`power` — repeats per cell that detect a difference of a
  given size at 80 % power (Noether's approximation for the rank test, non-central t for t).

Validated on planted effects in ``tests/test_stats.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from cosyvoice_lab import catalog

ALPHA = catalog.EVIDENCE_ALPHA  # two-sided error rate of every interval and test here
POWER = catalog.EVIDENCE_POWER  # the power "what to do next" aims for
MAX_REPEATS = catalog.EVIDENCE_MAX_REPEATS  # repeats_needed gives up above this (returns None)
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
        p = 2 * _st.t.sf(np.abs(t), df)
        p = np.where((se == 0) & (estimate == 0), 1.0, np.where((se == 0) & (estimate != 0), 0.0, p))
        half = _st.t.ppf(1 - alpha / 2, df) * se
        sd = np.where(paired, np.sqrt(var_paired / 2), np.sqrt(var_within))
    n = np.where(both, na + nb, 0).sum(-1)
    return Difference(estimate, estimate - half, estimate + half, se, df, p, n, k, sd)


def block_rank_difference(a, b, *, alpha: float = ALPHA) -> Difference:
    """The shift ``b − a`` within blocks, by ranks: robust to outliers and to voices that come
    out in two clusters (a prompt that names no gender gives some male, some female voices).

    The test is the stratified Wilcoxon-Mann-Whitney test: per prompt, U counts the pairs
    (take of a, take of b) where b is higher (ties count half); the U's are summed over prompts
    and judged by their exact permutation mean and variance (ties corrected), normal
    approximation with a continuity correction (without it the test is a little liberal at
    small sizes: 6.2 % instead of 5 % at 4 prompts × 3 repeats; with it, at most 5 % exactly,
    ``tests/test_stats.py``). The estimate is the Hodges-Lehmann shift (median of the within-prompt pair
    differences); the interval inverts the test. ``sd`` is the pooled within-cell standard
    deviation, as :func:`block_difference` gives it (for planning). Same shapes as
    :func:`block_difference`; vectorised.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = b[..., :, None, :] - a[..., :, :, None]  # (..., blocks, repeats a, repeats b)
    na, nb = np.sum(~np.isnan(a), axis=-1), np.sum(~np.isnan(b), axis=-1)
    both = (na > 0) & (nb > 0)
    pooled = np.concatenate([a, b], axis=-1)
    total = na + nb
    ties = np.nansum(np.where(np.isnan(pooled), 0, (pooled[..., :, None] == pooled[..., None, :]).sum(-1) ** 2 - 1), -1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var_u = na * nb / 12 * ((total + 1) - ties / (total * (total - 1)))
        var_u = np.where(both, var_u, 0.0).sum(-1)
        var_shift = np.where(both, na * nb * (total + 1) / 12, 0.0).sum(-1)  # no ties once shifted
        mean_u = np.where(both, na * nb / 2, 0.0).sum(-1)
        u = _u(d)
        # continuity-corrected: U moves in steps of 1/2 or 1; without it the normal approximation
        # is a little liberal at small sizes (6.2 % instead of 5 % at 4 prompts × 3 repeats)
        z = np.sign(u - mean_u) * np.maximum(np.abs(u - mean_u) - _CONTINUITY, 0) / np.sqrt(var_u)
        p = np.where(var_u > 0, 2 * _st.norm.sf(np.abs(z)), np.where(u == mean_u, 1.0, np.nan))
        flat = d.reshape(*d.shape[:-3], -1)
        estimate = np.nanmedian(flat, axis=-1) if flat.shape[-1] else np.full(flat.shape[:-1], np.nan)
        # the interval: the shifts the test does not reject. Between the k-th and (k+1)-th
        # smallest pair differences (0-based) U(shift) is K - k - 1: the lower end is the first
        # difference whose right side is accepted, the upper end the last whose left side is.
        ordered = np.sort(flat, axis=-1)  # NaN last
        valid = (~np.isnan(flat)).sum(-1)[..., None]
        k = np.arange(flat.shape[-1])
        scale = np.sqrt(var_shift)[..., None]
        crit = _st.norm.ppf(1 - alpha / 2)
        inside = k < valid
        right = (valid - k - 1 - mean_u[..., None] - _CONTINUITY) / scale
        left = (valid - k - mean_u[..., None] + _CONTINUITY) / scale
        low = np.nanmin(np.where(inside & (right < crit), ordered, np.nan), axis=-1)
        high = np.nanmax(np.where(inside & (left > -crit), ordered, np.nan), axis=-1)
        # too few takes to reject even the most extreme shift: the interval is unbounded there
        top = (valid[..., 0] - mean_u - _CONTINUITY) / scale[..., 0]
        some = (valid[..., 0] > 0) & (scale[..., 0] > 0)
        low = np.where(some & (top < crit), -np.inf, low)
        high = np.where(some & ((_CONTINUITY - mean_u) / scale[..., 0] > -crit), np.inf, high)
        plain = block_difference(a, b, alpha=alpha)
    n = np.where(both, total, 0).sum(-1)
    return Difference(estimate, low, high, plain.se, plain.df, p, n, both.sum(-1), plain.sd)


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


_CONTINUITY = 0.5  # the continuity correction of the rank test's normal approximation


def _u(d: np.ndarray) -> np.ndarray:
    """Mann-Whitney U of b against a per block (pairs where b is higher; ties half), summed."""
    return np.nansum(np.where(np.isnan(d), 0.0, (d > 0) + 0.5 * (d == 0)), axis=(-1, -2, -3))


def _ss(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.nansum((x - mean[..., None]) ** 2, axis=-1)


def frame_difference(
    df, value: str, *, group: str, a: str, b: str, block: str = "prompt_index", alpha: float = ALPHA, method: str = "t"
):
    """:func:`block_difference` of one DataFrame column between two groups (``b − a``).

    Args:
        df: one row per observation (a take), with columns ``block``, ``group`` and ``value``;
            rows whose value is NaN are left out.
        value: the measure's column. group: the column naming the model. a, b: the two models.
        block: the blocking column (the prompt).
        method: ``"t"`` (:func:`block_difference`) or ``"rank"`` (:func:`block_rank_difference`).
    Returns:
        a :class:`Difference` of floats.
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
    out = (block_rank_difference if method == "rank" else block_difference)(arr[0], arr[1], alpha=alpha)
    return Difference(*(float(x) for x in (getattr(out, f) for f in Difference.__dataclass_fields__)))


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
    """How often model b was preferred over model a in ``n`` blind choices.

    For two models the Bradley-Terry model reduces to this binomial: b's strength relative to
    a's is ``share / (1 - share)``. Vectorised over arrays of experiments.
    """
    k, n = np.asarray(wins_b, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = k / n
        low = np.where(k > 0, _st.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, _st.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
        # exact two-sided: sum the probabilities no larger than the observed one's
        p = _binomial_two_sided(k, n)
    return Preference(share, low, high, p, n)


def _binomial_two_sided(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    k, n = np.broadcast_arrays(k, n)
    out = np.empty(k.shape, dtype=float)
    for size in np.unique(n):  # one pmf per number of choices
        sel = n == size
        if size <= 0 or np.isnan(size):
            out[sel] = np.nan
            continue
        pmf = _st.binom.pmf(np.arange(int(size) + 1), int(size), 0.5)
        observed = pmf[k[sel].astype(int)]
        out[sel] = np.minimum(1.0, (pmf[None, :] <= observed[:, None] * (1 + 1e-7)).astype(float) @ pmf)
    return out


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


def verdict(
    estimate: float,
    ci_low: float,
    ci_high: float,
    p_adjusted: float,
    *,
    a: str,
    b: str,
    measure: str,
    unit: str = "",
    higher: str = "higher",
    alpha: float = ALPHA,
    questions: int = 1,
) -> str:
    """The plain sentence for one question, e.g. ``"flash higher pitch: +2.8 st [1.9, 3.7]"``.

    ``estimate`` is ``b − a``. The model that comes out higher is named, with the difference
    turned its way, only when ``p_adjusted < alpha``; otherwise ``"no evidence either way"``
    followed by the estimate and its interval. ``higher`` is the word for "more of the measure"
    (``"slower"`` for latency). ``questions``: how many were adjusted together; named when
    the interval alone excludes 0 but the adjusted p does not reach ``alpha``.
    """
    if any(np.isnan(x) for x in (estimate, ci_low, ci_high)):
        return "not enough data"
    if np.isnan(p_adjusted) or p_adjusted >= alpha:
        hint = f" once {questions} questions are counted" if questions > 1 and (ci_low > 0 or ci_high < 0) else ""
        return f"{NO_EVIDENCE}{hint}: {_numbers(estimate, ci_low, ci_high, unit)}"
    if estimate < 0:
        return f"{a} {higher} {measure}: {_numbers(-estimate, -ci_high, -ci_low, unit)}"
    return f"{b} {higher} {measure}: {_numbers(estimate, ci_low, ci_high, unit)}"


def _numbers(estimate: float, low: float, high: float, unit: str) -> str:
    n = _digits(high - low)
    return f"{estimate:+.{n}f}{' ' + unit if unit else ''} [{low:.{n}f}, {high:.{n}f}]"


def _digits(width: float) -> int:
    """Decimals that show an interval of this width sensibly (2 significant figures)."""
    if not np.isfinite(width) or width <= 1e-9:
        return 2
    return int(min(4, max(0, 1 - np.floor(np.log10(width)))))


def power(effect: float, sd: float, blocks: int, repeats: int, *, alpha: float = ALPHA, method: str = "rank") -> float:
    """Chance that a test finds a true difference ``effect`` (two-sided, normal noise).

    Args:
        effect: the true difference between the models. sd: the within-cell standard deviation.
        blocks: prompts. repeats: repeats per prompt and model.
        method: ``"rank"`` for :func:`block_rank_difference` (Noether's approximation, a little
            conservative at small sizes), ``"t"`` for :func:`block_difference` (non-central t,
            exact for normal data).
    """
    if repeats < 2 or blocks < 1 or sd <= 0:
        return float("nan")
    if method == "rank":
        superiority = _st.norm.cdf(abs(effect) / (sd * np.sqrt(2)))  # P(b > a) for one pair
        pairs = blocks * repeats * repeats
        sd_u = np.sqrt(blocks * repeats * repeats * (2 * repeats + 1) / 12)
        shift = pairs * (superiority - 0.5) - _CONTINUITY
        return float(_st.norm.cdf(shift / sd_u - _st.norm.ppf(1 - alpha / 2)))
    df = 2 * blocks * (repeats - 1)
    se = sd * np.sqrt(2 / (repeats * blocks))
    crit = _st.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    return float(_st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc))


def repeats_needed(
    effect: float, sd: float, blocks: int, *, target: float = POWER, alpha: float = ALPHA, method: str = "rank"
) -> int | None:
    """Repeats per prompt and model that find a difference of size ``effect`` with chance
    ``target`` (80 %), or None when even :data:`MAX_REPEATS` would not (or ``effect`` is 0)."""
    if not effect or not np.isfinite(effect) or not np.isfinite(sd) or blocks < 1:
        return None
    if sd <= 0:
        return 2
    for r in range(2, MAX_REPEATS + 1):
        if power(effect, sd, blocks, r, alpha=alpha, method=method) >= target:
            return r
    return None
