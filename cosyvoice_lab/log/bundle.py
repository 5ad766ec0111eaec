"""Bundles (``log.bundles``): a zip of takes a teammate can merge into their own log.

::

    manifest.json      {"format": "cosyvoice-lab-bundle", "version": 3, counts, ...}
    takes.json         [Take.to_dict(), ...]  (audio_path as the store names it: audio/<sha256>.<ext>)
    annotations.json   the annotation history of those takes (ratings aside)
    utterances.json    their synthesised utterances
    ratings.json       their star ratings, every rater's: own and listening, with session, position
                       and hidden repeat (format 3; format 2 held listening ratings only, the own
                       ones were "rate" annotation events, converted on read; format 1 has none)
    audio/...          every audio file the rows name

Takes, annotation events, utterances and ratings carry global ids, so ``log.bundles.merge`` inserts only
what is new: merging the same bundle twice adds nothing. A bundle is checked whole before
anything is merged: every audio name it holds or its rows give must be a valid audio store name
(``audio/<sha256>.<ext>``; never an absolute path, ``..`` or another folder), every audio file
must hash to its name, and every file a row names must be in the bundle or already here. The
bundle is written atomically (temp file, fsync, rename), so a crash never leaves half of one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.exc import IntegrityError

from cosyvoice_lab import jsontext
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log import schema
from cosyvoice_lab.log.annotations import replay
from cosyvoice_lab.log.audio_store import AudioStore, content_matches
from cosyvoice_lab.log.bundle_members import BundleError, check_members
from cosyvoice_lab.log.bundle_schema import (
    ONE_RATINGS_FORMAT,
    RowError,
    check_annotation,
    check_legacy_rating,
    check_manifest,
    check_rating,
    check_table,
    check_take,
    check_utterance,
    current_rows,
)
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.export import atomic_write
from cosyvoice_lab.log.functions import dialect_insert
from cosyvoice_lab.log.ratings import COLUMNS as _RATING_COLUMNS
from cosyvoice_lab.log.ratings import OWN
from cosyvoice_lab.log.rows import TakeRows, package_version, where_clause
from cosyvoice_lab.log.schema import ROWID
from cosyvoice_lab.take import FINAL_STATUSES, Take, TakeSource, iso, now_utc

BUNDLE_FORMAT = "cosyvoice-lab-bundle"
BUNDLE_VERSION = 3  # 2: ratings.json; 3: every rating in ratings.json (own ones too), position, hidden_repeat
_ANNOTATION_COLUMNS = tuple(c.name for c in schema.annotations.columns)
# A rating's place in a round (position, hidden_repeat) came with bundle format 3 and revision 0006: a
# rating merged from an older bundle has none, and gets it from a newer one (not a conflict).
_RATING_IDENTITY = tuple(c for c in _RATING_COLUMNS if c not in ("position", "hidden_repeat"))
_UTTERANCE_COLUMNS = tuple(c.name for c in schema.utterances.columns)
# What a take was asked to be: a row (of a bundle, or of a log being copied) whose id is here with other
# values here is a conflict.
TAKE_IDENTITY = (
    "target_model",
    "prefix",
    "voice_prompt",
    "preview_text",
    "language",
    "sample_rate",
    "response_format",
    "design_region",
    "started_at",
    "experiment",
    "backend",
    "cell",
    "repeat",
    "parent_take_id",
    "prompt_spec",
)
# Outcome columns a re-imported take may bring once its source log settled it.
_OUTCOME_COLUMNS = (
    "status",
    "request_id",
    "voice_id",
    "voice_status",
    "finished_at",
    "latency_s",
    "error_code",
    "error_message",
    "audio_sha256",
    "audio_file",
    "audio_format",
    "audio_sample_rate",
    "audio_duration_s",
    "preview_missing",
    "metrics",
)


class Bundles:
    """Exports and imports bundles of a log: ``log.bundles``.

    Args:
        db: the log's database. audio_store: its audio files. rows: row <-> Take conversion.
        source: the log's takes (which takes a filter selects).
    """

    def __init__(self, db: Database, audio_store: AudioStore, rows: TakeRows, source: TakeSource) -> None:
        self._db = db
        self._store = audio_store
        self._rows = rows
        self._source = source

    # --- export -----------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, experiment: str | None = None, **filters: Any) -> Path:
        """Zip the filtered takes, their annotation history, utterances and audio files.

        Raises:
            LogError: an audio file the rows name is missing (the bundle would be incomplete),
                or the bundle cannot be written.
        """
        takes = self._source.takes(experiment=experiment, **filters)
        subset = select(schema.takes.c.take_id).where(*where_clause(experiment=experiment, **filters))
        annotations = self._select(_ANNOTATION_COLUMNS, schema.annotations, subset)
        utterances = self._select(_UTTERANCE_COLUMNS, schema.utterances, subset)
        ratings = [
            {**r, "hidden_repeat": bool(r["hidden_repeat"])}
            for r in self._select(_RATING_COLUMNS, schema.ratings, subset)
        ]
        take_dicts = [
            {**t.to_dict(), "audio_path": self._store.name_for_path(t.audio_path) if t.audio_path else None}
            for t in takes
        ]
        audio_files = sorted(
            {d["audio_path"] for d in take_dicts if d["audio_path"]}
            | {u["audio_file"] for u in utterances if u["audio_file"]}
        )
        for name in audio_files:
            if not self._store.exists(name):
                raise LogError(self._store.path(name), "is missing; the bundle would be incomplete (restore it first)")
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "package_version": package_version(),
            "created_at": iso(now_utc()),
            "experiment": experiment,
            "counts": {
                "takes": len(takes),
                "annotations": len(annotations),
                "utterances": len(utterances),
                "ratings": len(ratings),
                "audio_files": len(audio_files),
            },
        }
        parts = {
            "manifest.json": manifest,
            "takes.json": take_dicts,
            "annotations.json": annotations,
            "utterances.json": utterances,
            "ratings.json": ratings,
        }

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, value in parts.items():
                    zf.writestr(name, json.dumps(value, ensure_ascii=False, indent=1))
                for name in audio_files:  # audio barely compresses; store it as it is
                    zf.writestr(name, self._store.read_bytes(name), compress_type=zipfile.ZIP_STORED)

        return atomic_write(path, writer=write)

    def _select(self, columns: tuple[str, ...], table: Table, subset: Any) -> list[dict]:
        query = select(*(table.c[c] for c in columns)).where(table.c.take_id.in_(subset)).order_by(ROWID)
        rows = self._db.query(query)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    # --- import -----------------------------------------------------------------------------------
    def merge(self, path: str | os.PathLike) -> dict[str, int]:
        """Merge a bundle: new takes, annotation events, utterances and audio files.

        The bundle is untrusted: every table is checked against its schema (``bundle_schema``),
        with size caps, before anything is written; a row whose id is already here with other
        content is a conflict. Either the whole bundle merges or nothing does.

        Returns:
            counts of what was added: ``{"takes", "takes_updated", "annotations", "utterances",
            "ratings", "audio_files"}`` (all zero when the bundle was already merged).

        Raises:
            LogError: naming the bundle (and the table and row): not a bundle, a newer bundle
                format, too large, a row that breaks the schema, a damaged audio file, a row
                naming audio outside the store or absent from the bundle, a row referring to a
                take neither the bundle nor this log has, or a conflict with this log (nothing
                merged).
        """
        path = Path(path).expanduser().absolute()
        # Everything but the conflict check and the inserts runs before the write lock is taken, so
        # a big bundle holds up other writers only for its inserts: reading and checking the bundle,
        # converting its rows, a first conflict check (a read), and unpacking its audio into the
        # store (files first: rows never name missing audio; a bundle refused here unpacks nothing).
        rows, audio = _read_bundle(path)
        try:
            takes = [Take.from_dict(d) for d in rows["takes.json"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise LogError(path, f"takes.json is malformed ({exc}); nothing was merged") from exc
        annotations, utterances = rows["annotations.json"], rows["utterances.json"]
        ratings = [{**r, "hidden_repeat": int(r["hidden_repeat"])} for r in rows["ratings.json"]]
        named = {t.audio_path for t in takes if t.audio_path} | {u["audio_file"] for u in utterances if u["audio_file"]}
        absent = sorted(n for n in named if n not in audio and not self._store.exists(n))
        if absent:
            raise LogError(path, f"names audio it does not hold ({', '.join(absent[:3])}); nothing was merged")
        tables = (annotations, utterances, ratings)
        try:
            take_rows = {t.take_id: self._imported_row(t) for t in takes}
            with self._db.errors(), self._db.connect() as conn:  # a read: other writers go on
                _refuse(self._problems(conn, take_rows, *tables))
            added_files = sum(self._store.put_bytes(name, data) for name, data in audio.items())
            with self._db.transaction() as conn:  # the write lock: the check again (a writer may have
                _refuse(self._problems(conn, take_rows, *tables))  # added a row meanwhile), the inserts
                counts = self._merge(conn, take_rows, *tables)
        except _Refused as exc:
            raise LogError(path, f"{exc}; nothing was merged") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise LogError(path, f"holds a malformed row ({exc}); nothing was merged") from exc
        counts["audio_files"] = added_files
        return counts

    def _imported_row(self, take: Take) -> dict:
        """A bundle's take as the row to insert (a take pending when exported arrives interrupted)."""
        row = self._rows.to_row(take)
        if row["status"] == "pending":
            row.update(
                status="interrupted",
                error_code="Interrupted",
                error_message="pending when its bundle was exported; no outcome was recorded",
            )
        return row

    def _problems(
        self, conn: Connection, rows: dict[str, dict], annotations: list[dict], utterances: list[dict], ratings
    ) -> list[str]:
        """Rows that conflict with this log (same id, other content) or refer to no known take."""
        problems = []
        stored = _stored(conn, "takes", "take_id", (*TAKE_IDENTITY, "status", "voice_id"), list(rows))
        for index, (take_id, row) in enumerate(rows.items()):
            old = stored.get(take_id)
            if old is None:
                continue
            differ = [c for c in TAKE_IDENTITY if old[c] != row[c]]
            if old["status"] in FINAL_STATUSES and row["status"] in FINAL_STATUSES:
                differ += [c for c in ("status", "voice_id") if old[c] != row[c]]
            if differ:
                problems.append(
                    f"takes.json row {index} (take {take_id!r}) conflicts with this log's take ({', '.join(differ)})"
                )
        for table, key, columns, items in (
            ("annotations", "annotation_id", _ANNOTATION_COLUMNS, annotations),
            ("utterances", "utterance_id", _UTTERANCE_COLUMNS, utterances),
            ("ratings", "rating_id", _RATING_IDENTITY, ratings),
        ):
            stored = _stored(conn, table, key, columns, [r[key] for r in items])
            for index, item in enumerate(items):
                old = stored.get(item[key])
                if old is not None and any(old[c] != item[c] for c in columns):
                    problems.append(
                        f"{table}.json row {index} ({table[:-1]} {item[key]!r}) conflicts with this log's {table[:-1]}"
                    )
        referred = {r["take_id"] for r in [*annotations, *utterances, *ratings]} - set(rows)
        known = set(_stored(conn, "takes", "take_id", ("take_id",), sorted(referred)))
        for table, items in (("annotations", annotations), ("utterances", utterances), ("ratings", ratings)):
            problems += [
                f"{table}.json row {i} refers to take {r['take_id']!r}, which neither the bundle nor this log holds"
                for i, r in enumerate(items)
                if r["take_id"] in referred - known
            ]
        return problems

    def _merge(
        self, conn: Connection, rows: dict[str, dict], annotations: list[dict], utterances: list[dict], ratings
    ) -> dict[str, int]:
        counts = {"takes": 0, "takes_updated": 0, "annotations": 0, "utterances": 0, "ratings": 0}
        for take_id, row in rows.items():
            inserted = _insert(conn, "takes", row)
            counts["takes"] += inserted
            if not inserted and row["status"] in FINAL_STATUSES:
                counts["takes_updated"] += conn.execute(
                    update(schema.takes)
                    .where(schema.takes.c.take_id == take_id, schema.takes.c.status.not_in(("ok", "failed")))
                    .values({c: row[c] for c in _OUTCOME_COLUMNS})
                ).rowcount
        touched = set()
        for event in annotations:
            if _insert(conn, "annotations", {c: event.get(c) for c in _ANNOTATION_COLUMNS}):
                counts["annotations"] += 1
                touched.add(event["take_id"])
        r = schema.ratings.c
        for rating in ratings:
            if _insert(conn, "ratings", {c: rating[c] for c in _RATING_COLUMNS}):
                counts["ratings"] += 1
                if rating["kind"] == OWN:  # the take's rating caches its latest own rating
                    touched.add(rating["take_id"])
            elif rating["position"] is not None:  # a rating this log holds from an older bundle: its place
                conn.execute(
                    update(schema.ratings)
                    .where(r.rating_id == rating["rating_id"], r.position.is_(None))
                    .values(position=rating["position"], hidden_repeat=rating["hidden_repeat"])
                )
        replay(conn, sorted(touched))
        for utterance in utterances:
            counts["utterances"] += _insert(conn, "utterances", {c: utterance.get(c) for c in _UTTERANCE_COLUMNS})
        return counts


