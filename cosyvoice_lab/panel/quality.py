"""What a round's answers say of its raters and, for a pair round, of the models.

Consistency (per rater, from the hidden repeats: the same item shown twice, a pair in the other
order the second time):

- star rounds: **Krippendorff's alpha (interval metric)** between the first and the repeated
  rating of each repeated item (two "coders": the rater then, the rater later); 1 is perfect,
  0 is no better than chance, NaN with fewer than two repeats or no spread;
- pair rounds: **repeat agreement**, the share of repeated pairs answered alike (the same take
  chosen, or "no preference" both times); 0.5 is what a coin gives without "no preference".

A rater below ``min_consistency`` is left out of the evidence and listed as left out (never
silently); a rater whose consistency could not be measured is kept and says so.

A pair round's choices are read as preferences between the models: one choice per rater and pair
(its first showing), "no preference" counted as no choice; two models by the exact binomial test,
more by Bradley-Terry (``views.evidence.preferences.from_wins``: the evidence engine's rules).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

STAR_METHOD = "Krippendorff's alpha (interval), first vs hidden repeat"
PAIR_METHOD = "repeat agreement: share of hidden repeats (other order) answered alike"


def krippendorff_interval(first: list[float], second: list[float]) -> float:
    """Krippendorff's alpha, interval metric, for two complete codings of the same units."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2:
        return math.nan
    pooled = np.concatenate([a, b])
    n = len(pooled)
    observed = np.mean((a - b) ** 2)  # D_o: each unit's two ordered pairs over N = 2n values
    expected = np.sum((pooled[:, None] - pooled[None, :]) ** 2) / (n * (n - 1))
    return math.nan if expected == 0 else float(1 - observed / expected)


def _repeats(round_: Any, session: Any, answers: dict[int, dict]) -> list[tuple[Any, Any]]:
    """(first answer, repeated answer) of each item this rater answered at both showings."""
    first: dict[int, Any] = {}
    pairs = []
    for item in session.items:
        value = answers.get(item.position)
        if value is None:
            continue
        value = _value(round_, value)
        if item.repeat and item.index in first:
            pairs.append((first[item.index], value))
        elif not item.repeat:
            first[item.index] = value
    return pairs


def _value(round_: Any, answer: dict) -> Any:
    return answer["preferred"] if round_.kind == "pair" else answer["rating"]


def consistency(round_: Any, pairs: list[tuple[Any, Any]]) -> float:
    """The rater's consistency over their repeated items (see the module docstring)."""
    if round_.kind == "pair":
        return float(np.mean([a == b for a, b in pairs])) if pairs else math.nan
    return krippendorff_interval([a for a, _ in pairs], [b for _, b in pairs])


def progress(round_: Any, answers: dict[str, dict[int, dict]], *, min_consistency: float | None = None):
    """One row per rater: ``rater``, ``invited``, ``rated``, ``total``, ``repeats``,
    ``consistency``, ``method``, ``included`` (False: below ``min_consistency``), ``session_id``."""
    import pandas as pd

    method = PAIR_METHOD if round_.kind == "pair" else STAR_METHOD
    rows = []
    for s in round_.sessions():
        mine = answers.get(s.session_id, {})
        pairs = _repeats(round_, s, mine)
        score = consistency(round_, pairs)
        below = min_consistency is not None and not math.isnan(score) and score < min_consistency
        rows.append((s.rater, s.invited, len(mine), len(s.items), len(pairs), score, method, not below, s.session_id))
    columns = ["rater", "invited", "rated", "total", "repeats", "consistency", "method", "included", "session_id"]
    return pd.DataFrame(rows, columns=columns)


def choices(round_: Any, answers: dict[str, dict[int, dict]]):
    """A pair round's choices: one row per rater and pair at its first showing."""
    import pandas as pd

    rows = []
    for s in round_.sessions():
        mine = answers.get(s.session_id, {})
        for item in s.items:
            if item.repeat or item.position not in mine:
                continue
            take_a, take_b = round_.record.items[item.index]
            rows.append((s.rater, s.session_id, take_a, take_b, mine[item.position]["preferred"]))
    frame = pd.DataFrame(rows, columns=["rater", "session_id", "take_a", "take_b", "preferred"])
    frame["preferred"] = pd.Series([r[4] for r in rows], dtype=object, index=frame.index)  # None: no preference
    return frame


def pair_preferences(choices_frame, model_of: dict[str, str], models: list[str]):
    """The choices read as preferences between ``models`` (None: no choice was made)."""
    from cosyvoice_lab.views.evidence.preferences import from_wins

    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for row in choices_frame.itertuples():
        if row.preferred is None or (isinstance(row.preferred, float) and math.isnan(row.preferred)):
            continue  # no preference: no choice
        other = row.take_b if row.preferred == row.take_a else row.take_a
        winner, loser = model_of.get(row.preferred), model_of.get(other)
        if winner in index and loser in index and winner != loser:
            wins[index[winner], index[loser]] += 1
    return from_wins(wins, models, unit="one choice per rater and pair, 'no preference' not counted")
