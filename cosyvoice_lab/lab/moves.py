"""Moves: the neighbours of a voice description, and what each is expected to do to the measures.

A move changes one PromptSpec dimension (``pitch: — → low``, ``gender: female → male``) or adds
one more lexicon word for a value the description already names (``word: + "gravelly"`` /
``"浑厚"``, in the prompt's language). What a move does is first a prior read from the words'
meaning (the lexicon's pitch, pace, volume, age and gender words; ``analysis.correlates`` for
voice quality), then what the tuner measured when it made that move before (:class:`Effects`): the
measured effects averaged with the prior, which counts as one measurement.

Effects are additive on a model scale: semitones for pitch, the logarithm for speaking rate and
other ratio measures, the measure itself otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cosyvoice_lab.analysis.correlates import CORRELATES, MARGINS
from cosyvoice_lab.lab.targets import PITCH_COLUMNS
from cosyvoice_lab.prompts.lexicon import LEXICON, read_claims
from cosyvoice_lab.prompts.spec import DIMENSIONS, IMPLIED, PromptSpec, options

RATIO_COLUMNS = ("speaking_rate", "spectral_centroid_hz", "jitter_percent", "shimmer_percent")
WORD_DIMENSIONS = ("pitch", "pace", "volume", "age")  # where one more word may push further
WORD_WEIGHT = 0.5  # a second word for a value is expected to do half what the value did
PRIOR_WEIGHT = 1.0  # the words' prior effect counts as this many measured ones

_PITCH, _RATE, _LOUD = "median_f0_hz", "speaking_rate", "loudness_lufs"
# (dimension, value) -> expected effect against the dimension left out, on the model scale
_STEERING: dict[tuple[str, str], dict[str, float]] = {
    ("pitch", "low"): {_PITCH: -3.0},
    ("pitch", "high"): {_PITCH: 4.0},
    ("gender", "male"): {_PITCH: -5.0},
    ("gender", "female"): {_PITCH: 5.0},
    ("age", "child"): {_PITCH: 3.0, _RATE: math.log(1.08)},
    ("age", "elderly"): {_PITCH: -1.0, _RATE: math.log(0.85)},
    ("pace", "slow"): {_RATE: math.log(0.75)},
    ("pace", "fast"): {_RATE: math.log(1.3)},
    ("volume", "soft"): {_LOUD: -6.0},
    ("volume", "loud"): {_LOUD: 4.0},
}


def _correlate_effects(dimension: str, value: str) -> dict[str, float]:
    found = CORRELATES.get((dimension, value))
    if found is None:
        return {}
    out = {}
    for column, sign in found.measures:
        margin, unit = MARGINS.get(column, (1.0, ""))
        out[column] = sign * (math.log(1 + margin / 100) if unit == "%" else margin)
    return out


def prior(dimension: str, value: str | None) -> dict[str, float]:
    """The expected effect of ``dimension=value`` against the dimension left out (model scale)."""
    if value is None:
        return {}
    effect = {**_correlate_effects(dimension, value), **_STEERING.get((dimension, value), {})}
    implied = IMPLIED.get((dimension, value))
    if implied is not None:  # a bright timbre also reads as high-pitched
        for column, amount in _STEERING.get(implied, {}).items():
            effect[column] = effect.get(column, 0.0) + amount / 2
    for column in PITCH_COLUMNS[1:]:
        if _PITCH in effect:
            effect[column] = effect[_PITCH]
    return effect


@dataclass(frozen=True)
class Move:
    """One change to a description: ``dimension`` from ``before`` to ``after``; for a lexicon word,
    ``dimension`` is "word", ``before`` the dimension and value it strengthens ("pitch=low") and
    ``after`` the word."""

    dimension: str
    before: str | None
    after: str | None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What is learnt about: a word move is learnt per value it strengthens, not per word."""
        return (self.dimension, self.before, None if self.dimension == "word" else self.after)

    def __str__(self) -> str:
        if self.dimension == "word":
            return f"word: + {self.after!r} ({self.before})"
        return f"{self.dimension}: {self.before or '—'} → {self.after or '—'}"

    def prior(self) -> dict[str, float]:
        if self.dimension == "word":
            dimension, _, value = (self.before or "").partition("=")
            return {c: WORD_WEIGHT * v for c, v in prior(dimension, value).items()}
        old, new = prior(self.dimension, self.before), prior(self.dimension, self.after)
        return {c: new.get(c, 0.0) - old.get(c, 0.0) for c in {*old, *new}}


