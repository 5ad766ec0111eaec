"""A/B of the experiment log's speed between two source trees, runs interleaved (A, B, A, B...).

Run:  .venv/bin/python benchmarks/log_ab.py OLD_TREE NEW_TREE [--pairs 3] [--takes 10000]
          [--grow 100000] [--only sqlite|postgresql]

Each run is a fresh subprocess with the tree as its working directory and first on
``PYTHONPATH``; it loads that tree's own ``benchmarks/log_bench.py`` and calls its ``record``
(``--takes`` takes into a fresh log; ``record_cpu`` is this process's CPU time meanwhile, the
client's share, less disturbed by a busy machine than the wall time), ``load_df`` (at
``--takes``, then after its ``grow`` to ``--grow`` takes; 0 skips) and, for PostgreSQL,
``start_postgres`` (a server per run). So each tree is measured by its own benchmark code,
against its own log API. Interleaving spreads a shared machine's changing load over both trees.
Prints each run's figures, then the medians per tree and NEW/OLD (below 1: the new tree is
faster), with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import importlib.util, json, shutil, sys, tempfile, time
from pathlib import Path

kind, takes, grow_to = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = importlib.util.spec_from_file_location("log_bench", Path("benchmarks/log_bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
root = Path(tempfile.mkdtemp(prefix="log-ab-"))
server, figures = None, {}
try:
    if kind == "postgresql":
        server, reason = bench.start_postgres(root)
        if server is None:
            sys.exit(reason)
        bench.PG_URL[:] = [server.new_database()]
        log, grow = bench.ExperimentLog(bench.PG_URL[0], folder=root / "pg-local"), bench.grow_pg
    else:
        log, grow = bench.ExperimentLog(root / "main"), bench.grow
    with log:
        cpu = time.process_time()
        figures["record"] = bench.record(log, takes)
        figures["record_cpu"] = time.process_time() - cpu
        figures["df_small"] = bench.load_df(log)
        if grow_to > takes:
            grow(log, grow_to)
            figures["df_grown"] = bench.load_df(log)
finally:
    if server is not None:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)
print(json.dumps(figures))
"""


def run(tree: Path, kind: str, takes: int, grow_to: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(takes), str(grow_to)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{tree} ({kind}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--takes", type=int, default=10_000)
    parser.add_argument("--grow", type=int, default=100_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    print(f"load before: {os.getloadavg()}")
    for kind in kinds:
        results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for i in range(args.pairs):
            for name, tree in (("old", args.old), ("new", args.new)):
                figures = run(tree.resolve(), kind, args.takes, args.grow)
                results[name].append(figures)
                shown = "  ".join(f"{k} {v:.3f}" for k, v in figures.items())
                print(f"{kind:<10} pair {i + 1} {name}: {shown}  load {os.getloadavg()[0]:.2f}", flush=True)
        for key in results["old"][0]:
            old = statistics.median(r[key] for r in results["old"])
            new = statistics.median(r[key] for r in results["new"])
            print(f"{kind:<10} {key:<9} median old {old:.3f} s  new {new:.3f} s  new/old {new / old:.3f}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
