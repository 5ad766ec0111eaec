"""The instants a rate limiter let requests go (tests/test_concurrency.py, in the test's process and
in child processes): read from the clock its window counts by, under the window's lock, so they are
the client's own pace, whatever a loaded machine does to when the simulator gets to each request.
``time.monotonic`` is one clock for every process on the machine, so children's instants compare."""

from __future__ import annotations

import threading

from cosyvoice_lab.service.ratelimit import RateLimiter


def record_grants(patch=setattr) -> list[float]:
    """From now on, every grant of every ``RateLimiter`` in this process is appended to the list
    returned. ``patch``: how to replace the method (``monkeypatch.setattr`` undoes it after a test)."""
    seen: list[float] = []
    local = threading.local()
    real_admit = RateLimiter._admit

    def admit(self):
        for window in (self._window, self._shared):
            if window is not None and not getattr(window._clock, "spy", False):
                window._clock = _reading(window._clock, local)
        wait = real_admit(self)
        if wait <= 0:
            seen.append(local.now)
        return wait

    patch(RateLimiter, "_admit", admit)
    return seen


def _reading(clock, local):
    def read():
        local.now = clock()
        return local.now

    read.spy = True
    return read


def within(times, seconds: float) -> int:
    """The most of ``times`` in any window of ``seconds``."""
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best
