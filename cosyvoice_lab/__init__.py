"""cosyvoice_lab: a Jupyter workbench for CosyVoice voice design.

The front door::

    from cosyvoice_lab import Lab
    lab = Lab()                      # the real service with a key, else the offline simulator
    take = lab.design("a calm, deep male narrator in his fifties, slow and warm")

Names are imported on first use so ``import cosyvoice_lab`` stays fast (pandas, numpy, requests
and the audio stack load when a name that needs them is asked for). The imports under
``TYPE_CHECKING`` are the same names, spelled out for type checkers and editors.

Every public class reports this module as its own (as httpx's front door does, from ``__all__``,
here and nowhere else): the errors at import (they are cheap, and tracebacks name them), the
others when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cosyvoice_lab.version import __version__

if TYPE_CHECKING:
    from cosyvoice_lab.audio import Audio
    from cosyvoice_lab.credentials import Secret
    from cosyvoice_lab.design import VoiceDesign
    from cosyvoice_lab.errors import (
        APIError,
        AuthenticationError,
        ConnectionFailed,
        CosyVoiceLabError,
        CredentialsError,
        DataInspectionFailed,
        InvalidParameter,
        LogError,
        OutcomeUnknown,
        RateLimited,
        RequestTimeout,
        ServerError,
        SynthesisError,
        TakeNotFound,
        TransportError,
        ValidationError,
        VoiceNotFound,
        VoiceNotReady,
        VoiceQuotaExceeded,
    )
    from cosyvoice_lab.lab import Lab
    from cosyvoice_lab.log import ExperimentLog
    from cosyvoice_lab.prompts import PromptSpec
    from cosyvoice_lab.service import DashScopeClient
    from cosyvoice_lab.take import Take, Takes
    from cosyvoice_lab.views import Comparison

_ERRORS = [
    "APIError",
    "AuthenticationError",
    "ConnectionFailed",
    "CosyVoiceLabError",
    "CredentialsError",
    "DataInspectionFailed",
    "InvalidParameter",
    "LogError",
    "OutcomeUnknown",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "SynthesisError",
    "TakeNotFound",
    "TransportError",
    "ValidationError",
    "VoiceNotFound",
    "VoiceNotReady",
    "VoiceQuotaExceeded",
]
_EXPORTS = {
    "Audio": "cosyvoice_lab.audio",
    "Comparison": "cosyvoice_lab.views",
    "DashScopeClient": "cosyvoice_lab.service",
    "ExperimentLog": "cosyvoice_lab.log",
    "Lab": "cosyvoice_lab.lab",
    "PromptSpec": "cosyvoice_lab.prompts",
    "Secret": "cosyvoice_lab.credentials",
    "Take": "cosyvoice_lab.take",
    "Takes": "cosyvoice_lab.take",
    "VoiceDesign": "cosyvoice_lab.design",
    **dict.fromkeys(_ERRORS, "cosyvoice_lab.errors"),
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cosyvoice_lab' has no attribute {name!r}")
    value = _publish(getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


def _publish(value: object) -> object:
    """``value`` reporting the front door as its module, if it is one of our classes."""
    if isinstance(value, type) and value.__module__.startswith(f"{__name__}."):
        value.__module__ = __name__
    return value


def __dir__() -> list[str]:
    return __all__


def _publish_errors() -> None:
    errors = importlib.import_module(f"{__name__}.errors")
    for name in _ERRORS:
        globals()[name] = _publish(getattr(errors, name))


_publish_errors()
