"""The wire, nothing else: the HTTP customization client, the WebSocket synthesizer, the one
retry policy both use, request-rate windows, and speech options and text rules.

It imports only the core (catalog, errors, credentials, design, audio).
"""
from __future__ import annotations

from cosyvoice_lab.service.http import CreatedVoice, DashScopeClient, RetryPolicy, VoiceInfo
from cosyvoice_lab.service.ratelimit import RateLimiter, SlidingWindow
from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult, estimate_cost
from cosyvoice_lab.service.ws import SpeechStream, Synthesizer

__all__ = ["CreatedVoice", "DashScopeClient", "RateLimiter", "RetryPolicy", "SlidingWindow", "SpeechOptions",
           "SpeechResult", "SpeechStream", "Synthesizer", "VoiceInfo", "estimate_cost"]
