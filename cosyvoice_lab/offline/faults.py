"""Fault injection and rate limiting for the simulator.

:class:`Faults` is mutable at runtime (``sim.faults.error_rate = 0.3``). For each request
(an HTTP call, a WebSocket handshake, a ``run-task``) one random draw picks at most one
fault, with these meanings:

``error``
    429 ``Throttling.RateQuota`` (with ``Retry-After``) or 503 ``ServiceUnavailable``:
    rejected at the gateway, *nothing was done*. 500 ``InternalError``: half of them are
    answered *after the request was processed* (a create stored its voice, a delete deleted),
    because that is what real outages produce; the client cannot tell which half.
``drop``
    the connection is closed without an answer; half *before* and half *after* processing,
    so the outcome is unknown to the client.
``hang``
    the request is processed, then the answer waits ``hang_seconds`` (past any sensible
    client timeout): the client times out although its voice exists.

Apart from the draw, ``refuse_imitation`` answers a design whose prompt asks to imitate a named
person ("imitate ...", "sound like ...", "模仿…") with 400 ``DataInspectionFailed``, as the
service's content inspection does ("模型不支持模仿", contract §11).

Over WebSocket, a handshake draw refuses (HTTP error), drops or delays the upgrade; a
``run-task`` draw answers ``task-failed`` ``InternalError``, drops the connection half-way
through the audio, or delays ``task-started``.
"""

from __future__ import annotations

import math
import random
import re
import threading
from dataclasses import dataclass, field

ERROR_CHOICES = (429, 500, 503)
# What asks to imitate a named person: the simulator's reading (the service's is undocumented).
# English: an imitation verb followed by a capitalised name ("sounds like Morgan Freeman", not
# "sounds like a warm grandmother"); Chinese: 模仿 / 仿照 / 模拟…的声音.
IMITATION = re.compile(
    r"\b(?i:imitat\w*|impersonat\w*|mimic\w*|sounds? (?:just |exactly )?like|in the voice of)"
    r"\s+(?:the (?:famous |late )?)?[A-Z]\w+"
    r"|模仿|仿照|模拟.{0,12}的声音"
)


@dataclass
class Fault:
    """One drawn fault: ``kind`` is ``error``, ``drop`` or ``hang``; ``status`` is the HTTP
    status of an error; ``after`` says whether it strikes after the request was processed."""

    kind: str
    status: int = 0
    after: bool = False


@dataclass
class Faults:
    """What can go wrong, as fractions of requests (0-1), plus added latency in seconds.

    ``latency`` delays every request; ``action_latency`` adds time to some actions only, as
    the real service answers a listing in a blink but takes seconds to design a voice
    (e.g. ``{"create_voice": 5.0}``).

    ``seed`` makes the draws reproducible; changing it restarts the random sequence.
    """

    latency: float = 0.0
    action_latency: dict = field(default_factory=dict)  # extra seconds per action, after processing
    error_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 120.0
    refuse_imitation: bool = False  # designs asking to imitate a named person -> DataInspectionFailed
    seed: int | None = None
    _rng: random.Random | None = field(default=None, init=False, repr=False, compare=False)
    _rng_seed: object = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def coerce(cls, value: Faults | dict | None) -> Faults:
        """A :class:`Faults` from a Faults, a dict of its fields, or None (no faults)."""
        if value is None:
            return cls()
        if isinstance(value, Faults):
            return value
        return cls(**value)

    def _random(self) -> float:
        with self._lock:
            if self._rng is None or self._rng_seed != self.seed:
                self._rng, self._rng_seed = random.Random(self.seed), self.seed
            return self._rng.random()

    def _choice(self, options):
        return options[int(self._random() * len(options)) % len(options)]

    def refuses(self, voice_prompt: str) -> bool:
        """Whether content inspection refuses a design with ``voice_prompt`` (``refuse_imitation``)."""
        return self.refuse_imitation and IMITATION.search(voice_prompt) is not None

    def draw(self) -> Fault | None:
        """The fault for the next request, or None for a clean one."""
        if not (self.error_rate or self.drop_rate or self.hang_rate):
            return None
        u = self._random()
        if u < self.error_rate:
            status = self._choice(ERROR_CHOICES)
            return Fault("error", status, after=status == 500 and self._random() < 0.5)
        if u < self.error_rate + self.drop_rate:
            return Fault("drop", after=self._random() < 0.5)
        if u < self.error_rate + self.drop_rate + self.hang_rate:
            return Fault("hang", after=True)
        return None


def retry_after_header(wait: float) -> str:
    """``Retry-After`` in whole seconds, as HTTP defines it: rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))
