"""How often the evidence table names a winner when there is none: identical models, end to end.

    .venv/bin/python benchmarks/evidence_null_bench.py [--seeds 40] [--repeats 3] [--csv takes.csv]
    .venv/bin/python benchmarks/evidence_null_bench.py --engine 2000 [--repeats 3]
    .venv/bin/python benchmarks/evidence_null_bench.py --exact

Runs the identical-models compare of ``tests/test_evidence.py`` (3 prompts × plus/flash ×
``--repeats``, the simulator with every model's profile alike and ``design_latency`` 0, one
request at a time) once per simulator seed, and counts the seeds on which ``evidence()`` gives
pitch (and any question of the main family) an adjusted p below 5 %. With no difference the
rate must stay at 5 % (plus Monte-Carlo error: the printed 95 % Clopper-Pearson interval of the
rate must reach down to 5 %). ``--csv`` keeps every take's pitch (for other statistics).

``--engine N`` measures ``--pool`` voices per prompt and model on the simulator's own voice
pipeline without HTTP (voice ids drawn as the simulator draws them, in the compare's send
order; the voice's settings, its preview from the engine, its measured pitch), checks that a
voice id gives the same voice on plus and on flash, and runs N identical-model experiments
drawn from those voices: the rank test's error rate with its Monte-Carlo interval.

``--exact`` prints instead, without the simulator, the exact error rate of the rank test the
table uses (stratified Wilcoxon-Mann-Whitney, normal approximation, with and without its
continuity correction) for small designs without ties: every assignment of the takes to the two
models enumerated, per prompt, and convolved.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

PROMPTS = [
    "A calm middle-aged man with a warm, deep voice.",
    "A bright young woman who speaks quickly and cheerfully.",
    "An elderly man telling a story, slow and gentle.",
]
PREVIEW = "Hello, how are you today?"
MODELS = ("cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash")


def one(seed: int, repeats: int, folder: Path, variability: bool = False, concurrency: int | None = 1):
    from cosyvoice_lab import Lab
    from cosyvoice_lab.offline import serve

    with serve(model_profiles={"*": {"design_latency": 0}}, enrollment_rps=None, seed=seed) as sim:
        lab = Lab(folder, backend="offline", base_url=sim.base_url, progress=False, concurrency=concurrency)
        comparison = lab.compare(PROMPTS, models=MODELS, repeats=repeats, preview_text=PREVIEW)
        ev = comparison.evidence(variability=variability)
        takes = comparison.df[["prompt_index", "target_model", "repeat", "m_median_f0_hz"]].assign(seed=seed)
        return ev.table, takes


def interval(k: int, n: int) -> tuple[float, float]:
    low = st.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = st.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def engine_pool(size: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Pitch in semitones of ``size`` voices per prompt and model, ``(models, prompts, size)``,
    drawn as the simulator draws them (identical profiles, the compare's send order), and how
    many voice ids give different settings on plus and on flash (0: the models are the same)."""
    import random
    import uuid

    from cosyvoice_lab.analysis import measure
    from cosyvoice_lab.offline import engine, profiles

    profile = profiles.resolve({"*": {"design_latency": 0}})
    rng = random.Random(seed)
    out, differ = np.full((len(MODELS), len(PROMPTS), size), np.nan), 0
    for r in range(size):  # repeat by repeat, prompt by prompt, plus then flash
        for p, prompt in enumerate(PROMPTS):
            for m, model in enumerate(MODELS):
                uid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
                settings = engine.settings_for(prompt, "en", f"{model}-vd-lab-{uid}", profile[model])
                other = MODELS[1 - m]
                differ += settings != engine.settings_for(prompt, "en", f"{other}-vd-lab-{uid}", profile[other])
                audio = engine.preview(PREVIEW, settings)
                out[m, p, r] = 12 * np.log2(measure(audio, PREVIEW, "en", predicted_quality=False).median_f0_hz / 100)
    return out, differ


