"""Prompt autotune and reverse design: ``lab.tune(start, target=...)`` searches for the description
whose designs measure as asked. ``Lab.tune`` delegates here.

The search (why this one): the space is discrete and structured (PromptSpec dimensions and
lexicon words), every design costs money, a voice slot and rate-limited time, and one design is a
noisy draw (the service gives different voices for one prompt). So it is a **best-first local
search with successive halving of repeats**:

1. the start is designed ``repeats`` times: the baseline for relative targets and for the noise;
2. each round proposes the untried one-move neighbours (``moves.py``) of the best candidates whose
   *predicted* measures come closer to the target, ranked by that prediction (the words' prior
   meaning at first, then the effect each move had when measured: a learnt additive model), and
   designs each **once**;
3. repeats go only to candidates whose interval still overlaps the target band: a one-design
   candidate is filled up to ``repeats`` (rung 2), a candidate with ``repeats`` that is close but
   not yet proven gets ``repeats`` more, up to three times ``repeats`` (rung 3);
4. it stops when a candidate's 90 % interval of every target measure lies inside its tolerance
   (two one-sided tests at 5 %: equivalence, the usual reading of "within tolerance with
   evidence"), when the budget is spent, or when no untried move is expected to come closer:
   then it names the measures out of reach and how far.

Bayesian optimisation was not chosen: with a few dozen noisy evaluations over a space of
categorical words, a surrogate over ~10^7 combinations learns little that the words' meaning does
not already say, and it does not give the per-candidate evidence the stop rule needs. A bandit over
a fixed candidate list cannot move toward targets outside it; successive halving inside a local
search keeps both: it moves, and it spends repeats only where they can settle a question.

Every design goes through the runner (``runner.run_tasks``: the lab's concurrency controller and
rate limit, a progress bar), is claimed as a cell of the tuning's experiment before it is sent,
and measured on the lab's measuring stage. The search is a function of the measures in the log,
so running the same ``tune`` again replays it from the log and sends only what is missing (nothing
once it has finished; a larger budget continues it). A candidate's first design records its
parent candidate's first design as ``parent_take_id`` and its repeats record its own first design,
so ``lab.history(tuning.best_take)`` shows the path from the start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import Problem, ValidationError
from cosyvoice_lab.lab.moves import Effects, Move, from_model, neighbours, spec_from_text, to_model
from cosyvoice_lab.lab.planning import DONE_STATUSES, cell_key
from cosyvoice_lab.lab.runner import run_tasks
from cosyvoice_lab.lab.stage import feeding
from cosyvoice_lab.lab.targets import Target, read_targets
from cosyvoice_lab.prompts.spec import PromptSpec
from cosyvoice_lab.take import Take
from cosyvoice_lab.views.tuning import Tuning

LEVEL = 0.05  # each one-sided test of the equivalence (a 90 % interval inside the band)
MAX_REPEATS_FACTOR = 3  # a candidate gets at most 3 x repeats designs
WIDTH = 4  # new candidates per round (each designed once)
SIMILARITY_SCALE = 0.1  # reverse design: 0.1 of speaker similarity weighs as much as one tolerance
REVERSE_MEASURES = {"median_f0_hz": (1.0, "abs"), "speaking_rate": (0.10, "rel"), "hnr_db": (3.0, "abs")}


@dataclass
class Candidate:
    """One description on one model, and its designs (in repeat order)."""

    index: int
    prompt: str | PromptSpec
    spec: PromptSpec
    model: str
    design: VoiceDesign
    spec_json: dict | None
    parent: Candidate | None
    move: Move | None
    takes: dict[int, Take] = field(default_factory=dict)
    tried: int = 0  # repeats attempted (the next repeat's number)
    similarity: list[float] = field(default_factory=list)

    @property
    def root(self) -> str | None:
        """The take id of its first design (the parent of its repeats and of its children)."""
        first = self.takes.get(0)
        return first.take_id if first is not None else None

    def values(self, target: Target) -> np.ndarray:
        """The measured values (compared scale) of its ok takes."""
        got = [t.metrics.get(target.column) for t in self.takes.values() if t.ok and t.metrics]
        out = np.array([target.compared(float(v)) for v in got if isinstance(v, (int, float))], dtype=float)
        return out[np.isfinite(out)]

    def path(self) -> list[str]:
        moves, node = [], self
        while node.parent is not None and node.move is not None:
            moves.append(str(node.move))
            node = node.parent
        return moves[::-1]


@lru_cache(maxsize=256)
def _t(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - LEVEL, df)) if df >= 1 else math.inf


@dataclass(frozen=True)
class Estimate:
    """A candidate's mean of one measure (compared scale) with its 90 % interval."""

    mean: float
    low: float
    high: float
    n: int


