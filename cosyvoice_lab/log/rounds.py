"""Listening rounds in the log: what was played, to whom, in which order, and every answer.

One round model serves every surface (the notebook's ``BlindSession`` / ``ComparisonBoard`` and
the web panel): a round (``rounds``) is a kind, a list of items, a seed, options and a state; each
rater who joins it gets a row (``round_raters``) holding their exact presentation order, so a
restarted panel or a reopened notebook resumes every rater where they were; each answer is one
dated row, the latest per (session, position) being the current one: a pair choice in
``round_answers``, a star rating in ``ratings`` (the one store of ratings, ``ratings.py``: written
once, with its session, position and whether the showing is a hidden repeat), which
``log.ratings.to_dataframe()`` and the evidence read.

The three tables are declared in ``schema.py`` (``rounds``, ``round_raters``, ``round_answers``;
Alembic revision 0005 creates them, 0006 moves star answers to ``ratings``); statements here are
SQLAlchemy Core, through ``Database``.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Text, insert, literal, select, union_all, update

from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.ratings import clean_name, stamp
from cosyvoice_lab.log.schema import ratings, round_answers, round_raters, rounds

KINDS = ("preference", "adherence", "pair")
STATES = ("open", "closed", "revealed")
_ROUND = (rounds.c.round_id, rounds.c.experiment, rounds.c.kind, rounds.c["items"], rounds.c.seed,
          rounds.c.options, rounds.c.state)  # fmt: skip
_RATER = (round_raters.c.round_id, round_raters.c.rater, round_raters.c.session_id,
          round_raters.c.invite_sha256, round_raters.c.presented)  # fmt: skip


def rater_name(name: object) -> str:
    """A rater's name as rounds compare it: stripped, 1-64 printable characters, Unicode NFC.

    Not case-folded: "Ana" and "ana", "ß" and "SS" are different raters.

    Raises:
        ValueError: not a valid name.
    """
    # normalised first, then checked: NFC can change a name's length (U+0958 becomes two code points)
    return clean_name(unicodedata.normalize("NFC", name) if isinstance(name, str) else name)


def token_digest(token: str) -> str:
    """What the log keeps of an invite token: its sha256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class RoundRecord:
    """A round as the log holds it. ``items``: take ids, or (take_a, take_b) pairs."""

    round_id: str
    experiment: str | None
    kind: str
    items: tuple
    seed: int
    options: dict = field(default_factory=dict)
    state: str = "open"


@dataclass(frozen=True)
class RaterRecord:
    """One rater in a round: ``presented`` is ((item index, flipped), ...) in presentation order."""

    round_id: str
    rater: str
    session_id: str
    invited: bool
    presented: tuple[tuple[int, int], ...]


