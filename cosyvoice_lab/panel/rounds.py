"""A listening round's server-side state: one blind session per rater, kept in the log, opaque ids.

Pure (no web server here). :class:`Round` is one round of the log (``log.rounds``: kind, items,
seed, options, state) with its raters: each rater's presentation order is drawn once when they are
invited or join (:func:`plan`) and stored, so a restarted panel gives every rater the same items in
the same order with the answers already given. On the page an item is known only by random tokens
(its id and its audio ids), fresh in each panel process and mapped to takes on the server: nothing
a page receives is derived from a take id, voice id, model, prompt or content hash.

Kinds: *preference* and *adherence* (1-5 stars, one take per item) and *pair* (two takes of one
prompt from different models, forced choice between "first" and "second", or "none" when the
round allows no preference). Options: ``repeat_share`` (a share of each rater's items shown a
second time, hidden; a pair's repeat is shown in the other order), ``subset_size`` (each rater
hears that many items, balanced so every item is heard about equally often), ``must_play`` (the
page enables the answer only once the item was played to its end), ``no_preference``.

The validators (:func:`parse_rater`, :func:`parse_rating_request`, :func:`parse_choice_request`,
:func:`token_ok`) take what a browser sent, untrusted: each either returns a clean value or raises
``ValueError`` (the token check returns a bool), never anything else.
"""

from __future__ import annotations

import hmac
import itertools
import random
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import catalog
from cosyvoice_lab.log.rounds import KINDS, RaterRecord, RoundRecord, new_round_id, rater_name
from cosyvoice_lab.panel.settings import PANEL
from cosyvoice_lab.views.listening import anonymous_label

ID_BYTES = 12  # random bytes of an item or audio id (16 characters)
SESSION_BYTES = 18  # random bytes of a session token (24 characters)
INVITE_BYTES = 24  # random bytes of a personal invite token (32 characters)
CHOICES = ("first", "second", "none")


class RoundFull(Exception):
    """The round admits no more raters (``PanelSettings.max_raters``)."""


@dataclass(frozen=True)
class Preview:
    """A take the round can play: its id, its description (the voice prompt), prompt and model."""

    take_id: str
    description: str
    prompt: str = ""
    model: str = ""


@dataclass(frozen=True)
class RoundOptions:
    """How a round is presented (stored with it in ``rounds.options``).

    Attributes:
        repeat_share: share (0-1) of each rater's items shown a second time, unannounced.
        subset_size: items per rater (None: all), balanced across raters.
        must_play: the answer buttons wait until the item (both voices of a pair) played to the end.
        no_preference: a pair round offers "no preference" besides the two voices.
        thank_you: the page ends with a thank-you note and the count of items answered.
    """

    repeat_share: float = 0.0
    subset_size: int | None = None
    must_play: bool = False
    no_preference: bool = True
    thank_you: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.repeat_share <= 1:
            raise ValueError(f"repeat_share is a share from 0 to 1, got {self.repeat_share!r}")
        if self.subset_size is not None and self.subset_size < 1:
            raise ValueError(f"subset_size must be at least 1, got {self.subset_size!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"repeat_share": self.repeat_share, "subset_size": self.subset_size, "must_play": self.must_play,
                "no_preference": self.no_preference, "thank_you": self.thank_you}  # fmt: skip


def round_items(kind: str, previews: list[Preview]) -> tuple:
    """A round's items: sorted take ids, or for a pair round every pair of takes of one prompt
    from two different models (each pair in the order of its models' names, the list sorted)."""
    if kind != "pair":
        return tuple(sorted(p.take_id for p in previews))
    pairs = []
    by_prompt: dict[str, list[Preview]] = {}
    for p in previews:
        by_prompt.setdefault(p.prompt, []).append(p)
    for group in by_prompt.values():
        for a, b in itertools.combinations(group, 2):
            if a.model != b.model:  # stored in model order, so flipping half puts each model first in half
                pairs.append(tuple(p.take_id for p in sorted((a, b), key=lambda p: (p.model, p.take_id))))
    return tuple(sorted(pairs))