def estimate(values: np.ndarray, sd: float | None = None, df: float | None = None) -> Estimate:
    """The mean and its 90 % t-interval, on the values' own spread (or ``sd`` with ``df``)."""
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(values))
    if sd is None:
        if n < 2:
            return Estimate(mean, -math.inf, math.inf, n)
        sd, df = float(np.std(values, ddof=1)), n - 1
    half = _t(df or 0) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


class Search:
    """One tuning: its candidates, goals and budget; :meth:`run` does the rounds."""

    def __init__(self, lab, *, experiment, targets, goals_from, models, budget, repeats, preview_text, reference):
        self.lab, self.experiment, self.targets = lab, experiment, targets
        self.models, self.budget, self.repeats, self.preview_text = models, budget, repeats, preview_text
        self.reference = reference  # (Audio, embedding) or None
        self.goals_from = goals_from  # absolute goals known before the start is measured, else None
        self.candidates: list[Candidate] = []
        self.by_key: dict[tuple[str, str], Candidate] = {}
        self.effects = Effects()
        self.spent = self.sent = 0
        self.spent_out = False  # the budget left cannot pay for a new candidate and its repeats
        self.goals: dict[str, float] = {}
        self.bands: dict[str, float] = {}
        self.incumbents: list[tuple[int, int]] = []  # (designs used, best candidate) after each round
        self.existing: dict[str, list[Take]] = {}
        for take in lab.log.takes(experiment=experiment):
            self.existing.setdefault(take.cell or "", []).append(take)

    # --- candidates -------------------------------------------------------------------------------
    def add(self, prompt, spec: PromptSpec, model: str, parent=None, move=None) -> Candidate | None:
        design, spec_json = self.lab.make_design(prompt, preview_text=self.preview_text, model=model)
        key = (design.voice_prompt, model)
        if key in self.by_key or design.problems():
            return None
        found = Candidate(len(self.candidates), prompt, spec, model, design, spec_json, parent, move)
        self.candidates.append(found)
        self.by_key[key] = found
        return found

    # --- sending ----------------------------------------------------------------------------------
    def send(self, jobs: Sequence[tuple[Candidate, int]], label: str) -> None:
        """Design each (candidate, repeat) through the runner, reusing what the log holds."""
        tasks, waiting, reused = [], [], []
        for candidate, repeat in jobs[: max(0, self.budget - self.spent)]:
            cell = f"{cell_key(candidate.design)}|r{repeat}"
            candidate.tried = max(candidate.tried, repeat + 1)
            earlier = self.existing.get(cell, [])
            self.spent += max(1, len(earlier)) if any(t.status in DONE_STATUSES for t in earlier) else len(earlier) + 1
            done = [t for t in earlier if t.status in DONE_STATUSES]
            if done:
                candidate.takes[repeat] = done[-1]
                reused.append(done[-1])
                continue
            parent = candidate.root if repeat else (candidate.parent.root if candidate.parent else None)
            tasks.append(
                partial(
                    self.lab.designer.run_cell,
                    candidate.design,
                    experiment=self.experiment,
                    cell=cell,
                    prompt_spec=candidate.spec_json,
                    parent_take_id=parent,
                    repeat=repeat,
                )
            )
            waiting.append((candidate, repeat))
        stage = self.lab.measuring
        result = run_tasks(
            tasks,
            concurrency=self.lab.concurrency,
            controller=self.lab.pacer,
            desc=f"tune {label}",
            progress=self.lab.progress,
            reused=len(reused),
            is_failure=lambda t: t is not None and not t.ok,
            on_done=feeding(lambda t: stage.submit(t) if t is not None and t.ok else None, None),
        )
        self.sent += len(tasks)
        if result.interrupted:
            raise KeyboardInterrupt("tuning interrupted: run the same lab.tune(...) again to resume it")
        for (candidate, repeat), take in zip(waiting, result.results, strict=False):
            if take is not None:
                candidate.takes[repeat] = take
        for take in reused:
            if take.ok and not (take.metrics or {}).get("measures_version"):
                stage.submit(take)  # recorded by a run stopped before its measures were written
        ids = [t.take_id for c, _ in jobs for t in c.takes.values()]
        stage.wait(ids, quality=False)
        for candidate, _ in jobs:
            candidate.takes = {r: self.lab.log.get(t.take_id) for r, t in candidate.takes.items()}
            self._similarity(candidate)

    def _similarity(self, candidate: Candidate) -> None:
        if self.reference is None:
            return
        from cosyvoice_lab.lab.measuring import embedding

        scores = []
        for take in candidate.takes.values():
            audio = take.audio if take.ok and take.audio_path else None
            if audio is not None:
                score = float(self.reference[1] @ embedding(audio))
                if math.isfinite(score):
                    scores.append(score)
        candidate.similarity = scores

    # --- judging ----------------------------------------------------------------------------------
    def estimates(self, candidate: Candidate, pooled: dict | None = None) -> dict[str, Estimate]:
        out = {}
        for t in self.targets:
            values = candidate.values(t)
            if pooled is not None and t.column in pooled:
                out[t.column] = estimate(values, *pooled[t.column])
            else:
                out[t.column] = estimate(values)
        return out

    def pooled(self) -> dict[str, tuple[float, float]]:
        """Per measure, the spread within candidates pooled over those with two designs or more
        (sd, degrees of freedom): the noise a single design is judged against."""
        out = {}
        for t in self.targets:
            ss, df = 0.0, 0
            for c in self.candidates:
                v = c.values(t)
                if len(v) >= 2:
                    ss += float(np.sum((v - v.mean()) ** 2))
                    df += len(v) - 1
            if df:
                out[t.column] = (math.sqrt(ss / df), float(df))
        return out

    def score(self, candidate: Candidate, means: dict[str, float] | None = None) -> float:
        """Distance from the target: the root mean square of (mean - goal) / tolerance, plus, in
        reverse design, (1 - speaker similarity) / SIMILARITY_SCALE."""
        if means is None:
            means = {t.column: float(np.mean(v)) if len(v := candidate.values(t)) else math.nan for t in self.targets}
        gaps = [(means[t.column] - self.goals[t.column]) / self.bands[t.column] for t in self.targets]
        if self.reference is not None:
            similarity = means.get("similarity", np.mean(candidate.similarity) if candidate.similarity else math.nan)
            gaps.append((1 - float(similarity)) / SIMILARITY_SCALE)
        value = math.sqrt(sum(g * g for g in gaps) / len(gaps))
        return value if math.isfinite(value) else math.inf

    def inside(self, candidate: Candidate) -> bool:
        """Reached: designed ``repeats`` times or more and every target's 90 % interval inside its band."""
        if len(candidate.takes) < self.repeats:
            return False
        for column, e in self.estimates(candidate).items():
            if not (
                self.goals[column] - self.bands[column] <= e.low and e.high <= self.goals[column] + self.bands[column]
            ):
                return False
        return True

    def could_reach(self, candidate: Candidate, pooled: dict | None) -> bool:
        """Every target's interval overlaps its band (so more designs could settle it)."""
        for column, e in self.estimates(candidate, pooled).items():
            goal, band = self.goals[column], self.bands[column]
            if not (e.low <= goal + band and e.high >= goal - band):
                return False
        return True

    def measured(self) -> list[Candidate]:
        return sorted((c for c in self.candidates if c.takes), key=lambda c: (self.score(c), c.index))

    # --- rounds -----------------------------------------------------------------------------------
    def start(self, prompt) -> None:
        spec = prompt if isinstance(prompt, PromptSpec) else spec_from_text(prompt)
        starts = [c for m in self.models if (c := self.add(prompt, spec, m)) is not None]
        self.send([(c, 0) for c in starts], "start")
        self.send([(c, r) for c in starts for r in range(1, self.repeats)], "start repeats")
        for t in self.targets:
            start_values = np.concatenate([c.values(t) for c in starts]) if starts else np.array([])
            base = float(np.mean(start_values)) if len(start_values) else math.nan
            self.goals[t.column] = t.goal(base)
            self.bands[t.column] = t.band(self.goals[t.column])

    def model_means(self, candidate: Candidate) -> dict[str, float]:
        out = {}
        for t in self.targets:
            v = candidate.values(t)
            if len(v):
                out[t.column] = to_model(t.column, float(np.mean(v)))
        if candidate.similarity:
            out["similarity"] = float(np.mean(candidate.similarity))
        return out

    def learn(self) -> None:
        self.effects = Effects()
        for c in self.candidates:
            if c.parent is not None and c.move is not None and c.takes and c.parent.takes:
                self.effects.learn(c.move, self.model_means(c.parent), self.model_means(c))

    def propose(self, ranked: list[Candidate], width: int) -> list[Candidate]:
        """The untried neighbours of the best candidates expected to come closest, if closer."""
        best = self.score(ranked[0])
        offers: list[tuple[float, int, Candidate, Move, PromptSpec]] = []
        order = 0
        for parent in ranked[:2]:
            base = self.model_means(parent)
            language = parent.design.language or _language(parent.design)
            for move, spec in neighbours(parent.spec, language):
                predicted = {
                    column: from_model(column, value + self.effects.expected(move, column))
                    for column, value in base.items()
                }
                expected = self.score(parent, predicted)
                if expected < best - 0.05:
                    offers.append((expected, order, parent, move, spec))
                    order += 1
        out: list[Candidate] = []
        for _, _, parent, move, spec in sorted(offers, key=lambda o: (o[0], o[1])):
            found = self.add(spec, spec, parent.model, parent, move)
            if found is not None:
                out.append(found)
            if len(out) >= width:
                break
        return out

    def plan(self) -> list[tuple[Candidate, int]]:
        """The next round: repeats for the candidates that could still reach the target (successive
        halving), else new candidates."""
        ranked = self.measured()
        pooled = self.pooled()
        cap = MAX_REPEATS_FACTOR * self.repeats
        jobs: list[tuple[Candidate, int]] = []
        for c in ranked[:3]:
            if c.tried < self.repeats and self.could_reach(c, pooled):
                jobs += [(c, r) for r in range(c.tried, self.repeats)]
            elif self.repeats <= c.tried < cap and self.could_reach(c, None):
                jobs += [(c, r) for r in range(c.tried, min(cap, c.tried + self.repeats))]
            if len(jobs) >= 2 * self.repeats:
                break
        if jobs:
            return jobs
        # keep enough budget to design the best candidate ``repeats`` times: an answer with evidence
        width = min(WIDTH, self.budget - self.spent - (self.repeats - 1))
        proposed = self.propose(ranked, width) if width > 0 else []
        if not proposed and ranked and ranked[0].tried < self.repeats and width <= 0:
            return [(ranked[0], r) for r in range(ranked[0].tried, self.repeats)]
        if not proposed and width <= 0:
            self.spent_out = True
        return [(c, 0) for c in proposed]

    def run(self, prompt) -> str:
        """The whole search; returns why it stopped: "reached", "budget" or "stuck"."""
        self.start(prompt)
        round_ = 0
        while True:
            self.learn()
            ranked = self.measured()
            if ranked:
                self.incumbents.append((self.spent, ranked[0].index))
            if any(self.inside(c) for c in ranked):
                return "reached"
            if self.spent >= self.budget:
                return "budget"
            jobs = self.plan()
            if not jobs:
                return "budget" if self.spent_out else "stuck"
            round_ += 1
            self.send(jobs, f"round {round_}")


def _language(design: VoiceDesign) -> str:
    from cosyvoice_lab.design import detect_language

    return detect_language(design.preview_text) or "en"


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
    models: Iterable[str] | None = None,
    budget: int = 48,
    repeats: int = 3,
    preview_text: str | None = None,
    tolerance: dict | None = None,
    keep: bool = False,
    check_quota: bool = True,
    experiment: str | None = None,
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
        models: the models to design on (default: the lab's model).
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
    Returns:
        a :class:`~cosyvoice_lab.views.tuning.Tuning`.
    Raises:
        ValidationError: every problem with the arguments at once, each naming its field (nothing
            is sent); a budget larger than the free voice slots.
    """
    models = tuple(models) if models is not None else (lab.model,)
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
        goals_from=None,
        models=models,
        budget=budget,
        repeats=repeats,
        preview_text=text,
        reference=(audio, embedding) if audio is not None else None,
    )
    if check_quota:
        _check_slots(lab, budget - sum(len(v) for v in search.existing.values()))
    why = search.run(start)
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
            "change": str(c.move) if c.move else "(start)",
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


tune_method = tune  # Lab.tune
