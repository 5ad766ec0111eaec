"""The one retry loop: bounded, visible, full jitter, honouring ``Retry-After``.

Both the HTTP client and the WebSocket synthesizer retry through :class:`Retrier`. What may be
repeated is theirs to say (a predicate over the exception: was anything possibly stored or
billed?); how often and how long to wait is said here, once::

    retrier = Retrier(RetryPolicy(), sleep=time.sleep, logger=log)
    for attempt in retrier.attempts("list_voice", retryable=lambda exc: isinstance(exc, ServerError)):
        with attempt:
            return post(body)

The ``with`` block swallows a failure only when another attempt is allowed and the predicate
says repeating is safe; otherwise the exception propagates unchanged. The pattern works inside
a generator as well (the synthesizer yields audio frames from within the block), which is why
it is a loop of attempts rather than a ``call(fn)``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger("cosyvoice_lab.service.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` in all, sleeping ``min(max_delay, base_delay * 2**n)``
    with full jitter, or the server's ``Retry-After`` when it gives one (capped at
    ``max_retry_after``: better fail than hang a notebook). ``throttled_wait`` is the wait after a
    throttled synthesis task, which carries no ``Retry-After`` (the limits are per second)."""

    max_attempts: int = 4  # attempts in all, the first included
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    throttled_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts counts the first try too: at least 1, got {self.max_attempts}")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the failed attempt number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


DEFAULT_RETRY = RetryPolicy()  # the default of every client: built once, it is immutable


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def retry_after_of(exc: BaseException) -> float | None:
    """The wait the failure itself asked for (an ``APIError``'s ``Retry-After``), else None."""
    return getattr(exc, "retry_after", None)


class Attempt:
    """One try; a context manager that keeps a retryable failure for the loop to act on."""

    def __init__(self, number: int, *, last: bool, retryable: Callable[[Exception], bool]):
        self.number = number  # 1-based
        self.last = last
        self.failure: Exception | None = None
        self._retryable = retryable

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if not isinstance(exc, Exception) or self.last or not self._retryable(exc):
            return False  # success, GeneratorExit/KeyboardInterrupt, no attempts left, or unsafe
        self.failure = exc
        return True


class Retrier:
    """Runs attempts under a :class:`RetryPolicy`; ``sleep`` is injectable so tests take
    milliseconds, ``seed`` makes the jitter reproducible, each retry is logged as a warning."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        logger: logging.Logger = log,
    ):
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.logger = logger
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        return f"Retrier({self.policy!r})"

    def attempts(
        self,
        what: str,
        *,
        retryable: Callable[[Exception], bool],
        retry_after: Callable[[BaseException], float | None] = retry_after_of,
        note: str = "",
    ) -> Iterator[Attempt]:
        """The attempts of one operation named ``what`` (used in the log line).

        Args:
            retryable: True when repeating after this failure cannot store or bill twice.
            retry_after: the wait a failure asks for (default: its ``retry_after``), else None
                for the policy's jittered backoff.
            note: said in the log line before "retrying", e.g. "nothing was billed".

        The loop stops after an attempt whose block ended without a kept failure; the caller
        normally leaves it earlier with ``return`` from inside the block.
        """
        total = self.policy.max_attempts
        for number in range(1, total + 1):
            attempt = Attempt(number, last=number >= total, retryable=retryable)
            yield attempt
            if attempt.failure is None:
                return
            wait = self.policy.delay(number - 1, retry_after(attempt.failure), self._rng)
            self.logger.warning(
                "%s: %s; %sretrying in %.2f s (attempt %d of %d)",
                what,
                attempt.failure,
                f"{note}, " if note else "",
                wait,
                number + 1,
                total,
            )
            self.sleep(wait)
