"""Blind preference rounds read as choices: which model did listeners prefer?

Each rater, on each prompt, preferred the model whose takes they scored higher
(``analysis.preferences.choices``; equal scores are no choice). Two models: the share of choices
for the second, with the exact binomial test and its Clopper-Pearson interval (one procedure:
the interval excludes 50 % exactly when the test rejects). More models: Bradley-Terry strengths
(``analysis.preferences.bradley_terry``), each model against the first, with intervals at the
Bonferroni level over the models compared. Shown under the evidence table; not counted in
``Evidence.found`` (the primary rating questions answer for the ratings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cosyvoice_lab import html
from cosyvoice_lab.analysis import inference, stats
from cosyvoice_lab.analysis import preferences as prefs


@dataclass
class Preferences:
    """``table``: one row per model compared with the first: ``a``, ``b``, ``wins`` (choices for
    b), ``n`` (choices made), ``share`` (of b; from the Bradley-Terry fit with more than two
    models), ``ci_low``/``ci_high``, ``p_value`` (exact binomial; NaN for a Bradley-Terry row),
    ``verdict``; ``procedure`` names which."""

    table: Any
    procedure: str

    def rows(self) -> list[dict[str, Any]]:
        """What the HTML shows, one dict per row."""
        return [
            {
                "question": f"{html.short_model(r.b)} vs {html.short_model(r.a)}: blind choices",
                "share": f"{r.share:.0%} of {r.n}",
                "interval": f"[{r.ci_low:.0%}, {r.ci_high:.0%}]",
                "verdict": r.verdict,
                "procedure": self.procedure,
            }
            for r in self.table.itertuples()
        ]


def preferences(ok, ratings, models: list[str], group: str) -> Preferences | None:
    """The preference rounds of ``ratings`` (kind "preference", or no kind) read as choices
    between ``models``; None when there are none or fewer than two models."""
    if ratings is None or not len(ratings) or len(models) < 2:
        return None
    rows = ratings[ratings["kind"] == "preference"] if "kind" in ratings else ratings
    rows = rows[rows["rating"].notna()].merge(ok[["take_id", "prompt_index", group]], on="take_id")
    if rows.empty:
        return None
    return from_wins(prefs.choices(rows, models, group=group), models)


def from_wins(wins, models: list[str], *, unit: str = "") -> Preferences | None:
    """Preferences from a wins matrix (``wins[i, j]``: choices of model i over model j): two
    models by the exact binomial test, more by Bradley-Terry (the rules above); None when no
    choice was made. ``unit`` is added to the procedure's name (what one choice is)."""
    import pandas as pd

    if len(models) < 2:
        return None
    suffix = f"; {unit}" if unit else ""
    if len(models) == 2:
        n = wins[1, 0] + wins[0, 1]
        if not n:
            return None
        said = inference.Binomial(wins[1, 0], n).judge(stats.ALPHA)
        side, p = int(said.side), float(said.p_value)
        table = [_row(models[0], models[1], wins[1, 0], n, float(said.estimate), said.ci_low, said.ci_high, side, p)]
        return Preferences(pd.DataFrame(table), "exact binomial test, Clopper-Pearson 95 % interval" + suffix)
    if not wins.sum():
        return None
    level = stats.ALPHA / (len(models) - 1)
    fit = prefs.bradley_terry(wins, models, level=level)
    table = []
    for j in range(1, len(models)):
        share, low, high = (1 / (1 + math.exp(-x)) for x in (fit.log_odds[j], fit.ci_low[j], fit.ci_high[j]))
        side = 1 if low > 0.5 else (-1 if high < 0.5 else 0)
        n = wins[j, 0] + wins[0, j]
        table.append(_row(models[0], models[j], wins[j, 0], n, share, low, high, side, math.nan))
    return Preferences(pd.DataFrame(table), f"Bradley-Terry, Wald intervals at {100 * (1 - level):.3g} %" + suffix)


def _row(a: str, b: str, wins_b: float, n: float, share: float, low, high, side: int, p: float) -> dict[str, Any]:
    name_a, name_b = html.short_model(a), html.short_model(b)
    words = {1: f"{name_b} preferred", -1: f"{name_a} preferred", 0: stats.NO_EVIDENCE}[side]
    shown = f"{share:.0%} of choices for {name_b} [{float(low):.0%}, {float(high):.0%}]"
    return {
        "a": a,
        "b": b,
        "wins": wins_b,
        "n": int(n),
        "share": share,
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p,
        "verdict": f"{words}: {shown}",
    }
