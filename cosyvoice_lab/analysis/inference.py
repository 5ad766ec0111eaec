"""One procedure per question: the estimate, interval, p-value and verdict of a difference.

Every question an evidence table or a sweep asks is answered by one *test* object here; the
table reads its verdict from the interval at the level the multiplicity rule gives the row
(:func:`holm_levels`), so the interval, the adjusted p and the verdict cannot disagree.

- :class:`Shift` — a difference ``b − a`` within blocks (prompts), by a **stratified permutation
  test**: the model labels are rearranged within each prompt, every arrangement when there are at
  most :data:`EXACT_LIMIT` of them (exact), else :data:`DRAWS` random ones drawn with the fixed
  seed :data:`SEED` (Monte Carlo, the observed arrangement counted in, so the test is exact at its
  level and a table is reproducible). The statistic is the mean over prompts of the difference of
  the two models' means. The interval inverts the same test over shifts: subtracting a shift δ
  from b's values moves the observed statistic by δ and each rearranged one by δ times the share
  of b's values it keeps labelled b, so each arrangement counts against δ from one threshold on;
  the interval's ends are order statistics of those thresholds, exactly (no search). Ties (1-5
  stars, quantised durations) are handled exactly: the interval at a level excludes 0 exactly
  when the test at that level rejects, because both are read from the same thresholds.
- :class:`Welch` — two groups without blocks (a sweep's value against its baseline): Welch's t,
  robust to one value varying more than another; the interval is its inversion.
- :class:`Binomial` — blind choices: the share choosing b, an exact equal-tailed binomial test
  and the Clopper-Pearson interval that inverts it.

Each has ``p_value`` (two-sided, unadjusted) and ``judge(level)`` → :class:`Inference`. Vectorised
over leading axes (independent experiments sharing one design), so the validation can run
thousands of simulated experiments at once (``benchmarks/evidence_validation.py``).
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

EXACT_LIMIT = 20_000  # arrangements enumerated in full up to this many; drawn at random beyond
DRAWS = 9_999  # random arrangements (plus the observed one) when there are more
SEED = 20_211  # the draws' seed: the same data give the same table, every time
_EPS = 1e-9  # relative to the values' size: thresholds this close to 0 are 0 (ties in floating point)


@dataclass(frozen=True)
class Inference:
    """The answer to one question at one level (floats, or arrays for many experiments).

    Attributes:
        estimate: the difference ``b − a`` (a share for :class:`Binomial`).
        ci_low, ci_high: the interval at ``level`` (1 − level coverage): the values the test at
            ``level`` does not reject. NaN when ``reachable`` is False.
        p_value: two-sided, unadjusted. level: the level the interval and the side are read at.
        side: +1 (b higher), −1 (a higher), 0 (no evidence): the interval excludes the null value
            on that side. reachable: whether this design could reject anything at ``level``.
    """

    estimate: Any
    ci_low: Any
    ci_high: Any
    p_value: Any
    level: Any
    side: Any
    reachable: Any


class Test(Protocol):
    """What :func:`holm_levels` and the tables need of a procedure."""

    @property
    def p_value(self) -> Any: ...

    def judge(self, level: Any) -> Inference: ...


# --- the permutation design -----------------------------------------------------------------


@dataclass(frozen=True)
class Arrangements:
    """The labellings a stratified permutation test ranges over, as statistic weights.

    Attributes:
        weights: ``(N, n)``: row i gives the statistic of arrangement i as ``weights[i] @ x``.
        kept: ``(N,)``: the share of b's values arrangement i keeps labelled b (1: the observed).
        total: N, the number of arrangements (the observed one included). exact: all of them.
    """

    weights: np.ndarray
    kept: np.ndarray
    total: int
    exact: bool


def arrangements(block: np.ndarray, is_b: np.ndarray) -> Arrangements:
    """Every (or :data:`DRAWS` seeded random) relabelling of ``is_b`` within each ``block``.

    Args:
        block: ``(n,)`` block index of each value (every block holds both labels).
        is_b: ``(n,)`` True for a value of b.
    Returns:
        the same (cached) object for the same design: a table asks many questions of one design.
    """
    return _arrangements(np.asarray(block, dtype=np.int64).tobytes(), np.asarray(is_b, dtype=bool).tobytes())


@functools.lru_cache(maxsize=32)
def _arrangements(block_bytes: bytes, is_b_bytes: bytes) -> Arrangements:
    block, is_b = np.frombuffer(block_bytes, dtype=np.int64), np.frombuffer(is_b_bytes, dtype=bool)
    limit, draws = EXACT_LIMIT, DRAWS
    blocks = np.unique(block)
    sizes = [(int(np.sum(block == j)), int(np.sum(is_b & (block == j)))) for j in blocks]
    count = math.prod(math.comb(n, k) for n, k in sizes)
    exact = count <= limit
    labels = _all_labels(block, blocks, sizes) if exact else _drawn_labels(block, is_b, blocks, draws)
    n_b = np.array([sizes[int(np.searchsorted(blocks, j))][1] for j in block], dtype=float)
    n_all = np.array([sizes[int(np.searchsorted(blocks, j))][0] for j in block], dtype=float)
    weights = (labels / n_b - (~labels) / (n_all - n_b)) / len(blocks)
    kept = weights @ is_b.astype(float)
    return Arrangements(weights, kept, len(labels), exact)


def _all_labels(block, blocks, sizes) -> np.ndarray:
    per_block = []
    for j, (n, k) in zip(blocks, sizes, strict=True):
        where = np.flatnonzero(block == j)
        rows = np.zeros((math.comb(n, k), len(block)), dtype=bool)
        for i, chosen in enumerate(itertools.combinations(where, k)):
            rows[i, list(chosen)] = True
        per_block.append(rows)
    labels = per_block[0]
    for rows in per_block[1:]:  # every combination of the blocks' labellings
        labels = (labels[:, None, :] | rows[None, :, :]).reshape(-1, len(block))
    return labels


def _drawn_labels(block, is_b, blocks, draws: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    labels = np.empty((draws + 1, len(block)), dtype=bool)
    labels[0] = is_b  # the observed arrangement counts: the Monte-Carlo test is then exact
    for j in blocks:
        where = np.flatnonzero(block == j)
        labels[1:, where] = rng.permuted(np.tile(is_b[where], (draws, 1)), axis=1)
    return labels


# --- the shift test -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """A stratified permutation test of ``b − a`` within blocks, inverted over shifts.

    Build with :func:`shift`. Attributes (arrays over leading axes): ``estimate`` (mean over
    blocks of the difference of means), ``thresholds`` (sorted: the shift from which each
    non-observed arrangement counts against the upper side), ``ahead`` (arrangements counting at
    every shift: the observed one and its equals), ``total``, ``n`` (values used), ``blocks``,
    ``sizes`` (per block: values of a, values of b), ``exact``.
    """

    estimate: Any
    thresholds: np.ndarray
    ahead: int
    total: int
    n: int
    blocks: int
    sizes: tuple[tuple[int, int], ...]
    exact: bool

    @property
    def p_value(self) -> Any:
        """Two-sided: twice the smaller one-sided share of arrangements at least as extreme."""
        up = self.ahead + np.sum(self.thresholds <= 0, axis=-1)
        down = self.ahead + np.sum(self.thresholds >= 0, axis=-1)
        return np.minimum(1.0, 2 * np.minimum(up, down) / self.total)

    def judge(self, level: Any) -> Inference:
        """The interval at ``level`` (the shifts not rejected) and the side it names."""
        level = np.broadcast_to(np.asarray(level, dtype=float), np.shape(self.estimate))
        # a side rejects a shift when at most `allowed` arrangements count against it
        allowed = np.floor(level * self.total / 2 * (1 + 1e-12)).astype(int) - self.ahead
        m = self.thresholds.shape[-1]
        reachable = (allowed >= 0) & (m > 0)
        index = np.clip(allowed, 0, max(m - 1, 0))[..., None]
        if m:
            low = np.take_along_axis(self.thresholds, index, -1)[..., 0]
            high = np.take_along_axis(self.thresholds, m - 1 - index, -1)[..., 0]
        else:
            low = high = np.full(np.shape(self.estimate), np.nan)
        low, high = np.where(reachable, low, np.nan), np.where(reachable, high, np.nan)
        side = np.where(reachable & (low > 0), 1, np.where(reachable & (high < 0), -1, 0))
        return Inference(self.estimate, low, high, self.p_value, level, side, reachable)


def shift(a, b) -> Shift:
    """The permutation test of ``b − a`` within blocks.

    Args:
        a, b: arrays shaped ``(..., blocks, repeats)``; NaN marks a missing value. Leading axes
            are independent experiments and must share one pattern of missing values (one design).
    Raises:
        ValueError: the leading axes do not share a missing pattern.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a, b = np.broadcast_to(a, (*lead, *a.shape[-2:])), np.broadcast_to(b, (*lead, *b.shape[-2:]))
    x = np.concatenate([a, b], axis=-1).reshape(-1, a.shape[-2] * (a.shape[-1] + b.shape[-1]))
    present = ~np.isnan(x)
    if len(x) and not (present == present[:1]).all():
        raise ValueError("the experiments do not share one design (missing values differ)")
    block, is_b, keep, sizes = _design(a.shape[-2], a.shape[-1], b.shape[-1], present[0] if len(x) else None)
    values = x[:, keep]
    if not len(sizes):
        nan = np.full(lead, np.nan)
        return Shift(nan, np.empty((*lead, 0)), 1, 1, 0, 0, (), True)
    arr = arrangements(block, is_b)
    stat = values @ arr.weights.T  # (E, N)
    observed = arr.kept >= 1 - 1e-12
    estimate = stat[:, int(np.flatnonzero(observed)[0])]
    with np.errstate(invalid="ignore", divide="ignore"):
        cut = (estimate[:, None] - stat[:, ~observed]) / (1 - arr.kept[~observed])
    # the rounding of sums of values of this size: a threshold within it is a tie, i.e. 0
    scale = np.nanmax(np.abs(values), axis=-1, initial=0.0)[:, None]
    cut = np.where(np.abs(cut) <= _EPS * np.maximum(scale, 1e-300), 0.0, cut)
    cut = np.sort(cut, axis=-1)
    return Shift(
        estimate.reshape(lead),
        cut.reshape(*lead, -1),
        int(observed.sum()),
        arr.total,
        int(keep.sum()),
        len(sizes),
        sizes,
        arr.exact,
    )


