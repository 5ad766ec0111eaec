"""Blind listening, as pure objects: a shuffled order under a fresh seed, anonymous labels,
ratings written to the log as they are given, and the reveal summary (``reveal.py``).

Two kinds of round (``catalog.RATING_KINDS``): *preference* (model and prompt hidden: which
voices does the listener like?) and *adherence* (the prompt shown, the model hidden: "how well
does this voice match this description?", 1-5). Every session draws a fresh random seed unless
one is given, and every rating carries the rater's name, the round kind and the session id.
Nothing a session prints, shows or writes to a log view before :meth:`BlindSession.reveal`
pairs a label with a take, a model or (in a preference round) a prompt.

No widgets here: ``widgets.board.ComparisonBoard`` is a thin shell over :class:`BlindSession`.

What goes into the experiment log (:meth:`BlindSession.record`, before anything is heard):

- every take gets the tag ``blind:<session_id>`` (:attr:`BlindSession.tag`);
- every take's notes get one line, :meth:`BlindSession.note_for`:
  ``blind <session_id>: preference round, 8 takes, rater ana`` — no seed and no label: the log
  views show notes and tags, and the seed with the (sorted) take ids would rebuild the labels;
- the round itself (kind, items, seed, state, this rater's order) goes to the log's round tables
  (``log.rounds``), the one round model the web panel uses too, which no log view shows; from
  there :meth:`BlindSession.from_log` rebuilds the round with the same labels after the notebook
  was closed (``log.rounds.round_record``); the reveal sets its state;
- each rating as it is given: ``log.ratings.add(take, rating, rater=, kind=, session_id=,
  position=)``, so a closed notebook loses nothing already rated;
- at the reveal, a note line ``blind <session_id> revealed: seed <seed>`` on every take.

Tags and notes are written in take-id order, never in presentation order (the annotation
history is dated). Sessions recorded by earlier versions (``blind s: seed 7, label C, position
3/8`` or ``blind s: seed 7, preference round, ...``) are still read.

Usage::

    session = BlindSession.start([t.take_id for t in takes], kind="adherence", rater="ana")
    session.record(lab.log)         # before anything is heard
    session.label(take_id)          # "C"
    session.rate(take_id, 4)        # in the log at once
    summary = session.reveal(takes)
    summary.per_model               # {"cosyvoice-v3.5-plus": Mean(mean=4.0, n=1), ...}
"""

from __future__ import annotations

import random
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import catalog, html
from cosyvoice_lab.log.ratings import check_kind, check_seed, clean_name, clean_rater, who
from cosyvoice_lab.log.rows import check_rating
from cosyvoice_lab.views.reveal import Mean, RevealRow, RevealSummary, summarise

__all__ = ["KINDS", "BlindSession", "Mean", "RevealRow", "RevealSummary", "anonymous_label", "shuffled"]

TAG_PREFIX = "blind:"
KINDS = catalog.RATING_KINDS
_OPENED = re.compile(
    r"^blind (?P<session>\S+): (?:seed (?P<seed>\d+), )?(?P<kind>[a-z]+) round, \d+ takes?, rater (?P<rater>.*)$",
    re.MULTILINE,
)
_LABELLED = re.compile(r"^blind (?P<session>\S+): seed (?P<seed>\d+), label [A-Z]+, position \d+/\d+$", re.MULTILINE)
_REVEALED = re.compile(r"^blind (?P<session>\S+) revealed: seed (?P<seed>\d+)$", re.MULTILINE)


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


def _recorded(takes: Sequence, session_id: str) -> dict[str, set]:
    """What the notes of ``takes`` say of a session: seeds, kinds, raters, and whether revealed."""
    found: dict[str, set] = {"seed": set(), "kind": set(), "rater": set(), "revealed": set()}
    for t in takes:
        notes = t.notes or ""
        for m in _OPENED.finditer(notes):
            if m["session"] == session_id:
                found["kind"].add(m["kind"])
                found["rater"].add(m["rater"])
                if m["seed"]:
                    found["seed"].add(int(m["seed"]))
        for pattern in (_LABELLED, _REVEALED):
            for m in pattern.finditer(notes):
                if m["session"] == session_id:
                    found["seed"].add(int(m["seed"]))
                    if pattern is _REVEALED:
                        found["revealed"].add(True)
    return found