def spec_from_text(text: str) -> PromptSpec:
    """The PromptSpec a free description reads as (its lexicon claims), for moving its dimensions.

    A dimension only implied by another's word ("bright" reads as high-pitched) is left to that word.
    """
    claims = read_claims(text)
    values: dict[str, str] = {}
    for dimension in DIMENSIONS:
        claim = claims.get(dimension)
        if claim is not None and claim.value in {v for _, v in options(dimension)}:
            values[dimension] = claim.value
    for (dimension, value), (implied, implied_value) in IMPLIED.items():
        claim = claims.get(implied)
        own = set(LEXICON[dimension][value][0]) | set(LEXICON[dimension][value][1])
        if values.get(dimension) == value and claim and claim.value == implied_value and set(claim.words) <= own:
            values.pop(implied, None)
    return PromptSpec(**values)


def _word_phrase(word: str, language: str) -> str:
    return f"关键词：{word}。" if language == "zh" else f"Keywords: {word}."


def _word_moves(spec: PromptSpec, language: str) -> Iterator[tuple[Move, PromptSpec]]:
    rendered = spec.render(language)
    for dimension in WORD_DIMENSIONS:
        value = getattr(spec, dimension)
        if value is None:
            continue
        words = LEXICON[dimension][value][1 if language == "zh" else 0]
        fresh = [w for w in words if w not in rendered and " " not in w]
        if not fresh:
            continue
        extra = _word_phrase(fresh[0], language)
        free = f"{spec.free_text} {extra}".strip() if spec.free_text else extra
        try:
            moved = spec.replace(free_text=free)
        except ValueError:  # too long a prompt: not a neighbour
            continue
        yield Move("word", f"{dimension}={value}", fresh[0]), moved


def neighbours(spec: PromptSpec, language: str) -> list[tuple[Move, PromptSpec]]:
    """Every description one move from ``spec``: each dimension set to each other value (or left
    out), then one more lexicon word for each pitch, pace, volume or age value it names."""
    out = []
    for dimension in DIMENSIONS:
        current = getattr(spec, dimension)
        for _, value in [("", None), *options(dimension)]:
            if value != current:
                out.append((Move(dimension, current, value), spec.replace(**{dimension: value})))
    out.extend(_word_moves(spec, language))
    return out


def to_model(column: str, compared: float) -> float:
    """A value on the compared scale to the model scale (the log for ratio measures)."""
    if column in RATIO_COLUMNS:
        return math.log(compared) if compared > 0 else math.nan
    return compared


def from_model(column: str, value: float) -> float:
    return math.exp(value) if column in RATIO_COLUMNS else value


class Effects:
    """What each move did when the tuner made it: measured (child minus parent, model scale),
    averaged over every time it was made; the prior where nothing was measured."""

    def __init__(self) -> None:
        self.seen: dict[tuple, dict[str, list[float]]] = {}

    def learn(self, move: Move, parent: Mapping[str, float], child: Mapping[str, float]) -> None:
        """Record a move's measured effect from the parent's and the child's means (model scale)."""
        learnt = self.seen.setdefault(move.key, {})
        for column in parent.keys() & child.keys():
            difference = child[column] - parent[column]
            if math.isfinite(difference):
                learnt.setdefault(column, []).append(difference)

    def expected(self, move: Move, column: str) -> float:
        """The effect expected of ``move`` on ``column`` (model scale): the measured effects and
        the prior averaged, the prior counting as one measurement (one noisy design neither
        condemns a move the words recommend nor makes a fluke a rule)."""
        measured = self.seen.get(move.key, {}).get(column, [])
        return (move.prior().get(column, 0.0) * PRIOR_WEIGHT + sum(measured)) / (PRIOR_WEIGHT + len(measured))