def _design(blocks: int, ra: int, rb: int, present):
    """Block index and label of each present value in blocks holding both models."""
    block = np.repeat(np.arange(blocks), ra + rb)
    is_b = np.tile(np.r_[np.zeros(ra, bool), np.ones(rb, bool)], blocks)
    keep = np.ones(len(block), bool) if present is None else present.copy()
    sizes = []
    for j in range(blocks):
        here = keep & (block == j)
        n_a, n_b = int(np.sum(here & ~is_b)), int(np.sum(here & is_b))
        if n_a and n_b:
            sizes.append((n_a, n_b))
        else:
            keep &= block != j
    return block[keep], is_b[keep], keep, tuple(sizes)


def repeats_reachable(sizes: tuple[tuple[int, int], ...], level: float) -> bool:
    """Whether a design with these (values of a, values of b) per block can reject at ``level``."""
    count = 1
    for na, nb in sizes:
        count *= math.comb(na + nb, nb)
        if count > EXACT_LIMIT:  # drawn at random: the observed one among DRAWS + 1 reaches any usual level
            return math.floor(level * (DRAWS + 1) / 2 * (1 + 1e-12)) >= 1
    return math.floor(level * count / 2 * (1 + 1e-12)) >= 1


def repeats_to_reach(blocks: int, level: float, *, start: int = 1) -> int | None:
    """The fewest repeats per cell (same on both models) at which ``blocks`` prompts can reject at
    ``level``; None above 50."""
    for r in range(max(start, 1), 51):
        if repeats_reachable(((r, r),) * blocks, level):
            return r
    return None


