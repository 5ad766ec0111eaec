"""Listening rounds in the log: what was played, to whom, in which order, and every answer.

One round model serves every surface (the notebook's ``BlindSession`` / ``ComparisonBoard`` and
the web panel): a round (``rounds``) is a kind, a list of items, a seed, options and a state; each
rater who joins it gets a row (``round_raters``) holding their exact presentation order, so a
restarted panel or a reopened notebook resumes every rater where they were; each answer is one
dated row (``round_answers``), the latest per (session, position) being the current one.

Star ratings of the first presentation of an item are also written to ``ratings`` (v4) by the
callers, so ``log.ratings()`` and the evidence read them as before; hidden repeats and pair
choices live only here.

Portable SQL only (TEXT/INTEGER/REAL, CHECK, UNIQUE, plain INSERT/SELECT/UPDATE with ``?``):
the three tables below are the whole schema of this module (migration V5 creates them).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab.log.db import Database
from cosyvoice_lab.log.ratings import clean_name, stamp

# --- the schema (migration V5; the only definition) ------------------------------------------------
ROUNDS_TABLE = """
CREATE TABLE rounds (
    round_id    TEXT NOT NULL UNIQUE,             -- 'r-' + 12 hex (uuid4): what a panel resumes by
    experiment  TEXT,                             -- the experiment whose takes it plays; NULL: takes chosen by hand
    kind        TEXT NOT NULL CHECK (kind IN ('preference','adherence','pair')),
    items       TEXT NOT NULL,                    -- JSON array: take ids (star kinds) or [take_a, take_b] pairs
    seed        INTEGER NOT NULL CHECK (seed >= 0),  -- the round's seed (31 bits); each rater's order is drawn from it
    options     TEXT NOT NULL,                    -- JSON object: repeat_share, subset_size, must_play, no_preference
    state       TEXT NOT NULL CHECK (state IN ('open','closed','revealed')),
    created_at  TEXT NOT NULL                     -- ISO 8601 UTC
)
"""
RATERS_TABLE = """
CREATE TABLE round_raters (
    round_id       TEXT NOT NULL,                 -- rounds.round_id
    rater          TEXT NOT NULL,                 -- the name, NFC-normalised, compared exactly (no case folding)
    session_id     TEXT NOT NULL UNIQUE,          -- this rater's session: ratings.session_id, round_answers.session_id
    invite_sha256  TEXT UNIQUE,                   -- sha256 hex of the personal link's token; NULL: joined by name
    presented      TEXT NOT NULL,                 -- JSON array of [item index, flipped 0/1] in presentation order
    joined_at      TEXT NOT NULL,                 -- ISO 8601 UTC (invited, or first joined)
    UNIQUE (round_id, rater)
)
"""
ANSWERS_TABLE = """
CREATE TABLE round_answers (
    answer_id   TEXT NOT NULL UNIQUE,             -- uuid4 hex
    session_id  TEXT NOT NULL,                    -- round_raters.session_id
    position    INTEGER NOT NULL CHECK (position >= 0),  -- index into round_raters.presented
    rating      INTEGER CHECK (rating BETWEEN 1 AND 5),  -- star kinds: 1-5
    preferred   TEXT,                             -- pair kind: the take id chosen; NULL with rating NULL: no preference
    at          TEXT NOT NULL                     -- ISO 8601 UTC, strictly increasing within a process
)
"""
STATEMENTS = (
    ROUNDS_TABLE,
    RATERS_TABLE,
    ANSWERS_TABLE,
    "CREATE INDEX round_raters_round ON round_raters(round_id)",
    "CREATE INDEX round_answers_session ON round_answers(session_id, at)",
)

KINDS = ("preference", "adherence", "pair")
STATES = ("open", "closed", "revealed")
_ANSWER_COLUMNS = ("answer_id", "session_id", "position", "rating", "preferred", "at")


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
        row = (record.round_id, record.experiment, record.kind, json.dumps(items), record.seed,
               json.dumps(record.options, sort_keys=True), record.state, stamp())  # fmt: skip
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO rounds (round_id, experiment, kind, items, seed, options, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return record

    def get(self, round_id: str) -> RoundRecord | None:
        """The round with this id (None: not in this log)."""
        rows = self._db.query(
            "SELECT round_id, experiment, kind, items, seed, options, state FROM rounds WHERE round_id = ?",
            (round_id,),
        )
        return _round(rows[0]) if rows else None

    def find(self, *, experiment: str | None = None, kind: str | None = None, state: str | None = None) -> list:
        """Rounds matching every filter given, oldest first."""
        clauses, params = [], []
        for column, value in (("experiment", experiment), ("kind", kind), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.query(
            f"SELECT round_id, experiment, kind, items, seed, options, state FROM rounds{where} ORDER BY created_at",
            params,
        )
        return [_round(r) for r in rows]

    def set_state(self, round_id: str, state: str) -> None:
        """Move a round to ``state`` ("open", "closed", "revealed"). Raises ValueError."""
        if state not in STATES:
            raise ValueError(f"a round's state is one of {STATES}, got {state!r}")
        with self._db.transaction() as conn:
            conn.execute("UPDATE rounds SET state = ? WHERE round_id = ?", (state, round_id))

    # --- raters -----------------------------------------------------------------------------------
    def add_rater(self, rater: RaterRecord, invite_token: str | None = None) -> RaterRecord:
        """Store a rater's place in a round (their order); the first writer of a name wins: if the
        name is already in the round, that record is returned and nothing is written."""
        digest = token_digest(invite_token) if invite_token else None
        with self._db.transaction() as conn:
            found = conn.execute(
                "SELECT round_id, rater, session_id, invite_sha256, presented FROM round_raters "
                "WHERE round_id = ? AND rater = ?",
                (rater.round_id, rater.rater),
            ).fetchone()
            if found is not None:
                return _rater(found)
            conn.execute(
                "INSERT INTO round_raters (round_id, rater, session_id, invite_sha256, presented, joined_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (rater.round_id, rater.rater, rater.session_id, digest,
                 json.dumps([list(p) for p in rater.presented]), stamp()),
            )  # fmt: skip
        return RaterRecord(rater.round_id, rater.rater, rater.session_id, digest is not None, rater.presented)

    def raters(self, round_id: str) -> list[RaterRecord]:
        """The round's raters, in the order they were invited or joined."""
        rows = self._db.query(
            "SELECT round_id, rater, session_id, invite_sha256, presented FROM round_raters "
            "WHERE round_id = ? ORDER BY joined_at",
            (round_id,),
        )
        return [_rater(r) for r in rows]

    def rater_by_invite(self, round_id: str, invite_token: str) -> RaterRecord | None:
        """The rater whose personal link carries ``invite_token`` (None: no such invite)."""
        rows = self._db.query(
            "SELECT round_id, rater, session_id, invite_sha256, presented FROM round_raters "
            "WHERE round_id = ? AND invite_sha256 = ?",
            (round_id, token_digest(invite_token)),
        )
        return _rater(rows[0]) if rows else None

    # --- answers ----------------------------------------------------------------------------------
    def answer(
        self, session_id: str, position: int, *, rating: int | None = None, preferred: str | None = None
    ) -> None:
        """Record one answer at ``position`` of a session (a later one supersedes it)."""
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT INTO round_answers ({', '.join(_ANSWER_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, session_id, int(position), rating, preferred, stamp()),
            )

    def answers(self, session_ids: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
        """session id → position → the current answer ``{"rating", "preferred", "at"}``."""
        out: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in session_ids}
        if not session_ids:
            return out
        marks = ", ".join("?" * len(session_ids))
        rows = self._db.query(
            f"SELECT session_id, position, rating, preferred, at FROM round_answers WHERE session_id IN ({marks}) "
            "ORDER BY at, answer_id",
            list(session_ids),
        )
        for session_id, position, rating, preferred, at in rows:  # oldest first: later rows replace
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
