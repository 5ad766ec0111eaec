"""Where the test suite's time goes: CPU and wall time per test file and per test.

Runs the suite as ``make test`` does (``pytest -n <cores + 2> --dist loadgroup``, any further arguments
passed on, e.g. ``-m "not slow"``) with a small plugin that records, for every test on every
worker, its wall time, the worker's own CPU time and its children's (the CLI processes, notebook
kernels and servers a test starts and waits for). Prints the totals, the files and the tests that
cost the most CPU, and the tests that hold a worker longest while using little CPU (sleeps,
waits: time the other workers could have had).

    .venv/bin/python benchmarks/suite_cpu.py                # the whole suite
    .venv/bin/python benchmarks/suite_cpu.py -m "not slow"  # the quick loop
    .venv/bin/python benchmarks/suite_cpu.py --top 40 tests/test_cli.py

A child's CPU is counted when the test that started it has waited for it; a server kept for a
whole session (the browser's JupyterLab, a worker's PostgreSQL) shows in no test.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUT_ENV = "SUITE_CPU_OUT"


# --- the plugin (loaded into each pytest worker as ``-p suite_cpu``) --------------------------------
def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own0, children0 = _cpu()
    start, t0 = time.time(), time.perf_counter()
    yield
    own1, children1 = _cpu()
    folder = os.environ.get(OUT_ENV)
    if folder:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        row = {
            "id": item.nodeid,
            "worker": worker,
            "start": start,
            "wall": time.perf_counter() - t0,
            "own": own1 - own0,
            "children": children1 - children0,
        }
        with open(Path(folder) / f"{worker}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


# --- the report ------------------------------------------------------------------------------------
def report(rows: list[dict], wall: float, top: int) -> None:
    cpu = sum(r["own"] + r["children"] for r in rows)
    print(f"{len(rows)} tests; wall {wall:.0f} s; CPU counted in tests {cpu:.0f} s", end="")
    print(f" (CPU / wall {cpu / wall:.2f})" if wall else "")
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for r in rows:
        f = files[r["id"].split("::")[0]]
        f[0] += 1
        f[1] += r["own"]
        f[2] += r["children"]
        f[3] += r["wall"]
    print(f"\n{'file':52s} {'tests':>5s} {'own':>7s} {'children':>8s} {'wall':>7s}  share of CPU")
    for name, (n, own, children, w) in sorted(files.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        print(f"{name:52s} {n:5d} {own:7.1f} {children:8.1f} {w:7.1f}  {(own + children) / cpu:6.1%}")
    print(f"\n{'CPU s':>7s} {'wall s':>7s}  test (most CPU)")
    for r in sorted(rows, key=lambda r: -(r["own"] + r["children"]))[:top]:
        print(f"{r['own'] + r['children']:7.1f} {r['wall']:7.1f}  {r['id']}")
    if all("start" in r for r in rows):
        workers(rows)
    print(f"\n{'idle s':>7s} {'wall s':>7s}  test (most wall time beyond its CPU)")
    for r in sorted(rows, key=lambda r: -(r["wall"] - r["own"] - r["children"]))[: max(5, top // 2)]:
        print(f"{r['wall'] - r['own'] - r['children']:7.1f} {r['wall']:7.1f}  {r['id']}")


def workers(rows: list[dict]) -> None:
    """Each worker's share: tests, time in tests, CPU, when it ran its last test (a worker that ends
    early while another still runs is the suite's tail)."""
    t0 = min(r["start"] for r in rows)
    by_worker: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_worker[r.get("worker", "?")].append(r)
    print(f"\n{'worker':8s} {'tests':>5s} {'in tests s':>10s} {'CPU s':>7s} {'last ends s':>11s}")
    for name, mine in sorted(by_worker.items()):
        end = max(r["start"] + r["wall"] for r in mine) - t0
        cpu = sum(r["own"] + r["children"] for r in mine)
        print(f"{name:8s} {len(mine):5d} {sum(r['wall'] for r in mine):10.1f} {cpu:7.1f} {end:11.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20, help="rows per table (default 20)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    parser.add_argument("--save", type=Path, help="also write every test's row (JSON lines) to this file")
    parser.add_argument("--workers", default=str(cores + 2), help="xdist's -n (default: cores + 2, as make test)")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as folder:
        # as `make test` runs it: Python may cache each module's bytecode (an environment saying
        # PYTHONDONTWRITEBYTECODE would have every worker, CLI run and kernel compile its imports again)
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            OUT_ENV: folder,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            args.workers,
            "--dist",
            "loadgroup",
            "-p",
            "suite_cpu",
            "-q",
            *pytest_args,
        ]
        print("running:", shlex.join(command), flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        lines = done.stdout.rstrip().splitlines()
        for line in lines:  # pytest's short summary: which tests failed
            if line.startswith(("FAILED ", "ERROR ")):
                print(line)
        print(lines[-1] if lines else "(no pytest output)")
        rows = [json.loads(line) for path in Path(folder).glob("*.jsonl") for line in path.read_text().splitlines()]
    if args.save:
        args.save.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if rows:
        report(rows, wall, args.top)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