class Rounds:
    """The three round tables of a log (``ExperimentLog.rounds``).

    Args:
        db: the log's database (SQLite or PostgreSQL: the same interface).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- rounds -----------------------------------------------------------------------------------
    def create(self, record: RoundRecord) -> RoundRecord:
        """Store a new round. Raises ValueError for an unknown kind or state."""
        if record.kind not in KINDS or record.state not in STATES:
            raise ValueError(f"a round is one of {KINDS} and {STATES}, got {record.kind!r}, {record.state!r}")
        items = [list(i) if isinstance(i, tuple | list) else i for i in record.items]
        row = {"round_id": record.round_id, "experiment": record.experiment, "kind": record.kind,
               "items": json.dumps(items), "seed": record.seed, "options": json.dumps(record.options, sort_keys=True),
               "state": record.state, "created_at": stamp()}  # fmt: skip
        with self._db.transaction() as conn:
            conn.execute(insert(rounds), row)
        return record

    def get(self, round_id: str) -> RoundRecord | None:
        """The round with this id (None: not in this log)."""
        rows = self._db.query(select(*_ROUND).where(rounds.c.round_id == round_id))
        return _round(rows[0]) if rows else None

    def find(self, *, experiment: str | None = None, kind: str | None = None, state: str | None = None) -> list:
        """Rounds matching every filter given, oldest first."""
        statement = select(*_ROUND).order_by(rounds.c.created_at)
        for column, value in ((rounds.c.experiment, experiment), (rounds.c.kind, kind), (rounds.c.state, state)):
            if value is not None:
                statement = statement.where(column == value)
        rows = self._db.query(statement)
        return [_round(r) for r in rows]

    def set_state(self, round_id: str, state: str) -> None:
        """Move a round to ``state`` ("open", "closed", "revealed"). Raises ValueError."""
        if state not in STATES:
            raise ValueError(f"a round's state is one of {STATES}, got {state!r}")
        with self._db.transaction() as conn:
            conn.execute(update(rounds).where(rounds.c.round_id == round_id).values(state=state))

    # --- raters -----------------------------------------------------------------------------------
    def add_rater(self, rater: RaterRecord, invite_token: str | None = None) -> RaterRecord:
        """Store a rater's place in a round (their order); the first writer of a name wins: if the
        name is already in the round, that record is returned and nothing is written."""
        digest = token_digest(invite_token) if invite_token else None
        with self._db.transaction() as conn:
            found = conn.execute(
                select(*_RATER).where(round_raters.c.round_id == rater.round_id, round_raters.c.rater == rater.rater)
            ).first()
            if found is not None:
                return _rater(found)
            conn.execute(
                insert(round_raters),
                {"round_id": rater.round_id, "rater": rater.rater, "session_id": rater.session_id,
                 "invite_sha256": digest, "presented": json.dumps([list(p) for p in rater.presented]),
                 "joined_at": stamp()},
            )  # fmt: skip
        return RaterRecord(rater.round_id, rater.rater, rater.session_id, digest is not None, rater.presented)

    def raters(self, round_id: str) -> list[RaterRecord]:
        """The round's raters, in the order they were invited or joined."""
        rows = self._db.query(
            select(*_RATER).where(round_raters.c.round_id == round_id).order_by(round_raters.c.joined_at)
        )
        return [_rater(r) for r in rows]

    def rater_by_invite(self, round_id: str, invite_token: str) -> RaterRecord | None:
        """The rater whose personal link carries ``invite_token`` (None: no such invite)."""
        rows = self._db.query(
            select(*_RATER).where(
                round_raters.c.round_id == round_id, round_raters.c.invite_sha256 == token_digest(invite_token)
            )
        )
        return _rater(rows[0]) if rows else None

    def round_record(self, session_id: str) -> dict | None:
        """A star round as its rater ``session_id`` was given it: ``{"seed", "kind", "rater",
        "take_ids"}`` (take ids sorted, as the round stores them), or None: no such session in a
        star round of this log. What rebuilds a closed notebook's blind round with its labels."""
        r, s = rounds.c, round_raters.c
        rows = self._db.query(
            select(r.seed, r.kind, s.rater, r["items"])
            .join_from(round_raters, rounds, s.round_id == r.round_id)
            .where(s.session_id == session_id, r.kind != "pair")
        )
        if not rows:
            return None
        seed, kind, rater, items = rows[0]
        return {"seed": int(seed), "kind": kind, "rater": rater, "take_ids": sorted(json.loads(items))}

    # --- answers ----------------------------------------------------------------------------------
    def answer(self, session_id: str, position: int, *, preferred: str | None = None) -> None:
        """Record a pair choice at ``position`` of a session (a later one supersedes it):
        ``preferred`` the take chosen, None no preference. (A star answer is a rating:
        ``log.ratings.add(..., session_id=, position=, hidden_repeat=)``.)"""
        with self._db.transaction() as conn:
            conn.execute(
                insert(round_answers),
                {"answer_id": uuid.uuid4().hex, "session_id": session_id, "position": int(position),
                 "preferred": preferred, "at": stamp()},
            )  # fmt: skip

    def answers(self, session_ids: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
        """session id → position → the current answer ``{"rating", "preferred", "at"}``: a pair
        choice (``round_answers``) or a star rating (``ratings``; a cleared one is no answer)."""
        out: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in session_ids}
        if not session_ids:
            return out
        a, r = round_answers.c, ratings.c
        chosen = select(a.session_id, a.position, literal(None, Integer).label("rating"), a.preferred, a.at,
                        a.answer_id, literal(False).label("star"))  # fmt: skip
        rated = select(r.session_id, r.position, r.rating, literal(None, Text).label("preferred"), r.at, r.rating_id,
                       literal(True).label("star"))  # fmt: skip
        ids = list(session_ids)
        both = union_all(
            chosen.where(a.session_id.in_(ids)), rated.where(r.session_id.in_(ids), r.position.is_not(None))
        ).subquery()
        rows = self._db.query(select(both).order_by(both.c.at, both.c.answer_id))
        for session_id, position, rating, preferred, at, _, star in rows:  # oldest first: later rows replace
            if star and rating is None:  # a cleared star rating: no answer
                out[session_id].pop(int(position), None)
            else:
                out[session_id][int(position)] = {"rating": rating, "preferred": preferred, "at": at}
        return out


def _round(row: tuple) -> RoundRecord:
    round_id, experiment, kind, items, seed, options, state = row
    parsed = tuple(tuple(i) if isinstance(i, list) else i for i in json.loads(items))
    return RoundRecord(round_id, experiment, kind, parsed, int(seed), json.loads(options), state)


def _rater(row: tuple) -> RaterRecord:
    round_id, rater, session_id, digest, presented = row
    order = tuple((int(i), int(f)) for i, f in json.loads(presented))
    return RaterRecord(round_id, rater, session_id, digest is not None, order)


NEW_ROUND_PREFIX = "r-"  # rounds made by new_round_id (the panel's); a notebook's blind round keeps its session id


def new_round_id() -> str:
    """A fresh round id: ``r-`` and 12 hex digits."""
    return f"{NEW_ROUND_PREFIX}{uuid.uuid4().hex[:12]}"
