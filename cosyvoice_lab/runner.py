"""Running many requests: a thread pool, a token-bucket rate limit, progress, clean interrupts.

The runner knows nothing about voices: it runs callables and counts outcomes. Each task is
expected to record its own outcome (the Lab's tasks write the log before and after their
request), so an interrupt loses nothing that finished.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

from . import catalog

T = TypeVar("T")
log = logging.getLogger("cosyvoice_lab.runner")


class SlidingWindow:
    """Requests per second as the service counts them: at most ``capacity = max(1, floor(rps))``
    requests in any window of ``max(1, capacity / rps)`` seconds — 10 rps admits 10 in any
    second, 2.7 rps admits 2 (never 3 or 4 in one second), 0.5 rps one per two seconds.
    Counted per key; rejected requests do not count. The simulator enforces limits with it and
    the client keeps under them with it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[object, collections.deque] = collections.defaultdict(collections.deque)

    def admit(self, key, rps: float | None, slack: float = 0.0) -> float:
        """0.0 if a request may go now (and count it), else the seconds until one could.

        ``slack`` lengthens the window: a client keeping under a server's limit needs it,
        because requests reach the server a little later, and in a different order, than they
        leave."""
        if not rps:
            return 0.0
        capacity = max(1, math.floor(rps))
        window = max(1.0, capacity / rps) + slack
        now = self._clock()
        with self._lock:
            seen = self._seen[key]
            while seen and seen[0] <= now - window:
                seen.popleft()
            if len(seen) >= capacity:
                return max(seen[0] + window - now, 1e-3)
            seen.append(now)
            return 0.0

    def reset(self) -> None:
        """Forget all counted requests."""
        with self._lock:
            self._seen.clear()


class RateLimiter:
    """Blocks callers so that no window of one second holds more than ``floor(rate)`` requests.

    The same sliding-window rule the service applies, so a batch can start at once (up to
    ``rate`` requests) and then keep a steady pace without a single 429; the window is
    ``slack`` seconds longer than the service's, for network jitter. ``rate=None`` or 0
    disables the limit; ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, rate: float | None = catalog.DEFAULT_CLIENT_RPS, *, slack: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be >= 0 requests/second, got {rate}")
        self.rate, self.slack = rate or None, slack
        self._window, self._sleep = SlidingWindow(clock), sleep

    def __repr__(self):
        return f"RateLimiter(rate={self.rate})"

    def acquire(self) -> None:
        """Block until the caller may send one request."""
        while self.rate and (wait := self._window.admit(None, self.rate, self.slack)) > 0:
            self._sleep(wait)


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


def run_tasks(tasks: Sequence[Callable[[], T]], *, concurrency: int = 4, desc: str = "running",
              progress: bool = True, is_failure: Callable[[T], bool] = lambda r: False) -> RunResult[T]:
    """Run ``tasks`` on ``concurrency`` threads, showing done/failed/remaining.

    Ctrl-C (a kernel interrupt) stops cleanly: tasks not yet started are cancelled, tasks in
    flight finish and are kept, and the result says ``interrupted``. An exception escaping a
    task counts as a failure and is logged; it does not stop the others.
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
                _collect(fut, futures[fut], finished, out, is_failure)
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
            except BaseException:  # noqa: BLE001 - already counted below
                pass
            _collect(fut, futures[fut], finished, out, is_failure)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    out.results = [finished[i] for i in sorted(finished)]
    return out


def _collect(fut: Future, index: int, finished: dict, out: RunResult, is_failure) -> None:
    try:
        result = fut.result()
    except Exception as exc:  # noqa: BLE001 - a task must not take the run down
        log.error("task %d failed: %s: %s", index, type(exc).__name__, exc)
        out.failed += 1
        return
    finished[index] = result
    if is_failure(result):
        out.failed += 1
