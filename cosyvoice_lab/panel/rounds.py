"""A listening round's server-side state: one blind session per rater, opaque ids, validators.

Pure (no web server here): :class:`Round` hands each rater, by name, their own session: the
experiment's previews shuffled under a fresh random seed, each item known to the page only by
two random tokens (its id and its audio id) that map to the take on the server. Nothing a page
receives is derived from a take id, voice id, model, prompt or content hash. The same name (any
case) resumes the same session while the panel runs.

The validators (:func:`parse_rater`, :func:`parse_rating_request`, :func:`token_ok`) take what
a browser sent, untrusted: each either returns a clean value or raises ``ValueError`` (the
token check returns a bool), never anything else.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import catalog
from cosyvoice_lab.panel.settings import PANEL
from cosyvoice_lab.views.listening import anonymous_label, shuffled

ID_BYTES = 12  # random bytes of an item or audio id (16 characters)
SESSION_BYTES = 18  # random bytes of a session token (24 characters)


@dataclass(frozen=True)
class Preview:
    """A take the round can play: its id and its description (the voice prompt)."""

    take_id: str
    description: str


@dataclass(frozen=True)
class Item:
    """One take in one rater's session, as the server knows it."""

    item_id: str  # what the page sends back with a rating
    audio_id: str  # the last part of the audio URL
    take_id: str
    label: str  # A, B, ... in presentation order
    description: str  # shown in an adherence round only


@dataclass
class RaterSession:
    """One rater's blind session.

    Attributes:
        token: the ``session`` value of the API (random, never shown to anyone else).
        session_id: the round's id in the log (``ratings.session_id``).
        rater: the name as first given. seed: the shuffle seed (server-side only).
        items: presentation order. rated: item id → the rating this session recorded.
    """

    token: str
    session_id: str
    rater: str
    seed: int
    items: list[Item]
    rated: dict[str, int] = field(default_factory=dict)

    def answer(self, kind: str, audio_url: Callable[[str], str]) -> dict[str, Any]:
        """The JSON of ``GET /api/session``: items carry id, label, audio_url and the rating
        given so far (null); in an adherence round also the description."""
        items = []
        for item in self.items:
            entry: dict[str, Any] = {"id": item.item_id, "label": item.label, "audio_url": audio_url(item.audio_id)}
            if kind == "adherence":
                entry["description"] = item.description
            entry["rating"] = self.rated.get(item.item_id)
            items.append(entry)
        return {"session": self.token, "rater": self.rater, "kind": kind, "items": items}


class Round:
    """The raters' sessions of one panel (thread-safe).

    Args:
        kind: "preference" or "adherence".
        previews: returns the experiment's playable takes (read when a new session starts).

    Raises:
        ValueError: an unknown kind.
    """

    def __init__(self, kind: str, previews: Callable[[], Sequence[Preview]]) -> None:
        if kind not in catalog.RATING_KINDS:
            raise ValueError(f"a listening round is one of {catalog.RATING_KINDS}, got {kind!r}")
        self.kind = kind
        self._previews = previews
        self._lock = threading.Lock()
        self._by_rater: dict[str, RaterSession] = {}
        self._by_token: dict[str, RaterSession] = {}
        self._audio: dict[str, str] = {}  # audio id → take id

    def session_for(self, rater: str) -> RaterSession:
        """The session of ``rater`` (a clean name), started on first call: a fresh seed, new ids.

        Raises:
            LookupError: the experiment has no playable take.
        """
        key = rater.casefold()
        with self._lock:
            if key in self._by_rater:
                return self._by_rater[key]
        previews = {p.take_id: p for p in self._previews()}  # read outside the lock: a log query
        if not previews:
            raise LookupError("the experiment has no take with a preview to listen to")
        seed = secrets.randbits(32)
        items = [
            Item(secrets.token_urlsafe(ID_BYTES), secrets.token_urlsafe(ID_BYTES), take_id, anonymous_label(i),
                 previews[take_id].description)
            for i, take_id in enumerate(shuffled(previews, seed))
        ]  # fmt: skip
        session = RaterSession(
            secrets.token_urlsafe(SESSION_BYTES), f"panel-{uuid.uuid4().hex[:12]}", rater, seed, items
        )
        with self._lock:
            if key in self._by_rater:  # the same name twice at once: the first one wins
                return self._by_rater[key]
            self._by_rater[key] = self._by_token[session.token] = session
            self._audio.update({item.audio_id: item.take_id for item in items})
        return session

    def session(self, token: str) -> RaterSession | None:
        """The session with this API token (None: unknown)."""
        with self._lock:
            return self._by_token.get(token)

    @staticmethod
    def item(session: RaterSession, item_id: str) -> Item | None:
        """The item of ``session`` with this id (None: not one of its items)."""
        return next((item for item in session.items if item.item_id == item_id), None)

    def take_of_audio(self, audio_id: str) -> str | None:
        """The take an audio id stands for (None: unknown)."""
        with self._lock:
            return self._audio.get(audio_id)

    def record(self, session: RaterSession, item: Item, rating: int) -> tuple[int, int]:
        """Remember a rating the log has stored; returns (rated, total) for the session."""
        with self._lock:
            session.rated[item.item_id] = rating
            return len(session.rated), len(session.items)

    def sessions(self) -> list[RaterSession]:
        """Every rater's session, in the order they started."""
        with self._lock:
            return list(self._by_rater.values())


# --- validators of what a browser sends ------------------------------------------------------------
def parse_rater(value: object) -> str:
    """The rater's name from ``?rater=``: stripped, 1-64 printable characters.

    Raises:
        ValueError: missing or not a valid name.
    """
    from cosyvoice_lab.log.ratings import clean_rater  # the log's rule; loaded with the first rater

    if value is None:
        raise ValueError("say who is rating: ?rater=NAME")
    return clean_rater(value)


def parse_rating_request(body: object) -> tuple[str, str, int]:
    """``(session, item, rating)`` from the JSON body of ``POST /api/rating``.

    Raises:
        ValueError: not an object of exactly ``session`` (string), ``item`` (string) and
        ``rating`` (an integer 1-5; not a bool, not a float).
    """
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object {"session": ..., "item": ..., "rating": 1-5}')
    if set(body) != {"session", "item", "rating"}:
        raise ValueError(f"the body's keys must be session, item and rating, got {sorted(map(str, body))}")
    session, item, rating = body["session"], body["item"], body["rating"]
    for name, value in (("session", session), ("item", item)):
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            raise ValueError(f"{name} must be a string of 1-64 characters")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValueError(f"rating must be an integer from 1 to 5, got {rating!r}")
    return session, item, rating


def token_ok(expected: str | None, given: object) -> bool:
    """Whether ``given`` is the join token (constant-time); True when no token is required."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    # "replace" maps unencodable text to "?", which no token (URL-safe base64) contains
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


def new_token() -> str:
    """A fresh join token (``PanelSettings.token_bytes`` random bytes, URL-safe)."""
    return secrets.token_urlsafe(PANEL.token_bytes)
