"""The panel's tuning: how many raters, how long a connection may dawdle (defaults beside their type)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PanelSettings:
    """Limits of one listening panel.

    Attributes:
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

    max_raters: int = 200
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_unfinished: int = 128

    def __post_init__(self) -> None:
        if self.max_raters < 1 or self.max_unfinished < 1:
            raise ValueError("max_raters and max_unfinished must be at least 1")
        if min(self.header_timeout_s, self.body_timeout_s, self.idle_timeout_s) <= 0:
            raise ValueError("the panel's timeouts must be positive")
