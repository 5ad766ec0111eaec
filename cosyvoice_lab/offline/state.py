"""State shared by the simulator's request handlers (HTTP and WebSocket)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from cosyvoice_lab import catalog
from cosyvoice_lab.offline.faults import Faults
from cosyvoice_lab.offline.profiles import DEFAULTS, ModelProfile
from cosyvoice_lab.offline.registry import Registry
from cosyvoice_lab.service.ratelimit import SlidingWindow

LOGGER_NAME = "cosyvoice_lab.offline"


@dataclass(frozen=True)
class SimulatorSettings:
    """The simulator's own timing and limits, with their defaults (the service documents no HTTP
    limits; synthesis timing follows [WS, contract §11]).

    Attributes:
        first_audio_seconds: (low, high) of the first audio after the text (200-800 ms).
        realtime_factor: (low, high) seconds of work per second of audio (0.1-0.5).
        max_body_bytes: a design request is a few KB; a body above 1 MiB is answered 413.
        read_timeout_seconds: a request whose headers or body do not arrive within this is
            answered 408 (body) or closed (headers).
    """

    first_audio_seconds: tuple[float, float] = (0.2, 0.8)
    realtime_factor: tuple[float, float] = (0.1, 0.5)
    max_body_bytes: int = 1024 * 1024
    read_timeout_seconds: float = 30.0


SIMULATOR = SimulatorSettings()
# The simulator a Lab starts in its own process (``offline.shared``: every notebook without a key)
# synthesises at the fast end of each documented range, first audio after 200 ms and 0.1 s of work
# per second of audio: still a pace the service documents, and what a notebook waits for when it
# speaks a dozen readings is the lesson, not the streaming's pace (``serve()`` and ``cosyvoice-lab
# offline`` keep the whole ranges, drawn per task).
IN_PROCESS = SimulatorSettings(
    first_audio_seconds=(SIMULATOR.first_audio_seconds[0],) * 2,
    realtime_factor=(SIMULATOR.realtime_factor[0],) * 2,
)


class Clock:
    """The simulator's time: the machine's clocks, moved forward by :meth:`advance`.

    Rate windows, the request log, a design's latency and a voice's deploying time read it. A test
    drives it instead of sleeping (``sim.clock.advance(1.0)``: the rate window has refilled and a
    voice deploying for a second is ready, at once); nothing else advances it, so outside tests it
    is the machine's time. A wait already under way (a design's latency) is not cut short.
    """

    def __init__(self) -> None:
        self._ahead = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Clock(ahead={self._ahead:g} s)"

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (``time.monotonic`` plus the advances)."""
        return time.monotonic() + self._ahead

    def time(self) -> float:
        """Seconds since the epoch (``time.time`` plus the advances)."""
        return time.time() + self._ahead

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (never back)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds} s")
        with self._lock:
            self._ahead += seconds


@dataclass
class State:
    """Everything the request handlers share; mutable while the server runs. Its repr never
    shows the key."""

    api_key: str = field(repr=False)
    registry: Registry
    faults: Faults
    intl: bool = False
    deploying_seconds: float = 0.0
    enrollment_rps: float | None = catalog.ENROLLMENT_RPS
    synthesis_rps: float | None = catalog.SYNTHESIS_RPS
    synth_gap_seconds: float = catalog.SYNTH_GAP_SECONDS
    synth_idle_seconds: float = catalog.SYNTH_IDLE_SECONDS
    # synthesis timing: (low, high) ranges drawn from per task; (0, 0) answers at once
    first_audio_seconds: tuple[float, float] = SIMULATOR.first_audio_seconds
    realtime_factor: tuple[float, float] = SIMULATOR.realtime_factor
    max_body_bytes: int = SIMULATOR.max_body_bytes
    read_timeout_seconds: float = SIMULATOR.read_timeout_seconds
    profiles: dict[str, ModelProfile] = field(default_factory=lambda: dict(DEFAULTS))
    rng: random.Random = field(default_factory=random.Random, repr=False)  # voice ids
    timing: random.Random = field(default_factory=random.Random, repr=False)  # latencies
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER_NAME), repr=False)
    clock: Clock = field(default_factory=Clock, repr=False)
    limiter: SlidingWindow = field(init=False, repr=False)  # on ``clock``
    request_log: list = field(default_factory=list, repr=False)
    sockets: set = field(default_factory=set, repr=False)  # open WebSockets, closed on stop
    stopping: asyncio.Event | None = field(default=None, repr=False)  # set on stop: hanging handlers let go

    def __post_init__(self) -> None:
        self.limiter = SlidingWindow(self.clock.monotonic)

    def profile(self, model: str) -> ModelProfile:
        """The profile of ``model`` (the neutral default for a model without one)."""
        return self.profiles.get(model) or ModelProfile()

    def seed(self, seed: int | None) -> None:
        """Make voice ids and latencies reproducible (None: random again)."""
        self.rng, self.timing = random.Random(seed), random.Random(None if seed is None else f"timing-{seed}")

    def new_voice_uid(self) -> str:
        """The unique hex of a new voice id: random, or reproducible when the simulator has a seed."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def authorized(self, request: web.BaseRequest) -> bool:
        """True when the request carries ``Authorization: Bearer <the key>`` (scheme in any case)."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.api_key

    def record(self, started: float, action: str, status: int, request_id: str, method: str = "POST") -> None:
        """Note a finished request in ``request_log`` and the log (status 0 = dropped)."""
        now = self.clock.monotonic()
        self.request_log.append((started, action, status))
        self.log.info(
            "%s %s -> %s in %.1f ms request_id=%s",
            method,
            action,
            status or "dropped",
            (now - started) * 1000,
            request_id,
        )

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops (hangs must not outlive it)."""
        if seconds <= 0:
            return
        if self.stopping is None:  # not serving (yet)
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass


STATE = web.AppKey("state", State)


def new_request_id() -> str:
    """A request id shaped like the service's (a UUID)."""
    return str(uuid.uuid4())
