"""Listening ratings: several raters' judgements of a take, each a dated event in ``ratings``.

A take's ``rating`` column holds one value (the owner's own mark). A listening round needs more:
who rated, in which round (``session_id``), of which kind (a *preference* for the voice, or its
*adherence* to its description), and when. Every ``add`` appends one row; a later row of
the same rater for the same take in the same session supersedes the earlier one, and a row with
``rating`` NULL clears it. ``ratings()`` reads the current state: the latest row per
``(session_id, take_id, rater)``, cleared ones dropped. Rows carry a global ``rating_id``, so
bundles merge them without duplicates.

Who: a ``rater=`` argument, else ``$COSYVOICE_LAB_USER``, else the login name (:func:`who`);
every name is checked by :func:`clean_rater` (1-64 printable characters).

A blind round (``views/listening.py``) is opened with :meth:`Ratings.open_round`: one row per
take with ``rating`` NULL (nothing rated yet) carrying the round's shuffle ``seed``, kind and
rater. The seed lives only there until the reveal: no log view (``log.df``, notes, the
annotation events, ``ratings.to_dataframe()``) shows it, yet a closed notebook's round can be rebuilt with
the same labels (:meth:`Ratings.round_record`).
"""

from __future__ import annotations

import getpass
import os
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import insert, select

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import TakeNotFound
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.rows import check_rating
from cosyvoice_lab.log.schema import ratings as ratings_table
from cosyvoice_lab.log.schema import takes
from cosyvoice_lab.take import iso, now_utc

COLUMNS = tuple(c.name for c in ratings_table.columns)
FRAME_COLUMNS = ("take_id", "rating", "rater", "kind", "session_id", "at")
RATINGS_FRAME = tuple(
    (name, name, kind) for name, kind in zip(FRAME_COLUMNS, ("str", "Int64", "str", "str", "str", "time"), strict=True)
)
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


def check_kind(kind: object) -> str:
    """``kind`` if it is a listening round kind (``catalog.RATING_KINDS``). Raises ValueError."""
    if kind not in catalog.RATING_KINDS:
        raise ValueError(f"a rating kind is one of {catalog.RATING_KINDS}, got {kind!r}")
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
    ) -> None:
        """Record ``rater``'s rating of a take (1-5; None clears it) in a round.

        Raises:
            ValueError: a rating outside 1-5, an unknown kind, a bad rater or session id.
            TakeNotFound: no such take.
        """
        value = check_rating(rating)
        sid = None if session_id is None else clean_name(session_id, "a session id")
        self._insert([take_id], sid, None, check_kind(kind), who(rater) or "anonymous", value)

    def open_round(self, take_ids: list[str], *, session_id: str, seed: int, kind: str, rater: str | None) -> None:
        """Record a blind round before anything is heard: one unrated row per take (in sorted
        order: the rows say nothing of the presentation order) with the round's seed.

        Raises:
            ValueError: a bad session id, seed, kind or rater. TakeNotFound: a take is missing
                (then nothing is written).
        """
        sid = clean_name(session_id, "a session id")
        name = who(rater) or "anonymous"
        self._insert(sorted(set(take_ids)), sid, check_seed(seed), check_kind(kind), name, None)

    def round_record(self, session_id: str) -> dict | None:
        """What :meth:`open_round` recorded of a round: ``{"seed", "kind", "rater", "take_ids"}``
        (take ids sorted), or None if this log holds no seed for it.

        Raises:
            ValueError: the log holds rows of the round with different seeds (a merged bundle
                recorded another round under this id): its labels cannot be rebuilt.
        """
        r = ratings_table.c
        rows = self._db.query(
            select(r.take_id, r.seed, r.kind, r.rater)
            .where(r.session_id == session_id, r.seed.is_not(None))
            .order_by(r.at, r.rating_id)
        )
        if not rows:
            return None
        if len({r[1] for r in rows}) > 1:
            raise ValueError(f"the log holds conflicting records (seeds) of blind round {session_id!r}")
        _, seed, kind, rater = rows[0]
        return {"seed": seed, "kind": kind, "rater": rater, "take_ids": sorted({r[0] for r in rows})}

    def _insert(self, take_ids, session_id, seed, kind, rater, rating) -> None:
        with self._db.transaction() as conn:
            for take_id in take_ids:
                if conn.execute(select(takes.c.take_id).where(takes.c.take_id == take_id)).first() is None:
                    raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
                row = (uuid.uuid4().hex, take_id, session_id, seed, kind, rater, rating, stamp())
                conn.execute(insert(ratings_table), dict(zip(COLUMNS, row, strict=True)))

    def events(self, take_ids: list[str] | None = None) -> list[dict]:
        """Every rating row (of ``take_ids``, or all), oldest first, as dicts of ``COLUMNS``."""
        query = select(ratings_table).order_by(ratings_table.c.at, ratings_table.c.rating_id)
        if take_ids is not None:
            if not take_ids:
                return []
            query = query.where(ratings_table.c.take_id.in_(list(take_ids)))
        rows = self._db.query(query)
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def to_dataframe(self, experiment: str | None = None, *, kind: str | None = None, session_id: str | None = None):
        """The current ratings as a DataFrame: ``take_id``, ``rating`` (int), ``rater``, ``kind``,
        ``session_id``, ``at`` (UTC): the latest per (session, take, rater), cleared ones dropped,
        oldest first.

        Args:
            experiment: only takes of this experiment. kind: only this round kind.
            session_id: only this round.

        Raises:
            ValueError: an unknown kind.
        """
        from cosyvoice_lab.log import frame as logframe  # pandas: loaded when a frame is asked for

        r = ratings_table.c
        query = select(*(r[name] for name in FRAME_COLUMNS)).order_by(r.at, r.rating_id)
        if experiment is not None:
            query = query.where(r.take_id.in_(select(takes.c.take_id).where(takes.c.experiment == experiment)))
        if kind is not None:
            query = query.where(r.kind == check_kind(kind))
        if session_id is not None:
            query = query.where(r.session_id == session_id)
        rows = self._db.query(query)
        latest: dict[tuple, tuple] = {}
        for row in rows:  # oldest first: a later row of the same key replaces (and re-dates) it
            key = (row[4], row[0], row[2])
            latest.pop(key, None)
            latest[key] = row
        return logframe.build([row for row in latest.values() if row[1] is not None], RATINGS_FRAME)
