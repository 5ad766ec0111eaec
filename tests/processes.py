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


def cli_process(*args: str, env: dict | None = None) -> subprocess.Popen:
    """``cosyvoice-lab ARGS`` started, its output captured as text (default env: ``child_env()``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cosyvoice_lab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env() if env is None else env,
    )