def plan(n_items: int, seed: int, rater_index: int, options: RoundOptions) -> tuple[tuple[int, int], ...]:
    """Rater number ``rater_index``'s presentation: ((item index, flipped), ...).

    Subsets: the items are permuted once under the round's ``seed`` and rater k takes the k-th
    block of ``subset_size`` of that cycle, so after any number of raters every item has been
    given to ⌊k·s/n⌋ or ⌈k·s/n⌉ of them. The rater's own order is drawn from ``seed`` and ``k``;
    half their pairs (rounded) are flipped, at random; a hidden repeat comes later than its first
    showing, a pair's in the other order.
    """
    cycle = list(range(n_items))
    random.Random(seed).shuffle(cycle)
    size = n_items if options.subset_size is None else min(options.subset_size, n_items)
    start = (rater_index * size) % n_items
    mine = [cycle[(start + j) % n_items] for j in range(size)]
    rng = random.Random(seed * 7919 + rater_index + 1)
    rng.shuffle(mine)
    flips = [j % 2 for j in range(size)]
    rng.shuffle(flips)
    order = [(item, flip) for item, flip in zip(mine, flips, strict=True)]
    repeats = rng.sample(range(size), round(options.repeat_share * size))
    for first in sorted(repeats, reverse=True):
        item, flip = order[first]
        at = rng.randint(min(first + 2, len(order)), len(order))
        order.insert(at, (item, 1 - flip))
    return tuple(order)


@dataclass(frozen=True)
class Item:
    """One presentation in one rater's session, as the server knows it."""

    item_id: str  # what the page sends back with an answer
    position: int  # index in the rater's presentation (round_answers.position)
    index: int  # the round's item
    take_ids: tuple[str, ...]  # one take, or a pair in presentation order
    audio_ids: tuple[str, ...]  # the last part of each audio URL
    label: str  # A, B, ... in presentation order (pairs: 1, 2, ...)
    description: str  # shown in an adherence round only
    repeat: bool  # a hidden repeat of an earlier item

    @property
    def take_id(self) -> str:
        return self.take_ids[0]


class InviteRequired(Exception):
    """A name typed for a rater who was invited: only their personal link opens their session."""


@dataclass
class RaterSession:
    """One rater's blind session.

    Attributes:
        token: the ``session`` value of the API (random per panel process, never shown to others).
        session_id: the rater's id in the log (``ratings`` / ``round_answers.session_id``).
        rater: the name (NFC). items: presentation order. answers: position -> the answer given
            (a rating 1-5, or "first" / "second" / "none").
    """

    token: str
    session_id: str
    rater: str
    invited: bool
    items: list[Item]
    answers: dict[int, Any] = field(default_factory=dict)

    @property
    def rated(self) -> dict[str, Any]:
        """item id -> answer (what the page has answered)."""
        return {item.item_id: self.answers[item.position] for item in self.items if item.position in self.answers}

    def answer(self, kind: str, options: RoundOptions, audio_url: Callable[[str], str]) -> dict[str, Any]:
        """The JSON of ``GET /api/session``."""
        items = []
        for item in self.items:
            entry: dict[str, Any] = {"id": item.item_id, "label": item.label}
            if kind == "pair":
                entry["audio_urls"] = [audio_url(a) for a in item.audio_ids]
                entry["choice"] = self.answers.get(item.position)
            else:
                entry["audio_url"] = audio_url(item.audio_ids[0])
                if kind == "adherence":
                    entry["description"] = item.description
                entry["rating"] = self.answers.get(item.position)
            items.append(entry)
        return {"session": self.token, "rater": self.rater, "kind": kind, "must_play": options.must_play,
                "no_preference": kind == "pair" and options.no_preference, "thank_you": options.thank_you,
                "items": items}  # fmt: skip


