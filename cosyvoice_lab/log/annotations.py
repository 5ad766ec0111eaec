"""What people add to takes — ratings, choices, tags, notes, listening — as dated events, and
synthesised utterances (``log.utterances``).

The annotation verbs are the log's own (``ExperimentLog.rate``, ``tag``, ...); this module holds
what they share with bundles: the events, and how they fold into a take's columns.

Every annotation updates the take's current value *and* appends a dated event to the
``annotations`` table in the same transaction (a rating: an 'own' row of ``ratings``, the one
store of ratings, ``ratings.py``). The current values are a cache of the history: ``replay``
recomputes them from the events and the own ratings, which is how bundles from teammates merge
(events and ratings are keyed by a global id, so merging twice adds nothing).
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
from cosyvoice_lab.log.ratings import cache_own
from cosyvoice_lab.log.rows import audio_columns, dumps_or_null
from cosyvoice_lab.log.schema import ROWID, takes, utterances
from cosyvoice_lab.take import iso, now_utc

# change(current tags) -> (column values, events): what one annotation does to a take.
Change = Callable[[list[str]], tuple[dict[str, Any], list[tuple[str, Any]]]]


def apply_events(events: Iterable[tuple[str, str | None]]) -> dict:
    """The annotation values after ``(action, value)`` events, oldest first, from a fresh take
    (the rating is the own ratings', ``ratings.cache_own``).

    Returns:
        ``{"chosen", "tags", "notes", "played"}`` as the takes table stores them.
    """
    chosen, tags, notes, played = False, [], "", False
    for action, value in events:
        if action in ("choose", "unchoose"):
            chosen = action == "choose"
        elif action == "tag" and value not in tags:
            tags.append(value)
        elif action == "untag" and value in tags:
            tags.remove(value)
        elif action == "note":
            notes = value or ""
        elif action == "played":
            played = True
    return {"chosen": int(chosen), "tags": dumps_or_null(tags), "notes": notes, "played": int(played)}


def replay(conn, take_ids: Iterable[str]) -> None:
    """Recompute the annotation columns of ``take_ids`` from their history (inside a transaction)."""
    take_ids = list(take_ids)
    cache_own(conn, take_ids)
    for take_id in take_ids:
        events = conn.execute(
            select(schema.annotations.c.action, schema.annotations.c.value)
            .where(schema.annotations.c.take_id == take_id)
            .order_by(schema.annotations.c.at, ROWID)
        ).fetchall()
        conn.execute(update(takes).where(takes.c.take_id == take_id).values(apply_events(events)))


def insert_events(conn: Connection, take_id: str, events: Iterable[tuple[str, Any]], author: str | None) -> None:
    """Append dated ``(action, value)`` events of a take, by ``author``, inside a transaction."""
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
    """Speech synthesised with a take's voice: ``log.utterances``.

    Args:
        db: the log's database. audio_store: where the recordings go.
    """

    def __init__(self, db: Database, audio_store: AudioStore) -> None:
        self._db = db
        self._store = audio_store

    def add(
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

    def to_dataframe(self, take_id: str | None = None):
        """Utterances (all, or of one take) as a DataFrame, oldest first."""
        from cosyvoice_lab.log import frame as logframe

        spec = logframe.UTTERANCE_FRAME
        query = select(*logframe.select_list(spec, utterances)).order_by(utterances.c.created_at, ROWID)
        rows = self._db.query(query.where(utterances.c.take_id == take_id) if take_id else query)
        return logframe.build(rows, spec, self._store)

    def audio(self, utterance_id: str) -> Audio:
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
