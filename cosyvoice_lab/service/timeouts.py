"""How long the client waits: one frozen object with its defaults (as httpx's ``Timeout``).

These are ours, not the service's: the contract documents none of them except that the official
sample waits 60 s for a design and a synthesis connection idle for 60 s is closed (``catalog``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Seconds the HTTP client and the synthesizer wait.

    Attributes:
        create: one ``create_voice`` (a design): official sample 60 s, public code 90 s [2.1].
        manage: the other voice actions (list, query, delete).
        connect: a TCP connection (and a WebSocket handshake).
        receive: the longest silence tolerated between two WebSocket messages of a task.
        voice_ready: how long to poll ``query_voice`` for a DEPLOYING voice [4.5].
        voice_ready_interval: between two of those polls.
        reuse_idle: a kept synthesis connection idle longer is not reused (the service closes at
            ``catalog.SYNTH_IDLE_SECONDS``).
    """

    create: float = 90.0
    manage: float = 30.0
    connect: float = 10.0
    receive: float = 30.0
    voice_ready: float = 60.0
    voice_ready_interval: float = 2.0
    reuse_idle: float = 45.0


DEFAULT_TIMEOUTS = Timeouts()
