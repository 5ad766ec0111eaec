"""Blind listening, as pure objects: a shuffled order with a recorded seed, anonymous labels,
ratings, and the reveal summary (mean rating per model and per prompt).

Two kinds of round (:data:`KINDS`): *preference* (model and prompt hidden: which voices does
the listener like?) and *adherence* (the prompt shown, the model hidden: "how well does this
voice match this description?", 1-5). Every session draws a fresh random seed unless one is
given, and every rating carries the rater's name and the round kind (:meth:`BlindSession.ratings_frame`).
Nothing a session prints, shows or writes to the log before :meth:`BlindSession.reveal` pairs a
label with a take, a model or (in a preference round) a prompt.

No widgets here: ``widgets.board.ComparisonBoard`` is a thin shell over :class:`BlindSession`.

What goes into the experiment log (the board writes it; these objects say what):

- every take in the session gets the tag ``blind:<session_id>`` (:attr:`BlindSession.tag`), so
  ``log.to_dataframe(tag="blind:<session_id>")`` finds the session again;
- every take's notes get one appended line, :meth:`BlindSession.note_for`:
  ``blind <session_id>: seed <seed>, preference round, 8 takes, rater ana`` — enough to rebuild
  the exact order (:meth:`BlindSession.from_log`), since the order is ``seed`` applied to the
  sorted take ids, yet no label: the log view shows notes, and must not show the mapping
  (sessions recorded before this carry ``label C, position 3/8`` and are still read);
- ratings go to the log as ordinary ratings (the annotation history timestamps them).

Usage::

    session = BlindSession.start([t.take_id for t in takes], seed=1234)
    session.label(take_id)          # "C"
    session.rate(take_id, 4)
    summary = session.summary(takes)
    summary.per_model               # {"cosyvoice-v3.5-plus": Mean(mean=4.0, n=1), ...}
"""

from __future__ import annotations

import random
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cosyvoice_lab import html

TAG_PREFIX = "blind:"
KINDS = ("preference", "adherence")
_NOTE_RE = re.compile(
    r"^blind (?P<session>\S+): seed (?P<seed>\d+)"
    r"(?:, label (?P<label>[A-Z]+), position (?P<pos>\d+)/(?P<n>\d+)"
    r"|, (?P<kind>[a-z]+) round, (?P<count>\d+) takes?, rater (?P<rater>.*))$",
    re.MULTILINE,
)


def anonymous_label(index: int) -> str:
    """Spreadsheet-style labels: 0 → "A", 25 → "Z", 26 → "AA", 27 → "AB" …

    Raises:
        ValueError: a negative index.
    """
    if index < 0:
        raise ValueError(f"a label index must be >= 0, got {index}")
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def shuffled(take_ids: Iterable[str], seed: int) -> list[str]:
    """The presentation order for ``take_ids`` under ``seed``.

    The ids are sorted first, so the order depends only on the set of takes and the seed,
    never on the order a caller happened to pass them in.
    """
    order = sorted(dict.fromkeys(take_ids))
    random.Random(seed).shuffle(order)
    return order


@dataclass(frozen=True)
class Mean:
    """A mean rating and how many ratings it averages (``mean`` is None when ``n`` is 0)."""

    mean: float | None
    n: int


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        return "anonymous"


def _mean(values: Sequence[int]) -> Mean:
    return Mean(sum(values) / len(values) if values else None, len(values))


@dataclass(frozen=True)
class RevealRow:
    """One take as the reveal shows it."""

    label: str
    take_id: str
    model: str
    prompt_index: int
    prompt: str
    rating: int | None


@dataclass(frozen=True)
class RevealSummary:
    """What blind listening found: the labels uncovered and mean ratings.

    Attributes:
        rows: every take in presentation order, with its label, model, prompt and rating.
        per_model: model → Mean (in order of first appearance of the model).
        per_prompt: prompt index → Mean (prompts numbered in order of first appearance).
        prompts: prompt index → prompt text.
        seed, session_id: the session's identity.
    """

    rows: tuple[RevealRow, ...]
    per_model: dict[str, Mean]
    per_prompt: dict[int, Mean]
    prompts: dict[int, str]
    seed: int
    session_id: str

    @property
    def rated(self) -> int:
        return sum(r.rating is not None for r in self.rows)

    def best_model(self) -> str | None:
        """The model with the highest mean rating (None if nothing was rated)."""
        rated = [(m.mean, name) for name, m in self.per_model.items() if m.n]
        return max(rated)[1] if rated else None

    def to_text(self) -> str:
        """A plain-text summary (what ``print`` shows)."""
        lines = [f"blind session {self.session_id} (seed {self.seed}): {self.rated}/{len(self.rows)} rated"]
        lines += [f"  {name}: {_fmt(m)}" for name, m in self.per_model.items()]
        lines += [f"  prompt {i}: {_fmt(m)} — {_short(self.prompts[i])}" for i, m in self.per_prompt.items()]
        return "\n".join(lines)

    __str__ = to_text

    def html(self) -> str:
        """Mean rating per model and per prompt, then the uncovered labels, as HTML tables."""
        return html.reveal_summary(
            session_id=self.session_id,
            seed=self.seed,
            rated=self.rated,
            rows=self.rows,
            models=[(name, _fmt(m)) for name, m in self.per_model.items()],
            prompts=[(f"{i}. {_short(self.prompts[i], 60)}", _fmt(m)) for i, m in self.per_prompt.items()],
        )


