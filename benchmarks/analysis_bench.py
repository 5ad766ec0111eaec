"""How fast the analysis is: figures the README quotes.

    .venv/bin/python benchmarks/analysis_bench.py [--runs N]

Prints the median time to ``measure`` one 5-second 24 kHz preview (target < 100 ms) and to
compute its ``speaker_embedding``, and the time ``import cosyvoice_lab`` (and its analysis
modules) costs a fresh interpreter (target < 0.5 s), each with its ratio to the target.
The preview is real speech from the offline engine when it is available, else a synthetic
buzz with the same length and rate.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import numpy as np

SR, SECONDS = 24000, 5.0
MEASURE_TARGET_S, IMPORT_TARGET_S = 0.100, 0.5
TEXT = "Good evening, and welcome to the late news. Here are tonight's headlines, and the weather."


def preview() -> tuple[np.ndarray, str]:
    """Five seconds of speech at 24 kHz, and where it came from."""
    try:
        from cosyvoice_lab.offline import engine

        settings = engine.settings_for("A calm middle-aged male narrator.", "en", "bench")
        x = engine.render(TEXT, settings, SR)
        source = "offline engine speech"
    except Exception as exc:
        t = np.arange(int(SECONDS * SR)) / SR
        x = 0.3 * np.sign(np.sin(2 * np.pi * (110 + 10 * np.sin(2 * np.pi * 0.5 * t)) * t))
        source = f"synthetic buzz (engine unavailable: {exc})"
    n = int(SECONDS * SR)
    x = np.resize(x, n) if len(x) < n else x[:n]  # loop the speech to exactly 5 s
    return x.astype(np.float32), source


def timed(fn, runs: int) -> tuple[float, float]:
    """(first call, median of ``runs`` further calls) in seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def import_seconds(module: str, runs: int = 7) -> tuple[float, float]:
    """(wall time of ``python -c 'import module'`` minus a bare interpreter, best of ``runs``
    because other load only adds; -X importtime cumulative, median of ``runs``)."""

    def wall(code):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - start

    bare = min(wall("pass") for _ in range(runs))
    net = max(0.0, min(wall(f"import {module}") for _ in range(runs)) - bare)
    cumulative = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True, capture_output=True, text=True
        ).stderr
        top = module.split(".")[0]
        us = [
            int(m.group(1))
            for m in re.finditer(r"\|\s*(\d+)\s*\|\s*(\S+)\s*$", err, re.M)
            if m.group(2) in (top, module)
        ]
        cumulative.append(max(us) / 1e6 if us else float("nan"))
    return net, statistics.median(cumulative)


def line(label: str, seconds: float, target: float) -> str:
    return f"{label:<58} {seconds * 1000:8.1f} ms   target {target * 1000:6.0f} ms   ratio {seconds / target:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per figure (default 20)")
    args = parser.parse_args()

    from cosyvoice_lab.analysis import measures as analysis

    x, source = preview()
    print(f"preview: {len(x) / SR:.1f} s at {SR} Hz, {source}; median of {args.runs} runs\n")
    first, median = timed(lambda: analysis.measure(x, TEXT, "en", sample_rate=SR), args.runs)
    print(line("measure()", median, MEASURE_TARGET_S))
    cold = "  first call (lazy imports of parselmouth, pyloudnorm)"
    print(f"{cold:<58} {first * 1000:8.1f} ms")
    _, embed = timed(lambda: analysis.speaker_embedding(x, sample_rate=SR), args.runs)
    print(line("speaker_embedding()", embed, MEASURE_TARGET_S))
    print()
    for module in ("cosyvoice_lab", "cosyvoice_lab.prompts.spec", "cosyvoice_lab.analysis.measures"):
        net, cumulative = import_seconds(module)
        print(line(f"import {module} (wall - bare python, best)", net, IMPORT_TARGET_S))
        print(line(f"import {module} (-X importtime cumulative)", cumulative, IMPORT_TARGET_S))


if __name__ == "__main__":
    main()
