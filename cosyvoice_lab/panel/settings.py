"""The listening panel's settings: one frozen object with its defaults (as httpx's ``Limits``):
where it listens, what it accepts, how many raters, how long a connection may dawdle."""

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
        max_raters: raters a round admits (invited or joined by name); one more is refused with
            a message naming this setting. Each rater's state is small, but unbounded names are
            unbounded memory.
        header_timeout_s: a connection that has not sent a whole request head (line and headers)
            this long after it opened is closed.
        body_timeout_s: a request body (a rating: ~100 bytes) not read whole by then: 408.
        idle_timeout_s: a kept-alive connection idle this long is closed (aiohttp's keep-alive).
        max_unfinished: connections that have not yet sent a whole request; beyond it the oldest
            of them is closed, so a flood of unfinished requests never keeps a rater out.
    """

    host: str = "127.0.0.1"
    port: int = 8770
    token_bytes: int = 24
    max_body_bytes: int = 4096
    max_raters: int = 200
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_unfinished: int = 128

    def __post_init__(self) -> None:
        if self.token_bytes < 16:
            raise ValueError(f"token_bytes must be at least 16 (an unguessable token), got {self.token_bytes}")
        if self.max_raters < 1 or self.max_unfinished < 1:
            raise ValueError("max_raters and max_unfinished must be at least 1")
        if min(self.header_timeout_s, self.body_timeout_s, self.idle_timeout_s) <= 0:
            raise ValueError("the panel's timeouts must be positive")


PANEL = PanelSettings()


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
