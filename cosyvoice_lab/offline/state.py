"""State shared by the simulator's request handlers (HTTP and WebSocket)."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from cosyvoice_lab import catalog
from cosyvoice_lab.service.ratelimit import SlidingWindow
from cosyvoice_lab.offline.faults import Faults
from cosyvoice_lab.offline.registry import Registry

LOGGER_NAME = "cosyvoice_lab.offline"


@dataclass
class State:
    """Everything the request handlers share; mutable while the server runs."""

    api_key: str
    registry: Registry
    faults: Faults
    intl: bool = False
    deploying_seconds: float = 0.0
    enrollment_rps: float | None = catalog.ENROLLMENT_RPS
    synthesis_rps: float | None = catalog.SYNTHESIS_RPS
    synth_gap_seconds: float = catalog.SYNTH_GAP_SECONDS
    synth_idle_seconds: float = catalog.SYNTH_IDLE_SECONDS
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER_NAME))
    limiter: SlidingWindow = field(default_factory=SlidingWindow)
    request_log: list = field(default_factory=list)
    sockets: set = field(default_factory=set)  # open WebSockets, closed on stop
    stopping: asyncio.Event | None = None  # set on stop, so hanging handlers let go at once

    def authorized(self, request: web.BaseRequest) -> bool:
        """True when the request carries ``Authorization: Bearer <the key>`` (scheme in any case)."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.api_key

    def record(self, started: float, action: str, status: int, request_id: str, method: str = "POST") -> None:
        """Note a finished request in ``request_log`` and the log (status 0 = dropped)."""
        now = time.monotonic()
        self.request_log.append((started, action, status))
        self.log.info("%s %s -> %s in %.1f ms request_id=%s",
                      method, action, status or "dropped", (now - started) * 1000, request_id)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops (hangs must not outlive it)."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass


STATE = web.AppKey("state", State)


def new_request_id() -> str:
    """A request id shaped like the service's (a UUID)."""
    return str(uuid.uuid4())