def engine_table(runs: int, repeats: int, pool: int) -> None:
    from cosyvoice_lab.analysis import stats

    started = time.perf_counter()
    voices, differ = engine_pool(pool)
    print(
        f"{voices.size} voices measured in {time.perf_counter() - started:.0f} s; voice ids whose settings "
        f"differ between plus and flash: {differ}; mean pitch flash - plus per prompt: "
        f"{', '.join(f'{d:+.3f} st' for d in np.nanmean(voices[1] - voices[0], axis=-1))}"
    )
    rng = np.random.default_rng(0)
    pick = rng.integers(0, pool, (2, runs, len(PROMPTS), repeats))  # each experiment: fresh voices from the pool
    prompt = np.arange(len(PROMPTS))[None, :, None]
    plus, flash = voices[0][prompt, pick[0]], voices[1][prompt, pick[1]]
    rank = stats.block_rank_difference(plus, flash)
    t = stats.block_difference(plus, flash)
    print(
        f"{runs} identical-model experiments drawn from them (with replacement: they share the pool's own "
        f"chance difference), 3 prompts x 2 models x {repeats} repeats"
    )
    for label, p in (("rank test (the table's)", rank.p_value), ("t test", t.p_value)):
        hits = int(np.sum(p < 0.05))
        low, high = interval(hits, runs)
        print(f"  pitch, {label}, raw p < 0.05: {hits}/{runs} = {hits / runs:.1%} [95 % CI {low:.1%}, {high:.1%}]")


def exact_rate(blocks: int, repeats: int, alpha: float = 0.05, continuity: float = 0.5) -> float:
    """The exact chance that the stratified rank test says p < alpha with no difference (no ties)."""
    n = 2 * repeats
    per_block = [
        sum(1 for i in range(n) if i not in chosen for j in chosen if j > i)  # U of b against a
        for chosen in map(set, itertools.combinations(range(n), repeats))
    ]
    values, counts = np.unique(per_block, return_counts=True)
    pmf = np.zeros(repeats * repeats + 1)
    pmf[values] = counts / counts.sum()
    total = np.array([1.0])
    for _ in range(blocks):
        total = np.convolve(total, pmf)
    mean, var = blocks * repeats * repeats / 2, blocks * repeats * repeats * (2 * repeats + 1) / 12
    p = 2 * st.norm.sf(np.maximum(np.abs(np.arange(len(total)) - mean) - continuity, 0) / np.sqrt(var))
    return float(total[p < alpha].sum())


def exact_table() -> None:
    print("exact error rate of the rank test at nominal 5 % (no ties), without / with the continuity correction:")
    for blocks in (2, 3, 4, 6):
        cells = "  ".join(
            f"{repeats} rep {exact_rate(blocks, repeats, continuity=0):.2%} / {exact_rate(blocks, repeats):.2%}"
            for repeats in (2, 3, 4, 5, 6)
        )
        print(f"  {blocks} prompts: {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--concurrency", type=int, default=1, help="0: the lab's adaptive default")
    parser.add_argument("--variability", action="store_true", help="ask about variation too (as the test does)")
    parser.add_argument("--engine", type=int, default=0, help="experiments on the engine, without HTTP")
    parser.add_argument("--pool", type=int, default=150, help="--engine: voices measured per prompt and model")
    parser.add_argument("--exact", action="store_true", help="the rank test's exact error rates; no simulator")
    args = parser.parse_args()
    if args.exact:
        exact_table()
        return
    if args.engine:
        engine_table(args.engine, args.repeats, args.pool)
        return
    os.environ.pop("DASHSCOPE_API_KEY", None)  # offline only
    rows, all_takes, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first, args.first + args.seeds):
            table, takes = one(seed, args.repeats, Path(tmp) / f"lab{seed}", args.variability, args.concurrency or None)
            pitch = table[table["measure"] == "pitch"].iloc[0]
            main = table[(table["family"] == "main") & (table["measure"] != "design latency")]
            rows.append(
                {
                    "seed": seed,
                    "pitch_p": pitch["p_value"],
                    "pitch_p_adjusted": pitch["p_adjusted"],
                    "any_main_found": bool((main["p_adjusted"] < 0.05).any()),
                }
            )
            all_takes.append(takes)
            print(f"seed {seed}: pitch p {pitch['p_value']:.3f} (adjusted {pitch['p_adjusted']:.3f})", flush=True)
    runs = pd.DataFrame(rows)
    n = len(runs)
    print(
        f"\n{n} identical-model compares, 3 prompts x 2 models x {args.repeats} repeats, "
        f"{time.perf_counter() - started:.0f} s"
    )
    for label, hits in (
        ("pitch, raw p < 0.05", int((runs["pitch_p"] < 0.05).sum())),
        ("pitch, adjusted p < 0.05 (a winner named)", int((runs["pitch_p_adjusted"] < 0.05).sum())),
        ("any main question but latency, adjusted p < 0.05", int(runs["any_main_found"].sum())),
    ):
        low, high = interval(hits, n)
        print(f"  {label}: {hits}/{n} = {hits / n:.1%} [95 % CI {low:.1%}, {high:.1%}]")
    if args.csv:
        pd.concat(all_takes).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
