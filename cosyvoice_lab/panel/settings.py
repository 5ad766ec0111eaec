"""The listening panel's settings: one frozen object with its defaults (as httpx's ``Limits``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class PanelSettings:
    """Where the panel listens and what it accepts.

    Attributes:
        host: loopback unless asked: another address serves other machines and needs the token.
        port: the default port (0 picks a free one).
        token_bytes: random bytes of the join token (``secrets.token_urlsafe``: 32 characters).
        max_body_bytes: a rating request is ~100 bytes; larger bodies are answered 413.
    """

    host: str = "127.0.0.1"
    port: int = 8770
    token_bytes: int = 24
    max_body_bytes: int = 4096


PANEL = PanelSettings()


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
