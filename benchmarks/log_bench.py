"""Benchmark of the experiment log: recording takes, loading the DataFrame, bytes per take.

Run:  .venv/bin/python benchmarks/log_bench.py [--folder DIR] [--keep]

Prints, against the targets of issue 3 (2-core machine):
  * seconds to record 10,000 takes (start + finish each, realistic fields and metrics,
    no preview audio; previews are measured separately, since each new file costs an fsync)
  * seconds to load ``log.df`` at 10,000 and at 100,000 takes (the 100k log is grown from the
    10k recorded takes by copying rows under fresh ids with SQL, which is much faster than
    recording them and gives the same rows)
  * bytes per take in the database, audio excluded (after a WAL checkpoint)
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.log.experiment_log import ExperimentLog

TARGET_RECORD_10K_S = 5.0
TARGET_DF_100K_S = 1.0
TARGET_BYTES_PER_TAKE = 2048

PROMPTS = [
    "一位五十多岁的男性播音员，声音低沉温暖，语速缓慢，吐字清晰，适合讲述纪录片。",
    "年轻女性，声音明亮甜美，语速偏快，带着轻松愉快的情绪，适合短视频配音。",
    "A calm, deep male narrator in his fifties, slow and warm, with clear articulation.",
    "An energetic young woman with a bright, slightly husky voice, speaking quickly and cheerfully.",
]
PREVIEWS = ["你好，欢迎收听今天的节目。", "Hello, and welcome to today's programme."]
MODELS = ["cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"]


def record(log: ExperimentLog, n: int, *, audio: list[Audio] | None = None) -> float:
    """Seconds to start and finish ``n`` takes (with ``audio[i]`` as preview when given)."""
    rng = random.Random(1)
    t0 = time.perf_counter()
    for i in range(n):
        p = i % len(PROMPTS)
        design = VoiceDesign(PROMPTS[p], PREVIEWS[p // 2], target_model=MODELS[i % 2])
        take = log.start(
            design,
            experiment=f"bench-{i // 500}",
            backend="offline",
            region="cn-beijing",
            host="127.0.0.1",
            cell=f"p{p}|{MODELS[i % 2]}|r{i % 3}",
            repeat=i % 3,
        )
        log.finish(
            take.take_id,
            voice_id=f"{MODELS[i % 2]}-vd-lab-{uuid.uuid4().hex}",
            request_id=str(uuid.uuid4()),
            voice_status="OK",
            latency_s=rng.uniform(2, 9),
            audio=audio[i] if audio else None,
            metrics={
                "f0_mean_hz": rng.uniform(80, 300),
                "f0_range_st": rng.uniform(2, 12),
                "loudness_lufs": rng.uniform(-30, -14),
                "speech_rate_cps": rng.uniform(3, 7),
                "duration_s": rng.uniform(2, 6),
            },
        )
    return time.perf_counter() - t0


def grow(log: ExperimentLog, total: int) -> None:
    """Copy the first takes under fresh ids, a day later each round, until the log holds
    ``total`` takes (so that, as in a real log, rows are stored in the order they were made)."""
    columns = [r[1] for r in log.db.query("PRAGMA table_info(takes)")]
    first = len(log)
    shifted = {"take_id": "lower(hex(randomblob(16)))"}
    for day, have in enumerate(range(first, total, first), start=1):
        for c in ("started_at", "finished_at"):  # keep the fixed-width text: only the date moves
            shifted[c] = f"strftime('%Y-%m-%dT%H:%M:%S', {c}, '+{day} days') || substr({c}, 20)"
        copied = ", ".join(shifted.get(c, c) for c in columns)
        with log.db.transaction() as conn:
            conn.execute(
                f"INSERT INTO takes ({', '.join(columns)}) SELECT {copied} FROM takes "
                f"WHERE rowid <= {first} ORDER BY rowid LIMIT {min(first, total - have)}"
            )


def load_df(log: ExperimentLog, repeats: int = 3) -> float:
    """Best of ``repeats`` seconds to build ``log.df``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame = log.df
        best = min(best, time.perf_counter() - t0)
    assert len(frame) == len(log)
    return best


def bytes_per_take(log: ExperimentLog) -> float:
    """Database bytes in use (pages minus free pages, after a checkpoint) per take."""
    log.db.query("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = log.db.query("PRAGMA page_count")[0][0] - log.db.query("PRAGMA freelist_count")[0][0]
    return pages * log.db.query("PRAGMA page_size")[0][0] / len(log)


def previews(n: int) -> list[Audio]:
    """``n`` distinct 0.5 s previews (16 kHz WAV, 16 KB each)."""
    rng = np.random.default_rng(0)
    return [Audio.from_numpy(rng.uniform(-0.1, 0.1, 8000), 16000) for _ in range(n)]


def line(label: str, value: float, unit: str, target: float | None = None) -> None:
    ratio = f"  ({value / target:.2f} of target {target:g} {unit})" if target else ""
    print(f"{label:<46}{value:>10.3f} {unit}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="where to build the logs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the logs afterwards")
    args = parser.parse_args()
    root = Path(args.folder or tempfile.mkdtemp(prefix="log-bench-"))
    try:
        log = ExperimentLog(root / "main")
        line("record 10,000 takes (start+finish, no audio)", record(log, 10_000), "s", TARGET_RECORD_10K_S)
        line("load log.df at 10,000 takes (best of 3)", load_df(log), "s")
        line("bytes per take at 10,000 (audio excluded)", bytes_per_take(log), "B", TARGET_BYTES_PER_TAKE)
        grow(log, 100_000)
        line("load log.df at 100,000 takes (best of 3)", load_df(log), "s", TARGET_DF_100K_S)
        line("bytes per take at 100,000 (audio excluded)", bytes_per_take(log), "B", TARGET_BYTES_PER_TAKE)
        log.close()
        with ExperimentLog(root / "audio") as audio_log:
            seconds = record(audio_log, 1_000, audio=previews(1_000))
            line("record 1,000 takes, each a new 16 KB preview", seconds, "s")
            line("  so per take with a preview", seconds * 1000 / 1_000, "ms")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}")


if __name__ == "__main__":
    main()
