"""Running many requests: a thread pool, progress, clean interrupts (the rate limit is
``service.ratelimit``).

The runner knows nothing about voices: it runs callables and counts outcomes. Each task is
expected to record its own outcome (the Lab's tasks write the log before and after their
request), so an interrupt loses nothing that finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cosyvoice_lab import catalog

T = TypeVar("T")
log = logging.getLogger("cosyvoice_lab.lab.runner")


@dataclass
class RunResult(Generic[T]):
    """What a run produced: the results of the tasks that finished, in task order."""

    results: list[T] = field(default_factory=list)
    failed: int = 0
    interrupted: bool = False
    skipped: int = 0  # tasks never started (interrupt)

    @property
    def done(self) -> int:
        return len(self.results)


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # a notebook widget in Jupyter, text in a terminal

    return tqdm(total=total, desc=desc, unit="take", leave=True)


# on_done(index, result, error): one of result / error is None
OnDone = Callable[[int, T | None, Exception | None], None]


def run_tasks(
    tasks: Sequence[Callable[[], T]],
    *,
    concurrency: int = catalog.DEFAULT_CONCURRENCY,
    desc: str = "running",
    progress: bool = True,
    is_failure: Callable[[T], bool] = lambda r: False,
    on_done: OnDone | None = None,
) -> RunResult[T]:
    """Run ``tasks`` on ``concurrency`` threads, showing done/failed/remaining.

    Ctrl-C (a kernel interrupt) stops cleanly: tasks not yet started are cancelled, tasks in
    flight finish and are kept, and the result says ``interrupted``. An exception escaping a
    task counts as a failure and is logged; it does not stop the others.

    Args:
        on_done: called as each task finishes, in the calling thread, in the order they finish,
            with ``(task index, result, None)`` or ``(task index, None, exception)``; for a
            widget that shows results as they arrive. An exception it raises is logged.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    out: RunResult[T] = RunResult()
    bar = _progress_bar(len(tasks), desc, progress)
    finished: dict[int, T] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cosyvoice-lab")
    futures: dict[Future, int] = {pool.submit(task): i for i, task in enumerate(tasks)}
    pending, collected = set(futures), set()
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                _collect(fut, futures[fut], finished, out, is_failure, on_done)
                collected.add(fut)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=out.failed, remaining=len(pending))
    except KeyboardInterrupt:
        out.interrupted = True
        out.skipped = sum(1 for f in pending if f.cancel())
        # in flight, or done but not yet collected when the interrupt struck
        rest = [f for f in futures if f not in collected and not f.cancelled()]
        log.warning("interrupted: waiting for %d request(s) in flight; %d not started", len(rest), out.skipped)
        for fut in rest:
            try:
                fut.result()
            except BaseException:  # already counted below
                pass
            _collect(fut, futures[fut], finished, out, is_failure, on_done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    out.results = [finished[i] for i in sorted(finished)]
    return out


def _collect(fut: Future, index: int, finished: dict, out: RunResult, is_failure, on_done: OnDone | None) -> None:
    try:
        result = fut.result()
    except Exception as exc:  # a task must not take the run down
        log.error("task %d failed: %s: %s", index, type(exc).__name__, exc)
        out.failed += 1
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
