"""How fast the analysis is, and how well the speaker embedding tells voices apart.

    .venv/bin/python benchmarks/analysis_bench.py [--runs N] [--eer]

Prints the median cost of every measure on one 5-second 24 kHz preview (the whole set without
the quality model: target < 150 ms), of DNSMOS and of the two embeddings, and the time
``import cosyvoice_lab`` (and its analysis modules) costs a fresh interpreter (target < 0.5 s),
each with its ratio to the target. ``--eer`` adds the equal-error rate of the speaker embedding
(and of the MFCC fingerprint) on simulator voices: the same voice on different sentences
against different voices of the same prompt.
The preview is real speech from the offline engine when it is available, else a synthetic
buzz with the same length and rate.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import subprocess
import sys
import time

import numpy as np

SR, SECONDS = 24000, 5.0
MEASURE_TARGET_S, IMPORT_TARGET_S = 0.150, 0.5
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


def cpu_seconds(fn, runs: int) -> float:
    """Median CPU time (all threads of the process) of ``runs`` calls: what a call costs the
    machine, whatever else is running on it (wall times on a busy machine are not)."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


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


def fresh(x: np.ndarray):
    """A maker of sounds this process has not measured yet: ``x`` with its first sample moved by
    a billionth more each time (``measure()`` remembers the last sounds it measured, by content)."""
    count = itertools.count(1)

    def make() -> np.ndarray:
        y = x.copy()
        y[0] += next(count) * 1e-9
        return y

    return make


def line(label: str, seconds: float, target: float) -> str:
    return f"{label:<58} {seconds * 1000:8.1f} ms   target {target * 1000:6.0f} ms   ratio {seconds / target:5.2f}"


def measure_parts(x: np.ndarray, runs: int) -> None:
    """The cost of each measure of ``measure()`` on its own (shared inputs computed once)."""
    from cosyvoice_lab.analysis import measures, quality, voice

    pitch = measures.pitch_track(x, SR)
    f0 = pitch.selected_array["frequency"]
    f0 = f0[f0 > 0]
    frame_db = measures.frame_levels_db(x, SR)
    speech = measures.speech_frames(x, SR)
    y = voice.resampled(x, SR)
    parts = {
        "pitch track (praat, shared)": lambda: measures.pitch_track(x, SR),
        "loudness (BS.1770)": lambda: measures.integrated_loudness(x, SR),
        "resample to 16 kHz (shared)": lambda: voice.resampled(x, SR),
        "HNR (from the pitch track)": lambda: voice.harmonicity(pitch),
        "CPP (numpy cepstra)": lambda: voice.cepstral_peak_prominence(y, voice.voiced_times(pitch)),
        "jitter + shimmer (praat pulses)": lambda: voice.perturbation(x, SR, pitch),
        "spectral tilt + centroid": lambda: voice.spectral_shape(*voice.long_term_spectrum(y, speech)),
        "F0 + intensity variability": lambda: (voice.f0_sd_semitones(f0), voice.intensity_sd_db(frame_db, speech)),
        "DNSMOS P.835 (onnxruntime, 1 thread)": lambda: quality.dnsmos(y),
    }
    for label, fn in parts.items():
        _, median = timed(fn, runs)
        print(line(f"  {label}", median, MEASURE_TARGET_S))


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> float:
    """The rate at which a threshold on similarity rejects as many true pairs as it accepts false ones."""
    best, rate = 2.0, float("nan")
    for t in np.sort(np.concatenate([same, different])):
        miss, false = float(np.mean(same < t)), float(np.mean(different >= t))
        if abs(miss - false) < best:
            best, rate = abs(miss - false), (miss + false) / 2
    return rate


