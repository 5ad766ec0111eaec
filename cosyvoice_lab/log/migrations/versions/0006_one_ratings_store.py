"""one ratings store (issue #25): every star rating is a row of ``ratings``.

- ``ratings`` gains ``kind`` 'own', ``position`` and ``hidden_repeat``, and loses ``seed`` (seeds
  live in ``rounds``): the seed-only rows a notebook's blind round wrote are removed, and a blind
  round recorded before revision 0005 (seed-only rows, no ``rounds`` row) gets its round and rater
  rows first, so it is still rebuilt with the same labels;
- a round rater's ratings get the position of the take's first showing in their order;
- star answers move from ``round_answers`` into ``ratings``: a hidden repeat as a new row (its
  ``answer_id`` as ``rating_id``), a first showing only where ``ratings`` has no copy of it (the
  panel wrote both; the ``ratings`` copy may have travelled in bundles, so its id is kept);
  ``round_answers`` keeps pair choices only and loses ``rating``;
- own ratings: every "rate" annotation event becomes an 'own' row (its ``annotation_id`` as
  ``rating_id``, so two teammates' upgraded logs agree) and leaves ``annotations``; a
  ``takes.rating`` that the history does not end in gets one more 'own' row.

Both tables are rebuilt (create, copy, drop, rename): SQLite cannot drop a column or change a
CHECK in place, and one path serves SQLite and PostgreSQL alike.

Revision ID: 0006
Revises: 0005
"""

import json
import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import rowid

revision = "0006"
down_revision = "0005"

t, i = sa.Text, sa.Integer
_OLD_RATINGS = sa.table(
    "ratings", *(sa.column(n) for n in ("rowid", "rating_id", "take_id", "session_id", "seed", "kind", "rater",
                                        "rating", "at"))
)  # fmt: skip
_OLD_ANSWERS = sa.table("round_answers", *(sa.column(n) for n in ("rowid", "answer_id", "session_id", "position",
                                                                   "rating", "preferred", "at")))  # fmt: skip
_ROUNDS = sa.table("rounds", *(sa.column(n) for n in ("round_id", "experiment", "kind", "items", "seed", "options",
                                                      "state", "created_at")))  # fmt: skip
_RATERS = sa.table("round_raters", *(sa.column(n) for n in ("round_id", "rater", "session_id", "invite_sha256",
                                                            "presented", "joined_at")))  # fmt: skip
_ANNOTATIONS = sa.table("annotations", *(sa.column(n) for n in ("rowid", "annotation_id", "take_id", "at", "action",
                                                                "value", "author")))  # fmt: skip
_TAKES = sa.table("takes", sa.column("take_id"), sa.column("rating"), sa.column("experiment"))
_OWN_ID = uuid.UUID("6f1d2a3c-25b0-4c1e-9a55-0e2d0c0ffee6")  # names the 'own' row of a rating with no history
RATING_COLUMNS = ("rating_id", "take_id", "session_id", "kind", "rater", "rating", "at", "position", "hidden_repeat")


def _ratings_table(name: str) -> None:
    op.create_table(
        name,
        *rowid(),
        sa.Column("rating_id", t, nullable=False, unique=True),
        sa.Column("take_id", t, nullable=False),
        sa.Column("session_id", t),
        sa.Column("kind", t, sa.CheckConstraint("kind IN ('own','preference','adherence')"), nullable=False),
        sa.Column("rater", t, nullable=False),
        sa.Column("rating", i, sa.CheckConstraint("rating BETWEEN 1 AND 5")),
        sa.Column("at", t, nullable=False),
        sa.Column("position", i, sa.CheckConstraint("position >= 0")),
        sa.Column("hidden_repeat", i, sa.CheckConstraint("hidden_repeat IN (0, 1)"), nullable=False,
                  server_default="0"),
    )  # fmt: skip


