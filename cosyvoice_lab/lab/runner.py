"""Running many requests: a thread pool sized as it goes, progress, clean interrupts (the rate
limit and the concurrency controller are ``service.ratelimit``).

The runner knows nothing about voices: it runs callables and counts outcomes. Each task is
expected to record its own outcome (the Lab's tasks write the log before and after their
request), so an interrupt loses nothing that finished.

How many run at once: with a :class:`ConcurrencyController` (what the Lab passes), as many as
it says at each moment (Little's law from the latency it observes, halved on 429), never more
than ``concurrency``; without one, ``concurrency`` (default ``Limits.max_concurrency``).
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS, ConcurrencyController

T = TypeVar("T")
log = logging.getLogger("cosyvoice_lab.lab.runner")
POLL_S = 0.05  # how often the runner asks the controller again while nothing finishes


@dataclass
class RunResult(Generic[T]):
    """What a run produced: the results of the tasks that finished, in task order."""

    results: list[T] = field(default_factory=list)
    failed: int = 0
    raised: int = 0  # of the failed: tasks that raised (a take whose outcome the log could not record)
    interrupted: bool = False
    skipped: int = 0  # tasks never started (interrupt)
    reused: int = 0  # takes from earlier runs that were not sent again (as the caller said)
    max_in_flight: int = 0  # the most tasks that ran at once
    seconds: float = 0.0  # wall time of the run

    @property
    def done(self) -> int:
        return len(self.results)


class Progress:
    """The bar: done of total (reused ones count as done from the start), in flight, failed,
    and the rate achieved (takes finished per second this run)."""

    def __init__(self, total: int, reused: int, desc: str, enabled: bool):
        self.reused, self.bar, self.t0 = reused, None, time.monotonic()
        if not enabled:
            return
        if total == 0:  # an empty 0/0 bar says nothing; this does
            if reused:
                print(f"{desc}: {reused} take{'s' if reused != 1 else ''} reused, nothing to send", file=sys.stderr)
            return
        from tqdm.auto import tqdm  # a notebook widget in Jupyter, text in a terminal

        self.bar = tqdm(total=total + reused, initial=reused, desc=desc, unit="take", leave=True)
        self.show(0, 0, 0)

    def show(self, finished: int, in_flight: int, failed: int, advance: int = 0) -> None:
        if self.bar is None:
            return
        if advance:
            self.bar.update(advance)
        rate = finished / max(time.monotonic() - self.t0, 1e-9)
        self.bar.set_postfix_str(
            f"reused {self.reused}, in flight {in_flight}, failed {failed}, {rate:.1f} takes/s", refresh=False
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# on_done(index, result, error): one of result / error is None
OnDone = Callable[[int, T | None, Exception | None], None]


def run_tasks(
    tasks: Sequence[Callable[[], T]],
    *,
    concurrency: int | None = None,
    controller: ConcurrencyController | None = None,
    desc: str = "running",
    progress: bool = True,
    reused: int = 0,
    is_failure: Callable[[T], bool] = lambda r: False,
    on_done: OnDone | None = None,
) -> RunResult[T]:
    """Run ``tasks`` on threads, showing reused / in flight / done / failed and the rate achieved.

    Ctrl-C (a kernel interrupt) stops cleanly: tasks not yet started are not started, tasks in
    flight finish and are kept, and the result says ``interrupted``. An exception escaping a
    task counts as a failure and is logged; it does not stop the others.

    Args:
        concurrency: the most tasks in flight at once (None: ``Limits.max_concurrency``).
        controller: sizes the number in flight as the run goes (see ``ConcurrencyController``);
            without one, ``concurrency`` run at once.
        reused: takes an earlier run already made (shown; with no tasks the bar says
            "N takes reused, nothing to send").
        on_done: called as each task finishes, in the calling thread, in the order they finish,
            with ``(task index, result, None)`` or ``(task index, None, exception)``; for a
            widget that shows results as they arrive. An exception it raises is logged.
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    ceiling = DEFAULT_LIMITS.max_concurrency
    upper = min(concurrency or ceiling, ceiling if controller else sys.maxsize)
    out: RunResult[T] = RunResult(reused=reused)
    bar = Progress(len(tasks), reused, desc, progress)
    finished: dict[int, T] = {}
    queue = collections.deque(enumerate(tasks))
    running: dict[Future, int] = {}
    collected = 0
    pool = ThreadPoolExecutor(max_workers=max(1, min(upper, len(tasks))), thread_name_prefix="cosyvoice-lab")
    try:
        while queue or running:
            limit = controller.limit(upper) if controller else upper
            while queue and len(running) < limit:
                index, task = queue.popleft()
                running[pool.submit(controller.timed(task) if controller else task)] = index
            out.max_in_flight = max(out.max_in_flight, len(running))
            done, _ = wait(running, timeout=POLL_S if controller else 0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                _collect(fut, running.pop(fut), finished, out, is_failure, on_done)
            collected += len(done)
            bar.show(collected, len(running), out.failed, len(done))
    except KeyboardInterrupt:
        out.interrupted = True
        out.skipped = len(queue)
        log.warning("interrupted: waiting for %d request(s) in flight; %d not started", len(running), out.skipped)
        for fut, index in running.items():
            try:
                fut.result()
            except BaseException:  # counted in _collect
                pass
            _collect(fut, index, finished, out, is_failure, on_done)
        started = len(tasks) - out.skipped  # every one has finished now: the bar counts them, as the warning does
        bar.show(started, 0, out.failed, started - collected)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        out.seconds = time.monotonic() - bar.t0
    out.results = [finished[i] for i in sorted(finished)]
    return out


def _collect(fut: Future, index: int, finished: dict, out: RunResult, is_failure, on_done: OnDone | None) -> None:
    try:
        result = fut.result()
    except Exception as exc:  # a task must not take the run down
        log.error("task %d failed: %s: %s", index, type(exc).__name__, exc)
        out.failed += 1
        out.raised += 1
        _notify(on_done, index, None, exc)
        return
    finished[index] = result
    if is_failure(result):
        out.failed += 1
    _notify(on_done, index, result, None)


def _notify(on_done: OnDone | None, index: int, result, error: Exception | None) -> None:
    if on_done is None:
        return
    try:
        on_done(index, result, error)
    except Exception as exc:  # a display hook must not lose the tasks after it
        log.error("on_done for task %d failed: %s: %s", index, type(exc).__name__, exc)
