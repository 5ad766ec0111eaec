"""The few distribution functions the inference reads (t, normal, binomial, beta, χ², noncentral t),
straight from ``scipy.special``: the same kernels ``scipy.stats`` calls, without loading
``scipy.stats`` itself (0.9 s of CPU against 0.2 s for ``scipy.special``, in every process that
shows evidence: a kernel, a report export). Each takes and returns arrays (NumPy broadcasting) and
matches its ``scipy.stats`` counterpart to rounding (``tests/test_stats.py``), edges included: a
binomial count below 0 or at ``n`` and beyond, infinite degrees of freedom, NaN in, NaN out. The
noncentral t (a design's power) is scipy's ``nctdtr``, which ``scipy.stats.nct.cdf`` is too from
scipy 1.12 on; before, ``scipy.stats`` used another kernel, up to 8e-4 away.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special


def t_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.sf(x, df)``: P(T > x)."""
    return special.stdtr(df, np.negative(x))


def t_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.t.ppf(q, df)``: the q-quantile of Student's t."""
    return special.stdtrit(df, q)


def norm_ppf(q: Any) -> Any:
    """``scipy.stats.norm.ppf(q)``."""
    return special.ndtri(q)


def chi2_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.chi2.ppf(q, df)``."""
    return special.chdtri(df, np.subtract(1.0, q))


def beta_ppf(q: Any, a: Any, b: Any) -> Any:
    """``scipy.stats.beta.ppf(q, a, b)``."""
    return special.betaincinv(a, b, q)


def binom_cdf(k: Any, n: Any, p: Any) -> Any:
    """``scipy.stats.binom.cdf(k, n, p)``: P(K ≤ k); 0 below 0, 1 from ``n`` on."""
    k, n, inside, whole = _counts(k, n)
    return np.where(k < 0, 0.0, np.where(k >= n, 1.0, special.bdtr(inside, whole, p)))


def binom_sf(k: Any, n: Any, p: Any) -> Any:
    """``scipy.stats.binom.sf(k, n, p)``: P(K > k); 1 below 0, 0 from ``n`` on."""
    k, n, inside, whole = _counts(k, n)
    return np.where(k < 0, 1.0, np.where(k >= n, 0.0, special.bdtrc(inside, whole, p)))


def _counts(k: Any, n: Any) -> tuple[np.ndarray, ...]:
    """``k`` rounded down and ``n``; then the two as scipy.special's binomial takes them: ``k`` within
    [0, n - 1] (the edges are answered without it) and ``n`` a whole number."""
    k, n = np.floor(np.asarray(k, dtype=float)), np.asarray(n, dtype=float)
    whole = np.nan_to_num(n).astype(np.int64)
    return k, n, np.clip(k, 0, np.maximum(whole - 1, 0)), whole


def nct_cdf(x: Any, df: Any, nc: Any) -> Any:
    """``scipy.stats.nct.cdf(x, df, nc)``: NaN far in the lower tail, as scipy's own (``planning``
    reads that as the limit)."""
    return special.nctdtr(df, nc, x)


def nct_sf(x: Any, df: Any, nc: Any) -> Any:
    """``scipy.stats.nct.sf(x, df, nc)``: 1 where the cdf is NaN far in the lower tail, as scipy's."""
    cdf = special.nctdtr(df, nc, x)
    return np.where(np.isnan(cdf) & (np.asarray(x) < np.asarray(nc)), 1.0, np.clip(1.0 - cdf, 0.0, 1.0))
