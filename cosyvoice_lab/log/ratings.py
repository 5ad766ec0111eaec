"""Every star rating of a take, each a dated row of ``ratings`` (the one store, since revision 0006).

Kinds: ``own`` (a person's own mark, ``log.rate``), and the listening kinds ``preference`` (do you
like the voice?) and ``adherence`` (does it match its description?), given in a round
(``session_id``: the rater's session, ``position``: the showing in their presented order,
``hidden_repeat``: an unannounced second showing, for rater consistency) or outside one
(``session_id`` NULL, as every own rating). Every rating appends one row; the latest row of the same
``(session_id, take_id, rater, kind, hidden_repeat)`` supersedes the earlier ones, and a row with
``rating`` NULL clears it. ``to_dataframe()`` reads the current state. Rows carry a global
``rating_id``, so bundles merge them without duplicates.

``takes.rating`` caches the latest own rating of a take (of any rater), written in the same
transaction as its row (:func:`cache_own`; :meth:`Ratings.rebuild_own_cache` recomputes it), so
``log.df`` needs no join. The history of own ratings is their rows: ``log.annotations()`` shows them
as "rate" events.

Who: a ``rater=`` argument, else ``$COSYVOICE_LAB_USER``, else the login name (:func:`who`), else
"anonymous"; every name is checked by :func:`clean_rater` (1-64 printable characters).

A round's seed, items and each rater's order live in the round tables (``rounds.py``), never here.
"""

from __future__ import annotations

import getpass
import os
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import TakeNotFound
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.rows import check_rating
from cosyvoice_lab.log.schema import ratings as ratings_table
from cosyvoice_lab.log.schema import takes
from cosyvoice_lab.take import iso, now_utc

COLUMNS = tuple(c.name for c in ratings_table.columns)
FRAME_COLUMNS = ("take_id", "rating", "rater", "kind", "session_id", "at", "position", "hidden_repeat")
RATINGS_FRAME = tuple(
    (name, name, kind)
    for name, kind in zip(FRAME_COLUMNS, ("str", "Int64", "str", "str", "str", "time", "Int64", "bool"), strict=True)
)
OWN = "own"
ANONYMOUS = "anonymous"  # the rater of a rating whose author is unknown (no name, no login)
# The latest row of a key is the current rating.
_KEY = ("session_id", "take_id", "rater", "kind", "hidden_repeat")
_clock = threading.Lock()
_last: list[datetime] = []


def clean_name(name: object, what: str = "a rater's name") -> str:
    """``name`` stripped, if it is 1-64 printable characters (``catalog.RATER_MAX_CHARS``).

    Raises:
        ValueError: not a string, empty, too long, or holding control characters.
    """
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string, got {type(name).__name__}")
    text = name.strip()
    if not text or len(text) > catalog.RATER_MAX_CHARS or not text.isprintable():
        raise ValueError(f"{what} must be 1-{catalog.RATER_MAX_CHARS} printable characters, got {name[:80]!r}")
    return text


def clean_rater(name: object) -> str:
    """A rater's name, checked by :func:`clean_name`. Raises ValueError."""
    return clean_name(name)


def check_kind(kind: object, *, own: bool = False) -> str:
    """``kind`` if it is a listening round kind (``catalog.RATING_KINDS``), or "own" when ``own``.

    Raises:
        ValueError: another kind.
    """
    kinds = (OWN, *catalog.RATING_KINDS) if own else catalog.RATING_KINDS
    if kind not in kinds:
        raise ValueError(f"a rating kind is one of {kinds}, got {kind!r}")
    return str(kind)


def login() -> str | None:
    """The login name, or None where the environment has none (some containers)."""
    try:
        return getpass.getuser()
    except Exception:  # KeyError / OSError: no user name; the history still records the time
        return None


def who(rater: str | None = None) -> str | None:
    """Who is acting: ``rater`` if given, else ``$COSYVOICE_LAB_USER``, else the login name
    (None if there is none), each checked by :func:`clean_rater`.

    Raises:
        ValueError: a bad name (one from the environment names the variable).
    """
    if rater is not None:
        return clean_rater(rater)
    env = os.environ.get(catalog.USER_ENV)
    if env is not None and env.strip():
        try:
            return clean_rater(env)
        except ValueError as exc:
            raise ValueError(f"${catalog.USER_ENV}: {exc}") from None
    try:
        return clean_rater(login())
    except ValueError:  # no login name, or one that is no rater's name: the time is still recorded
        return None