class _Refused(Exception):
    """Raised inside the import transaction to roll it back; becomes a LogError naming the bundle."""


def _refuse(problems: list[str]) -> None:
    """Raise ``_Refused`` listing the first few ``problems``, if there are any."""
    if problems:
        raise _Refused("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" * (len(problems) > 5)))


def _stored(conn: Connection, table: str, key: str, columns: tuple[str, ...], ids: list[str]) -> dict:
    """``{id: {column: value}}`` of the rows of ``table`` whose ``key`` is among ``ids``."""
    found = {}
    t = schema.metadata.tables[table]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(select(t.c[key], *(t.c[c] for c in columns)).where(t.c[key].in_(chunk))):
            found[row[0]] = dict(zip(columns, row[1:], strict=True))
    return found


_TABLES = {
    "takes.json": (check_take, "take_id"),
    "annotations.json": (check_annotation, "annotation_id"),
    "utterances.json": (check_utterance, "utterance_id"),
    "ratings.json": (check_rating, "rating_id"),
}
_LEGACY_TABLES = {**_TABLES, "ratings.json": (check_legacy_rating, "rating_id")}  # formats 1 and 2
_OPTIONAL = ("ratings.json",)  # absent from format 1 bundles


def _read_bundle(path: Path) -> tuple[dict[str, list[dict]], dict[str, bytes]]:
    """The checked rows of each table and the audio files (name -> bytes) of a bundle.

    Raises:
        LogError: naming the bundle, and the table and row where one is at fault.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                entries = check_members(zf.infolist())
            except BundleError as exc:
                raise LogError(path, f"{exc}; nothing was merged") from None
            manifest = _read_json(path, zf, "manifest.json")
            version = _check_manifest(path, manifest)
            held = set(zf.namelist())
            raw = {n: _read_json(path, zf, n) if n in held or n not in _OPTIONAL else [] for n in _TABLES}
            tables = _TABLES if version >= ONE_RATINGS_FORMAT else _LEGACY_TABLES
            try:
                rows = {name: check_table(name, raw[name], check, key) for name, (check, key) in tables.items()}
                rows = current_rows(version, rows)
            except RowError as exc:
                raise LogError(path, f"{exc}; nothing was merged") from None
            # Only the audio its rows name is read (each at most BUNDLE_MAX_AUDIO_BYTES, from the zip's
            # directory): a member no row names is never unpacked, and never lands in the store.
            audio = {n: zf.read(n) for n in entries if n in _named_audio(rows)}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, LogError):
            raise
        raise LogError(path, f"is not a readable cosyvoice_lab bundle ({exc})") from exc
    for name, data in audio.items():
        if not content_matches(name, data):
            raise LogError(path, f"{name} is damaged (its sha256 does not match its name); nothing was merged")
    return rows, audio


def _named_audio(rows: dict[str, list[dict]]) -> set[str]:
    """The audio store names the bundle's takes and utterances refer to."""
    named = {r.get("audio_path") for r in rows["takes.json"]} | {u.get("audio_file") for u in rows["utterances.json"]}
    return {n for n in named if n}


