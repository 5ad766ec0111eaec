"""Benchmark of the experiment log on SQLite and on PostgreSQL: recording takes, loading the
DataFrame, bytes per take, printed side by side.

Run:  .venv/bin/python benchmarks/log_bench.py [--folder DIR] [--keep] [--only sqlite|postgresql]

Prints, against the targets of issue 3 (2-core machine), for a folder log (SQLite) and for a
database log (PostgreSQL, a throwaway server started the way the tests start one:
tests/pgserver.py, Debian's binaries; skipped with a note when they or psycopg are missing):
  * seconds to record 10,000 takes (start + finish each, realistic fields and metrics,
    no preview audio; previews are measured separately, since each new file costs an fsync);
    then, at once, the same two statements per take sent bare on the driver (``bare``), and the
    ratio of the two: the log's own share, which moves far less with the machine's speed of the
    moment than the seconds do
  * seconds to load ``log.df`` at 10,000 and at 100,000 takes (the 100k log is grown from the
    10k recorded takes by copying rows under fresh ids with SQL, which is much faster than
    recording them and gives the same rows)
  * bytes per take in the database, audio excluded (SQLite: pages in use after a WAL
    checkpoint; PostgreSQL: the log's tables with their indexes and TOAST after a VACUUM)

The PostgreSQL server runs with fsync on and ``synchronous_commit=off``: a commit returns before
its WAL reaches the disk, as SQLite's ``synchronous=NORMAL`` in WAL mode does (a crashed process
loses nothing; a power cut may lose the last commits, never the database). Its client talks to
it over TCP on loopback, as a teammate's would over the network (without the network's latency).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        take = log.table.start(
            design,
            experiment=f"bench-{i // 500}",
            backend="offline",
            region="cn-beijing",
            host="127.0.0.1",
            cell=f"p{p}|{MODELS[i % 2]}|r{i % 3}",
            repeat=i % 3,
        )
        log.table.finish(
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


OUTCOME = ("status", "voice_id", "request_id", "voice_status", "latency_s", "finished_at", "metrics")


def bare(templates: ExperimentLog, n: int) -> float:
    """Seconds for the database and its driver alone to run what ``record`` sends for ``n`` takes:
    each take's pending INSERT, then its outcome UPDATE ... RETURNING (every column), one lone
    statement per round trip, on one cursor of a connection of their own. The rows are takes
    ``record`` wrote into ``templates`` (under fresh ids), their parameters built before the clock
    starts, so ``record`` / ``bare`` is the log's own share: building each Take and its row, finding
    the thread's connection, turning the returned row into a Take. The machine's speed, which
    varies from one minute to the next, mostly divides out of that ratio."""
    from sqlalchemy import bindparam, insert, literal_column, select, update

    from cosyvoice_lab.log.database import Prepared
    from cosyvoice_lab.log.schema import takes

    dialect = templates.db.engine.dialect.name
    columns = [c.name for c in takes.c]
    pending = Prepared(insert(takes).values({c: bindparam(c) for c in columns})).compiled(dialect)
    outcome = Prepared(
        update(takes)
        .where(takes.c.take_id == bindparam("id"), takes.c.status == literal_column("'pending'"))
        .values({c: bindparam(f"set_{c}") for c in OUTCOME})
        .returning(*takes.c)
    ).compiled(dialect)
    rows = [dict(r._mapping) for r in templates.db.query(select(takes).where(takes.c.status == "ok"))]
    statements = []
    for i in range(n):
        row, take_id = rows[i % len(rows)], uuid.uuid4().hex
        start = {**row, **dict.fromkeys(OUTCOME), "take_id": take_id, "status": "pending"}
        finish = {"id": take_id, **{f"set_{c}": row[c] for c in OUTCOME}}
        statements.append((pending.params(start), outcome.params(finish)))
    if dialect == "postgresql":
        import psycopg

        conn: Any = psycopg.connect(PG_URLS["bare"], autocommit=True)
        cursor = conn.cursor()

        def send(sql: str, values: tuple) -> list:
            cursor.execute(sql, values)
            return cursor.fetchall() if cursor.description else []
    else:
        import sqlite3

        conn = sqlite3.connect(templates.db.path, isolation_level=None)  # each statement its own transaction
        conn.execute("PRAGMA synchronous = NORMAL")  # as the log's connections (WAL is the file's own)

        def send(sql: str, values: tuple) -> list:
            return conn.execute(sql, values).fetchall()

    try:
        t0 = time.perf_counter()
        for start_values, finish_values in statements:
            send(pending.sql, start_values)
            assert send(outcome.sql, finish_values)
        return time.perf_counter() - t0
    finally:
        conn.close()


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
            conn.exec_driver_sql(
                f"INSERT INTO takes ({', '.join(columns)}) SELECT {copied} FROM takes "
                f"WHERE rowid <= {first} ORDER BY rowid LIMIT {min(first, total - have)}"
            )


def grow_pg(log: ExperimentLog, total: int) -> None:
    """``grow`` for a log on PostgreSQL (its own SQL: sent as written, not translated)."""
    import psycopg

    with psycopg.connect(PG_URLS["main"], autocommit=True) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'takes' "
                "AND column_name != 'rowid' ORDER BY ordinal_position"
            )
        ]
        first = len(log)
        shifted = {"take_id": "md5(random()::text || clock_timestamp()::text)"}
        for day, have in enumerate(range(first, total, first), start=1):
            for c in ("started_at", "finished_at"):
                moved = f"CAST(left({c}, 19) AS timestamp) + interval '{day} days'"
                shifted[c] = f"""to_char({moved}, 'YYYY-MM-DD"T"HH24:MI:SS') || substr({c}, 20)"""
            copied = ", ".join(shifted.get(c, c) for c in columns)
            conn.execute(
                f"INSERT INTO takes ({', '.join(columns)}) SELECT {copied} FROM takes "
                f"WHERE rowid <= {first} ORDER BY rowid LIMIT {min(first, total - have)}"
            )
        conn.execute("VACUUM ANALYZE takes")


PG_URLS: dict[str, str] = {}  # the benchmark server's database URL of each log, by name
LOG_TABLES = ("takes", "annotations", "utterances", "cell_claims", "ratings")  # not the audio


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


def bytes_per_take_pg(log: ExperimentLog) -> float:
    """The log's tables (the audio table excluded) with indexes and TOAST, after a VACUUM, per take."""
    import psycopg

    with psycopg.connect(PG_URLS["main"], autocommit=True) as conn:
        conn.execute("VACUUM")
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r'",
            (list(LOG_TABLES),),
        ).fetchone()[0]
    return int(size) / len(log)


