"""cosyvoice_lab: a Jupyter workbench for CosyVoice voice design.

The front door::

    from cosyvoice_lab import Lab
    lab = Lab()                      # the real service with a key, else the offline simulator
    take = lab.design("a calm, deep male narrator in his fifties, slow and warm")

Names are imported lazily so ``import cosyvoice_lab`` stays fast (pandas, numpy and the
audio stack load on first use).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "APIError": "errors",
    "Audio": "audio",
    "AuthenticationError": "errors",
    "Comparison": "comparison",
    "ConnectionFailed": "errors",
    "CosyVoiceLabError": "errors",
    "CredentialsError": "errors",
    "DashScopeClient": "client",
    "ExperimentLog": "log",
    "InvalidParameter": "errors",
    "Lab": "lab",
    "OutcomeUnknown": "errors",
    "PromptSpec": "prompts",
    "RateLimited": "errors",
    "RequestTimeout": "errors",
    "Secret": "credentials",
    "ServerError": "errors",
    "SynthesisError": "errors",
    "Take": "take",
    "ValidationError": "errors",
    "VoiceDesign": "design",
    "VoiceNotFound": "errors",
    "VoiceNotReady": "errors",
    "VoiceQuotaExceeded": "errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cosyvoice_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