def _fmt(m: Mean) -> str:
    return f"{m.mean:.2f} (n={m.n})" if m.n else "not rated"


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class BlindSession:
    """One blind listening session over a set of takes.

    Build it with :meth:`start` (a fresh seed unless given) or :meth:`from_log`. Ratings are
    collected with :meth:`rate`; :meth:`summary` uncovers the labels.

    Attributes:
        order: take ids in presentation order.
        seed: the shuffle seed (recorded in the log with every take).
        session_id: identifies the session in the log (tag ``blind:<session_id>``).
        ratings: take id → rating given during this session.
        revealed: True once :meth:`reveal` was called.
        kind: "preference" (model and prompt hidden) or "adherence" (prompt shown).
        rater: who listens (default: the login name).
    """

    order: tuple[str, ...] = field(repr=False)
    seed: int = field(repr=False)
    session_id: str
    ratings: dict[str, int] = field(default_factory=dict, repr=False)
    revealed: bool = False
    kind: str = "preference"
    rater: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a listening round is one of {KINDS}, got {self.kind!r}")
        self.rater = self.rater or _login()

    def __repr__(self) -> str:  # no order, no seed before the reveal: nothing to decode labels with
        seed = f", seed {self.seed}" if self.revealed else ""
        state = "revealed" if self.revealed else "blind"
        return (
            f"<BlindSession {self.session_id} ({self.kind}, rater {self.rater}): "
            f"{len(self.ratings)}/{len(self.order)} rated, {state}{seed}>"
        )

    @classmethod
    def start(
        cls,
        take_ids: Iterable[str],
        *,
        seed: int | None = None,
        session_id: str | None = None,
        kind: str = "preference",
        rater: str | None = None,
    ) -> BlindSession:
        """A new session: ``take_ids`` shuffled under ``seed`` (a fresh random 32-bit seed if None).

        Args:
            kind: "preference" (model and prompt hidden) or "adherence" (prompt shown, 1-5: how
                well does the voice match its description?).
            rater: the listener's name (default: the login name).

        Raises:
            ValueError: no takes, a negative seed or an unknown kind.
        """
        ids = list(dict.fromkeys(take_ids))
        if not ids:
            raise ValueError("a blind session needs at least one take to listen to")
        seed = secrets.randbits(32) if seed is None else int(seed)
        if seed < 0:
            raise ValueError(f"a seed must be >= 0, got {seed}")
        return cls(tuple(shuffled(ids, seed)), seed, session_id or uuid.uuid4().hex[:8], kind=kind, rater=rater or "")

    @classmethod
    def from_log(cls, takes: Iterable, session_id: str) -> BlindSession:
        """Rebuild a recorded session from takes carrying its tag and note.

        Args:
            takes: Take-like objects with ``take_id``, ``tags``, ``notes`` and ``rating``.
            session_id: the session to rebuild.

        Raises:
            ValueError: no take carries the session, or its notes disagree on the seed.
        """
        mine = [t for t in takes if TAG_PREFIX + session_id in (t.tags or ())]
        found = [m for t in mine for m in _NOTE_RE.finditer(t.notes or "") if m["session"] == session_id]
        seeds = {int(m["seed"]) for m in found}
        if not mine or len(seeds) != 1:
            raise ValueError(
                f"no consistent record of blind session {session_id!r} in these takes "
                f"({len(mine)} tagged, seeds found: {sorted(seeds)})"
            )
        kind, rater = next(((m["kind"], m["rater"]) for m in found if m["kind"]), ("preference", None))
        session = cls.start(
            [t.take_id for t in mine], seed=seeds.pop(), session_id=session_id, kind=kind, rater=rater
        )  # fmt: skip
        session.ratings = {t.take_id: t.rating for t in mine if t.rating is not None}
        return session

    # --- labels and records ---------------------------------------------------------------
    @property
    def tag(self) -> str:
        """The tag every take of this session carries in the log."""
        return TAG_PREFIX + self.session_id

    def label(self, take_id: str) -> str:
        """The anonymous label of a take ("A", "B", …) in presentation order.

        Raises:
            KeyError: the take is not in this session.
        """
        try:
            return anonymous_label(self.order.index(take_id))
        except ValueError:
            raise KeyError(f"take {take_id!r} is not in blind session {self.session_id}") from None

    def note_for(self, take_id: str) -> str:
        """The line recorded in a take's notes: session, seed, round kind, size and rater; no
        label (the log view shows notes; the seed rebuilds the labels after the reveal)."""
        self.label(take_id)  # KeyError for a take outside the session
        n = len(self.order)
        takes = f"{n} take{'s' if n != 1 else ''}"
        return f"blind {self.session_id}: seed {self.seed}, {self.kind} round, {takes}, rater {self.rater}"

    @staticmethod
    def append_note(existing: str | None, line: str) -> str:
        """Notes with ``line`` appended (once), keeping what was there."""
        existing = (existing or "").rstrip("\n")
        if line in existing.splitlines():
            return existing
        return f"{existing}\n{line}" if existing else line

    def record(self, log) -> None:
        """Write the session into ``log`` before anything is heard: each take gets the tag
        ``blind:<session>`` and a note line with the seed, its label and position, so the exact
        order can be rebuilt later (``from_log``)."""
        for take_id in self.order:
            log.tag(take_id, self.tag)
            log.note(take_id, self.append_note(log.get(take_id).notes, self.note_for(take_id)))

    # --- ratings and reveal ----------------------------------------------------------------
    def rate(self, take_id: str, rating: int | None) -> None:
        """Record a rating (1-5; None clears it).

        Raises:
            KeyError: the take is not in this session. ValueError: a rating outside 1-5.
        """
        self.label(take_id)
        if rating is None:
            self.ratings.pop(take_id, None)
            return
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ValueError(f"a rating must be an integer from 1 to 5, got {rating!r}")
        self.ratings[take_id] = rating

    def ratings_frame(self):
        """The ratings of this round, one row each: ``take_id``, ``rating``, ``rater``, ``kind``,
        ``session_id`` (what ``Comparison.evidence(ratings=...)`` takes).

        Raises:
            RuntimeError: before :meth:`reveal` (take ids would uncover the labels).
        """
        import pandas as pd

        if not self.revealed:
            raise RuntimeError("the ratings are kept blind until the session is revealed: call reveal() first")
        rows = [(t, self.ratings[t], self.rater, self.kind, self.session_id) for t in self.order if t in self.ratings]
        return pd.DataFrame(rows, columns=["take_id", "rating", "rater", "kind", "session_id"])

    def html(self, takes: Iterable) -> str:
        """The round as a listener sees it: each label with its player (and, in an adherence
        round, the description to judge against), in presentation order. Before the reveal no
        model, voice id or take id is shown, nor in a preference round the prompt.

        Args:
            takes: Take-like objects covering the session (``take_id``, ``prompt``, preview).
        """
        by_id = {t.take_id: t for t in takes}
        cards = [
            (self.label(t), by_id[t], by_id[t].prompt if self.kind == "adherence" else "", self.ratings.get(t))
            for t in self.order
        ]
        return html.listening_round(kind=self.kind, rater=self.rater, cards=cards, rated=len(self.ratings))

    @property
    def unrated(self) -> list[str]:
        """Labels of the takes not yet rated, in presentation order."""
        return [self.label(t) for t in self.order if t not in self.ratings]

    def reveal(self, takes: Iterable, prompts: Sequence[str] | None = None) -> RevealSummary:
        """Mark the session revealed and return its :meth:`summary`."""
        self.revealed = True
        return self.summary(takes, prompts)

    def summary(self, takes: Iterable, prompts: Sequence[str] | None = None) -> RevealSummary:
        """Mean rating per model and per prompt, from the ratings given in this session.

        Args:
            takes: Take-like objects (``take_id``, ``model``, ``prompt``) covering the session.
            prompts: the prompt order to number by (prompts not in it, or all when None, are
                numbered in order of first appearance in ``takes``); indices are 0-based, as
                ``Comparison.df`` numbers them. Models are listed in order of first appearance.

        Raises:
            KeyError: a take of the session is missing from ``takes``.
        """
        given = list(takes)
        by_id = {t.take_id: t for t in given}
        missing = [t for t in self.order if t not in by_id]
        if missing:
            raise KeyError(f"takes missing from the summary: {missing}")
        ids = set(self.order)
        mine = [t for t in given if t.take_id in ids]
        prompt_order = list(dict.fromkeys([*(prompts or ()), *(t.prompt for t in mine)]))
        index = {p: i for i, p in enumerate(prompt_order)}
        rows = tuple(
            RevealRow(self.label(i), i, by_id[i].model, index[by_id[i].prompt], by_id[i].prompt, self.ratings.get(i))
            for i in self.order
        )
        models = list(dict.fromkeys(t.model for t in mine))
        per_model = {m: _mean([r.rating for r in rows if r.model == m and r.rating is not None]) for m in models}
        used = sorted({r.prompt_index for r in rows})
        per_prompt = {i: _mean([r.rating for r in rows if r.prompt_index == i and r.rating is not None]) for i in used}
        return RevealSummary(
            rows, per_model, per_prompt, {i: prompt_order[i] for i in used}, self.seed, self.session_id
        )


def played_not_chosen(takes: Iterable) -> list:
    """Takes that were listened to but not chosen (what a design session passed over)."""
    return [t for t in takes if t.played and not t.chosen]
