"""What people add to takes — ratings, choices, tags, notes, listening — and synthesised
utterances: two parts of ``ExperimentLog`` beside the request/outcome write path.

Every annotation updates the take's current value *and* appends a dated event to the
``annotations`` table in the same transaction. The current values are a cache of the
history: ``replay`` recomputes them from the events, which is how bundles from teammates
merge (events are keyed by a global id, so merging twice adds nothing).
"""

from __future__ import annotations

import json
import numbers
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.errors import TakeNotFound
from cosyvoice_lab.log import schema
from cosyvoice_lab.log.audio_store import AudioStore
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.ratings import who
from cosyvoice_lab.log.rows import audio_columns, check_rating, clean_tag, dumps_or_null
from cosyvoice_lab.log.schema import ROWID, takes, utterances
from cosyvoice_lab.log.take_table import TakeTable
from cosyvoice_lab.take import Take, iso, now_utc

# change(current tags) -> (column values, events): what one annotation does to a take.
Change = Callable[[list[str]], tuple[dict[str, Any], list[tuple[str, Any]]]]


def apply_events(events: Iterable[tuple[str, str | None]]) -> dict:
    """The annotation values after ``(action, value)`` events, oldest first, from a fresh take.

    Returns:
        ``{"rating", "chosen", "tags", "notes", "played"}`` as the takes table stores them.
    """
    rating, chosen, tags, notes, played = None, False, [], "", False
    for action, value in events:
        if action == "rate":
            rating = int(value) if value is not None else None
        elif action in ("choose", "unchoose"):
            chosen = action == "choose"
        elif action == "tag" and value not in tags:
            tags.append(value)
        elif action == "untag" and value in tags:
            tags.remove(value)
        elif action == "note":
            notes = value or ""
        elif action == "played":
            played = True
    return {"rating": rating, "chosen": int(chosen), "tags": dumps_or_null(tags), "notes": notes, "played": int(played)}


def replay(conn, take_ids: Iterable[str]) -> None:
    """Recompute the annotation columns of ``take_ids`` from their history (inside a transaction)."""
    for take_id in take_ids:
        events = conn.execute(
            select(schema.annotations.c.action, schema.annotations.c.value)
            .where(schema.annotations.c.take_id == take_id)
            .order_by(schema.annotations.c.at, ROWID)
        ).fetchall()
        conn.execute(update(takes).where(takes.c.take_id == take_id).values(apply_events(events)))


class Annotations:
    """Annotations with a history (``ExperimentLog`` documents each method).

    Args:
        db: the log's database. table: the takes table (updates a take and reads it back).
    """

    def __init__(self, db: Database, table: TakeTable) -> None:
        self._db = db
        self._table = table

    # Every method takes ``rater``: who made the annotation (recorded in the history's
    # ``author``); default ``$COSYVOICE_LAB_USER``, else the login name (``ratings.who``).
    def rate(self, take_id: str, rating: int | None, *, rater: str | None = None) -> Take:
        """Rate a take 1-5 (None clears the rating).

        Raises:
            ValueError: not an integer from 1 to 5, or a bad rater name. TakeNotFound: no such take.
        """
        rating = check_rating(rating)
        return self._annotate(
            take_id, lambda tags: ({"rating": rating}, [("rate", None if rating is None else str(rating))]), rater
        )

    def choose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Mark a take chosen (a keeper). Raises TakeNotFound if missing."""
        return self._annotate(take_id, lambda tags: ({"chosen": 1}, [("choose", None)]), rater)

    def unchoose(self, take_id: str, *, rater: str | None = None) -> Take:
        """Clear a take's chosen mark. Raises TakeNotFound if missing."""
        return self._annotate(take_id, lambda tags: ({"chosen": 0}, [("unchoose", None)]), rater)

    def tag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Add tags (stripped, 1-64 printable characters; duplicates ignored).

        Raises:
            ValueError: a bad tag or rater name. TakeNotFound: no such take.
        """
        wanted = [clean_tag(t) for t in tags]

        def change(current):
            added = [t for t in dict.fromkeys(wanted) if t not in current]
            return {"tags": dumps_or_null(current + added)}, [("tag", t) for t in added]

        return self._annotate(take_id, change, rater)

    def untag(self, take_id: str, *tags: str, rater: str | None = None) -> Take:
        """Remove tags (absent ones are ignored). Raises TakeNotFound if missing."""
        unwanted = {clean_tag(t) for t in tags}

        def change(current):
            removed = [t for t in current if t in unwanted]
            kept = [t for t in current if t not in unwanted]
            return {"tags": dumps_or_null(kept)}, [("untag", t) for t in removed]

        return self._annotate(take_id, change, rater)

    def note(self, take_id: str, text: str, *, rater: str | None = None) -> Take:
        """Set a take's notes to ``text`` (the history keeps earlier notes).

        Raises:
            TypeError: text is not a string. TakeNotFound: no such take.
        """
        if not isinstance(text, str):
            raise TypeError(f"a note must be a string, got {type(text).__name__}")
        return self._annotate(take_id, lambda tags: ({"notes": text}, [("note", text)]), rater)

    def mark_played(self, *take_ids: str) -> None:
        """Record that these takes were listened to (played, whether chosen or not).

        Raises:
            TakeNotFound: one of them is missing (then none is marked).
        """
        author = who()
        with self._db.transaction() as conn:
            for take_id in take_ids:
                if conn.execute(update(takes).where(takes.c.take_id == take_id).values(played=1)).rowcount != 1:
                    raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
                _insert_events(conn, take_id, [("played", None)], author)

    def history(self, take_id: str | None = None):
        """The annotation history (all takes, or one) as a DataFrame, oldest first:
        annotation_id, take_id, at (UTC), action, value, author."""
        from cosyvoice_lab.log import frame as logframe  # pandas: loaded when a frame is asked for, not with the log

        spec = logframe.HISTORY_FRAME
        query = select(*logframe.select_list(spec, schema.annotations)).order_by(schema.annotations.c.at, ROWID)
        rows = self._db.query(query.where(schema.annotations.c.take_id == take_id) if take_id else query)
        return logframe.build(rows, spec)

    def _annotate(self, take_id: str, change: Change, rater: str | None = None) -> Take:
        """Apply ``change(tags) -> (column values, events)`` to a take in one transaction,
        the events recorded as ``rater``'s (``ratings.who``)."""
        author = who(rater)
        with self._db.transaction() as conn:
            row = conn.execute(select(takes.c.tags).where(takes.c.take_id == take_id)).fetchone()
            if row is None:
                raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
            values, events = change(json.loads(row[0] or "[]"))
            _insert_events(conn, take_id, events, author)
            return self._table.update(conn, take_id, values)