def eer_report() -> None:
    """EER on simulator voices: 2 prompts x 2 languages x 5 voices x 3 sentences."""
    import itertools

    from cosyvoice_lab.analysis import variability
    from cosyvoice_lab.offline import engine

    sentences = {
        "en": [TEXT, "The quick brown fox jumps over the lazy dog.", "Please bring an umbrella tomorrow afternoon."],
        "zh": [
            "今天天气很好，我们一起去公园散步吧。",
            "这本书讲述了一个小村庄里发生的故事。",
            "请记得明天带伞，下午会下雨。",
        ],
    }
    prompts = {
        "en": ["A calm middle-aged man with a deep voice.", "A young woman with a bright, cheerful voice."],
        "zh": ["沉稳的中年男声", "年轻女声，明亮欢快"],
    }
    keys, voice_e, mfcc_e = [], {}, {}
    for language, texts in sentences.items():
        for prompt in prompts[language]:
            for v, (i, text) in itertools.product(range(5), enumerate(texts)):
                x = engine.render(text, engine.settings_for(prompt, language, f"voice-{v}"), SR)
                key = (language, prompt, v, i)
                keys.append(key)
                voice_e[key] = variability.voice_embedding(x, sample_rate=SR)
                mfcc_e[key] = variability.speaker_embedding(x, sample_rate=SR)
    print(
        "\nequal-error rate on simulator voices (same voice, other sentence vs other voice, same prompt and sentence)"
    )
    for name, table, score in (
        ("voice_embedding (pretrained GE2E)", voice_e, lambda a, b: float(a @ b)),
        ("speaker_embedding (MFCC fingerprint)", mfcc_e, lambda a, b: -variability.spectral_distance(a, b)),
    ):
        same, different = [], []
        for a, b in itertools.combinations(keys, 2):
            if a[:2] != b[:2]:
                continue
            if a[2] == b[2] and a[3] != b[3]:
                same.append(score(table[a], table[b]))
            elif a[2] != b[2] and a[3] == b[3]:
                different.append(score(table[a], table[b]))
        rate = equal_error_rate(np.array(same), np.array(different))
        print(f"  {name:<40} EER {100 * rate:5.1f} %   ({len(same)} same-voice pairs, {len(different)} other-voice)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per figure (default 20)")
    parser.add_argument("--eer", action="store_true", help="also the speaker embedding's equal-error rate")
    args = parser.parse_args()

    from cosyvoice_lab.analysis import measures as analysis

    x, source = preview()
    print(f"preview: {len(x) / SR:.1f} s at {SR} Hz, {source}; median of {args.runs} runs\n")
    analysis.measure(x, TEXT, "en", sample_rate=SR)  # warm up: lazy imports, the quality model's session
    new = fresh(x)  # measure() answers a sound it measured before from memory: each run measures a new one
    _, median = timed(lambda: analysis.measure(new(), TEXT, "en", sample_rate=SR, predicted_quality=False), args.runs)
    print(line("measure(predicted_quality=False): every measure but DNSMOS", median, MEASURE_TARGET_S))
    _, median = timed(lambda: analysis.measure(new(), TEXT, "en", sample_rate=SR), args.runs)
    print(line("measure(): the whole set, DNSMOS included", median, MEASURE_TARGET_S))
    for label, quality in (("without DNSMOS", False), ("DNSMOS included", True)):
        cpu = cpu_seconds(
            lambda q=quality: analysis.measure(new(), TEXT, "en", sample_rate=SR, predicted_quality=q), args.runs
        )
        print(line(f"measure() {label}: CPU time (one core)", cpu, MEASURE_TARGET_S))
    measure_parts(x, args.runs)
    from cosyvoice_lab.analysis import variability

    _, embed = timed(lambda: variability.speaker_embedding(x, sample_rate=SR), args.runs)
    print(line("speaker_embedding() (MFCC fingerprint)", embed, MEASURE_TARGET_S))
    _, embed = timed(lambda: variability.voice_embedding(x, sample_rate=SR), args.runs)
    print(line("voice_embedding() (pretrained network, numpy)", embed, MEASURE_TARGET_S))
    if args.eer:
        eer_report()
    print()
    for module in ("cosyvoice_lab", "cosyvoice_lab.prompts.spec", "cosyvoice_lab.analysis.measures"):
        net, cumulative = import_seconds(module)
        print(line(f"import {module} (wall - bare python, best)", net, IMPORT_TARGET_S))
        print(line(f"import {module} (-X importtime cumulative)", cumulative, IMPORT_TARGET_S))


if __name__ == "__main__":
    main()