# --- Welch and the binomial -----------------------------------------------------------------


@dataclass(frozen=True)
class Welch:
    """Welch's t for two groups without blocks (``b − a``); see :func:`welch`."""

    estimate: Any
    se: Any
    df: Any
    n: Any

    @property
    def p_value(self) -> Any:
        from cosyvoice_lab.analysis import distributions as dist

        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(self.se > 0, np.abs(self.estimate) / np.where(self.se > 0, self.se, 1), np.inf)
            p = 2 * dist.t_sf(t, self.df)
        return np.where((self.se == 0) & (self.estimate == 0), 1.0, np.where(self.se == 0, 0.0, p))

    def judge(self, level: Any) -> Inference:
        from cosyvoice_lab.analysis import distributions as dist

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            half = np.where(self.se > 0, dist.t_ppf(1 - np.asarray(level) / 2, self.df) * self.se, 0.0)
        low, high = self.estimate - half, self.estimate + half
        side = np.where(low > 0, 1, np.where(high < 0, -1, 0))
        ok = np.isfinite(self.estimate) & np.isfinite(half)
        return Inference(self.estimate, low, high, self.p_value, level, np.where(ok, side, 0), ok)


def welch(a, b) -> Welch:
    """Welch's t of ``b − a`` over the last axis (NaN: missing); NaN with fewer than 2 per side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.sum(~np.isnan(a), axis=-1), np.sum(~np.isnan(b), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ea, eb = np.nanvar(a, axis=-1, ddof=1) / na, np.nanvar(b, axis=-1, ddof=1) / nb
        se = np.sqrt(ea + eb)
        df = np.where(se > 0, (ea + eb) ** 2 / (ea**2 / (na - 1) + eb**2 / (nb - 1)), 1.0)
        estimate = np.nanmean(b, axis=-1) - np.nanmean(a, axis=-1)
    enough = (na >= 2) & (nb >= 2)
    return Welch(np.where(enough, estimate, np.nan), np.where(enough, se, np.nan), df, na + nb)


@dataclass(frozen=True)
class Binomial:
    """``wins`` of ``n`` blind choices for b: exact equal-tailed test of a share of 0.5 and its
    Clopper-Pearson interval (the inversion of that test). ``side`` names b (+1) or a (−1)."""

    wins: Any
    n: Any

    @property
    def p_value(self) -> Any:
        from cosyvoice_lab.analysis import distributions as dist

        k, n = np.asarray(self.wins, dtype=float), np.asarray(self.n, dtype=float)
        tails = np.minimum(dist.binom_cdf(k, n, 0.5), dist.binom_sf(k - 1, n, 0.5))
        return np.where(n > 0, np.minimum(1.0, 2 * tails), np.nan)

    def judge(self, level: Any) -> Inference:
        from cosyvoice_lab.analysis import distributions as dist

        k, n = np.asarray(self.wins, dtype=float), np.asarray(self.n, dtype=float)
        level = np.asarray(level, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low = np.where(k > 0, dist.beta_ppf(level / 2, k, n - k + 1), 0.0)
            high = np.where(k < n, dist.beta_ppf(1 - level / 2, k + 1, n - k), 1.0)
            share = k / n
        reachable = (n > 0) & (2 * 0.5 ** np.maximum(n, 1) <= level)
        side = np.where(reachable & (low > 0.5), 1, np.where(reachable & (high < 0.5), -1, 0))
        return Inference(share, low, high, self.p_value, level, side, reachable)


# --- multiplicity ---------------------------------------------------------------------------


def holm_levels(tests: list[Test], alpha: float) -> list[float]:
    """The level each question's verdict is read at under Holm's step-down rule.

    Questions are taken in order of p; the i-th (0-based) of m is judged at ``alpha / (m − i)``
    while every earlier one was found; at the first that is not, the step-down stops, and it and
    every later question are read at that same level. A question is found exactly when its
    interval at its level excludes no difference. NaN p (nothing to judge) gets NaN.
    """
    p = np.array([float(t.p_value) for t in tests], dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    levels = [math.nan] * len(tests)
    stop: float | None = None
    for rank, i in enumerate(order):
        level = stop if stop is not None else alpha / (len(order) - rank)
        levels[i] = level
        if stop is None and int(tests[i].judge(level).side) == 0:
            stop = level
    return levels


def judge_family(tests: list[Test], alpha: float) -> list[dict[str, Any]]:
    """Every question of one family judged at the level Holm's rule gives it (``alpha`` where
    there is nothing to judge), as the fields a table row carries: ``estimate``, ``ci_low``,
    ``ci_high``, ``level``, ``p_value``, ``p_adjusted`` (Holm's) and ``side`` (-1, 0, +1)."""
    levels = holm_levels(tests, alpha)
    adjusted = holm_adjusted([float(t.p_value) for t in tests])
    out = []
    for test, level, p_adjusted in zip(tests, levels, adjusted, strict=True):
        said = test.judge(alpha if math.isnan(level) else level)
        out.append(
            {
                "estimate": float(said.estimate),
                "ci_low": float(said.ci_low),
                "ci_high": float(said.ci_high),
                "level": float(said.level),
                "p_value": float(said.p_value),
                "p_adjusted": float(p_adjusted),
                "side": int(said.side),
                "said": said,
            }
        )
    return out


def holm_adjusted(p_values) -> np.ndarray:
    """Holm's adjusted p-values (NaN stays NaN and does not count as a question)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out
