"""The wire, nothing else: the HTTP customization client (http.py), the WebSocket synthesizer
(ws.py, with one task's messages and events in duplex.py), the one retry loop both use
(retry.py), request-rate windows and the concurrency controller (ratelimit.py), and speech
options and text rules (speech.py).

It imports only the core (catalog, errors, credentials, design, audio).
"""

from __future__ import annotations

from cosyvoice_lab.service.http import CreatedVoice, DashScopeClient, VoiceInfo
from cosyvoice_lab.service.ratelimit import ConcurrencyController, RateLimiter, SharedWindow, SlidingWindow
from cosyvoice_lab.service.retry import Retrier, RetryPolicy
from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult, SpeechStream, estimate_cost
from cosyvoice_lab.service.ws import Synthesizer

__all__ = [
    "ConcurrencyController",
    "CreatedVoice",
    "DashScopeClient",
    "RateLimiter",
    "Retrier",
    "RetryPolicy",
    "SharedWindow",
    "SlidingWindow",
    "SpeechOptions",
    "SpeechResult",
    "SpeechStream",
    "Synthesizer",
    "VoiceInfo",
    "estimate_cost",
]
