"""The tuner's search: candidates, their estimates against the target, and the rounds that
propose, design and judge them (``tune.py`` checks the arguments and builds the result).

The search (why this one): the space is discrete and structured (PromptSpec dimensions and
lexicon words), every design costs money, a voice slot and rate-limited time, and one design is a
noisy draw (the service gives different voices for one prompt). So it is a **best-first local
search with successive halving of repeats**:

1. the start is designed ``repeats`` times, in one round: the baseline for relative targets and for
   the noise;
2. each round proposes the untried one-move neighbours (``moves.py``; two moves at once when no
   single one is expected to help) of the closest few candidates whose
   *predicted* measures come closer to the target, ranked by that prediction (the words' prior
   meaning at first, then the effect each move had when measured: a learnt additive model), and
   designs each **once**; beside them, one jump from the closest candidate: the single moves on
   different dimensions that the model, added up, expects to come closest (a target two or three
   dimensions away is one round away, not two or three);
3. repeats go only to candidates whose interval still overlaps the target band: a one-design
   candidate is filled up to ``repeats`` (rung 2), a candidate with ``repeats`` that is close but
   not yet proven gets ``repeats`` more, up to four times ``repeats`` (rung 3), when it is
   *promising*: projected to that cap at its own mean and spread (as if the designs to come
   measured like those so far), every target's interval would fit inside its band, i.e. it is
   more likely than not to be proven. One whose mean lies outside the band (close from one side:
   it comes near but, as measured, does not reach), or whose designs scatter too widely for any
   interval at the cap to fit (a description that leaves the sex to chance), is a poor bet for
   ``repeats`` more designs: its rung 3 is deferred behind exploring new candidates (each a
   single design) and given only when no new candidate is expected to come closer, so the
   search never stops with a question more designs could have settled;
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
so ``lab.history(tuning.best_take)`` shows the path from the start. A first design sent in the same
round as its repeats (the start's) is claimed before the round is sent, so that its take id exists
for them to name; one the round did not send (stopped first) is recorded as failed, "NotSent".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import numpy as np

from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.lab.designer import NOT_SENT
from cosyvoice_lab.lab.moves import Effects, Move, from_model, neighbours, spec_from_text, to_model
from cosyvoice_lab.lab.planning import DONE_STATUSES, cell_key
from cosyvoice_lab.lab.runner import run_tasks
from cosyvoice_lab.lab.stage import feeding, has_measures
from cosyvoice_lab.lab.targets import Target
from cosyvoice_lab.prompts.spec import PromptSpec
from cosyvoice_lab.take import Take

LEVEL = 0.05  # each one-sided test of the equivalence (a 90 % interval inside the band)
MAX_REPEATS_FACTOR = 4  # a candidate gets at most 4 x repeats designs
WIDTH = 4  # new candidates per round (each designed once)
PARENTS = 6  # moves are proposed from the closest candidates this far down (a runner-up may lead on)
SIMILARITY_SCALE = 0.1  # reverse design: 0.1 of speaker similarity weighs as much as one tolerance


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
    moves: tuple[Move, ...]  # what changed from the parent (one move; two when no single one helps)
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
        while node.parent is not None and node.moves:
            moves.append("; ".join(map(str, node.moves)))
            node = node.parent
        return moves[::-1]


@lru_cache(maxsize=256)
def _t(df: float) -> float:
    from cosyvoice_lab.analysis.distributions import t_ppf

    return float(t_ppf(1 - LEVEL, df)) if df >= 1 else math.inf


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

    def __init__(self, lab, *, experiment, targets, models, budget, repeats, preview_text, reference):
        self.lab, self.experiment, self.targets = lab, experiment, targets
        self.models, self.budget, self.repeats, self.preview_text = models, budget, repeats, preview_text
        self.reference = reference  # (Audio, embedding) or None
        self.candidates: list[Candidate] = []
        self.by_key: dict[tuple[str, str], Candidate] = {}
        self.effects = Effects()
        self.spent = self.sent = 0
        self.spent_out = False  # the budget left cannot pay for a new candidate and its repeats
        self.goals: dict[str, float] = {}
        self.bands: dict[str, float] = {}
        self.incumbents: list[tuple[int, int]] = []  # (designs used, best candidate) after each round
        self.existing: dict[str, list[Take]] = {}
        self.ahead: Any = None  # EmbeddingsAhead while a reference search runs
        for take in lab.log.takes(experiment=experiment):
            if take.error_code != NOT_SENT:  # claimed by a round stopped before it went: cost nothing
                self.existing.setdefault(take.cell or "", []).append(take)

    # --- candidates -------------------------------------------------------------------------------
    def add(self, prompt, spec: PromptSpec, model: str, parent=None, moves=()) -> Candidate | None:
        design, spec_json = self.lab.make_design(prompt, preview_text=self.preview_text, target_model=model)
        key = (design.voice_prompt, model)
        if key in self.by_key or design.problems():
            return None
        found = Candidate(len(self.candidates), prompt, spec, model, design, spec_json, parent, tuple(moves))
        self.candidates.append(found)
        self.by_key[key] = found
        return found

    # --- sending ----------------------------------------------------------------------------------
    def send(self, jobs: Sequence[tuple[Candidate, int]], label: str) -> None:
        """Design each (candidate, repeat) through the runner, reusing what the log holds."""
        jobs = jobs[: max(0, self.budget - self.spent)]
        stage = self.lab.measuring
        claimed: list[tuple[Candidate, Take, list[bool]]] = []  # (candidate, its claimed first take, [sent])
        arrived: dict[int, Take | None] = {}  # by task: a task that raised or never ran has none
        try:
            tasks, waiting, reused = self._tasks(jobs, claimed)
            result = run_tasks(
                tasks,
                concurrency=self.lab.concurrency,
                controller=self.lab.pacer,
                desc=f"tune {label}",
                progress=self.lab.progress,
                reused=len(reused),
                is_failure=lambda t: t is not None and not t.ok,
                # the search reads pitch, pace and clearness (HNR), never predicted quality: left to a remeasure
                on_done=feeding(partial(self._arrived, stage), lambda i, take, _: arrived.__setitem__(i, take)),
            )
        finally:
            for candidate, first, sent in claimed:
                if not sent[0]:  # stopped before it went: settled as not sent, its cell free for a resume
                    self.lab.designer.unsent(first)
                    candidate.takes.pop(0, None)
        self.sent += len(tasks)
        if result.interrupted:
            raise KeyboardInterrupt("tuning interrupted: run the same lab.tune(...) again to resume it")
        for index, (candidate, repeat) in enumerate(waiting):
            take = arrived.get(index)
            if take is not None:
                candidate.takes[repeat] = take
            elif repeat in candidate.takes and candidate.takes[repeat].status == "pending":
                del candidate.takes[repeat]  # a claimed first design whose sending raised: no outcome here
        for take in reused:
            if take.ok and not has_measures(take.metrics):
                stage.submit(take, quality=False)  # recorded by a run stopped before its measures were written
        ids = [t.take_id for c, _ in jobs for t in c.takes.values()]
        stage.wait(ids, quality=False)
        candidates = list({id(candidate): candidate for candidate, _ in jobs}.values())  # each once
        for candidate in candidates:
            candidate.takes = {r: self.lab.log.get(t.take_id) for r, t in candidate.takes.items()}
        self._similarity(candidates)

    def _tasks(self, jobs: Sequence[tuple[Candidate, int]], claimed: list) -> tuple[list, list, list[Take]]:
        """The runner's tasks for ``jobs``, the (candidate, repeat) each designs, and the takes
        reused from the log instead. A first design sent beside its repeats is claimed here (added
        to ``claimed``): its take id is their parent's, so they go in one round."""
        designer = self.lab.designer
        tasks: list[Callable[[], Take | None]] = []
        waiting: list[tuple[Candidate, int]] = []
        reused: list[Take] = []
        with_repeats = {id(c) for c, r in jobs if r > 0 and c.root is None}
        for candidate, repeat in jobs:
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
            where = {
                "experiment": self.experiment,
                "cell": cell,
                "prompt_spec": candidate.spec_json,
                "parent_take_id": parent,
                "repeat": repeat,
            }
            first = None
            if not repeat and id(candidate) in with_repeats:
                first = designer.claim_cell(candidate.design, **where)
            if first is not None:
                candidate.takes[0] = first  # pending: the parent its repeats name
                sent = [False]
                claimed.append((candidate, first, sent))
                tasks.append(partial(_send_claimed, designer, first, candidate.design, sent))
            else:
                tasks.append(partial(designer.run_cell, candidate.design, **where))
            waiting.append((candidate, repeat))
        return tasks, waiting, reused

    def _arrived(self, stage, take) -> None:
        """A design is in: its measures queued, its embedding started (a reference search)."""
        if take is not None and take.ok:
            stage.submit(take, quality=False)
            if self.ahead is not None:
                self.ahead.add(take)

    def _similarity(self, candidates: list[Candidate]) -> None:
        """Each candidate's similarities to the reference (its designs' embeddings, the round's
        computed together on every core)."""
        if self.reference is None:
            return
        from cosyvoice_lab.lab.measuring import embeddings

        takes = [(c, t) for c in candidates for t in c.takes.values() if t.ok and t.audio_path]
        if self.ahead is not None:
            self.ahead.settle()  # what arrived is embedded (or failing): nothing computed twice
        vectors = embeddings(take.audio for _, take in takes)
        for candidate in candidates:
            candidate.similarity = []
        for (candidate, _), vector in zip(takes, vectors, strict=True):
            score = float(self.reference[1] @ vector) if vector is not None else math.nan
            if math.isfinite(score):
                candidate.similarity.append(score)

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
        """Distance from the target, in tolerances: the root mean square over target measures of
        each design's (value - goal) / tolerance, so that a candidate whose designs scatter around
        the goal (a description that leaves the sex to chance) is far, as each of its voices is;
        plus, in reverse design, (1 - speaker similarity) / SIMILARITY_SCALE. With ``means`` (a
        prediction), the distance of those means."""
        squares = []
        for t in self.targets:
            goal, band = self.goals[t.column], self.bands[t.column]
            if means is not None:
                squares.append(((means[t.column] - goal) / band) ** 2)
            else:
                v = candidate.values(t)
                squares.append(float(np.mean(((v - goal) / band) ** 2)) if len(v) else math.nan)
        if self.reference is not None:
            fallback = np.mean(candidate.similarity) if candidate.similarity else math.nan
            similarity = (means or {}).get("similarity", fallback)
            squares.append(((1 - float(similarity)) / SIMILARITY_SCALE) ** 2)
        value = math.sqrt(sum(squares) / len(squares))
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

    def promising(self, candidate: Candidate, designs: int) -> bool:
        """More likely than not to be proven with ``designs`` designs if the ones to come measure
        like those so far: for every target, the distance of its mean from the goal plus the
        half-width its interval would have at ``designs`` designs (its own spread) is within the
        band. False for a mean outside the band, and for a spread no interval at ``designs`` fits."""
        for t in self.targets:
            values = candidate.values(t)
            if len(values) < 2:
                continue
            half = _t(designs - 1) * float(np.std(values, ddof=1)) / math.sqrt(designs)
            if abs(float(np.mean(values)) - self.goals[t.column]) + half > self.bands[t.column]:
                return False
        return True

    def measured(self) -> list[Candidate]:
        return sorted((c for c in self.candidates if c.takes), key=lambda c: (self.score(c), c.index))

    # --- rounds -----------------------------------------------------------------------------------
    def start(self, prompt) -> None:
        spec = prompt if isinstance(prompt, PromptSpec) else spec_from_text(prompt)
        starts = [c for m in self.models if (c := self.add(prompt, spec, m)) is not None]
        self.send([(c, r) for c in starts for r in range(self.repeats)], "start")
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
            if c.parent is not None and len(c.moves) == 1 and c.takes and c.parent.takes:
                self.effects.learn(c.moves[0], self.model_means(c.parent), self.model_means(c))

    def propose(self, ranked: list[Candidate], width: int) -> list[Candidate]:
        """The untried neighbours of the closest candidates expected to come closer than the best; when
        no single move is, pairs of moves from the best one (a valley one word cannot cross: from
        a man's voice to an older woman's, "female" alone overshoots the pitch)."""
        best = self.score(ranked[0])
        offers = [o for parent in ranked[:PARENTS] for o in self._offers(parent, best, pairs=False)]
        jump = self._jump(ranked[0], best)
        if jump is not None:
            offers.append(jump)
        if not offers:
            offers = self._offers(ranked[0], best, pairs=True)
        out: list[Candidate] = []
        for _, _, parent, moves, spec in sorted(offers, key=lambda o: (o[0], o[1])):
            found = self.add(spec, spec, parent.model, parent, moves)
            if found is not None:
                out.append(found)
            if len(out) >= width:
                break
        return out

    def _offers(self, parent: Candidate, best: float, *, pairs: bool) -> list:
        """(expected score, order, parent, moves, spec) of the untried moves expected to beat ``best``."""
        base = self.model_means(parent)
        language = parent.design.language or _language(parent.design)
        singles = neighbours(parent.spec, language)
        steps: list[tuple[tuple[Move, ...], PromptSpec]]
        if pairs:
            steps = [
                ((a, b), spec.replace(**{b.dimension: b.after}))
                for i, (a, spec) in enumerate(singles)
                for b, _ in singles[i + 1 :]
                if "word" not in (a.dimension, b.dimension) and a.dimension != b.dimension
            ]
        else:
            steps = [((move,), spec) for move, spec in singles]
        offers: list[tuple[float, int, Candidate, tuple[Move, ...], PromptSpec]] = []
        for moves, spec in steps:
            expected = self.score(parent, self._predict(base, moves))
            if expected < best - 0.05 and not self.known(spec, parent.model):
                offers.append((expected, len(offers), parent, moves, spec))
        return offers

    def _predict(self, base: dict[str, float], moves: Sequence[Move]) -> dict[str, float]:
        """The measures expected after ``moves`` from means ``base`` (model scale), effects added up."""
        return {
            column: from_model(column, value + sum(self.effects.expected(m, column) for m in moves))
            for column, value in base.items()
        }

    def _jump(self, parent: Candidate, best: float):
        """The offer (as :meth:`_offers`) of the greedy combination of single moves on different
        dimensions expected to come closest, each naming a value (no words; no dimension left out,
        which leaves e.g. the sex to chance), when it takes two moves or more and is
        expected to beat ``best``; else None."""
        base = self.model_means(parent)
        language = parent.design.language or _language(parent.design)
        moves: tuple[Move, ...] = ()
        spec, current = parent.spec, self.score(parent, self._predict(base, ()))
        while True:
            used = {m.dimension for m in moves}
            choices = [
                (self.score(parent, self._predict(base, (*moves, move))), i, move, moved)
                for i, (move, moved) in enumerate(neighbours(spec, language))
                if move.dimension != "word" and move.after is not None and move.dimension not in used
            ]
            if not choices:
                break
            expected, _, move, moved = min(choices, key=lambda c: (c[0], c[1]))
            if not expected < current - 0.05:
                break
            current, spec, moves = expected, moved, (*moves, move)
        if len(moves) < 2 or not current < best - 0.05 or self.known(spec, parent.model):
            return None
        return (current, -1, parent, moves, spec)

    def known(self, spec: PromptSpec, model: str) -> bool:
        design, _ = self.lab.make_design(spec, preview_text=self.preview_text, target_model=model)
        return (design.voice_prompt, model) in self.by_key

    def plan(self) -> list[tuple[Candidate, int]]:
        """The next round: repeats for the candidates that could still reach the target (successive
        halving; rung 3 only for the promising), else new candidates, else the deferred rung 3."""
        ranked = self.measured()
        pooled = self.pooled()
        cap = MAX_REPEATS_FACTOR * self.repeats
        jobs: list[tuple[Candidate, int]] = []
        deferred: list[tuple[Candidate, int]] = []  # rung 3 of candidates unlikely to be proven
        for c in ranked[:3]:
            if c.tried < self.repeats and self.could_reach(c, pooled):
                jobs += [(c, r) for r in range(c.tried, self.repeats)]
            elif self.repeats <= c.tried < cap and self.could_reach(c, None):
                more = [(c, r) for r in range(c.tried, min(cap, c.tried + self.repeats))]
                if self.promising(c, cap):
                    jobs += more
                else:
                    deferred += more
            if len(jobs) >= 2 * self.repeats:
                break
        if jobs:
            return jobs
        # keep enough budget to design the best candidate ``repeats`` times: an answer with evidence
        width = min(WIDTH, self.budget - self.spent - (self.repeats - 1))
        proposed = self.propose(ranked, width) if width > 0 else []
        if proposed:
            return [(c, 0) for c in proposed]
        if deferred:  # nothing new is expected to come closer: settle the close ones after all
            return deferred[: 2 * self.repeats]
        if ranked and ranked[0].tried < self.repeats:  # the answer, closest or not, gets its interval
            return [(ranked[0], r) for r in range(ranked[0].tried, self.repeats)]
        self.spent_out = width <= 0
        return []

    def run(self, prompt, on_round: Callable[[Search], Any] | None = None) -> str:
        """The whole search; returns why it stopped: "reached", "budget", "stuck", or "stopped"
        (``on_round(search)``, called after each round, returned True)."""
        if self.reference is None:
            return self._rounds(prompt, on_round)
        from cosyvoice_lab.analysis.embedding import one_blas_thread
        from cosyvoice_lab.lab.measuring import EmbeddingsAhead

        self.ahead = EmbeddingsAhead()  # each design embedded as it arrives, beside the round's others
        try:
            with one_blas_thread():
                return self._rounds(prompt, on_round)
        finally:
            self.ahead.close()
            self.ahead = None

    def _rounds(self, prompt, on_round: Callable[[Search], Any] | None) -> str:
        self.start(prompt)
        round_ = 0
        while True:
            self.learn()
            ranked = self.measured()
            if ranked:
                self.incumbents.append((self.spent, ranked[0].index))
            if on_round is not None and on_round(self):
                return "stopped"
            if any(self.inside(c) for c in ranked):
                return "reached"
            if self.spent >= self.budget:
                return "budget"
            jobs = self.plan()
            if not jobs:
                return "budget" if self.spent_out else "stuck"
            round_ += 1
            self.send(jobs, f"round {round_}")


def _send_claimed(designer, take: Take, design: VoiceDesign, sent: list[bool]) -> Take:
    sent[0] = True
    return designer.send_claimed(take, design)


def _language(design: VoiceDesign) -> str:
    from cosyvoice_lab.design import detect_language

    return detect_language(design.preview_text) or "en"
