"""Processes the tests start: the CLI as a user runs it (without the API key or a team log from
this environment), and forked children that do one thing at the same instant (a barrier)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable


def _at_the_barrier(action, barrier, results):
    barrier.wait()
    try:
        action()
        results.put(None)
    except Exception as exc:  # reported to the parent, which names it
        results.put(repr(exc))


def failures_at_once(action: Callable[[int], Callable[[], object]], *, processes: int = 6, rounds: int = 25) -> list:
    """Run ``action(round)()`` in ``processes`` forked children released together, ``rounds``
    times; returns what each child that failed raised (repr)."""
    ctx = multiprocessing.get_context("fork")
    failures: list = []
    for round_ in range(rounds):
        barrier, results = ctx.Barrier(processes), ctx.Queue()
        args = (action(round_), barrier, results)
        children = [ctx.Process(target=_at_the_barrier, args=args) for _ in range(processes)]
        for child in children:
            child.start()
        failures += [r for r in (results.get(timeout=120) for _ in children) if r is not None]
        for child in children:
            child.join(timeout=120)
    return failures


def child_env(**extra: str) -> dict:
    """This environment without the API key and the team log, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "COSYVOICE_LAB_LOG")}
    return {**env, **extra}


def cli_process(*args: str, env: dict | None = None, cores: set[int] | None = None) -> subprocess.Popen:
    """``cosyvoice-lab ARGS`` started, its output captured as text (default env: ``child_env()``),
    on ``cores`` only when given (set as it starts, before its imports are done and it starts a thread)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "cosyvoice_lab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env() if env is None else env,
    )
    if cores is not None:
        os.sched_setaffinity(child.pid, cores)
    return child


def loaded_core(busy: int = 4) -> tuple[set[int], list[subprocess.Popen]]:
    """One core of this machine loaded by ``busy`` processes that only spin: ``(cores, hogs)``. The
    load of 4 per core, as on a 2-core machine running 8 busy processes, without taking every
    core from the rest of the suite; kill the hogs when done (``unload``)."""
    core = {max(os.sched_getaffinity(0))}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    for hog in hogs:
        os.sched_setaffinity(hog.pid, core)
    return core, hogs


def unload(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()
