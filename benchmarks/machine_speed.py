"""How fast this machine runs Python at the moment: CPU seconds of one pure-Python loop
(``for i in range(30_000_000): s += i``), best of three, and the machine's load average.

Run:  python benchmarks/machine_speed.py

The 2-core machine this project is measured on ran the same loop up to 1.8 times slower at one
moment than at another on one day (other machines on the same host): print it beside a timing, and
compare timings taken at a like speed.
"""

import os
import time


def loop_seconds() -> float:
    start = time.process_time()
    total = 0
    for i in range(30_000_000):
        total += i
    return time.process_time() - start


if __name__ == "__main__":
    runs = [loop_seconds() for _ in range(3)]
    print(f"pure-Python loop: {min(runs):.2f} s of CPU (best of 3; all: {', '.join(f'{r:.2f}' for r in runs)})")
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
