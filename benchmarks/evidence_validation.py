"""Validation as documentation: the evidence table's procedure on planted effects.

For designs of prompts × repeats (2x2, 3x3, 4x3, 6x5, 10x10) and three kinds of data:
- normal: prompt effects (sd 5) plus normal noise (sd 1 within a cell);
- heavy: the same with Student-t noise on 3 degrees of freedom (scaled to sd 1);
- stars: 1-5 star ratings of each take by 3 raters of different harshness (a rater shifts every
  rating by N(0, 0.7)), rounded and clipped, scored once per take (raters centred,
  ``analysis.stats.take_scores``): tied data;
it prints, each with its Monte-Carlo standard error:
- false claims under no difference: per question (one test at 5 %) and per table (six null primary
  questions, Holm's step-down levels, any verdict naming a side);
- coverage of the 95 % interval (the shift planted, 1 SD; stars: no difference);
- power of the primary question at 0.5, 1 and 2 SD (alone in a table of six primary questions:
  read at 0.05/6, the level the step-down starts at);
- the delivered power of ``analysis.planning.repeats_needed`` for a difference of 1 SD (stars:
  0.5 stars): a pilot at the design's size, the advice followed (new repeats added to the pilot's),
  then the test at 0.05/6; "advised" is the share of pilots for which advice within 40 repeats
  was given (the rest say "more than ..." and are not counted).

The permutation test is exact at its level, so the null rates hold by construction (the check is
that the code does what the mathematics says); 2x2 cannot reach any level (the table says so in
words) and shows 0 throughout.

    .venv/bin/python benchmarks/evidence_validation.py            # 500 experiments per cell
    .venv/bin/python benchmarks/evidence_validation.py --quick    # 150
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from cosyvoice_lab.analysis import inference, planning, stats

DESIGNS = ((2, 2), (3, 3), (4, 3), (6, 5), (10, 10))
KINDS = ("normal", "heavy", "stars")
QUESTIONS = 6  # the primary family of a comparison: pitch, rate, loudness, quality, latency, ratings
RATERS = 3
MAX_ADVICE = 40


def raw(rng, kind: str, runs: int, blocks: int, repeats: int, effect: float = 0.0):
    """What an experiment records, for ``repeats`` per cell: values ``(runs, blocks, repeats)``
    for a and b (b shifted by ``effect`` latent SDs), or for stars each rater's 1-5 stars
    ``(runs, blocks, repeats, raters)`` (the same raters, of different harshness, for both)."""
    prompt = rng.normal(0, 5 if kind != "stars" else 0.7, (runs, blocks, 1))
    if kind == "heavy":
        noise = rng.standard_t(3, (2, runs, blocks, repeats)) / math.sqrt(3)
    else:
        noise = rng.normal(0, 1, (2, runs, blocks, repeats))
    a, b = prompt + noise[0], prompt + effect + noise[1]
    if kind != "stars":
        return a, b
    harsh = rng.normal(0, 0.7, (runs, 1, 1, RATERS))

    def given(latent):
        return np.clip(np.rint(3 + latent[..., None] + harsh + rng.normal(0, 0.5, (*latent.shape, RATERS))), 1, 5)

    return given(a), given(b)


def observe(kind: str, a, b, repeats: int):
    """The values a test sees of the first ``repeats`` per cell: as drawn, or for stars one score
    per take, raters centred over every take of both models (``analysis.stats.take_scores``)."""
    a, b = a[:, :, :repeats], b[:, :, :repeats]
    if kind != "stars":
        return a, b
    runs, blocks, _, raters = a.shape
    both = np.concatenate([a, b], axis=2).reshape(runs, -1, raters)
    scores = stats.take_scores(both).reshape(runs, blocks, 2 * repeats)
    return scores[..., :repeats], scores[..., repeats:]


def draw(rng, kind: str, runs: int, blocks: int, repeats: int, effect: float = 0.0):
    """``(a, b)`` as a test sees them, shaped ``(runs, blocks, repeats)``."""
    return observe(kind, *raw(rng, kind, runs, blocks, repeats, effect), repeats)


def rate(hits) -> str:
    """The share of hits with its Monte-Carlo standard error."""
    hits = np.asarray(hits, dtype=float)
    p = float(hits.mean())
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / len(hits)):.3f}"


def table_false(rng, kind, runs, blocks, repeats) -> np.ndarray:
    """Any side named in a table of QUESTIONS null primary questions (Holm's step-down levels)."""
    tests = [inference.shift(*draw(rng, kind, runs, blocks, repeats)) for _ in range(QUESTIONS)]
    p = np.stack([t.p_value for t in tests], axis=1)
    order = np.argsort(p, axis=1, kind="stable")
    still = np.ones(runs, bool)
    named = np.zeros(runs, bool)
    for rank in range(QUESTIONS):
        level = stats.ALPHA / (QUESTIONS - rank)
        side = np.zeros(runs, int)
        for q, test in enumerate(tests):
            here = order[:, rank] == q
            side = np.where(here, test.judge(level).side, side)
        named |= still & (side != 0)
        still &= side != 0
    return named


def delivered(rng, kind, runs, blocks, repeats, effect, planned):
    """Found / advised after following repeats_needed from a pilot (level 0.05/QUESTIONS): the
    follow-up's repeats are added to the pilot's, on the same prompts (and raters)."""
    level = stats.ALPHA / QUESTIONS
    a_all, b_all = raw(rng, kind, runs, blocks, MAX_ADVICE, effect)
    spread = stats.block_difference(*observe(kind, a_all, b_all, repeats))
    need = [
        planning.repeats_needed(planned, float(s), blocks, level=level, sd_df=float(d))
        for s, d in zip(spread.sd, spread.df, strict=True)
    ]
    need = np.array([max(n, repeats + 1) if n is not None and n <= MAX_ADVICE else -1 for n in need])
    found = []
    for n in np.unique(need[need > 0]):
        pick = need == n
        found.append(inference.shift(*observe(kind, a_all[pick], b_all[pick], int(n))).judge(level).side == 1)
    return (np.concatenate(found) if found else np.array([])), float(np.mean(need > 0))


def star_effect(rng, latent: float) -> float:
    """The difference of take scores (stars) a latent shift makes, by a large simulation."""
    a, b = draw(rng, "stars", 200, 4, 10, latent)
    return float(np.mean(b - a))


def cell(rng, kind, runs, blocks, repeats) -> dict[str, str]:
    out: dict[str, str] = {}
    a, b = draw(rng, kind, runs, blocks, repeats)
    said = inference.shift(a, b).judge(stats.ALPHA)
    out["null, per question"] = rate(said.side != 0)
    out["null, per table"] = rate(table_false(rng, kind, runs, blocks, repeats))
    shift = 0.0 if kind == "stars" else 1.0
    a, b = draw(rng, kind, runs, blocks, repeats, shift)
    said = inference.shift(a, b).judge(stats.ALPHA)
    covered = said.reachable & (said.ci_low <= shift) & (shift <= said.ci_high)
    out["coverage 95 %"] = rate(covered) if said.reachable.all() else "unreachable"
    for size in (0.5, 1.0, 2.0):
        a, b = draw(rng, kind, runs, blocks, repeats, size)
        said = inference.shift(a, b).judge(stats.ALPHA / QUESTIONS)
        out[f"power {size:g} SD"] = rate(said.side == 1)
    latent, planned = (1.0, 1.0) if kind != "stars" else (0.6, star_effect(rng, 0.6))
    found, advised = delivered(rng, kind, runs, blocks, repeats, latent, planned)
    out["delivered power"] = (rate(found)) if len(found) else "—"
    out["advised"] = f"{advised:.2f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 experiments per cell instead of 500")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (150 if args.quick else 500)
    rng = np.random.default_rng(2026)
    started = time.perf_counter()
    header = None
    for blocks, repeats in DESIGNS:
        for kind in KINDS:
            out = cell(rng, kind, runs, blocks, repeats)
            if header is None:
                header = ["design", "data", *out]
                print(f"{runs} experiments per cell; ± is the Monte-Carlo standard error")
                print("| " + " | ".join(header) + " |")
                print("|" + "---|" * len(header))
            print(f"| {blocks}x{repeats} | {kind} | " + " | ".join(out.values()) + " |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
