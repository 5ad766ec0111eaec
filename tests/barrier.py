"""Processes that do one thing at the same instant: forked children meet at a barrier, then run."""

from __future__ import annotations

import multiprocessing
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
