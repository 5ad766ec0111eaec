"""Request rates as the service counts them: one sliding-window rule, shared by the client's
limiter (to keep under a limit) and the offline simulator (to enforce it).

- :class:`SlidingWindow`: the rule, in memory (the simulator enforces limits with it).
- :class:`SharedWindow`: the same rule in a small SQLite file in a per-user runtime folder, so
  that several processes using one key on one machine share the key's budget. The file is
  named by a hash of the key and host, never the key itself.
- :class:`RateLimiter`: blocks callers to keep under a rate (in memory, or shared).
- :class:`ConcurrencyController`: how many requests to keep in flight: Little's law (in flight
  = rate x latency) from the latency it observes, within a ceiling, halved on 429.

The names speak of ``requests_per_second``; ``rate`` means speaking speed elsewhere.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cosyvoice_lab import catalog

RUNTIME_DIR_NAME = "cosyvoice-lab"  # the per-user folder of the shared windows (see runtime_dir)


@dataclass(frozen=True)
class Limits:
    """What a client allows itself (as httpx's ``Limits``): ours, beneath the service's own.

    Attributes:
        requests_per_second: the documented limit (``catalog.ENROLLMENT_RPS``) minus a margin for
            jitter. With the window ``window_slack`` longer than the service's, 9/s sends at most 9
            in any 1.1 s (about 8.2/s), so requests that arrive a little bunched never pass 10 in
            one second.
        window_slack: seconds the client's window is longer than the service's.
        max_concurrency: the most requests in flight ever (threads and connections; 9/s x 8 s
            designs x 1.25 = 90).
        concurrency_headroom: in flight = rate x latency x this (latencies jitter; a task waiting
            for the limiter costs only a thread).
        cut_interval: 429s closer together than this (or one latency) are one signal.
        shared_window_stale: a shared window file unused this long (seconds) is removed.
    """

    requests_per_second: float = catalog.ENROLLMENT_RPS - 1.0
    window_slack: float = 0.1
    max_concurrency: int = 100
    concurrency_headroom: float = 1.25
    cut_interval: float = 1.0
    shared_window_stale: float = 86400.0


DEFAULT_LIMITS = Limits()


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
        with self._lock:  # the clock is read under the lock, so the deque stays in time order
            now = self._clock()
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


def runtime_dir() -> Path:
    """The per-user folder for the shared windows: ``COSYVOICE_LAB_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/cosyvoice-lab``, else a private folder in the system's temp folder."""
    given = os.environ.get("COSYVOICE_LAB_RUNTIME_DIR")
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / RUNTIME_DIR_NAME
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"{RUNTIME_DIR_NAME}-{user}"


def budget_id(key: str, host: str, kind: str) -> str:
    """The name of a key's budget on a host: a hash, from which the key cannot be recovered."""
    digest = hashlib.sha256(f"cosyvoice-lab budget\0{kind}\0{host}\0{key}".encode()).hexdigest()
    return f"{kind}-{digest[:24]}"


def prune(folder: Path, older_than: float = DEFAULT_LIMITS.shared_window_stale) -> None:
    """Remove shared windows nobody has used for ``older_than`` seconds (simulators on random
    ports leave one each)."""
    cutoff = time.time() - older_than
    for path in folder.glob("*.sqlite*") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


class SharedWindow:
    """The :class:`SlidingWindow` rule kept in a SQLite file, so that every process on this
    machine that opens the same file counts its requests in one window. The clock is
    ``time.monotonic`` (one clock for the whole machine); entries from the future (a reboot)
    are dropped. Durability does not matter here, so the file is written without syncing."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic):
        self.path, self._clock = Path(path), clock
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        # Switching a new file to WAL answers "locked" at once, without the busy handler, when another
        # process switches it at the same moment (two compares started together): wait and retry, or
        # the limiter would fall back to counting this process alone and the two together exceed the limit.
        deadline, pause = time.monotonic() + 10.0, 0.002
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 0.1)
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS sent (t REAL NOT NULL)")

    def __repr__(self) -> str:
        return f"SharedWindow({self.path.name!r})"

    def admit(self, rps: float | None, slack: float = 0.0) -> float:
        """As :meth:`SlidingWindow.admit`, counted across processes."""
        if not rps:
            return 0.0
        capacity = max(1, math.floor(rps))
        window = max(1.0, capacity / rps) + slack
        with self._lock, contextlib.closing(self._db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                cur.execute("DELETE FROM sent WHERE t <= ? OR t > ?", (now - window, now + 1.0))
                count, oldest = cur.execute("SELECT count(*), min(t) FROM sent").fetchone()
                if count >= capacity:
                    return max(oldest + window - now, 1e-3)
                cur.execute("INSERT INTO sent (t) VALUES (?)", (now,))
                return 0.0
            finally:
                cur.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class RateLimiter:
    """Blocks callers so that no window of one second holds more than ``floor(requests_per_second)``
    requests.

    The same sliding-window rule the service applies, so a batch can start at once (up to
    ``requests_per_second`` requests) and then keep a steady pace without a single 429; the window
    is ``slack`` seconds longer than the service's, for network jitter. ``requests_per_second=None``
    or 0 disables the limit; ``clock`` and ``sleep`` are injectable for tests. :meth:`share` makes
    the window one that other processes with the same key share.
    """

    def __init__(
        self,
        requests_per_second: float | None = DEFAULT_LIMITS.requests_per_second,
        *,
        slack: float = DEFAULT_LIMITS.window_slack,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if requests_per_second is not None and requests_per_second < 0:
            raise ValueError(f"requests_per_second must be >= 0, got {requests_per_second}")
        self.requests_per_second, self.slack = requests_per_second or None, slack
        self._clock, self._sleep = clock, sleep
        self._window = SlidingWindow(clock)
        self._shared: SharedWindow | None = None
        self._local = threading.local()

    def __repr__(self):
        return f"RateLimiter(requests_per_second={self.requests_per_second}{', shared' if self._shared else ''})"

    def share(self, key: str, host: str, kind: str = "enrollment") -> None:
        """Count requests in the window every process on this machine shares for ``key`` on
        ``host`` (a file named by their hash). If the file cannot be opened the limiter stays
        per-process (and says nothing: it is an optimisation of a limit that still holds)."""
        if not self.requests_per_second:
            return
        try:
            folder = runtime_dir()
            prune(folder)
            self._shared = SharedWindow(folder / f"{budget_id(key, host, kind)}.sqlite", self._clock)
        except (OSError, sqlite3.Error):
            self._shared = None

    def _admit(self) -> float:
        if self._shared is not None:
            try:
                return self._shared.admit(self.requests_per_second, self.slack)
            except sqlite3.Error:  # a broken shared file: keep the limit in this process
                self._shared = None
        return self._window.admit(None, self.requests_per_second, self.slack)

    def acquire(self) -> None:
        """Block until the caller may send one request."""
        while self.requests_per_second and (wait := self._admit()) > 0:
            t0 = self._clock()
            self._sleep(wait)
            self._local.waited = self.waited() + (self._clock() - t0)

    def waited(self) -> float:
        """Seconds the calling thread has spent waiting in :meth:`acquire`, in all."""
        return getattr(self._local, "waited", 0.0)


class ConcurrencyController:
    """How many requests to keep in flight to reach ``requests_per_second`` and no further.

    Little's law: sustaining a rate R with requests that take L seconds needs R x L in flight. L is
    the busy time of finished tasks (an average over the last few; time spent waiting for the rate
    limiter is not busy), or a third of the oldest one's age in flight if that is more (latency
    jumped); before the first finishes, the oldest one's age (it is at least that slow). The limit
    is ``ceil(R x L x headroom)``, never below one window's burst (``floor(R)``), never above
    ``ceiling``. A 429 halves it (at most once per latency, the answers to one burst are one
    signal); each task that finishes without one adds one back (slow start), so the limit recovers
    when the server stops answering 429.

    Args:
        requests_per_second: the rate the limiter allows (None: no rate, the ceiling applies).
        ceiling: the most in flight ever (``Limits.max_concurrency``).
        waited: the calling thread's seconds spent in the rate limiter (``RateLimiter.waited``).
        clock: injectable for tests.
    """

    def __init__(
        self,
        requests_per_second: float | None,
        *,
        ceiling: int = DEFAULT_LIMITS.max_concurrency,
        headroom: float = DEFAULT_LIMITS.concurrency_headroom,
        waited: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        self.requests_per_second, self.ceiling, self.headroom = requests_per_second, ceiling, headroom
        self._waited, self._clock = waited, clock
        self._lock = threading.Lock()
        self.latency: float | None = None  # busy seconds per task, a moving average
        self.cap = float(ceiling)  # the AIMD window: halved on 429, +1 per clean finish
        self.throttled_count = 0  # 429s seen
        self.peak_in_flight = 0  # the most tasks in flight at once
        self._last_cut: float | None = None
        self._starts: dict[int, float] = {}
        self._next = 0

    def __repr__(self) -> str:
        latency = "?" if self.latency is None else f"{self.latency:.2f} s"
        return f"ConcurrencyController(rps={self.requests_per_second}, latency={latency}, cap={self.cap:.0f})"

    def limit(self, upper: int | None = None, *, oldest_age: float | None = None) -> int:
        """How many tasks may be in flight now (at most ``upper`` when given)."""
        with self._lock:
            if oldest_age is None:
                oldest_age = self._clock() - min(self._starts.values()) if self._starts else 0.0
            bound = min(upper or self.ceiling, self.ceiling, math.floor(self.cap))
            if not self.requests_per_second:
                return max(1, bound)
            # before the first finish, the oldest task's age is a lower bound of the latency;
            # after it, a third of it (waiting in the limiter ages a task too: counted whole, a
            # surplus in flight would make itself look needed)
            latency = oldest_age if self.latency is None else max(self.latency, oldest_age / 3)
            burst = max(1, math.floor(self.requests_per_second))
            little = math.ceil(self.requests_per_second * latency * self.headroom)
            return max(1, min(bound, max(burst, little)))

    def observe(self, busy_seconds: float) -> None:
        """One task finished after ``busy_seconds`` of work: update the latency, grow the cap."""
        with self._lock:
            busy = max(0.0, busy_seconds)
            self.latency = busy if self.latency is None else 0.7 * self.latency + 0.3 * busy
            self.cap = min(float(self.ceiling), self.cap + 1.0)

    def throttled(self, in_flight: int | None = None) -> None:
        """The server answered 429: halve the limit (once per latency; see the class)."""
        with self._lock:
            self.throttled_count += 1
            now = self._clock()
            quiet = max(self.latency or 0.0, DEFAULT_LIMITS.cut_interval)
            if self._last_cut is not None and now - self._last_cut < quiet:
                return
            self._last_cut = now
            using = min(self.cap, float(in_flight if in_flight is not None else len(self._starts) or self.cap))
            self.cap = max(1.0, math.floor(using / 2))

    def on_response(self, response, *args, **kwargs) -> None:
        """A ``requests`` response hook: a 429 counts as :meth:`throttled`."""
        if getattr(response, "status_code", None) == 429:
            self.throttled()

    def timed(self, task: Callable[[], object]) -> Callable[[], object]:
        """``task`` wrapped so that its busy time (time in the rate limiter excluded) is observed."""

        def run():
            with self._lock:
                token, self._next = self._next, self._next + 1
                self._starts[token] = t0 = self._clock()
                self.peak_in_flight = max(self.peak_in_flight, len(self._starts))
            w0 = self._waited()
            try:
                return task()
            finally:
                with self._lock:
                    del self._starts[token]
                self.observe(self._clock() - t0 - (self._waited() - w0))

        return run