class Round:
    """The raters' sessions of one round of the log (thread-safe).

    Args:
        store: the log's rounds (``log.rounds``). record: the round. previews: take id -> Preview
            of every take the round plays. max_raters: the cap (``PanelSettings.max_raters``).
    """

    def __init__(self, store: Any, record: RoundRecord, previews: Mapping[str, Preview], *, max_raters: int) -> None:
        if record.kind not in KINDS:
            raise ValueError(f"a listening round is one of {KINDS}, got {record.kind!r}")
        self.store, self.record, self.previews, self.max_raters = store, record, dict(previews), max_raters
        self.options = RoundOptions(**record.options)
        self._lock = threading.Lock()
        self._by_rater: dict[str, RaterSession] = {}
        self._by_token: dict[str, RaterSession] = {}
        self._audio: dict[str, str] = {}  # audio id -> take id
        answers = store.answers([r.session_id for r in store.raters(record.round_id)])
        for rater in store.raters(record.round_id):
            self._add(rater, answers.get(rater.session_id, {}))

    @classmethod
    def create(cls, store: Any, experiment: str | None, kind: str, previews: list[Preview], options: RoundOptions,
               *, max_raters: int, seed: int | None = None) -> Round:  # fmt: skip
        """A new round over ``previews``, stored in the log. Raises ValueError (kind, no items)."""
        if kind not in KINDS:
            raise ValueError(f"a listening round is one of {KINDS}, got {kind!r}")
        items = round_items(kind, previews)
        if not items:
            raise ValueError("this round has nothing to listen to" + (" (a pair needs two models of one prompt)"
                                                                        if kind == "pair" else ""))  # fmt: skip
        seed = secrets.randbits(catalog.BLIND_SEED_BITS) if seed is None else seed
        record = store.create(RoundRecord(new_round_id(), experiment, kind, items, seed, options.as_dict()))
        return cls(store, record, {p.take_id: p for p in previews}, max_raters=max_raters)

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def round_id(self) -> str:
        return self.record.round_id

    # --- raters -----------------------------------------------------------------------------------
    def _add(self, rater: RaterRecord, answers: Mapping[int, Mapping[str, Any]]) -> RaterSession:
        """Build the in-memory session of a stored rater (fresh page tokens)."""
        items, seen = [], set()
        for position, (index, flipped) in enumerate(rater.presented):
            entry = self.record.items[index]
            takes = tuple(entry) if isinstance(entry, tuple) else (entry,)
            takes = takes[::-1] if flipped else takes
            audio_ids = tuple(secrets.token_urlsafe(ID_BYTES) for _ in takes)
            label = str(position + 1) if self.kind == "pair" else anonymous_label(position)
            description = self.previews[takes[0]].description if takes[0] in self.previews else ""
            items.append(Item(secrets.token_urlsafe(ID_BYTES), position, index, takes, audio_ids, label,
                              description, index in seen))  # fmt: skip
            seen.add(index)
        session = RaterSession(
            secrets.token_urlsafe(SESSION_BYTES), rater.session_id, rater.rater, rater.invited, items
        )
        for position, answer in answers.items():
            if 0 <= position < len(items):
                session.answers[position] = self._stored_answer(items[position], answer)
        self._by_rater[rater.rater] = self._by_token[session.token] = session
        for item in items:
            self._audio.update(zip(item.audio_ids, item.take_ids, strict=True))
        return session

    def _stored_answer(self, item: Item, answer: Mapping[str, Any]) -> Any:
        if self.kind != "pair":
            return answer["rating"]
        preferred = answer["preferred"]
        return "none" if preferred is None else ("first" if preferred == item.take_ids[0] else "second")

    def join(self, name: str, *, invite_token: str | None = None) -> RaterSession:
        """The session of ``name`` (a clean name), its order drawn and stored on first call.

        Raises:
            RoundFull: the round already has ``max_raters`` raters.
            InviteRequired: ``name`` was invited: their session opens by their personal link only
                (typing an invited rater's name must not open, or overwrite, their answers).
        """
        name = rater_name(name)
        with self._lock:
            if name in self._by_rater:
                session = self._by_rater[name]
                if session.invited and invite_token is None:
                    raise InviteRequired(f"{name!r} was invited: open the personal link the organiser sent you")
                return session
            if len(self._by_rater) >= self.max_raters:
                raise RoundFull(
                    f"this round is full: it admits {self.max_raters} raters (PanelSettings.max_raters); "
                    "ask the organiser"
                )
            presented = plan(len(self.record.items), self.record.seed, len(self._by_rater), self.options)
            record = RaterRecord(self.round_id, name, f"panel-{uuid.uuid4().hex[:12]}", invite_token is not None,
                                 presented)  # fmt: skip
            stored = self.store.add_rater(record, invite_token)
            return self._add(stored, {})

    def invite(self, name: str) -> str:
        """A personal invite token for ``name`` (their session is drawn now).

        Raises:
            ValueError: ``name`` is already in the round (their first link still works).
            RoundFull: the round is full.
        """
        name = rater_name(name)
        with self._lock:
            taken = name in self._by_rater
        if taken:
            raise ValueError(f"{name!r} is already in this round: the link they were sent still works")
        token = secrets.token_urlsafe(INVITE_BYTES)
        session = self.join(name, invite_token=token)
        if not session.invited:  # someone took the name by open enrolment in between
            raise ValueError(f"{name!r} joined this round by name just now")
        return token

    def session_by_invite(self, invite_token: str) -> RaterSession | None:
        """The session a personal link opens (None: no such invite in this round)."""
        stored = self.store.rater_by_invite(self.round_id, invite_token)
        if stored is None:
            return None
        with self._lock:
            return self._by_rater.get(stored.rater)

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

    def record_answer(self, session: RaterSession, item: Item, answer: Any) -> tuple[int, int]:
        """Remember an answer the log has stored; returns (answered, total) for the session."""
        with self._lock:
            session.answers[item.position] = answer
            return len(session.answers), len(session.items)

    def sessions(self) -> list[RaterSession]:
        """Every rater's session, in the order they were invited or joined."""
        with self._lock:
            return list(self._by_rater.values())