def check_seed(seed: object) -> int:
    """``seed`` if it is an int from 0 to 2**31 - 1 (``catalog.BLIND_SEED_BITS``). Raises ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**catalog.BLIND_SEED_BITS:
        raise ValueError(f"a shuffle seed must be an integer from 0 to 2**{catalog.BLIND_SEED_BITS} - 1, got {seed!r}")
    return seed


def stamp() -> str:
    """Now, strictly after the previous stamp of this process: a rater's rapid re-rating is
    ordered by ``at`` alone (portable SQL, no rowid). Round answers (``rounds.py``) use it too."""
    with _clock:
        at = now_utc()
        if _last and at <= _last[0]:
            at = _last[0] + timedelta(microseconds=1)
        _last[:] = [at]
        return str(iso(at))


def insert_rating(
    conn: Connection,
    path: object,
    take_id: str,
    rating: int | None,
    *,
    kind: str,
    rater: str,
    session_id: str | None = None,
    position: int | None = None,
    hidden_repeat: bool = False,
) -> str:
    """Append one rating row inside a transaction; returns its ``rating_id``.

    Raises:
        TakeNotFound: no such take (``path`` names the log).
    """
    if conn.execute(select(takes.c.take_id).where(takes.c.take_id == take_id)).first() is None:
        raise TakeNotFound(path, f"no take {take_id!r} in this log")
    rating_id = uuid.uuid4().hex
    row = {"rating_id": rating_id, "take_id": take_id, "session_id": session_id, "kind": kind, "rater": rater,
           "rating": rating, "at": stamp(), "position": position, "hidden_repeat": int(hidden_repeat)}  # fmt: skip
    conn.execute(insert(ratings_table), row)
    return rating_id


def cache_own(conn: Connection, take_ids: Iterable[str]) -> None:
    """Set ``takes.rating`` of ``take_ids`` to their latest own rating (NULL: none, or cleared),
    inside a transaction."""
    r = ratings_table.c
    for take_id in take_ids:
        latest = conn.execute(
            select(r.rating)
            .where(r.take_id == take_id, r.kind == OWN)
            .order_by(r.at.desc(), r.rating_id.desc())
            .limit(1)
        ).first()
        conn.execute(update(takes).where(takes.c.take_id == take_id).values(rating=latest[0] if latest else None))


class Ratings:
    """The ``ratings`` table: ``log.ratings``.

    Args:
        db: the log's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        take_id: str,
        rating: int | None,
        *,
        rater: str | None = None,
        kind: str = "preference",
        session_id: str | None = None,
        position: int | None = None,
        hidden_repeat: bool = False,
    ) -> None:
        """Record ``rater``'s listening rating of a take (1-5; None clears it), in a round or not.

        Args:
            kind: "preference" or "adherence" (a person's own mark is ``log.rate``).
            session_id: the rater's session in a round. position: the showing in their presented
                order. hidden_repeat: the showing repeats an item shown before (unannounced).

        Raises:
            ValueError: a rating outside 1-5, an unknown kind, a bad rater, session id or position.
            TakeNotFound: no such take.
        """
        value = check_rating(rating)
        sid = None if session_id is None else clean_name(session_id, "a session id")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise ValueError(f"a position is an integer >= 0, got {position!r}")
        if hidden_repeat and (sid is None or position is None):
            raise ValueError("a hidden repeat is a showing in a round: give its session_id and position")
        kind, name = check_kind(kind), who(rater) or ANONYMOUS
        with self._db.transaction() as conn:
            insert_rating(conn, self._db.path, take_id, value, kind=kind, rater=name, session_id=sid,
                          position=position, hidden_repeat=bool(hidden_repeat))  # fmt: skip

    def rebuild_own_cache(self, take_ids: Iterable[str] | None = None) -> int:
        """Recompute ``takes.rating`` (of ``take_ids``, or of every take) from the own ratings;
        returns how many takes were recomputed. The column is a cache: this is its recovery."""
        with self._db.transaction() as conn:
            ids = list(take_ids) if take_ids is not None else [r[0] for r in conn.execute(select(takes.c.take_id))]
            cache_own(conn, ids)
        return len(ids)

    def events(self, take_ids: list[str] | None = None) -> list[dict]:
        """Every rating row (of ``take_ids``, or all), oldest first, as dicts of ``COLUMNS``."""
        query = select(ratings_table).order_by(ratings_table.c.at, ratings_table.c.rating_id)
        if take_ids is not None:
            if not take_ids:
                return []
            query = query.where(ratings_table.c.take_id.in_(list(take_ids)))
        rows = self._db.query(query)
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def to_dataframe(
        self,
        experiment: str | None = None,
        *,
        kind: str | None = None,
        session_id: str | None = None,
        repeats: bool = False,
    ):
        """The current ratings as a DataFrame: ``take_id``, ``rating`` (int), ``rater``, ``kind``,
        ``session_id``, ``at`` (UTC), ``position`` (Int64), ``hidden_repeat`` (bool): the latest per
        (session, take, rater, kind, repeat), cleared ones dropped, oldest first.

        Args:
            experiment: only takes of this experiment. kind: only this kind ("preference",
                "adherence", or "own" for people's own marks); default: the listening kinds.
            session_id: only this round session. repeats: also the hidden repeats' ratings (by
                default one rating per rater and take of a round: its first showing's).

        Raises:
            ValueError: an unknown kind.
        """
        from cosyvoice_lab.log import frame as logframe  # pandas: loaded when a frame is asked for

        r = ratings_table.c
        kinds = [check_kind(kind, own=True)] if kind is not None else list(catalog.RATING_KINDS)
        query = select(*(r[name] for name in FRAME_COLUMNS)).where(r.kind.in_(kinds)).order_by(r.at, r.rating_id)
        if experiment is not None:
            query = query.where(r.take_id.in_(select(takes.c.take_id).where(takes.c.experiment == experiment)))
        if session_id is not None:
            query = query.where(r.session_id == session_id)
        if not repeats:
            query = query.where(r.hidden_repeat == 0)
        rows = self._db.query(query)
        at = [FRAME_COLUMNS.index(name) for name in _KEY]
        latest: dict[tuple, tuple] = {}
        for row in rows:  # oldest first: a later row of the same key replaces (and re-dates) it
            key = tuple(row[i] for i in at)
            latest.pop(key, None)
            latest[key] = row
        return logframe.build([row for row in latest.values() if row[1] is not None], RATINGS_FRAME)
