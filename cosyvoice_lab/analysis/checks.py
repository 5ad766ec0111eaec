"""Checks of a recording against the words of its voice prompt.

:func:`adherence` reads each take's prompt (``vocabulary.read_claims``) and judges every
claim against the take's :class:`~cosyvoice_lab.analysis.measures.Measurements`:

* relative claims -- pitch ("deep", "high"), pace ("slow", "fast"), volume ("soft", "loud")
  -- against the other takes of the group, since "deep" means deeper than the rest;
* gender and "child" against absolute F0 ranges, with the bands where voices overlap
  reported as not measurable;
* timbre, energy and emotion words with an established acoustic correlate (breathy, husky,
  bright, warm, lively, calm ...; the table is ``analysis.correlates``) against the voice-quality
  measures of the other takes of the group, the same way as pitch;
* everything else (magnetic, friendly, articulation, accent, use, and adult age) as not
  measurable, with the reason: no offline measure exists, and we do not guess.

Verdicts are "consistent", "inconsistent" or "not measurable", never pass/fail: negation
("not too fast") is not understood, and a claim read from a prompt is only a reading.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from cosyvoice_lab.analysis import correlates
from cosyvoice_lab.analysis.measures import LOUDNESS_BLOCK_S, NAN, take_rows
from cosyvoice_lab.prompts.lexicon import read_claims

CONSISTENT, INCONSISTENT, NOT_MEASURABLE = "consistent", "inconsistent", "not measurable"
MIN_GROUP = 3  # takes with a value needed before a relative claim ("deep") means anything
# Absolute F0 rules (median over voiced frames). Adult male speech mostly lies at 85-155 Hz,
# female at 165-255 Hz; in between either is possible, so it is not measurable.
MALE_MAX_HZ, FEMALE_MIN_HZ = 150.0, 180.0
CHILD_MIN_HZ, ADULT_MAX_HZ = 250.0, 200.0  # children above ~250 Hz; 200-250 overlaps women
# How far a take must sit from the others before a relative claim counts as borne out.
MARGINS = {"pitch": 1.0, "pace": 5.0, "volume": 1.0}  # semitones, percent, LU
# dimension -> (column, label, unit of the difference, why a take may lack the value)
_RELATIVE = {
    "pitch": ("median_f0_hz", "median F0", "semitones", "no voiced speech"),
    "pace": ("speaking_rate", "speaking rate", "%", "no speaking rate (no preview text, or silent)"),
    "volume": ("loudness_lufs", "loudness", "LU", f"no loudness (shorter than {LOUDNESS_BLOCK_S:g} s, or silent)"),
}
_LOWER = ("low", "slow", "soft")


@dataclass(frozen=True)
class Judgement:
    """One claim of one take's prompt, judged against its recording.

    ``verdict`` is :data:`CONSISTENT`, :data:`INCONSISTENT` or :data:`NOT_MEASURABLE`;
    ``reason`` says why in words; ``value`` and ``reference`` are the numbers compared.
    """

    take: object
    voice_prompt: str
    dimension: str
    claim: str
    words: tuple[str, ...]
    verdict: str
    reason: str
    measure: str | None = None
    value: float = NAN
    reference: float = NAN

    def to_dict(self) -> dict:
        """Plain dict, one row of :func:`adherence_table`."""
        return asdict(self)


def adherence(group, prompts=None, *, prompt_column: str = "voice_prompt") -> list[Judgement]:
    """Check each take against the claims of its voice prompt.

    Relative claims are judged against the other takes of the group that do not make the
    same claim: pitch ("deep"/"high", median F0, compared only with takes of the same or
    unstated gender), pace ("slow"/"fast", speaking rate in the same unit) and volume
    ("soft"/"loud", LUFS). A take must differ from the others' median by :data:`MARGINS`
    in the claimed direction to be consistent. Timbre, energy and emotion words with an
    acoustic correlate (``analysis.correlates``: breathy -> lower HNR, warm -> steeper
    spectral tilt, lively -> wider F0 variability ...) are judged the same way on their
    measure, against takes of the same language and gender that do not make the claim.
    Gender and "child" are judged on absolute F0 ranges, with ambiguous bands reported as not
    measurable; every other claim is reported as not measurable with the reason. Loudness
    claims are weak evidence when the service normalises preview levels.

    Args:
        group: the takes, in any form :func:`~cosyvoice_lab.analysis.measures.take_rows` accepts: a
            DataFrame with ``prompt_column`` and Measurements columns, a list of
            ``(voice_prompt, Measurements | dict)``, or Measurements with ``prompts``.
        prompts: voice prompts aligned with ``group`` (overrides the column).
        prompt_column: the prompt column of a DataFrame or dicts.

    Returns:
        One :class:`Judgement` per claim per take, in take order.

    Raises:
        ValueError: when a take has no prompt, or ``prompts`` has the wrong length.
    """
    rows = take_rows(group, prompts, prompt_column)
    claims = {id(r): read_claims(r.prompt or "") for r in rows}  # take_rows checked every prompt
    out = []
    for row in rows:
        for claim in claims[id(row)].values():
            out.append(_judge(row, claim, rows, claims))
    return out


def adherence_table(group, prompts=None, *, prompt_column: str = "voice_prompt"):
    """:func:`adherence` as a pandas DataFrame, one row per judged claim."""
    import pandas as pd

    columns = [f.name for f in fields(Judgement)]
    return pd.DataFrame([j.to_dict() for j in adherence(group, prompts, prompt_column=prompt_column)], columns=columns)


def _verdict(row, claim, verdict, reason, measure=None, value=NAN, reference=NAN) -> Judgement:
    return Judgement(
        row.key, row.prompt, claim.dimension, claim.value, claim.words, verdict, reason, measure, value, reference
    )


def _judge(row, claim, rows, claims) -> Judgement:
    if claim.dimension in _RELATIVE:
        return _judge_relative(row, claim, rows, claims)
    if claim.dimension == "gender":
        return _judge_gender(row, claim, claims[id(row)])
    if claim.dimension == "age":
        return _judge_age(row, claim)
    found = correlates.correlate(claim.dimension, claim.value)
    if found is not None:
        return _judge_voice(row, claim, rows, claims, found)
    reason = correlates.NO_CORRELATE.get(claim.dimension, "no offline measure for this dimension")
    return _verdict(row, claim, NOT_MEASURABLE, f"not measurable offline: {reason}")


def _value_of(claims: dict, dimension: str):
    claim = claims.get(dimension)
    return claim.value if claim else None


def _comparable(dimension, row, other, claims) -> bool:
    if other is row or _value_of(claims[id(other)], dimension) == _value_of(claims[id(row)], dimension):
        return False
    if dimension == "pace":  # chars/s and letters/s are different scales
        return other.values.get("rate_unit") == row.values.get("rate_unit")
    if dimension == "pitch":  # a "deep" woman is still higher than a neutral man
        mine, theirs = _value_of(claims[id(row)], "gender"), _value_of(claims[id(other)], "gender")
        return mine is None or theirs is None or mine == theirs
    return True


def _difference(dimension: str, value: float, reference: float) -> float:
    if dimension == "pitch":
        return 12 * math.log2(value / reference)
    if dimension == "pace":
        return 100 * (value / reference - 1)
    return value - reference


def _judge_relative(row, claim, rows, claims) -> Judgement:
    column, label, diff_unit, missing = _RELATIVE[claim.dimension]
    value = row.get(column)
    if not math.isfinite(value):
        return _verdict(row, claim, NOT_MEASURABLE, f"{missing} in this take", column)
    peers = [r for r in rows if math.isfinite(r.get(column))]
    if len(peers) < MIN_GROUP:
        return _verdict(
            row,
            claim,
            NOT_MEASURABLE,
            f"a relative claim needs at least {MIN_GROUP} takes with a {label} in the group; there are {len(peers)}",
            column,
            value,
        )
    others = [r.get(column) for r in peers if _comparable(claim.dimension, row, r, claims)]
    if not others:
        return _verdict(
            row,
            claim,
            NOT_MEASURABLE,
            f"no take in the group to compare with (the others "
            f"also claim {claim.value!r}, or differ in gender or language)",
            column,
            value,
        )
    reference = float(np.median(others))
    diff = _difference(claim.dimension, value, reference)
    want = -1 if claim.value in _LOWER else 1
    rank = 1 + sum(r.get(column) < value for r in peers)
    unit = {"pitch": "Hz", "volume": "LUFS"}.get(claim.dimension) or row.values.get("rate_unit") or ""
    where = (
        f"{label} {value:.1f} {unit} is {abs(diff):.1f} {diff_unit} {'below' if diff < 0 else 'above'} "
        f"the other takes' median {reference:.1f} {unit} (rank {rank} of {len(peers)}, 1 = lowest)"
    )
    margin = MARGINS[claim.dimension]
    if want * diff >= margin:
        return _verdict(row, claim, CONSISTENT, where, column, value, reference)
    need = f"{claim.value!r} needs at least {margin:g} {diff_unit} {'below' if want < 0 else 'above'}"
    return _verdict(row, claim, INCONSISTENT, f"{where}; {need}", column, value, reference)


def _judge_gender(row, claim, claims) -> Judgement:
    f0 = row.get("median_f0_hz")
    if not math.isfinite(f0):
        return _verdict(row, claim, NOT_MEASURABLE, "no voiced speech, so no pitch", "median_f0_hz")
    if _value_of(claims, "age") == "child":
        return _verdict(
            row, claim, NOT_MEASURABLE, "children's pitch does not tell boys from girls", "median_f0_hz", f0
        )
    if MALE_MAX_HZ <= f0 <= FEMALE_MIN_HZ:
        return _verdict(
            row,
            claim,
            NOT_MEASURABLE,
            f"median F0 {f0:.0f} Hz lies in the {MALE_MAX_HZ:.0f}-"
            f"{FEMALE_MIN_HZ:.0f} Hz band that male and female voices share",
            "median_f0_hz",
            f0,
        )
    heard = "male" if f0 < MALE_MAX_HZ else "female"
    bound = f"below {MALE_MAX_HZ:.0f}" if heard == "male" else f"above {FEMALE_MIN_HZ:.0f}"
    ref = MALE_MAX_HZ if claim.value == "male" else FEMALE_MIN_HZ
    verdict = CONSISTENT if heard == claim.value else INCONSISTENT
    return _verdict(
        row,
        claim,
        verdict,
        f"median F0 {f0:.0f} Hz is in the adult {heard} range ({bound} Hz)",
        "median_f0_hz",
        f0,
        ref,
    )


def _judge_age(row, claim) -> Judgement:
    f0 = row.get("median_f0_hz")
    if claim.value != "child":
        return _verdict(
            row, claim, NOT_MEASURABLE, "an adult's age cannot be read reliably from pitch offline", "median_f0_hz", f0
        )
    if not math.isfinite(f0):
        return _verdict(row, claim, NOT_MEASURABLE, "no voiced speech, so no pitch", "median_f0_hz")
    if f0 >= CHILD_MIN_HZ:
        return _verdict(
            row,
            claim,
            CONSISTENT,
            f"median F0 {f0:.0f} Hz is in a child's range (at or above "
            f"{CHILD_MIN_HZ:.0f} Hz; a high adult voice can reach it too)",
            "median_f0_hz",
            f0,
            CHILD_MIN_HZ,
        )
    if f0 < ADULT_MAX_HZ:
        return _verdict(
            row,
            claim,
            INCONSISTENT,
            f"median F0 {f0:.0f} Hz is an adult's; children's voices sit above {CHILD_MIN_HZ:.0f} Hz",
            "median_f0_hz",
            f0,
            CHILD_MIN_HZ,
        )
    return _verdict(
        row,
        claim,
        NOT_MEASURABLE,
        f"median F0 {f0:.0f} Hz lies in the {ADULT_MAX_HZ:.0f}-"
        f"{CHILD_MIN_HZ:.0f} Hz band that children and adult women share",
        "median_f0_hz",
        f0,
    )


def _voice_peers(row, other, dimension, claims) -> bool:
    """Whether ``other`` is a fair comparison for a voice-quality claim of ``row``: it does not
    make the same claim, is not of another stated gender, and says the same language."""
    if other is row or _value_of(claims[id(other)], dimension) == _value_of(claims[id(row)], dimension):
        return False
    mine, theirs = _value_of(claims[id(row)], "gender"), _value_of(claims[id(other)], "gender")
    if mine is not None and theirs is not None and mine != theirs:
        return False
    units = row.values.get("rate_unit"), other.values.get("rate_unit")
    return None in units or units[0] == units[1]


def _one_measure(row, claim, rows, claims, column: str, direction: int):
    """(verdict, text, value, reference) of one measure of a voice-quality claim."""
    label, unit = correlates.LABELS[column]
    margin, diff_unit = correlates.MARGINS[column]
    value = row.get(column)
    if not math.isfinite(value):
        return NOT_MEASURABLE, f"no {label} in this take (too little voiced speech, or not measured)", value, NAN
    peers = [r for r in rows if math.isfinite(r.get(column))]
    others = [r.get(column) for r in peers if _voice_peers(row, r, claim.dimension, claims)]
    if len(peers) < MIN_GROUP or not others:
        why = f"needs at least {MIN_GROUP} takes with a {label}, including one that does not claim {claim.value!r}"
        return NOT_MEASURABLE, f"{label}: {why} (same language and gender)", value, NAN
    reference = float(np.median(others))
    diff = correlates.difference(column, value, reference) if reference or diff_unit != "%" else NAN
    text = (
        f"{label} {value:.2f} {unit} is {abs(diff):.1f} {diff_unit} {'below' if diff < 0 else 'above'} "
        f"the other takes' median {reference:.2f} {unit}"
    )
    if direction * diff >= margin:
        return CONSISTENT, text, value, reference
    return (
        INCONSISTENT,
        f"{text} (needs {margin:g} {diff_unit} {'below' if direction < 0 else 'above'})",
        value,
        reference,
    )


def _judge_voice(row, claim, rows, claims, found) -> Judgement:
    """The first measure of the claim's correlate decides; the others are reported beside it."""
    results = [_one_measure(row, claim, rows, claims, c, d) for c, d in found.measures]
    verdict, _, value, reference = results[0]
    column = found.measures[0][0]
    texts = "; ".join(text for _, text, _, _ in results)
    return _verdict(row, claim, verdict, f"{found.reason}. {texts}", column, value, reference)
