"""Tuning: what ``lab.tune`` found — the best description, every candidate against the target,
whether the target was reached with evidence, and the path there.

Pure: built from the search's numbers (``lab/tune.py``); shows itself as HTML in a notebook (a
verdict, the goals against the best candidate's 90 % intervals, players of the reference, the
start and the best candidate, and the candidates, closest first) and plots its path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import html


def _number(value: float, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "—"
    digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def _beyond(value: float, unit: str) -> str:
    """How far outside the band: "just" when it would print as 0.00 (the mean sits on the edge)."""
    shown = _number(value, unit)
    return "just" if value is not None and math.isfinite(value) and float(shown.split()[0]) == 0 else shown


@dataclass
class Tuning:
    """The result of ``lab.tune``.

    Attributes:
        best: the best candidate's description (a PromptSpec, or the start's text if nothing beat
            it): ``lab.design(tuning.best)`` and ``lab.compare([tuning.best, ...])`` take it as it is.
        best_model: the model it was designed on.
        reached: a candidate's 90 % interval of every target measure lies inside its tolerance.
        stopped: "reached", "budget" (spent), "stuck" (no untried move is expected to come closer),
            "stopped" (``on_round`` asked) or "running" (a view of a search under way).
        designs_used: designs this tuning has used, all runs together; ``new_designs``: sent by this run.
        table: one row per candidate: ``candidate``, ``parent``, ``change``, ``voice_prompt``,
            ``target_model``, ``n``, ``score`` (distance from the target in tolerances), ``reached``,
            and per target measure its mean, ``_low`` and ``_high`` (90 % interval; pitch in Hz).
        goals: per target measure: ``name``, ``goal``, ``low``/``high`` (the band), on the raw scale.
        out_of_reach: when not reached, the measures the best candidate misses: ``measure``,
            ``closest``, ``goal``, ``beyond_tolerance`` (in the compared unit), ``direction``.
        similarity: reverse design: speaker similarity to the reference, start vs best, with
            Welch's 95 % interval of the difference (``difference``, ``ci_low``, ``ci_high``).
        best_takes, start_takes: the takes of the best candidate and of the start.
    """

    experiment: str
    start: Any
    best: Any
    best_model: str
    reached: bool
    stopped: str
    designs_used: int
    new_designs: int
    budget: int
    table: Any
    goals: list[dict]
    out_of_reach: list[dict] = field(default_factory=list)
    best_takes: list = field(default_factory=list, repr=False)
    start_takes: list = field(default_factory=list, repr=False)
    path: list[dict] = field(default_factory=list, repr=False)
    similarity: dict | None = None
    reference: Any = field(default=None, repr=False)
    best_path: list[str] = field(default_factory=list)

    @property
    def best_take(self):
        """The best candidate's first take (``lab.history(tuning.best_take)`` shows the path)."""
        return self.best_takes[0] if self.best_takes else None

    @property
    def verdict(self) -> str:
        """One sentence: reached, or which measures are out of reach and how far."""
        used = self.designs_used
        if self.reached:
            return f"target reached with evidence (every 90 % interval inside its tolerance) after {used} designs"
        if not self.out_of_reach:  # close, but not proven: more designs (or a wider tolerance) would settle it
            why = {"stuck": f"not settled after {used} designs"}.get(self.stopped) or self._why()
            return (
                f"{why}; the closest candidate's mean is inside the tolerance, but its 90 % interval is not "
                "(a larger budget, more repeats or a wider tolerance would settle it)"
            )
        label = "out of reach" if self.stopped == "stuck" else "not reached"
        missed = "; ".join(
            f"{m['measure']} {label}: closest {_number(m['closest'], self._raw_unit(m['column']))}, "
            f"goal {_number(m['goal'], self._raw_unit(m['column']))}, "
            f"{_beyond(m['beyond_tolerance'], m['unit'])} {m['direction']} the tolerance band"
            for m in self.out_of_reach
        )
        return f"{self._why()}; {missed}"

    def _why(self) -> str:
        used = self.designs_used
        return {
            "budget": f"budget spent ({used} of {self.budget} designs)",
            "stuck": f"not reachable: no untried move is expected to come closer (after {used} designs)",
            "stopped": f"stopped on request after {used} designs",
            "running": f"running: {used} of {self.budget} designs so far",
        }.get(self.stopped, self.stopped)

    @staticmethod
    def _raw_unit(column: str) -> str:
        """The unit a measure's own values are in (pitch in Hz, though compared in semitones)."""
        from cosyvoice_lab.analysis.names import MEASURES

        if column.endswith(("_hz", "_lufs")):
            return "Hz" if column.endswith("_hz") else "LUFS"
        return MEASURES.get(f"m_{column}", ("", ""))[1]

    def __repr__(self) -> str:
        best = self.best.render() if hasattr(self.best, "render") else self.best
        return f"<Tuning {self.experiment}: {self.verdict}; best: {best!r}>"

    def plot(self):
        """The path toward the target: each candidate's mean and 90 % interval per target measure,
        the best so far after each round, the goal inside its tolerance band. A Figure."""
        from cosyvoice_lab.analysis.plots import plot_tuning

        return plot_tuning(self.table, self.path, self.goals)

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The verdict, goals against the best candidate, players, and the candidates."""
        best_row = self.table[self.table["reached"]].head(1) if self.reached else self.table.head(1)
        best = best_row.iloc[0] if len(best_row) else None
        goals = []
        for g in self.goals:
            unit = self._raw_unit(g["column"])
            c = g["column"]
            goals.append(
                {
                    "name": g["name"],
                    "goal": f"{_number(g['goal'], unit)} ({g['text']})",
                    "band": f"{_number(g['low'], unit)} – {_number(g['high'], unit)}",
                    "best": _number(best[c], unit) if best is not None else "—",
                    "interval": f"{_number(best[c + '_low'])} – {_number(best[c + '_high'])}"
                    if best is not None
                    else "—",
                }
            )
        has_similarity = "similarity" in self.table
        rows = [
            {
                "candidate": r["candidate"],
                "change": r["change"],
                "n": r["n"],
                "cells": [_number(r[g["column"]], self._raw_unit(g["column"])) for g in self.goals],
                "similarity": _number(r["similarity"]) if has_similarity else "",
                "score": _number(r["score"]),
                "reached": bool(r["reached"]),
                "voice_prompt": r["voice_prompt"],
            }
            for r in self.table.to_dict("records")
        ]
        similarity = ""
        if self.similarity:
            s = self.similarity
            similarity = (
                f"speaker similarity to the reference: start {s['start']:.3f}, best {s['best']:.3f}, "
                f"difference {s['difference']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}] (95 %, Welch)"
            )
        players = [(f"best {i + 1}", t) for i, t in enumerate(self.best_takes[:3])]
        players += [("start", t) for t in self.start_takes[:1]]
        best_text = self.best.render() if hasattr(self.best, "render") else str(self.best)
        return html.render(
            "tuning.html.j2",
            experiment=self.experiment,
            verdict=self.verdict,
            designs=(
                f"{self.designs_used} design(s) used of a budget of {self.budget} ({self.new_designs} sent by this run)"
            ),
            best_prompt=best_text,
            best_model=self.best_model,
            best_path="; ".join(self.best_path),
            goals=goals,
            similarity=similarity,
            reference=self.reference,
            players=players,
            rows=rows,
            has_similarity=has_similarity,
        )
