"""Designs used to reach a target: ``lab.tune`` against a random search run by the same loop.

For each of N targets (fixed seeds) a hidden PromptSpec is drawn at random over the steering words
(gender male or female, age, pitch, pace; each value or left out), designed 3 times on the offline
simulator, and its mean median pitch and speaking rate become the target (tolerance 10 % of each).
Both searches start from the same description and run the tuner's own loop (``lab.search.Search``:
the same stop rule, a candidate designed at least 3 times whose 90 % intervals lie inside both
tolerances; the same successive halving of repeats, up to 12 designs for a close candidate; the
same rounds of 4 new candidates) with the same cap on designs; only the proposer differs:

- tuner: ``lab.tune(START, target=..., budget=CAP)``: neighbours of the closest candidates ranked
  by their predicted measures, and a jump of several moves at once;
- random: :class:`RandomSearch`, whose ``propose`` draws untried descriptions uniformly, blind to
  every measurement, over the four steering dimensions (the rest as in the start: 3 x 5 x 3 x 3 =
  135 descriptions). That is the corner of the tuner's space (every dimension, lexicon words) that
  holds every hidden description: it favours random search.

A search that ends without reaching is censored. Censored random runs are counted at the designs
they spent (the cap, less the few it keeps for a last candidate's repeats: a lower bound on what
they need), censored tuner runs as unbounded, so that the ratios printed (tuner / random, of the
medians and of the totals) are upper bounds: the tuner needs at most that fraction of random
search's designs. It prints per target both numbers and the wall time; ``--figure`` saves a
scatter of the two.

    nice -n 19 .venv/bin/python benchmarks/tune_bench.py [--targets 20] [--cap 192] [--figure docs/tune_bench.png]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time

import numpy as np

from cosyvoice_lab import Lab, PromptSpec
from cosyvoice_lab.lab.search import Candidate, Search
from cosyvoice_lab.lab.stage import MeasuringOptions
from cosyvoice_lab.lab.targets import read_targets
from cosyvoice_lab.offline import serve

PREVIEW = "Hello, how are you today?"
START = PromptSpec(gender="female", age="young")
SPACE = {
    "gender": [None, "male", "female"],
    "age": [None, "child", "young", "middle-aged", "elderly"],
    "pitch": [None, "low", "high"],
    "pace": [None, "slow", "fast"],
}
REPEATS = 3
TOLERANCE = {"pitch": "10 %", "speaking_rate": "10 %"}


def draw(rng: random.Random) -> PromptSpec:
    return START.replace(**{d: rng.choice(values) for d, values in SPACE.items()})


class RandomSearch(Search):
    """The tuner's loop with a blind proposer: each round's new candidates are untried descriptions
    drawn uniformly from :data:`SPACE` (children of the start, for the lineage)."""

    def __init__(self, lab, *, rng: random.Random, **kwargs) -> None:
        super().__init__(lab, **kwargs)
        self.rng = rng

    def propose(self, ranked: list[Candidate], width: int) -> list[Candidate]:
        root, out = self.candidates[0], []
        for _ in range(100 * width):  # draws already tried are skipped; 135 descriptions outlast any cap
            spec = draw(self.rng)
            found = self.add(spec, spec, root.model, root)
            if found is not None:
                out.append(found)
                if len(out) >= width:
                    break
        return out


def means(takes) -> tuple[float, float]:
    f0 = [t.metrics["median_f0_hz"] for t in takes if t.ok]
    rate = [t.metrics["speaking_rate"] for t in takes if t.ok]
    return float(np.mean(f0)), float(np.mean(rate))


def random_search(lab, rng: random.Random, target: dict, cap: int, name: str) -> tuple[int, bool]:
    targets, problems = read_targets(target, TOLERANCE)
    assert not problems, problems
    search = RandomSearch(
        lab,
        rng=rng,
        experiment=name,
        targets=targets,
        models=(lab.target_model,),
        budget=cap,
        repeats=REPEATS,
        preview_text=PREVIEW,
        reference=None,
    )
    why = search.run(START)
    lab.cleanup(dry_run=False, experiment=name)
    return search.spent, why == "reached"


def bounded_median(used: list[int], reached: list[bool]) -> float:
    """The median with the unreached counted as unbounded."""
    return statistics.median([u if r else math.inf for u, r in zip(used, reached, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--cap", type=int, default=192, help="designs per search at most (4 x lab.tune's 48)")
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    rows = []
    began = time.monotonic()
    with serve(model_profiles={"*": {"design_latency": 0}}, enrollment_rps=None, seed=1) as sim:
        lab = Lab(
            tempfile.mkdtemp() + "/lab",
            backend="offline",
            base_url=sim.base_url,
            progress=False,
            measuring=MeasuringOptions(predicted_quality=False),
        )
        start_f0, start_rate = means(lab.design(START, n=REPEATS, preview_text=PREVIEW, experiment="start"))
        seed = 0
        while len(rows) < args.targets:
            seed += 1
            rng = random.Random(seed)
            hidden = draw(rng)
            if hidden.gender is None:  # a voice of either sex at random: no description reaches the mean of both
                hidden = hidden.replace(gender=rng.choice(["male", "female"]))
            f0, rate = means(lab.design(hidden, n=REPEATS, preview_text=PREVIEW, experiment=f"hidden-{seed}"))
            lab.cleanup(dry_run=False, experiment=f"hidden-{seed}")
            if abs(f0 / start_f0 - 1) <= 0.1 and abs(rate / start_rate - 1) <= 0.1:
                continue  # the start is already there: nothing to search for
            target = {"median_f0_hz": round(f0, 2), "speaking_rate": round(rate, 3)}
            t0 = time.monotonic()
            tuned = lab.tune(START, target=target, tolerance=TOLERANCE, budget=args.cap, preview_text=PREVIEW)
            tuner_s = time.monotonic() - t0
            t0 = time.monotonic()
            searched, found = random_search(lab, random.Random(1000 + seed), target, args.cap, f"random-{seed}")
            random_s = time.monotonic() - t0
            rows.append((seed, tuned.designs_used, tuned.reached, searched, found))
            print(
                f"target {len(rows):2d} (seed {seed:2d}): {f0:6.1f} Hz {rate:5.2f}/s  "
                f"tuner {tuned.designs_used:3d} designs {'reached' if tuned.reached else tuned.stopped:8s} "
                f"({tuner_s:5.1f} s); random {searched:3d} {'reached' if found else 'censored':8s} "
                f"({random_s:5.1f} s)  [{hidden.render()}]",
                flush=True,
            )
    tuner_used, tuner_reached = [r[1] for r in rows], [r[2] for r in rows]
    random_used, random_reached = [r[3] for r in rows], [r[4] for r in rows]
    tuner_median, random_median = bounded_median(tuner_used, tuner_reached), statistics.median(random_used)
    tuner_total = sum(tuner_used) if all(tuner_reached) else math.inf
    print(
        f"\n{len(rows)} targets, cap {args.cap} designs each, wall time {(time.monotonic() - began) / 60:.1f} min\n"
        f"tuner:  reached {sum(tuner_reached)}/{len(rows)}, median {tuner_median} designs, total {tuner_total}\n"
        f"random: reached {sum(random_reached)}/{len(rows)} ({len(rows) - sum(random_reached)} censored, "
        f"counted at the designs spent), median {random_median} designs, total {sum(random_used)}\n"
        f"tuner / random (upper bounds): medians {tuner_median / random_median:.2f}, "
        f"totals {tuner_total / sum(random_used):.2f}"
    )
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.8, 4.4), constrained_layout=True)
        for reached, marker, label in ((True, "o", "random reached"), (False, "x", "random censored (designs spent)")):
            xs = [r[3] for r in rows if r[4] == reached]
            ys = [r[1] for r in rows if r[4] == reached]
            if xs:
                ax.scatter(xs, ys, marker=marker, label=label)
        ax.plot([0, args.cap], [0, args.cap], "--", color="0.6")
        ax.plot([0, args.cap], [0, args.cap / 2], ":", color="C2", label="half")
        ax.set_xlim(0, args.cap * 1.05)
        ax.set_ylim(0, args.cap * 1.05)
        ax.set_xlabel("random search (same loop): designs to reach")
        ax.set_ylabel("lab.tune: designs to reach")
        ax.set_title(
            f"{len(rows)} targets on the simulator: median {tuner_median:g} vs {random_median:g}", fontsize="medium"
        )
        ax.legend(fontsize="small")
        fig.savefig(args.figure, dpi=110)


if __name__ == "__main__":
    main()
