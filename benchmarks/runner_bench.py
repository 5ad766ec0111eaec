"""How close a compare gets to the fastest the service's rate limit allows, without a 429.

With R the allowed rate (the service's 10 voice actions/s) and L one design's latency, a compare
of N takes cannot finish before about N/R + L. This bench runs compares with the Lab's defaults
(no concurrency, no rate given: the runner sizes itself) against the offline simulator with its
design latency set (``serve(model_profiles={"*": {"design_latency": L}})``, jittered +-30 %),
for L in {0.5, 2, 8} s and N in {12, 48, 200}, and prints the wall time of the whole compare
call (its quota listing before and status listing after included), its ratio to N/R + L, the
most requests in any one second (all actions: the listings share the budget), the most takes
in flight, and the 429 answers. Then the cases the issue names: 40 takes at 2 s and 8 s, and
two processes with the same key each comparing 40 takes (wall time from the first start to the
last end, against 80/R + L). Last, the issue's cases with every default measure on (the measuring
stage: ``Lab(measure=True)``, the default): the compare's wall time (it returns once the designs
are in) against N/R + L, and the time until every measure is written ("measured"), whose bound
is the larger of N/R + L and the measuring's CPU time spread over the cores.

    .venv/bin/python benchmarks/runner_bench.py [--quick] [--measures-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cosyvoice_lab import Lab, catalog
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS

R = catalog.ENROLLMENT_RPS
MODELS = list(catalog.COMPARE_MODELS)


def peak_per_second(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def compare(base_url: str, folder: Path, n: int, measure: bool = False) -> dict:
    """One compare of ``n`` takes (one prompt, both models) with the Lab's defaults."""
    lab = Lab(folder, backend="offline", base_url=base_url, progress=False, measure=measure)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    comp = lab.compare(["a steady, calm narrator"], target_models=MODELS, repeats=n // len(MODELS), experiment="bench")
    wall = time.monotonic() - t0
    lab.measuring.wait()
    measured = time.monotonic() - t0
    failed = sum(not t.ok for t in comp.takes)
    done = sum(bool((t.metrics or {}).get("measures_version")) for t in comp.takes)
    return {
        "wall": wall,
        "failed": failed,
        "in_flight": lab.pacer.peak_in_flight,
        "start": t0,
        "end": t0 + wall,
        "measured": measured,
        "measured_takes": done,
        "cpu": time.process_time() - cpu0,
        "measure_workers": lab.measuring.peak_running,
    }


def sim_figures(sim) -> tuple[int, int]:
    log = list(sim.request_log)
    return peak_per_second([t for t, _, _ in log]), sum(1 for *_, status in log if status == 429)


def one_run(n: int, latency: float, measure: bool = False) -> dict:
    with serve(model_profiles={"*": {"design_latency": latency}}) as sim, tempfile.TemporaryDirectory() as tmp:
        out = compare(sim.base_url, Path(tmp) / "lab", n, measure)
        out["peak"], out["429"] = sim_figures(sim)
        return out


def two_processes(n: int, latency: float) -> dict:
    """Two processes with the same key, each comparing ``n`` takes, started together."""
    with serve(model_profiles={"*": {"design_latency": latency}}) as sim, tempfile.TemporaryDirectory() as tmp:
        go = time.time() + 4.0  # both import, then start at once
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", sim.base_url, str(Path(tmp) / f"lab{i}"), str(n), str(go)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        peak, throttled = sim_figures(sim)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "wall": wall,
        "failed": sum(r["failed"] for r in results),
        "in_flight": max(r["in_flight"] for r in results),
        "peak": peak,
        "429": throttled,
    }


def child(base_url: str, folder: str, n: int, go: float) -> None:
    time.sleep(max(0.0, go - time.time()))
    out = compare(base_url, Path(folder), n)
    shift = time.time() - time.monotonic()  # one clock for both processes' figures
    print(json.dumps({**out, "start": out["start"] + shift, "end": out["end"] + shift}))


def row(label: str, n: int, latency: float, out: dict) -> None:
    bound = n / R + latency
    print(
        f"{label:>10} {n:>5} {latency:>5.1f} {out['wall']:>8.2f} {bound:>9.2f} {out['wall'] / bound:>6.2f} "
        f"{out['peak']:>9} {out['in_flight']:>9} {out['429']:>5} {out['failed']:>7}",
        flush=True,
    )


def measured_row(n: int, latency: float, out: dict) -> None:
    bound = n / R + latency
    print(
        f"{'measures':>10} {n:>5} {latency:>5.1f} {out['wall']:>8.2f} {bound:>9.2f} {out['wall'] / bound:>6.2f} "
        f"{out['peak']:>9} {out['in_flight']:>9} {out['429']:>5} {out['failed']:>7}   measured after "
        f"{out['measured']:.2f} s ({out['measured'] / bound:.2f} x bound; {out['measured_takes']}/{n} takes, "
        f"process CPU {out['cpu']:.1f} s, at most {out['measure_workers']} measuring at once)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N in {12, 48}, L in {0.5, 2}, and the issue's cases")
    ap.add_argument("--measures-only", action="store_true", help="only the 40-take cases with measures on")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        base_url, folder, n, go = args.child
        child(base_url, folder, int(n), float(go))
        return
    print(
        f"compare with the Lab's defaults ({DEFAULT_LIMITS.requests_per_second:g} requests/s, concurrency sized by the "
        f"runner, at most {DEFAULT_LIMITS.max_concurrency}); simulator limit {R:g}/s; bound = N/R + L; "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'case':>10} {'N':>5} {'L s':>5} {'wall s':>8} {'N/R+L s':>9} {'ratio':>6} {'peak r/s':>9} "
        f"{'in flight':>9} {'429s':>5} {'failed':>7}"
    )
    if args.measures_only:
        for latency in (2.0, 8.0):
            measured_row(40, latency, one_run(40, latency, measure=True))
        return
    latencies, sizes = ((0.5, 2.0), (12, 48)) if args.quick else ((0.5, 2.0, 8.0), (12, 48, 200))
    for latency in latencies:
        for n in sizes:
            row("grid", n, latency, one_run(n, latency))
    for latency in (2.0, 8.0):
        row("issue", 40, latency, one_run(40, latency))
    for latency in (2.0,) if args.quick else (2.0, 8.0):
        row("2 procs", 80, latency, two_processes(40, latency))
    for latency in (2.0, 8.0):
        measured_row(40, latency, one_run(40, latency, measure=True))


if __name__ == "__main__":
    main()
