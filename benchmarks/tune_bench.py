"""Designs used to reach a target: ``lab.tune`` against a random search over the same words.

For each of N targets (fixed seeds) a hidden PromptSpec is drawn at random over the steering words
(gender male or female, age, pitch, pace; each value or left out), designed 3 times on the offline simulator, and
its mean median pitch and speaking rate become the target (tolerance 10 % of each, pitch in Hz). Both
searches start from the same description and stop at the same rule (a candidate designed at least
3 times whose 90 % intervals lie inside both tolerances) or at the same budget:

- tuner: ``lab.tune(START, target=..., budget=B)``;
- random: PromptSpecs drawn uniformly over the same four dimensions (the rest as in the start: a
  space of 3 x 5 x 3 x 3 = 135 descriptions, much smaller than the tuner's), each designed 3 times.

It prints, per target, the designs each used (the budget B when it did not reach), the medians,
and how many targets each reached; ``--figure`` saves a scatter of the two.

    .venv/bin/python benchmarks/tune_bench.py [--targets 20] [--budget 48] [--figure docs/tune_bench.png]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np

from cosyvoice_lab import Lab, PromptSpec
from cosyvoice_lab.lab.search import estimate
from cosyvoice_lab.lab.stage import MeasuringOptions
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


def draw(rng: random.Random) -> PromptSpec:
    return START.replace(**{d: rng.choice(values) for d, values in SPACE.items()})


def means(takes) -> tuple[float, float]:
    f0 = [t.metrics["median_f0_hz"] for t in takes if t.ok]
    rate = [t.metrics["speaking_rate"] for t in takes if t.ok]
    return float(np.mean(f0)), float(np.mean(rate))


def inside(takes, f0: float, rate: float) -> bool:
    st = np.array([12 * np.log2(t.metrics["median_f0_hz"] / f0) for t in takes if t.ok])
    r = np.array([t.metrics["speaking_rate"] for t in takes if t.ok])
    a, b = estimate(st), estimate(r)
    band = 12 * np.log2(1.1)  # 10 % of the pitch, in semitones (as lab.tune reads "10 %")
    return len(st) >= REPEATS and a.low >= -band and a.high <= band and 0.9 * rate <= b.low and b.high <= 1.1 * rate


def random_search(lab, rng: random.Random, f0: float, rate: float, budget: int, name: str) -> int:
    used = 0
    while used + REPEATS <= budget:
        takes = lab.design(draw(rng), n=REPEATS, preview_text=PREVIEW, experiment=name)
        used += REPEATS
        if inside(takes, f0, rate):
            return used
    return budget


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    rows = []
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
            if abs(f0 / start_f0 - 1) <= 0.1 and abs(rate / start_rate - 1) <= 0.1:
                continue  # the start is already there: nothing to search for
            t0 = time.monotonic()
            tuned = lab.tune(
                START,
                target={"median_f0_hz": round(f0, 2), "speaking_rate": round(rate, 3)},
                tolerance={"pitch": "10 %", "speaking_rate": "10 %"},
                budget=args.budget,
                preview_text=PREVIEW,
            )
            tuner_s = time.monotonic() - t0
            tuner = tuned.designs_used if tuned.reached else args.budget
            t0 = time.monotonic()
            searched = random_search(lab, random.Random(1000 + seed), f0, rate, args.budget, f"random-{seed}")
            random_s = time.monotonic() - t0
            lab.cleanup(dry_run=False, experiment=f"random-{seed}")
            lab.cleanup(dry_run=False, experiment=f"hidden-{seed}")
            rows.append((seed, hidden.render(), f0, rate, tuner, tuned.reached, tuner_s, searched, random_s))
            print(
                f"target {len(rows):2d} (seed {seed}): {f0:6.1f} Hz {rate:5.2f}/s  tuner {tuner:3d} designs "
                f"{'reached' if tuned.reached else 'not reached'} in {tuner_s:5.1f} s; random {searched:3d} designs "
                f"in {random_s:5.1f} s  [{hidden.render()}]",
                flush=True,
            )
    tuner_used = [r[4] for r in rows]
    random_used = [r[7] for r in rows]
    print(
        f"\n{len(rows)} targets, budget {args.budget}: tuner median {statistics.median(tuner_used)} designs "
        f"(mean {statistics.mean(tuner_used):.1f}, reached {sum(r[5] for r in rows)}), random median "
        f"{statistics.median(random_used)} (mean {statistics.mean(random_used):.1f}, reached "
        f"{sum(u < args.budget for u in random_used)}); tuner/random total {sum(tuner_used) / sum(random_used):.2f}"
    )
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 4.2), constrained_layout=True)
        ax.scatter(random_used, tuner_used)
        ax.plot([0, args.budget], [0, args.budget], "--", color="0.6")
        ax.plot([0, args.budget], [0, args.budget / 2], ":", color="C2", label="half")
        ax.set_xlabel("random search: designs to reach")
        ax.set_ylabel("lab.tune: designs to reach")
        ax.set_title(f"{len(rows)} targets on the simulator (budget {args.budget})")
        ax.legend()
        fig.savefig(args.figure, dpi=110)


if __name__ == "__main__":
    main()