def _insert_events(conn: Connection, take_id: str, events: Iterable[tuple[str, Any]], author: str | None) -> None:
    at = iso(now_utc())
    rows = [
        {
            "annotation_id": uuid.uuid4().hex,
            "take_id": take_id,
            "at": at,
            "action": action,
            "value": value,
            "author": author,
        }
        for action, value in events
    ]
    if rows:
        conn.execute(insert(schema.annotations), rows)


class Utterances:
    """Speech synthesised with a take's voice (``ExperimentLog`` documents each method).

    Args:
        db: the log's database. audio_store: where the recordings go.
    """

    def __init__(self, db: Database, audio_store: AudioStore) -> None:
        self._db = db
        self._store = audio_store

    def add_utterance(
        self,
        take_id: str,
        *,
        text: str,
        params: dict,
        characters: int,
        cost_cny: float,
        audio: Audio,
        request_id: str | None = None,
    ) -> str:
        """Record an utterance spoken with a take's voice; its audio goes to the store first.

        Args:
            params: the synthesis parameters (JSON-serialisable). characters: billed characters.
            cost_cny: estimated cost.

        Returns:
            the new utterance id.

        Raises:
            TakeNotFound: no such take. TypeError / ValueError: bad arguments.
        """
        if not isinstance(characters, numbers.Integral) or characters < 0:
            raise ValueError(f"characters must be a non-negative integer, got {characters!r}")
        if not isinstance(cost_cny, numbers.Real) or cost_cny < 0:
            raise ValueError(f"cost_cny must be a non-negative number, got {cost_cny!r}")
        params_json = json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"))
        # Fail before storing audio for a take that is not here.
        if not self._db.query(select(takes.c.take_id).where(takes.c.take_id == take_id)):
            raise TakeNotFound(self._db.path, f"no take {take_id!r} in this log")
        stored = audio_columns(audio, self._store.put(audio))
        utterance_id = uuid.uuid4().hex
        row = {
            "utterance_id": utterance_id,
            "take_id": take_id,
            "created_at": iso(now_utc()),
            "text": text,
            "params": params_json,
            "characters": int(characters),
            "cost_cny": float(cost_cny),
            "request_id": request_id,
            **stored,
        }
        with self._db.transaction() as conn:
            conn.execute(insert(utterances), row)
        return utterance_id

    def utterances(self, take_id: str | None = None):
        """Utterances (all, or of one take) as a DataFrame, oldest first."""
        from cosyvoice_lab.log import frame as logframe

        spec = logframe.UTTERANCE_FRAME
        query = select(*logframe.select_list(spec, utterances)).order_by(utterances.c.created_at, ROWID)
        rows = self._db.query(query.where(utterances.c.take_id == take_id) if take_id else query)
        return logframe.build(rows, spec, self._store)

    def utterance_audio(self, utterance_id: str) -> Audio:
        """The recording of an utterance.

        Raises:
            TakeNotFound: no such utterance. LogError: its audio file is missing.
        """
        u = utterances.c
        rows = self._db.query(
            select(u.audio_file, u.audio_format, u.audio_sample_rate).where(u.utterance_id == utterance_id)
        )
        if not rows:
            raise TakeNotFound(self._db.path, f"no utterance {utterance_id!r} in this log")
        audio_file, fmt, rate = rows[0]
        return self._store.open(audio_file, format=fmt, sample_rate=rate, what=f"the audio of utterance {utterance_id}")
