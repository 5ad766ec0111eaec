"""Blind listening rounds read as preferences: which model's voice did listeners prefer?

A round gives each take 1-5 stars from each rater. Read as preferences, every rater, on every
prompt, chose between two models: the one whose takes that rater scored higher on that prompt
(equal scores: no choice). :func:`choices` counts those choices per pair of models; for two models
the share is judged by the exact binomial test (``inference.Binomial``, Clopper-Pearson
interval); for more, :func:`bradley_terry` fits each model's strength (log-odds of being
preferred, the first model at 0) by maximum likelihood with Wald intervals.

The unit is one rater's choice on one prompt. Different raters of one prompt heard the same
takes, so the answer is about these takes as listeners hear them; the take-level rating question
of the evidence table (permutation test over takes) is the one that generalises over takes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def choices(ratings, models: list[str], *, group: str = "target_model") -> np.ndarray:
    """``wins[i, j]``: how many (rater, prompt) units preferred model i over model j.

    Args:
        ratings: one row per rating with ``rating``, ``rater`` (optional), ``prompt_index`` and
            the ``group`` column (the model of the rated take).
        models: the models, in the order of the matrix.
    """
    rater = ratings["rater"].fillna("") if "rater" in ratings else ""
    rows = ratings.assign(_rater=rater, rating=ratings["rating"].astype(float))
    means = rows.groupby(["_rater", "prompt_index", group], observed=True)["rating"].mean().unstack(group)
    wins = np.zeros((len(models), len(models)))
    for (i, a), (j, b) in itertools.permutations(enumerate(models), 2):
        if a in means and b in means:
            wins[i, j] = float(np.sum(means[a] > means[b]))
    return wins


@dataclass(frozen=True)
class Strengths:
    """Bradley-Terry strengths: ``log_odds[i]`` of model i against the first (0 for it), with
    ``ci_low``/``ci_high`` (Wald, at the level asked) and ``se``; ``prob(i, j)`` the modelled
    chance that i is preferred to j."""

    models: list[str]
    log_odds: Any
    se: Any
    ci_low: Any
    ci_high: Any

    def prob(self, i: int, j: int) -> float:
        return float(1 / (1 + math.exp(self.log_odds[j] - self.log_odds[i])))


def bradley_terry(wins: np.ndarray, models: list[str], *, level: float = 0.05, ridge: float = 1e-3) -> Strengths:
    """Maximum-likelihood Bradley-Terry fit of a wins matrix (``wins[i, j]``: i preferred to j).

    A tiny ridge (``ridge``, on the log-odds) keeps a model that won or lost every choice finite;
    the intervals come from the inverse Hessian of the penalised likelihood (Wald, normal), the
    first model fixed at 0.
    """
    from scipy import optimize as _opt

    from cosyvoice_lab.analysis import distributions as dist

    k = len(models)
    n = wins + wins.T

    def loss(theta_rest):
        theta = np.r_[0.0, theta_rest]
        diff = theta[:, None] - theta[None, :]
        return float(np.sum(wins * np.logaddexp(0, -diff)) + ridge * np.sum(theta_rest**2))

    fit = _opt.minimize(loss, np.zeros(k - 1), method="BFGS")
    theta = np.r_[0.0, fit.x]
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    info = n * p * (1 - p)  # Fisher information of each pair
    hessian = np.diag(info.sum(1)) - info
    hessian = hessian[1:, 1:] + 2 * ridge * np.eye(k - 1)
    cov = np.linalg.pinv(hessian)
    se = np.r_[0.0, np.sqrt(np.maximum(np.diag(cov), 0))]
    z = dist.norm_ppf(1 - level / 2)
    return Strengths(list(models), theta, se, theta - z * se, theta + z * se)