def _answers_table(name: str) -> None:
    op.create_table(
        name,
        *rowid(),
        sa.Column("answer_id", t, nullable=False, unique=True),
        sa.Column("session_id", t, nullable=False),
        sa.Column("position", i, sa.CheckConstraint("position >= 0"), nullable=False),
        sa.Column("preferred", t),
        sa.Column("at", t, nullable=False),
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sessions(conn) -> dict:
    """session id -> (round kind, rater, [(take id, hidden repeat), ...] in presentation order)."""
    query = sa.select(_ROUNDS.c.round_id, _ROUNDS.c.kind, _ROUNDS.c["items"])
    rounds = {round_id: (kind, json.loads(items)) for round_id, kind, items in conn.execute(query)}
    out = {}
    for round_id, rater, session_id, presented in conn.execute(
        sa.select(_RATERS.c.round_id, _RATERS.c.rater, _RATERS.c.session_id, _RATERS.c.presented)
    ):
        if round_id not in rounds:
            continue
        kind, items = rounds[round_id]
        order, seen = [], set()
        for index, flipped in json.loads(presented):
            entry = items[index]
            first = (entry[::-1] if flipped else entry)[0] if isinstance(entry, list) else entry
            order.append((first, index in seen))  # a later showing of an item is its hidden repeat (panel/rounds.py)
            seen.add(index)
        out[session_id] = (kind, rater, order)
    return out


def _blind_rounds_of_v4(conn, old: Sequence) -> None:
    """Rounds and raters for the blind rounds recorded only as seed-only rows (before revision 0005)."""
    known = {r[0] for r in conn.execute(sa.select(_RATERS.c.session_id))} | {
        r[0] for r in conn.execute(sa.select(_ROUNDS.c.round_id))
    }
    first: dict[str, dict] = {}
    for row in old:
        if row.seed is not None and row.session_id is not None and row.session_id not in known:
            found = first.setdefault(row.session_id, {"seed": row.seed, "kind": row.kind, "rater": row.rater,
                                                      "at": row.at, "takes": set()})  # fmt: skip
            if found["seed"] == row.seed:  # another seed under this id: a merged bundle's other round
                found["takes"].add(row.take_id)
    for session_id, found in first.items():
        items = sorted(found["takes"])
        order = list(items)
        random.Random(found["seed"]).shuffle(order)  # the notebook's order (views/listening.py: shuffled)
        experiments = {r[0] for r in conn.execute(sa.select(_TAKES.c.experiment).where(_TAKES.c.take_id.in_(items)))}
        conn.execute(
            sa.insert(_ROUNDS).values(
                round_id=session_id,
                experiment=experiments.pop() if len(experiments) == 1 else None,
                kind=found["kind"],
                items=json.dumps(items),
                seed=found["seed"],
                options="{}",
                state="open",
                created_at=found["at"],
            )
        )
        conn.execute(sa.insert(_RATERS).values(
            round_id=session_id, rater=found["rater"], session_id=session_id, invite_sha256=None,
            presented=json.dumps([[items.index(x), 0] for x in order]), joined_at=found["at"]))  # fmt: skip


def _star_rows(conn, old: Sequence, sessions: dict) -> tuple[list[dict], list[dict]]:
    """The ratings rows (old ones kept, star answers moved in) and the pair answers that stay."""
    rows = []
    for row in old:
        if row.seed is not None:  # a blind round's seed-only row: the seed is in rounds
            continue
        position = None
        if row.session_id in sessions:
            order = sessions[row.session_id][2]
            position = next((p for p, (take, repeat) in enumerate(order) if take == row.take_id and not repeat), None)
        rows.append({"rating_id": row.rating_id, "take_id": row.take_id, "session_id": row.session_id,
                     "kind": row.kind, "rater": row.rater, "rating": row.rating, "at": row.at,
                     "position": position, "hidden_repeat": 0})  # fmt: skip
    copied = {(r["session_id"], r["take_id"], r["rater"]) for r in rows}
    pairs = []
    answers = conn.execute(sa.select(_OLD_ANSWERS).order_by(_OLD_ANSWERS.c.at, _OLD_ANSWERS.c.answer_id)).fetchall()
    for a in answers:
        kind, rater, order = sessions.get(a.session_id, (None, None, []))
        if kind == "pair" or (a.rating is None and a.preferred is not None):
            pairs.append({"answer_id": a.answer_id, "session_id": a.session_id, "position": a.position,
                          "preferred": a.preferred, "at": a.at})  # fmt: skip
            continue
        if kind is None or not 0 <= a.position < len(order):
            continue  # a star answer of no known session: no take to give it to
        take, repeat = order[a.position]
        if not repeat and (a.session_id, take, rater) in copied:
            continue  # its copy in ratings (written with it) is the record
        rows.append({"rating_id": a.answer_id, "take_id": take, "session_id": a.session_id, "kind": kind,
                     "rater": rater, "rating": a.rating, "at": a.at, "position": a.position,
                     "hidden_repeat": int(repeat)})  # fmt: skip
    return rows, pairs


def _own_rows(conn) -> list[dict]:
    """'own' rows from the "rate" events, and for a take rating the events do not end in."""
    rows, latest = [], {}
    events = sa.select(_ANNOTATIONS).where(_ANNOTATIONS.c.action == "rate")
    for e in conn.execute(events.order_by(_ANNOTATIONS.c.at, _ANNOTATIONS.c.rowid)):
        rating = int(e.value) if e.value is not None else None
        rows.append({"rating_id": e.annotation_id, "take_id": e.take_id, "session_id": None, "kind": "own",
                     "rater": e.author or "anonymous", "rating": rating, "at": e.at, "position": None,
                     "hidden_repeat": 0})  # fmt: skip
        latest[e.take_id] = rating
    now = _now()
    for take_id, rating in conn.execute(sa.select(_TAKES.c.take_id, _TAKES.c.rating)):
        if rating is not None and latest.get(take_id) != rating:
            rows.append({"rating_id": uuid.uuid5(_OWN_ID, f"{take_id}:{rating}").hex, "take_id": take_id,
                         "session_id": None, "kind": "own", "rater": "anonymous", "rating": rating, "at": now,
                         "position": None, "hidden_repeat": 0})  # fmt: skip
    return rows


def upgrade() -> None:
    conn = op.get_bind()
    old = conn.execute(sa.select(_OLD_RATINGS).order_by(_OLD_RATINGS.c.at, _OLD_RATINGS.c.rating_id)).fetchall()
    _blind_rounds_of_v4(conn, old)
    ratings, pairs = _star_rows(conn, old, _sessions(conn))
    ratings += _own_rows(conn)
    ratings.sort(key=lambda r: (r["at"], r["rating_id"]))  # rowid: the write order
    conn.execute(sa.delete(_ANNOTATIONS).where(_ANNOTATIONS.c.action == "rate"))

    _ratings_table("ratings_v6")
    if ratings:
        conn.execute(sa.table("ratings_v6", *(sa.column(c) for c in RATING_COLUMNS)).insert(), ratings)
    op.drop_table("ratings")
    op.rename_table("ratings_v6", "ratings")
    op.create_index("ratings_take", "ratings", ["take_id", "at"])
    op.create_index("ratings_session", "ratings", ["session_id", "at"])

    _answers_table("round_answers_v6")
    if pairs:
        columns = ("answer_id", "session_id", "position", "preferred", "at")
        conn.execute(sa.table("round_answers_v6", *(sa.column(c) for c in columns)).insert(), pairs)
    op.drop_table("round_answers")
    op.rename_table("round_answers_v6", "round_answers")
    op.create_index("round_answers_session", "round_answers", ["session_id", "at"])