@dataclass
class BlindSession:
    """One blind listening session over a set of takes.

    Build it with :meth:`start` (a fresh seed unless given) or :meth:`from_log`; :meth:`record`
    writes it into a log, after which every :meth:`rate` is written there too; :meth:`reveal`
    uncovers the labels.

    Attributes:
        order: take ids in presentation order.
        seed: the shuffle seed (kept out of every log view until the reveal).
        session_id: identifies the session in the log (tag ``blind:<session_id>``).
        ratings: take id → rating given during this session.
        revealed: True once :meth:`reveal` was called.
        kind: "preference" (model and prompt hidden) or "adherence" (prompt shown).
        rater: who listens (default: ``$COSYVOICE_LAB_USER``, else the login name).
        log: the ExperimentLog the session writes to (None until :meth:`record`).
    """

    order: tuple[str, ...] = field(repr=False)
    seed: int = field(repr=False)
    session_id: str
    ratings: dict[str, int] = field(default_factory=dict, repr=False)
    revealed: bool = False
    kind: str = "preference"
    rater: str = ""
    log: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a listening round is one of {KINDS}, got {self.kind!r}")
        self.rater = clean_rater(self.rater) if self.rater else (who() or "anonymous")

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
        """A new session: ``take_ids`` shuffled under ``seed`` (a fresh random seed if None).

        Args:
            seed: 0 to 2**31 - 1; leave it None unless repeating a session on purpose (a seed
                someone has seen uncovers the labels).
            kind: "preference" (model and prompt hidden) or "adherence" (prompt shown, 1-5: how
                well does the voice match its description?).
            rater: the listener's name (1-64 printable characters; default: ``$COSYVOICE_LAB_USER``,
                else the login name).

        Raises:
            ValueError: no takes, a bad seed, an unknown kind or a bad rater name.
        """
        seed = secrets.randbits(catalog.BLIND_SEED_BITS) if seed is None else check_seed(seed)
        return cls._build(take_ids, seed, session_id or uuid.uuid4().hex[:8], kind, rater)

    @classmethod
    def _build(cls, take_ids: Iterable[str], seed: int, session_id: str, kind: str, rater: str | None):
        ids = list(dict.fromkeys(take_ids))
        if not ids:
            raise ValueError("a blind session needs at least one take to listen to")
        if seed < 0:
            raise ValueError(f"a seed must be >= 0, got {seed}")
        return cls(tuple(shuffled(ids, seed)), seed, session_id, kind=check_kind(kind), rater=rater or "")

    @classmethod
    def from_log(cls, source, session_id: str) -> BlindSession:
        """Rebuild a recorded session, its labels and its ratings.

        Args:
            source: the ExperimentLog (the round's record and every rating given in it; the
                rebuilt session goes on writing there), or Take-like objects (``take_id``,
                ``tags``, ``notes``, ``rating``), which hold the seed only once revealed (or
                for sessions recorded by earlier versions).
            session_id: the session to rebuild.

        Raises:
            ValueError: nothing records the session, or the records disagree on the seed.
        """
        tag = TAG_PREFIX + session_id
        is_log = hasattr(source, "takes")  # an ExperimentLog, not a list of takes
        takes = source.takes(tag=tag) if is_log else [t for t in source if tag in (t.tags or ())]
        record = source.rounds.round_record(session_id) if is_log else None
        found = _recorded(takes, session_id)
        seeds = {record["seed"]} if record else found["seed"]
        ids = record["take_ids"] if record else [t.take_id for t in takes]
        if not ids or len(seeds) != 1:
            raise ValueError(
                f"no consistent record of blind session {session_id!r} ({len(ids)} takes, seeds found: "
                f"{len(seeds)}); an unrevealed session keeps its seed in the log: pass the ExperimentLog"
            )
        kind = record["kind"] if record else next(iter(found["kind"]), "preference")
        rater = record["rater"] if record else next(iter(found["rater"]), None)
        session = cls._build(ids, seeds.pop(), session_id, kind, rater)
        session.revealed = bool(found["revealed"])
        if record:
            given = source.ratings.to_dataframe(session_id=session_id)
            mine = given[given["rater"] == session.rater]
            session.ratings = {t: int(r) for t, r in zip(mine["take_id"], mine["rating"], strict=True)}
        else:  # earlier versions rated into the take's own rating
            session.ratings = {t.take_id: t.rating for t in takes if t.rating is not None}
        session.log = source if is_log else None
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
        """The line recorded in a take's notes: session, round kind, size and rater; no seed and
        no label (the log view shows notes; the seed is written there at the reveal)."""
        self.label(take_id)  # KeyError for a take outside the session
        n = len(self.order)
        takes = f"{n} take{'s' if n != 1 else ''}"
        return f"blind {self.session_id}: {self.kind} round, {takes}, rater {self.rater}"

    def reveal_note(self) -> str:
        """The line every take's notes get at the reveal: the seed, which now rebuilds the labels."""
        return f"blind {self.session_id} revealed: seed {self.seed}"

    @staticmethod
    def append_note(existing: str | None, line: str) -> str:
        """Notes with ``line`` appended (once), keeping what was there."""
        existing = (existing or "").rstrip("\n")
        if line in existing.splitlines():
            return existing
        return f"{existing}\n{line}" if existing else line

    def record(self, log) -> None:
        """Write the session into ``log`` before anything is heard (see the module docstring):
        the round's record with its seed (out of every log view), then each take's tag and note
        line, in take-id order; from then on every rating is written to ``log`` as it is given.

        Raises:
            ValueError: a session id the log refuses (1-64 printable characters). TakeNotFound.
        """
        clean_name(self.session_id, "a session id")
        self._store_round(log)  # reads every take first: TakeNotFound before anything is written
        for take_id in sorted(self.order):
            log.tag(take_id, self.tag, rater=self.rater)
            log.note(take_id, self.append_note(log.get(take_id).notes, self.note_for(take_id)), rater=self.rater)
        self.log = log

    def _store_round(self, log) -> None:
        """The round in the log's round tables (``log.rounds``, the model the panel uses too):
        kind, items (sorted take ids), seed, state, and this rater's presentation order."""
        from cosyvoice_lab.log.rounds import RaterRecord, RoundRecord

        rounds = log.rounds
        if rounds.get(self.session_id) is not None:
            return
        items = tuple(sorted(self.order))
        experiments = {log.get(t).experiment for t in items}
        experiment = experiments.pop() if len(experiments) == 1 else None
        rounds.create(RoundRecord(self.session_id, experiment, self.kind, items, self.seed, {}, "open"))
        presented = tuple((items.index(t), 0) for t in self.order)
        rounds.add_rater(RaterRecord(self.session_id, self.rater, self.session_id, False, presented))

    # --- ratings and reveal ----------------------------------------------------------------
    def rate(self, take_id: str, rating: int | None) -> None:
        """Record a rating (1-5; None clears it), in the log too once :meth:`record` was called.

        Args:
            take_id: the take, or its label ("C": what a listener sees).

        Raises:
            KeyError: the take is not in this session. ValueError: a rating outside 1-5.
        """
        if take_id not in self.order:  # a label, as the listener knows the take
            labels = {anonymous_label(i): t for i, t in enumerate(self.order)}
            take_id = labels.get(take_id, take_id)
        self.label(take_id)
        rating = check_rating(rating)
        if self.log is not None:
            self.log.ratings.add(take_id, rating, rater=self.rater, kind=self.kind, session_id=self.session_id,
                                 position=self.order.index(take_id))  # fmt: skip
        if rating is None:
            self.ratings.pop(take_id, None)
        else:
            self.ratings[take_id] = rating

    def ratings_frame(self):
        """The ratings of this round, one row each: ``take_id``, ``rating``, ``rater``, ``kind``,
        ``session_id`` (what ``Comparison.evidence(ratings=...)`` takes; ``log.ratings.to_dataframe()`` gives
        every rater's).

        Raises:
            RuntimeError: before :meth:`reveal` (take ids would uncover the labels).
        """
        import pandas as pd

        if not self.revealed:
            raise RuntimeError("the ratings are kept blind until the session is revealed: call reveal() first")
        rows = [(t, self.ratings[t], self.rater, self.kind, self.session_id) for t in self.order if t in self.ratings]
        return pd.DataFrame(rows, columns=["take_id", "rating", "rater", "kind", "session_id"])

    def _repr_html_(self) -> str | None:
        """The round as a listener sees it (:meth:`html`), once recorded in a log; else the repr."""
        return self.html(self._takes()) if self.log is not None else None

    def _takes(self) -> list:
        if self.log is None:
            raise ValueError("pass the takes (this session was not recorded in a log)")
        return [self.log.get(t) for t in self.order]

    def html(self, takes: Iterable | None = None) -> str:
        """The round as a listener sees it: each label with its player (and, in an adherence
        round, the description to judge against), in presentation order. Before the reveal no
        model, voice id or take id is shown, nor in a preference round the prompt.

        Args:
            takes: Take-like objects covering the session (``take_id``, ``prompt``, preview);
                default: read from the log the session was recorded in.
        """
        by_id = {t.take_id: t for t in (self._takes() if takes is None else takes)}
        cards = [
            (self.label(t), by_id[t], by_id[t].prompt if self.kind == "adherence" else "", self.ratings.get(t))
            for t in self.order
        ]
        return html.render("listening.html.j2", kind=self.kind, rater=self.rater, cards=cards, rated=len(self.ratings))

    @property
    def unrated(self) -> list[str]:
        """Labels of the takes not yet rated, in presentation order."""
        return [self.label(t) for t in self.order if t not in self.ratings]

    def reveal(self, takes: Iterable | None = None, prompts: Sequence[str] | None = None) -> RevealSummary:
        """Mark the session revealed (writing the seed into each take's notes once recorded)
        and return its :meth:`summary` (``takes`` default: read from the log)."""
        self.revealed = True
        rounds = getattr(self.log, "rounds", None)
        if rounds is not None and rounds.get(self.session_id) is not None:
            rounds.set_state(self.session_id, "revealed")
        if self.log is not None:
            for take_id in sorted(self.order):
                notes = self.log.get(take_id).notes
                self.log.note(take_id, self.append_note(notes, self.reveal_note()), rater=self.rater)
        return self.summary(self._takes() if takes is None else takes, prompts)

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
            RevealRow(
                self.label(i), i, by_id[i].target_model, index[by_id[i].prompt], by_id[i].prompt, self.ratings.get(i)
            )
            for i in self.order
        )
        models = list(dict.fromkeys(t.target_model for t in mine))
        return summarise(rows, models, prompt_order, self.seed, self.session_id)


def played_not_chosen(takes: Iterable) -> list:
    """Takes that were listened to but not chosen (what a design session passed over)."""
    return [t for t in takes if t.played and not t.chosen]