def _read_json(path: Path, zf: zipfile.ZipFile, name: str) -> Any:
    try:
        return jsontext.loads(zf.read(name))
    except KeyError:
        if name == "manifest.json":
            raise LogError(path, "is a zip but not a cosyvoice_lab bundle (no bundle manifest)") from None
        raise LogError(path, f"has no {name}; nothing was merged") from None
    except ValueError as exc:
        raise LogError(path, f"{name} is not valid JSON ({exc}); nothing was merged") from None


def _check_manifest(path: Path, manifest: Any) -> int:
    """The bundle's format version, once its manifest is checked. Raises LogError."""
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise LogError(path, "is a zip but not a cosyvoice_lab bundle (no bundle manifest)")
    try:
        checked = check_manifest(manifest)
    except RowError as exc:
        raise LogError(path, f"{exc}; nothing was merged") from None
    if checked["version"] > BUNDLE_VERSION:
        raise LogError(
            path,
            f"is a bundle of format version {checked['version']}, newer than this "
            f"cosyvoice_lab understands ({BUNDLE_VERSION}); upgrade cosyvoice_lab",
        )
    return checked["version"]


def _insert(conn: Connection, table: str, row: dict) -> int:
    """Insert ``row`` unless its id is already there; 1 if inserted, else 0."""
    # ON CONFLICT DO NOTHING skips only a duplicate id; a malformed row still fails loudly.
    into = schema.metadata.tables[table]
    statement = dialect_insert(conn.dialect.name, into).on_conflict_do_nothing().returning(into.c[next(iter(row))])
    try:  # (a refused row fails the whole import: its transaction rolls back)
        return len(conn.execute(statement, row).fetchall())
    except IntegrityError as exc:
        raise ValueError(f"{table} row {next(iter(row.values()))}: {exc.orig}") from exc
