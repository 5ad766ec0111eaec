"""Prompt autotune and reverse design: ``lab.tune(start, target=...)`` searches for the description
whose designs measure as asked. ``Lab.tune`` delegates here.

This module checks the arguments (every problem at once, each naming its field: ``targets.py``
reads the targets), reads the reference recording of a reverse design, names the experiment (a
function of the arguments, so the same call resumes), runs the search (``search.py``: the
algorithm and why it was chosen) and builds the :class:`~cosyvoice_lab.views.tuning.Tuning`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.errors import Problem, ValidationError
from cosyvoice_lab.lab.search import Candidate, Search, estimate
from cosyvoice_lab.lab.targets import Target, read_targets
from cosyvoice_lab.prompts.spec import PromptSpec
from cosyvoice_lab.views.tuning import Tuning

# reverse design: what a reference recording is matched on, and how closely (as ``tolerance``)
REVERSE_MEASURES = {"median_f0_hz": (1.0, "abs"), "speaking_rate": (0.10, "rel"), "hnr_db": (3.0, "abs")}


# --- the reference recording (reverse design) ---------------------------------------------------
def read_reference(reference: object) -> tuple[Audio | None, list[Problem]]:
    """The reference as an Audio: an Audio as given, or the one file a path names (an existing
    regular file, read once; nothing else is opened or named from it)."""
    if reference is None:
        return None, []
    if isinstance(reference, Audio):
        return reference, []
    if not isinstance(reference, (str, os.PathLike)):
        return None, [
            Problem("reference", "type", f"expected an Audio or a path to a recording, got {type(reference).__name__}")
        ]
    path = Path(reference)
    if not path.is_file():
        return None, [Problem("reference", "missing", f"{str(path)!r} is not a file")]
    try:
        return Audio.load(path), []
    except (OSError, ValueError, RuntimeError) as exc:
        return None, [Problem("reference", "format", f"{path.name!r} cannot be read as audio: {exc}")]


def _reference_targets(audio: Audio, text: str, tolerance) -> tuple[dict[str, float], dict, list[Problem]]:
    from cosyvoice_lab.analysis.measures import measure

    found = measure(audio, text, predicted_quality=False).to_dict()
    target, problems = {}, []
    for column in REVERSE_MEASURES:
        value = found.get(column)
        if isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or column == "hnr_db"):
            target[column] = round(float(value), 2)
    if "median_f0_hz" not in target:
        problems.append(Problem("reference", "speech", "the recording holds no voiced speech to measure"))
    tolerances = {
        c: (f"{a * 100:g} %" if how == "rel" else a) for c, (a, how) in REVERSE_MEASURES.items() if c in target
    }
    return target, {**tolerances, **(tolerance or {})}, problems


def _check_numbers(budget, repeats, models) -> list[Problem]:
    problems = []
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        problems.append(
            Problem("budget", "range", f"the number of designs to spend must be an integer >= 1, got {budget!r}")
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        problems.append(
            Problem(
                "repeats",
                "range",
                f"designs per candidate must be an integer >= 2 (an interval needs two), got {repeats!r}",
            )
        )
    if not problems and budget < repeats * len(models):
        problems.append(
            Problem(
                "budget",
                "range",
                f"{budget} designs cannot even design the start {repeats} times on {len(models)} model(s)",
            )
        )
    unknown = [m for m in models if m not in catalog.MODELS]
    if unknown or not models:
        problems.append(Problem("models", "value", f"unknown model(s) {unknown}; models: {', '.join(catalog.MODELS)}"))
    return problems


def tune(
    lab,
    start,
    target=None,
    *,
    reference=None,
    target_models: Iterable[str] | None = None,
    budget: int = 48,
    repeats: int = 3,
    preview_text: str | None = None,
    tolerance: dict | None = None,
    keep: bool = False,
    check_quota: bool = True,
    experiment: str | None = None,
    on_round: Callable[[Tuning], Any] | None = None,
) -> Tuning:
    """Search for the description whose designs measure as ``target`` asks (see the module doc).

    Args:
        start: a PromptSpec or a description (text) to start from.
        target: measures to reach: ``{"median_f0_hz": 110}`` (absolute), ``{"pitch": "-3 st",
            "speaking_rate": "-15 %"}`` (relative to the start's measured mean), or a profile name
            (``targets.PROFILES``: "deeper", "slower" ...). With ``reference`` it may be left out.
        reference: a recording (an Audio or the path of one audio file): reverse design, toward its
            measured pitch, speaking rate and clearness (HNR) and the highest speaker similarity.
            Its speaking rate is counted on the preview text: record it reading that text.
        target_models: the models to design on (default: the lab's).
        budget: designs to spend at most (all runs of this tuning together).
        repeats: designs per candidate before it can count as reached (at least 2).
        preview_text: what the previews read (default: the lab's).
        tolerance: per measure, the band that counts as reached (``{"pitch": "1 st", "speaking_rate":
            "10 %"}``; defaults ``targets.DEFAULT_TOLERANCES``).
        keep: keep every candidate's voice (default: the unchosen ones are deleted at the end; the
            best candidate's takes are marked chosen and kept).
        check_quota: count the account's free voice slots first (one list request) and refuse to
            start with fewer than the budget.
        experiment: the experiment name (default: derived from the arguments, so that running the
            same call again resumes it).
        on_round: called after each round with the tuning so far (``stopped`` "running"); a true
            return stops the search there (``stopped`` "stopped"): for a live view and a stop button.
    Returns:
        a :class:`~cosyvoice_lab.views.tuning.Tuning`.
    Raises:
        ValidationError: every problem with the arguments at once, each naming its field (nothing
            is sent); a budget larger than the free voice slots.
    """
    models = tuple(target_models) if target_models is not None else (lab.target_model,)
    problems = _check_numbers(budget, repeats, models)
    audio, found = read_reference(reference)
    problems += found
    if not isinstance(start, (str, PromptSpec)) or (isinstance(start, str) and not start.strip()):
        problems.append(Problem("start", "type", f"expected a PromptSpec or a description, got {start!r:.60}"))
    text = preview_text or lab.preview_text
    design_text = lab.make_design("x", preview_text=text)[0].preview_text
    reference_target: dict = {}
    if audio is not None:
        reference_target, tolerance, found = _reference_targets(audio, design_text, tolerance)
        problems += found
    if target is None and reference is None:
        problems.append(
            Problem("target", "missing", "name a target (e.g. {'pitch': '-3 st'}) or a reference recording")
        )
        targets: list[Target] = []
    else:
        wanted = target if target is not None else reference_target
        targets, found = read_targets(wanted, tolerance)
        problems += found
    if problems:
        raise ValidationError(problems, context="tune: nothing was sent")
    embedding = None
    if audio is not None:
        from cosyvoice_lab.lab.measuring import embedding as embed

        embedding = embed(audio)
    key = json.dumps(
        [
            start if isinstance(start, str) else start.to_dict(),
            [[t.column, t.kind, t.amount, list(t.tolerance)] for t in targets],
            audio.sha256 if audio is not None else None,
            list(models),
            design_text,
            repeats,
        ],
        ensure_ascii=False,
    )
    experiment = experiment or f"tune-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    lab.reconcile(experiment)
    search = Search(
        lab,
        experiment=experiment,
        targets=targets,
        models=models,
        budget=budget,
        repeats=repeats,
        preview_text=text,
        reference=(audio, embedding) if audio is not None else None,
    )
    if check_quota:
        _check_slots(lab, budget - sum(len(v) for v in search.existing.values()))
    follow = None if on_round is None else (lambda s: on_round(_result(s, "running", start, audio)))
    why = search.run(start, follow)
    tuning = _result(search, why, start, audio)
    if not keep:
        _clean_up(lab, tuning)
    return tuning


def _check_slots(lab, adding: int) -> None:
    if adding <= 0:
        return
    free = lab.account.quota()["free"]
    if free < adding:
        raise ValidationError(
            [
                Problem(
                    "budget",
                    "quota",
                    f"the account has {free} free voice slots, fewer than the {adding} designs the budget allows; "
                    "run lab.cleanup() or lower the budget",
                )
            ],
            context="tune: nothing was sent",
        )


def _result(search: Search, why: str, start, audio) -> Tuning:
    import pandas as pd

    ranked = search.measured()
    rows = []
    for c in search.candidates:
        row: dict[str, Any] = {
            "candidate": c.index,
            "parent": c.parent.index if c.parent else None,
            "change": "; ".join(map(str, c.moves)) if c.moves else "(start)",
            "voice_prompt": c.design.voice_prompt,
            "target_model": c.model,
            "n": len([t for t in c.takes.values() if t.ok]),
            "score": search.score(c) if c.takes else math.nan,
            "reached": search.inside(c),
        }
        for t in search.targets:
            e = estimate(c.values(t))
            row[f"{t.column}"] = t.raw(e.mean) if e.n else math.nan
            row[f"{t.column}_low"] = t.raw(e.low) if math.isfinite(e.low) else math.nan
            row[f"{t.column}_high"] = t.raw(e.high) if math.isfinite(e.high) else math.nan
        if search.reference is not None:
            row["similarity"] = float(np.mean(c.similarity)) if c.similarity else math.nan
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["reached", "score"], ascending=[False, True], kind="stable")
    best = next((c for c in ranked if search.inside(c)), ranked[0] if ranked else None)
    goals = [
        {
            "column": t.column,
            "name": t.name,
            "unit": t.unit,
            "text": t.text,
            "goal": t.raw(search.goals[t.column]),
            "low": t.raw(search.goals[t.column] - search.bands[t.column]),
            "high": t.raw(search.goals[t.column] + search.bands[t.column]),
            "goal_compared": search.goals[t.column],
            "band": search.bands[t.column],
        }
        for t in search.targets
    ]
    out_of_reach = _out_of_reach(search, best) if why != "reached" else []
    starts = [c for c in search.candidates if c.parent is None]
    return Tuning(
        experiment=search.experiment,
        start=start,
        best=(best.prompt if best is not None else start),
        best_model=best.model if best is not None else search.models[0],
        reached=why == "reached",
        stopped=why,
        designs_used=search.spent,
        new_designs=search.sent,
        budget=search.budget,
        table=table.reset_index(drop=True),
        goals=goals,
        out_of_reach=out_of_reach,
        best_takes=[t for t in best.takes.values() if t.ok] if best is not None else [],
        start_takes=[t for c in starts for t in c.takes.values() if t.ok],
        path=_path(search),
        similarity=_similarity_gain(starts, best) if search.reference is not None else None,
        reference=audio,
        best_path=best.path() if best is not None else [],
    )


def _path(search: Search) -> list[dict]:
    """The best candidate after each round: designs used, candidate, its means."""
    out = []
    for spent, index in search.incumbents:
        c = search.candidates[index]
        row: dict[str, float] = {"designs_used": spent, "candidate": index}
        for t in search.targets:
            v = c.values(t)
            row[t.column] = t.raw(float(np.mean(v))) if len(v) else math.nan
        out.append(row)
    return out


def _out_of_reach(search: Search, best: Candidate | None) -> list[dict]:
    """The measures the closest candidate misses, and by how much beyond the tolerance."""
    if best is None:
        return []
    out = []
    for t in search.targets:
        e = estimate(best.values(t))
        goal, band = search.goals[t.column], search.bands[t.column]
        if not e.n or abs(e.mean - goal) <= band:
            continue
        short = abs(e.mean - goal) - band
        out.append(
            {
                "measure": t.name,
                "column": t.column,
                "closest": t.raw(e.mean),
                "goal": t.raw(goal),
                "beyond_tolerance": short,
                "unit": t.unit,
                "direction": "above" if e.mean > goal else "below",
            }
        )
    return out


def _similarity_gain(starts: list[Candidate], best: Candidate | None) -> dict | None:
    """Speaker similarity to the reference: best minus start, Welch's 95 % interval."""
    from cosyvoice_lab.analysis import inference

    a = [s for c in starts for s in c.similarity]
    b = best.similarity if best is not None else []
    if len(a) < 2 or len(b) < 2:
        return None
    said = inference.welch(np.array(a), np.array(b)).judge(0.05)
    return {
        "start": float(np.mean(a)),
        "best": float(np.mean(b)),
        "difference": float(said.estimate),
        "ci_low": float(said.ci_low),
        "ci_high": float(said.ci_high),
    }


def _clean_up(lab, tuning: Tuning) -> None:
    """Mark the best candidate's takes chosen, delete the experiment's other voices."""
    for take in tuning.best_takes:
        if not take.chosen:
            lab.log.choose(take.take_id)
    lab.account.cleanup(dry_run=False, experiment=tuning.experiment, prefix=lab.prefix)