# --- validators of what a browser sends ------------------------------------------------------------
def parse_rater(value: object) -> str:
    """The rater's name from ``?rater=``: stripped, 1-64 printable characters, Unicode NFC (never
    case-folded: "Ana" and "ana" are two raters).

    Raises:
        ValueError: missing or not a valid name.
    """
    if value is None:
        raise ValueError("say who is rating: ?rater=NAME")
    return rater_name(value)


def _answer_body(body: object, key: str, shape: str) -> tuple[str, str, Any]:
    """``(session, item, body[key])`` of an object of exactly those keys, session and item strings
    of 1-64 characters. Raises ValueError (``shape`` shows the expected object)."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object {shape}")
    if set(body) != {"session", "item", key}:
        raise ValueError(f"the body's keys must be session, item and {key}, got {sorted(map(str, body))}")
    for name in ("session", "item"):
        value = body[name]
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            raise ValueError(f"{name} must be a string of 1-64 characters")
    return body["session"], body["item"], body[key]


def parse_rating_request(body: object) -> tuple[str, str, int]:
    """``(session, item, rating)`` from the JSON body of ``POST /api/rating``.

    Raises:
        ValueError: not an object of exactly ``session`` (string), ``item`` (string) and
        ``rating`` (an integer 1-5; not a bool, not a float).
    """
    session, item, rating = _answer_body(body, "rating", '{"session": ..., "item": ..., "rating": 1-5}')
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValueError(f"rating must be an integer from 1 to 5, got {rating!r}")
    return session, item, rating


def parse_choice_request(body: object) -> tuple[str, str, str]:
    """``(session, item, choice)`` from the JSON body of ``POST /api/choice`` (a pair round).

    Raises:
        ValueError: not an object of exactly ``session``, ``item`` (strings of 1-64 characters)
        and ``choice`` ("first", "second" or "none").
    """
    shape = '{"session": ..., "item": ..., "choice": "first"|"second"|"none"}'
    session, item, choice = _answer_body(body, "choice", shape)
    if not isinstance(choice, str) or choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    return session, item, choice


def token_ok(expected: str | None, given: object) -> bool:
    """Whether ``given`` is the join token (constant-time); True when no token is required."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    # "replace" maps unencodable text to "?", which no token (URL-safe base64) contains
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


def new_token(nbytes: int = PANEL.token_bytes) -> str:
    """A fresh join token (``nbytes`` random bytes, URL-safe; ``PanelSettings.token_bytes``)."""
    return secrets.token_urlsafe(nbytes)
