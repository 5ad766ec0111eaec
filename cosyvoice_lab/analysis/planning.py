"""How many repeats settle a question: planned for a difference that matters to a listener, for
the verdict actually used (the permutation test at the row's Holm level), with the spread taken
from a pilot as uncertain.

:class:`Matters` holds the smallest difference worth finding per measure, with defaults from
perception; :func:`repeats_needed` the repeats per prompt and model that find it with the chance
asked (80 %). Validated by simulating the whole procedure (pilot, advice followed, test at the
adjusted level): ``benchmarks/evidence_validation.py`` and ``tests/test_stats.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from cosyvoice_lab.analysis import inference

POWER = 0.8  # the chance a planned experiment finds the difference
MAX_REPEATS = 200  # repeats per cell above which repeats_needed gives up (None)
_SD_POINTS = 41  # quantiles of the spread's uncertainty averaged over
_CHUNK = 12  # repeats tried at once


@dataclass(frozen=True)
class Matters:
    """The smallest difference worth finding, per measure (override any: ``Matters(pitch=0.5)``).

    Defaults, from perception:
        pitch: 1 semitone. Listeners need pitch differences of about 1.5-3 semitones between
            speech intervals to hear them as different ('t Hart 1981, JASA 69:811); for a voice's
            overall register 1 st is a conservative, clearly audible step.
        speaking_rate: 10 % of the first model's rate. The just-noticeable difference in speech
            tempo is about 5 % (Quené 2007, J. Phonetics 35:353); 10 % is a difference people notice.
        loudness: 1 LU. Level differences of about 1 dB are the just-noticeable difference for
            broadband sound (Jesteadt, Wier & Green 1977, JASA 61:169); EBU R 128 / Tech 3343
            treat ±1 LU as the tolerance of a loudness target.
        predicted_quality: 0.2 MOS. About the prediction error of DNSMOS-type predictors
            (Reddy et al. 2021, ICASSP) and the width of a typical MOS test's 95 % interval
            (ITU-T P.1401): smaller differences are within what the predictor cannot tell.
        rating: 0.5 stars on a 1-5 scale: half a category of the absolute category rating scale
            (ITU-T P.800).
        design_latency: 0.5 s: half of the 1-second limit for keeping the flow of thought
            (Nielsen 1993, Usability Engineering, ch. 5).
    """

    pitch: float = 1.0
    speaking_rate: float = 0.10  # relative to the first model's mean
    loudness: float = 1.0
    predicted_quality: float = 0.2
    rating: float = 0.5
    design_latency: float = 0.5

    def of(self, measure: str, level: float = math.nan) -> float:
        """The smallest difference that matters for a question's ``measure`` (its plain name);
        ``level``: the first model's mean (speaking rate is relative). NaN: none declared."""
        if "rating" in measure:
            return self.rating
        key = measure.replace(" ", "_")
        if key == "speaking_rate":
            return self.speaking_rate * abs(level)
        return getattr(self, key, math.nan)

    def updated(self, effect: dict[str, float]) -> Matters:
        """These defaults with the sizes in ``effect`` (plain names, e.g. ``{"pitch": 0.5}``)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k.replace(" ", "_"): v for k, v in effect.items() if k.replace(" ", "_") in known})


def power(effect: float, sd: float, blocks: int, repeats, *, level: float, sd_df: float = math.inf):
    """Chance that the permutation test at ``level`` finds a true difference ``effect`` with
    ``blocks`` prompts and ``repeats`` per prompt and model (normal noise of spread ``sd``); a float,
    or an array for an array of ``repeats``.

    The test's power is the two-sample t-test's (the permutation test of a difference of means
    has its power asymptotically; a design that cannot reach ``level`` has none). With ``sd_df``
    finite, ``sd`` is a pilot's estimate: the power is averaged over the true spreads it leaves
    plausible (sd² · df / χ²_df), so that a lucky small pilot spread does not over-promise.
    """
    from cosyvoice_lab.analysis import distributions as dist

    r = np.atleast_1d(np.asarray(repeats, dtype=float))
    if blocks < 1 or not sd > 0:
        return np.zeros_like(r) if np.ndim(repeats) else 0.0
    if math.isfinite(sd_df) and sd_df >= 1:
        q = (np.arange(_SD_POINTS) + 0.5) / _SD_POINTS
        sds = sd * np.sqrt(sd_df / dist.chi2_ppf(q, sd_df))
    else:
        sds = np.array([sd])
    df = np.maximum(2 * blocks * (r - 1), 1)[:, None]
    se = sds[None, :] * np.sqrt(2 / (np.maximum(r, 1) * blocks))[:, None]
    crit = dist.t_ppf(1 - level / 2, df)
    nc = abs(effect) / se
    with np.errstate(invalid="ignore", over="ignore"):  # scipy < 1.12 warns far in the tail, then NaN
        found = dist.nct_sf(crit, df, nc) + dist.nct_cdf(-crit, df, nc)
    found = np.where(np.isnan(found), (nc > crit).astype(float), found)  # scipy gives NaN far in the tail
    reach = np.array([k >= 1 and inference.repeats_reachable(((int(k), int(k)),) * blocks, level) for k in r])
    out = np.where(reach, found.mean(axis=1), 0.0)
    return out if np.ndim(repeats) else float(out[0])


def repeats_needed(
    effect: float, sd: float, blocks: int, *, level: float, sd_df: float = math.inf, target: float = POWER
) -> int | None:
    """Repeats per prompt and model that find ``effect`` with chance ``target`` at ``level``
    (:func:`power`), or None when even :data:`MAX_REPEATS` would not (or nothing to find)."""
    if not effect or not all(math.isfinite(x) for x in (effect, sd, level)) or blocks < 1:
        return None
    if sd <= 0:
        return inference.repeats_to_reach(blocks, level, start=2)
    for start in range(2, MAX_REPEATS + 1, _CHUNK):  # power grows with repeats: the first chunk that reaches it
        tried = np.arange(start, min(start + _CHUNK, MAX_REPEATS + 1))
        enough = np.flatnonzero(power(effect, sd, blocks, tried, level=level, sd_df=sd_df) >= target)
        if len(enough):
            return int(tried[enough[0]])
    return None