def previews(n: int) -> list[Audio]:
    """``n`` distinct 0.5 s previews (16 kHz WAV, 16 KB each)."""
    rng = np.random.default_rng(0)
    return [Audio.from_numpy(rng.uniform(-0.1, 0.1, 8000), 16000) for _ in range(n)]


LINES = (
    ("record", "record 10,000 takes (start+finish, no audio)", "s", TARGET_RECORD_10K_S),
    ("bare", "  the same statements bare on the driver", "s", None),
    ("share", "  record / bare (the log's own share)", "x", None),
    ("df10k", "load log.df at 10,000 takes (best of 3)", "s", None),
    ("bytes10k", "bytes per take at 10,000 (audio excluded)", "B", TARGET_BYTES_PER_TAKE),
    ("df100k", "load log.df at 100,000 takes (best of 3)", "s", TARGET_DF_100K_S),
    ("bytes100k", "bytes per take at 100,000 (audio excluded)", "B", TARGET_BYTES_PER_TAKE),
    ("audio", "record 1,000 takes, each a new 16 KB preview", "s", None),
)


def measure(open_log: Callable[[str], ExperimentLog], grow_to: Callable, size_of: Callable) -> dict[str, float]:
    """Every figure of ``LINES`` for one kind of log (``open_log(name)`` opens a fresh one)."""
    figures = {}
    with open_log("main") as log:
        figures["record"] = record(log, 10_000)
        with open_log("bare") as templates:  # right after, at the machine's same speed
            record(templates, 100)
            figures["bare"] = bare(templates, 10_000)
        figures["share"] = figures["record"] / figures["bare"]
        figures["df10k"] = load_df(log)
        figures["bytes10k"] = size_of(log)
        grow_to(log, 100_000)
        figures["df100k"] = load_df(log)
        figures["bytes100k"] = size_of(log)
    with open_log("audio") as audio_log:
        figures["audio"] = record(audio_log, 1_000, audio=previews(1_000))
    return figures


def cell(value: float | None, unit: str, target: float | None) -> str:
    if value is None:
        return f"{'-':>22}"
    ratio = f" ({value / target:.2f})" if target else ""
    return f"{value:>10.3f} {unit}{ratio:<8}"


def report(results: dict[str, dict[str, float] | str]) -> None:
    """The figures side by side; a ratio in parentheses is the share of the target used."""
    names = list(results)
    print(f"{'':<46}" + "".join(f"{n:>22}" for n in names) + "   target")
    for key, label, unit, target in LINES:
        values = [r.get(key) if isinstance(r, dict) else None for r in results.values()]
        goal = f"   {target:g} {unit}" if target else ""
        print(f"{label:<46}" + "".join(cell(v, unit, target) for v in values) + goal)
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name}: {r}")


def start_postgres(root: Path):
    """A throwaway PostgreSQL server as the tests start one (tests/pgserver.py), fsync on and
    ``synchronous_commit=off``; returns ``(server, url of a fresh database)``, or a reason it cannot."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        return None, "skipped: PostgreSQL's server binaries are not installed (apt-get install postgresql)"
    try:
        import psycopg
    except ImportError:
        return None, "skipped: psycopg is not installed (pip install -e '.[postgres]')"
    server = PgServer(bindir).start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        for setting in ("fsync = on", "full_page_writes = on", "synchronous_commit = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
    return server, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="where to build the folder logs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the folder logs afterwards")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="measure one kind of log only")
    args = parser.parse_args()
    root = Path(args.folder or tempfile.mkdtemp(prefix="log-bench-"))
    results: dict[str, dict[str, float] | str] = {}
    try:
        if args.only != "postgresql":
            results["SQLite (folder)"] = measure(lambda name: ExperimentLog(root / name), grow, bytes_per_take)
        if args.only != "sqlite":
            server, reason = start_postgres(root)
            if server is None:
                results["PostgreSQL"] = str(reason)
            else:
                try:

                    def open_pg(name: str) -> ExperimentLog:
                        PG_URLS[name] = server.new_database()
                        return ExperimentLog(PG_URLS[name], folder=root / f"pg-local-{name}")

                    results["PostgreSQL"] = measure(open_pg, grow_pg, bytes_per_take_pg)
                finally:
                    server.stop()
        report(results)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}")


if __name__ == "__main__":
    main()
