"""How close a compare gets to ideal parallel time, without passing the rate limit.

A 48-take compare against the offline simulator where each design takes 1.0 s longer (and a
listing 0.1 s: the real service lists in a blink but designs for seconds), at concurrency 1,
4 and 8. Ideal wall time is ceil(N / c) x latency; the ratio to it should stay within 1.15 at
4 and 8. "wall" is the whole compare call: its quota count before and its status check after
(one listing each) included; "runner only" skips both. The simulator enforces the service's
10 requests/second and the Lab is set to 9.5/s (so 9 in any second); the peak count of design
requests in any one-second window is printed, and the number of 429 answers.

    .venv/bin/python benchmarks/runner_bench.py [--takes 48] [--latency 1.0] [--list-latency 0.1] \
        [--requests-per-second 9.5]
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


def one_run(
    n: int, concurrency: int, latency: float, list_latency: float, requests_per_second: float, checks: bool
) -> tuple[float, int, int]:
    with serve() as sim, tempfile.TemporaryDirectory() as tmp:
        lab = Lab(
            Path(tmp) / "lab",
            backend="offline",
            base_url=sim.base_url,
            progress=False,
            measure=False,
            requests_per_second=requests_per_second,
            concurrency=concurrency,
        )
        sim.faults.action_latency = {"create_voice": latency, "list_voice": list_latency}
        t0 = time.perf_counter()
        comp = lab.compare(
            ["a steady, calm narrator"],
            models=["cosyvoice-v3.5-plus"],
            repeats=n,
            experiment=f"bench-{concurrency}",
            check_quota=checks,
            verify=checks,
        )
        wall = time.perf_counter() - t0
        creates = [t for t, action, _ in sim.request_log if action == "create_voice"]
        throttled = sum(1 for _, _, status in sim.request_log if status == 429)
        assert sum(t.ok for t in comp.takes) == n, "every take ok"
        return wall, peak_per_second(creates), throttled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--takes", type=int, default=48)
    ap.add_argument("--latency", type=float, default=1.0, help="seconds added to each design")
    ap.add_argument("--list-latency", type=float, default=0.1, help="seconds added to each listing")
    ap.add_argument("--requests-per-second", type=float, default=9.5)
    args = ap.parse_args()
    print(
        f"{args.takes}-take compare, {args.latency:.1f} s per design, {args.list_latency:.1f} s per listing, "
        f"lab {args.requests_per_second} requests/s, "
        f"simulator limit 10/s, {os.cpu_count()} cores"
    )
    print(
        f"{'concurrency':>11} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'runner only s':>15} {'ratio':>6} "
        f"{'peak req/s':>10} {'429s':>5}"
    )
    rps = args.requests_per_second
    for c in (1, 4, 8):
        ideal = math.ceil(args.takes / c) * args.latency
        wall, peak, throttled = one_run(args.takes, c, args.latency, args.list_latency, rps, True)
        bare, peak2, throttled2 = one_run(args.takes, c, args.latency, args.list_latency, rps, False)
        print(
            f"{c:>11} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.3f} {bare:>15.2f} {bare / ideal:>6.3f} "
            f"{max(peak, peak2):>10} {throttled + throttled2:>5}"
        )


if __name__ == "__main__":
    main()
