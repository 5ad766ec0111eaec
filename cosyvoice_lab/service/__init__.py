"""The wire, nothing else: the HTTP customization client (http.py), the WebSocket synthesizer
(ws.py, with one task's messages and events in duplex.py), the one retry loop both use
(retry.py), request-rate windows and the concurrency controller (ratelimit.py, with the client's
``Limits``), how long the client waits (timeouts.py), and speech options and text rules
(speech.py).

It imports only the core (catalog, errors, credentials, design, audio). Names load on first use,
as the front door's do: ``service.ratelimit`` (the CLI's defaults, the simulator's windows) loads
without ``requests``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosyvoice_lab.service.http import CreatedVoice, DashScopeClient, VoiceInfo
    from cosyvoice_lab.service.ratelimit import ConcurrencyController, Limits, RateLimiter, SharedWindow, SlidingWindow
    from cosyvoice_lab.service.retry import Retrier, RetryPolicy
    from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult, SpeechStream, estimate_cost
    from cosyvoice_lab.service.timeouts import Timeouts
    from cosyvoice_lab.service.ws import Synthesizer

_EXPORTS = {
    "ConcurrencyController": "ratelimit",
    "CreatedVoice": "http",
    "DashScopeClient": "http",
    "Limits": "ratelimit",
    "RateLimiter": "ratelimit",
    "Retrier": "retry",
    "RetryPolicy": "retry",
    "SharedWindow": "ratelimit",
    "SlidingWindow": "ratelimit",
    "SpeechOptions": "speech",
    "SpeechResult": "speech",
    "SpeechStream": "speech",
    "Synthesizer": "ws",
    "Timeouts": "timeouts",
    "VoiceInfo": "http",
    "estimate_cost": "speech",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
