"""Request rates as the service counts them: one sliding-window rule, shared by the client's
limiter (to keep under a limit) and the offline simulator (to enforce it).

The names speak of ``requests_per_second``; ``rate`` means speaking speed elsewhere.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

from cosyvoice_lab import catalog


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

    def __init__(
        self,
        rate: float | None = catalog.DEFAULT_CLIENT_RPS,
        *,
        slack: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
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
