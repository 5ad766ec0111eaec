"""Peak resident memory of a CLI compare, every default measure on (target <= 1 GiB).

Runs ``cosyvoice-lab compare`` offline (the simulator in the same process, as a user without a
key gets it) in a fresh folder: 3 prompts x 2 models x R repeats, for 30 and 300 takes. Prints
the peak resident set of the process (``wait4``'s ``ru_maxrss``: the kernel's own high-water
mark, nothing sampled), its wall and CPU time, and how many takes ended ok and measured. Then the
same for ``Lab()`` plus one design, and one ``measure()`` with predicted quality, each in a fresh
interpreter.

    .venv/bin/python benchmarks/memory_bench.py [--takes 30 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

GIB = 1024**3
TARGET = 1 * GIB
PROMPTS = [
    "A calm, deep male narrator, slow and steady",
    "A bright, high-pitched young female voice, fast and cheerful",
    "An elderly, warm storyteller with a hoarse voice",
]


def run(cmd: list[str], env: dict) -> tuple[int, float, float, float, str]:
    """(exit code, peak RSS bytes, wall s, CPU s, stdout) of one child process."""
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    return child.returncode, usage.ru_maxrss * 1024, wall, usage.ru_utime + usage.ru_stime, out


def env() -> dict:
    out = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    repo = str(Path(__file__).resolve().parent.parent)  # this checkout's package, in the child too
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, out.get("PYTHONPATH")]))
    return out


def compare(takes: int) -> None:
    repeats = max(1, takes // (len(PROMPTS) * 2))
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        folder = Path(tmp) / "lab"
        cmd = [sys.executable, "-m", "cosyvoice_lab.cli", "compare", str(prompts), "--repeats", str(repeats)]
        code, peak, wall, cpu, _ = run([*cmd, "--folder", str(folder), "--backend", "offline", "--json"], env())
        counts = subprocess.run(
            [sys.executable, "-c", COUNT, str(folder)], env=env(), capture_output=True, text=True, check=True
        ).stdout
        ok, measured = json.loads(counts)
    n = len(PROMPTS) * 2 * repeats
    print(
        f"CLI compare, {n:>4} takes        peak {peak / GIB:5.2f} GiB   ratio {peak / TARGET:4.2f}   "
        f"wall {wall:6.1f} s   CPU {cpu:6.1f} s   exit {code}   ok {ok}/{n}   measured {measured}/{n}",
        flush=True,
    )


COUNT = textwrap.dedent(
    """
    import json, sys
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    takes = ExperimentLog(sys.argv[1]).takes()
    print(json.dumps([sum(t.ok for t in takes), sum(bool((t.metrics or {}).get("measures_version")) for t in takes)]))
    """
)
ONE_DESIGN = textwrap.dedent(
    """
    import sys, tempfile
    from cosyvoice_lab import Lab
    lab = Lab(tempfile.mkdtemp(), backend="offline", progress=False)
    take = lab.design("A calm, deep male narrator", preview_text="Good evening, and welcome to the late news.")
    assert take.metrics and take.metrics.get("dnsmos_ovrl") == take.metrics.get("dnsmos_ovrl")
    """
)
ONE_MEASURE = textwrap.dedent(
    """
    import numpy as np
    from cosyvoice_lab.analysis import measure
    from cosyvoice_lab.offline import engine
    text = "Good evening, and welcome to the late news. Here are tonight's headlines, and the weather."
    x = engine.render(text, engine.settings_for("A calm man.", "en", "v1"), 24000)
    measure(x, text, sample_rate=24000)
    """
)


def snippet(label: str, code: str) -> None:
    status, peak, wall, cpu, _ = run([sys.executable, "-c", code], env())
    print(f"{label:<30} peak {peak / GIB:5.2f} GiB   wall {wall:6.1f} s   CPU {cpu:6.1f} s   exit {status}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takes", type=int, nargs="+", default=[30, 300])
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; target {TARGET / GIB:g} GiB")
    snippet("Lab() + one design (measured)", ONE_DESIGN)
    snippet("one measure() incl. DNSMOS", ONE_MEASURE)
    for n in args.takes:
        compare(n)


if __name__ == "__main__":
    main()
