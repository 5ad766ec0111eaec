"""How close a compare gets to ideal parallel time, without passing the rate limit.

A 48-take compare against the offline simulator with 1.0 s added latency per request, at
concurrency 1, 4 and 8. Ideal wall time is ceil(N / c) x latency; the ratio to it should stay
within 1.15 at 4 and 8. The simulator enforces the service's 10 requests/second and the
Lab is set to 9.5/s; the peak count of requests in any one-second window is printed.

    .venv/bin/python benchmarks/runner_bench.py [--takes 48] [--latency 1.0] [--rate 9.5]
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from cosyvoice_lab import Lab
from cosyvoice_lab.offline import serve


def peak_per_second(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def one_run(n: int, concurrency: int, latency: float, rate: float, check_quota: bool) -> tuple[float, int, int]:
    with serve() as sim, tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", backend="offline", base_url=sim.base_url, progress=False,
                  measure=False, rate=rate, concurrency=concurrency)
        sim.faults.latency = latency
        t0 = time.perf_counter()
        comp = lab.compare(["a steady, calm narrator"], models=["cosyvoice-v3.5-plus"], repeats=n,
                           experiment=f"bench-{concurrency}", check_quota=check_quota)
        wall = time.perf_counter() - t0
        creates = [t for t, action, _ in sim.request_log if action == "create_voice"]
        throttled = sum(1 for _, _, status in sim.request_log if status == 429)
        assert sum(t.ok for t in comp.takes) == n, "every take ok"
        return wall, peak_per_second(creates), throttled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--takes", type=int, default=48)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=9.5)
    args = ap.parse_args()
    print(f"{args.takes}-take compare, {args.latency:.1f} s latency per request, lab rate {args.rate}/s, "
          f"simulator limit 10/s, {os.cpu_count()} cores")
    print("wall = the whole compare call; 'no pre-flight' skips its one quota-count list request")
    print(f"{'concurrency':>11} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'no pre-flight s':>15} {'ratio':>6} "
          f"{'peak req/s':>10} {'429s':>5}")
    for c in (1, 4, 8):
        ideal = math.ceil(args.takes / c) * args.latency
        wall, peak, throttled = one_run(args.takes, c, args.latency, args.rate, True)
        bare, peak2, throttled2 = one_run(args.takes, c, args.latency, args.rate, False)
        print(f"{c:>11} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.3f} {bare:>15.2f} {bare / ideal:>6.3f} "
              f"{max(peak, peak2):>10} {throttled + throttled2:>5}")


if __name__ == "__main__":
    main()
