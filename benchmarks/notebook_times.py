"""How long each tutorial notebook takes offline, top to bottom, and where the time goes.

Each notebook is copied to a fresh folder (its own lab folder, no API key: the offline simulator)
and executed with nbclient, as the test suite does; the wall time of the whole run (kernel start
included) and of its slowest cells is printed, with the ratio to the target (20 s).

    .venv/bin/python benchmarks/notebook_times.py [--runs N] [--cells K] [notebooks/02_*.ipynb ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from cosyvoice_lab import folders

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 20.0


def kernel_sees_this_checkout() -> None:
    """The kernel starts in the notebook's temporary folder, so a relative PYTHONPATH (``PYTHONPATH=.``)
    would name that folder there and the kernel would import whichever cosyvoice_lab is installed
    (another checkout's editable install): put this checkout first and make every entry absolute."""
    entries = [str(REPO)] + [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))


def run(path: Path, cells: int) -> tuple[float, list[tuple[float, int, str]]]:
    """(wall seconds, the ``cells`` slowest cells as (seconds, index, first line))."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "notebooks"
        work.mkdir()
        shutil.copy(path, work / path.name)
        os.environ[folders.LAB_HOME_ENV] = str(Path(tmp) / "lab")
        os.environ.pop("DASHSCOPE_API_KEY", None)
        nb = nbformat.read(work / path.name, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
        times: list[tuple[float, int, str]] = []
        start = time.perf_counter()
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                t0 = time.perf_counter()
                client.execute_cell(cell, index)
                if cell.cell_type == "code":
                    times.append((time.perf_counter() - t0, index, cell.source.splitlines()[0] if cell.source else ""))
            wall = time.perf_counter() - start
            probe = nbformat.v4.new_code_cell("import cosyvoice_lab; print(cosyvoice_lab.__file__)")
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
        imported = Path(probe.outputs[0]["text"].strip())
        if not imported.is_relative_to(REPO):
            raise SystemExit(f"{path.name}: the kernel imported {imported}, not this checkout's package ({REPO})")
    return wall, sorted(times, reverse=True)[:cells]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=1, help="runs per notebook (the median is shown)")
    ap.add_argument("--cells", type=int, default=3, help="slowest cells shown per notebook")
    args = ap.parse_args()
    kernel_sees_this_checkout()
    paths = args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb"))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores; load average {load:.1f}; target {TARGET_S:g} s per notebook; package from {REPO}")
    for path in paths:
        results = [run(path, args.cells) for _ in range(args.runs)]
        walls = [w for w, _ in results]
        median = statistics.median(walls)
        spread = f" (runs: {', '.join(f'{w:.1f}' for w in walls)})" if len(walls) > 1 else ""
        load = os.getloadavg()[0]
        print(f"{path.name:<40} {median:6.1f} s   ratio {median / TARGET_S:4.2f}{spread}  load {load:.1f}", flush=True)
        for seconds, index, first in results[-1][1]:
            print(f"    cell {index:>2} {seconds:6.1f} s  {first[:70]}", flush=True)


if __name__ == "__main__":
    main()
