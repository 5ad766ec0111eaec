"""Getting takes out of the log and back in: CSV, Parquet, an HTML report, portable bundles.

A bundle is a zip a teammate can merge into their own log::

    manifest.json      {"format": "cosyvoice-lab-bundle", "version": 1, counts, ...}
    takes.json         [Take.to_dict(), ...]  (audio_path relative: audio/<sha256>.<ext>)
    annotations.json   the annotation history of those takes
    utterances.json    their synthesised utterances
    audio/...          every audio file the rows name

Takes, annotation events and utterances carry global ids, so ``import_bundle`` inserts only
what is new: importing the same bundle twice adds nothing. Every file here is written
atomically (temp file, fsync, rename), so a crash never leaves half a report or bundle.
"""
from __future__ import annotations

import hashlib
import html
import json
import sqlite3
import zipfile
from pathlib import Path

from cosyvoice_lab import __version__, files
from cosyvoice_lab.log.annotations import replay
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.db import LogDatabase
from cosyvoice_lab.log.rows import take_to_row, where_clause
from cosyvoice_lab.take import FINAL_STATUSES, Take, iso, now_utc

BUNDLE_FORMAT = "cosyvoice-lab-bundle"
BUNDLE_VERSION = 1
_ANNOTATION_COLUMNS = ("annotation_id", "take_id", "at", "action", "value", "author")
_UTTERANCE_COLUMNS = ("utterance_id", "take_id", "created_at", "text", "params", "characters", "cost_cny",
                      "request_id", "audio_sha256", "audio_file", "audio_format", "audio_sample_rate",
                      "audio_duration_s")
# Outcome columns a re-imported take may bring once its source log settled it.
_OUTCOME_COLUMNS = ("status", "request_id", "voice_id", "voice_status", "finished_at", "latency_s",
                    "error_code", "error_message", "audio_sha256", "audio_file", "audio_format",
                    "audio_sample_rate", "audio_duration_s", "preview_missing", "metrics")


def atomic_write(path, data: bytes | None = None, *, writer=None) -> Path:
    """``files.atomic_write``, with a failure reported as a ``LogError`` naming the path."""
    try:
        return files.atomic_write(path, data, writer=writer)
    except OSError as exc:
        raise LogError(path, f"cannot write here: {exc}") from exc


# --- tables ----------------------------------------------------------------------------------


def export_csv(log, path, **filters) -> Path:
    """The filtered DataFrame as CSV: tags as JSON lists, times ISO 8601 UTC."""
    frame = log.to_dataframe(**filters)
    frame["tags"] = [json.dumps(list(t), ensure_ascii=False) for t in frame["tags"]]
    return atomic_write(path, writer=lambda tmp: frame.to_csv(tmp, index=False))


def export_parquet(log, path, **filters) -> Path:
    """The filtered DataFrame as Parquet (dtypes kept; tags as lists). See ``read_parquet``."""
    frame = log.to_dataframe(**filters)
    frame["tags"] = [list(t) for t in frame["tags"]]
    return atomic_write(path, writer=lambda tmp: frame.to_parquet(tmp, index=False))


def read_parquet(path):
    """Read an ``export_parquet`` file back into the DataFrame ``log.df`` gives (tags as tuples)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    frame["tags"] = [tuple(t) for t in frame["tags"]]
    return frame


# --- the HTML report ---------------------------------------------------------------------------

_CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left;font-size:13px}"
        "th{background:#f3f3f3}.failed,.unknown,.interrupted{color:#a00}code{font-size:12px}")
_HEADERS = ("started (UTC)", "experiment", "model", "status", "voice prompt", "preview text", "voice id",
            "rating", "chosen", "tags", "notes", "measured", "preview")
# The measurements a listener reads next to a player (analysis.Measurements names).
_REPORT_METRICS = (("median_f0_hz", "F0 {:.0f} Hz"), ("speaking_rate", "rate {:.1f}/s"),
                   ("loudness_lufs", "{:.1f} LUFS"), ("duration_s", "{:.1f} s"))


def export_html(log, path, **filters) -> Path:
    """A self-contained HTML report: one row per take, previews embedded as data-URI players.

    Opens from disk in any browser, with no server and no network.

    Raises:
        LogError: the report cannot be written.
    """
    takes = log.takes(**filters)
    rows = "\n".join(_html_row(take) for take in takes)
    with_audio = sum(1 for t in takes if t.audio_path)
    head = "".join(f"<th>{h}</th>" for h in _HEADERS)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>cosyvoice_lab report</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>Experiment log</h1>\n"
            f"<p>{html.escape(str(log.folder))} · {len(takes)} takes, {with_audio} with a preview · "
            f"generated {iso(now_utc())}</p>\n<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n"
            f"</tbody></table></body></html>\n")
    return atomic_write(path, page.encode("utf-8"))


def _html_row(take: Take) -> str:
    esc = html.escape
    status = take.status + (f": {take.error_code}" if take.error_code else "")
    cells = (
        iso(take.started_at)[:19].replace("T", " "),
        esc(take.experiment or ""),
        esc(take.model),
        f"<span class='{esc(take.status)}' title='{esc(take.error_message or '')}'>{esc(status)}</span>",
        esc(take.prompt),
        esc(take.design.preview_text),
        f"<code>{esc(take.voice_id or '')}</code>",
        "★" * take.rating if take.rating else "",
        "✓" if take.chosen else "",
        esc(", ".join(take.tags)),
        esc(take.notes),
        _metrics_html(take.metrics or {}),
        take._player_html() if take.audio_path else ("no preview" if take.preview_missing else ""),
    )
    return f"<tr id='take-{take.take_id}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _metrics_html(metrics: dict) -> str:
    shown = []
    for name, fmt in _REPORT_METRICS:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and value == value:  # skip None and NaN
            shown.append(fmt.format(value))
    return "<br>".join(shown)


# --- bundles -------------------------------------------------------------------------------------


def export_bundle(log, path, experiment=None, **filters) -> Path:
    """Zip the filtered takes, their annotation history, utterances and audio files.

    Raises:
        LogError: an audio file the rows name is missing (the bundle would be incomplete),
            or the bundle cannot be written.
    """
    takes = log.takes(experiment=experiment, **filters)
    where, params = where_clause(experiment=experiment, **filters)
    subset = f"take_id IN (SELECT take_id FROM takes{where})"
    annotations = _rows(log, _ANNOTATION_COLUMNS, "annotations", subset, params)
    utterances = _rows(log, _UTTERANCE_COLUMNS, "utterances", subset, params)
    audio_files = sorted({f"audio/{Path(t.audio_path).name}" for t in takes if t.audio_path}
                         | {u["audio_file"] for u in utterances if u["audio_file"]})
    for name in audio_files:
        if not (log.folder / name).is_file():
            raise LogError(log.folder / name, "is missing; the bundle would be incomplete (restore it first)")
    take_dicts = [{**t.to_dict(), "audio_path": f"audio/{Path(t.audio_path).name}" if t.audio_path else None}
                  for t in takes]
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "package_version": __version__,
                "created_at": iso(now_utc()), "experiment": experiment,
                "counts": {"takes": len(takes), "annotations": len(annotations),
                           "utterances": len(utterances), "audio_files": len(audio_files)}}

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, value in (("manifest.json", manifest), ("takes.json", take_dicts),
                                ("annotations.json", annotations), ("utterances.json", utterances)):
                zf.writestr(name, json.dumps(value, ensure_ascii=False, indent=1))
            for name in audio_files:  # audio barely compresses; store it as it is
                zf.write(log.folder / name, name, compress_type=zipfile.ZIP_STORED)

    return atomic_write(path, writer=write)


def _rows(log, columns, table: str, where: str, params) -> list[dict]:
    rows = log._query(f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY rowid", params)
    return [dict(zip(columns, row)) for row in rows]


def import_bundle(log, path) -> dict:
    """Merge a bundle into ``log``: new takes, annotation events, utterances and audio files.

    Takes already present are kept, except that an outcome settled in the source log replaces
    a local pending/unknown/interrupted one. Annotation values are recomputed from the merged
    history. A take that was pending when exported arrives 'interrupted' (nobody here is
    sending it).

    Returns:
        counts of what was added: ``{"takes", "takes_updated", "annotations", "utterances",
        "audio_files"}`` (all zero when the bundle was already merged).

    Raises:
        LogError: not a bundle, a newer bundle format, or a damaged audio file (nothing merged).
    """
    path = Path(path).expanduser().absolute()
    takes, annotations, utterances, audio = _read_bundle(path)
    named = {f"audio/{Path(t.audio_path).name}" for t in takes if t.audio_path}
    named |= {u["audio_file"] for u in utterances if u.get("audio_file")}
    absent = sorted(n for n in named if n not in audio and not (log.folder / n).is_file())
    if absent:
        raise LogError(path, f"names audio it does not hold ({', '.join(absent[:3])}); nothing was merged")
    added_files = 0
    for name, data in audio.items():  # files first: rows must never name missing audio
        target = log.folder / name
        if not (target.is_file() and target.stat().st_size == len(data)):
            atomic_write(target, data)
            added_files += 1
    try:
        with log._tx() as conn:
            counts = _merge(conn, takes, annotations, utterances)
    except (ValueError, TypeError, KeyError) as exc:
        raise LogError(path, f"holds a malformed row ({exc}); nothing was merged") from exc
    counts["audio_files"] = added_files
    return counts


def _read_bundle(path: Path):
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            _check_manifest(path, manifest)
            parts = [json.loads(zf.read(n)) for n in ("takes.json", "annotations.json", "utterances.json")]
            audio = {n: zf.read(n) for n in zf.namelist() if n.startswith("audio/") and not n.endswith("/")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise LogError(path, f"is not a readable cosyvoice_lab bundle ({exc})") from exc
    for name, data in audio.items():
        if "/" in name[6:] or Path(name).name.split(".")[0] != hashlib.sha256(data).hexdigest():
            raise LogError(path, f"{name} is damaged (its sha256 does not match its name); nothing was merged")
    try:
        takes = [Take.from_dict(d) for d in parts[0]]
    except (KeyError, TypeError, ValueError) as exc:
        raise LogError(path, f"takes.json is malformed ({exc}); nothing was merged") from exc
    return takes, parts[1], parts[2], audio


def _check_manifest(path: Path, manifest: dict) -> None:
    if manifest.get("format") != BUNDLE_FORMAT:
        raise LogError(path, "is a zip but not a cosyvoice_lab bundle (no bundle manifest)")
    if manifest.get("version", 0) > BUNDLE_VERSION:
        raise LogError(path, f"is a bundle of format version {manifest['version']}, newer than this "
                             f"cosyvoice_lab understands ({BUNDLE_VERSION}); upgrade cosyvoice_lab")


def _merge(conn, takes: list[Take], annotations: list[dict], utterances: list[dict]) -> dict:
    counts = {"takes": 0, "takes_updated": 0, "annotations": 0, "utterances": 0}
    for take in takes:
        row = take_to_row(take)
        if row["status"] == "pending":
            row.update(status="interrupted", error_code="Interrupted",
                       error_message="pending when its bundle was exported; no outcome was recorded")
        inserted = _insert(conn, "takes", row)
        counts["takes"] += inserted
        if not inserted and row["status"] in FINAL_STATUSES:
            counts["takes_updated"] += conn.execute(
                f"UPDATE takes SET {', '.join(f'{c} = ?' for c in _OUTCOME_COLUMNS)} "
                f"WHERE take_id = ? AND status NOT IN ('ok', 'failed')",
                [*(row[c] for c in _OUTCOME_COLUMNS), take.take_id]).rowcount
    touched = set()
    for event in annotations:
        if _insert(conn, "annotations", {c: event.get(c) for c in _ANNOTATION_COLUMNS}):
            counts["annotations"] += 1
            touched.add(event["take_id"])
    replay(conn, sorted(touched))
    for utterance in utterances:
        counts["utterances"] += _insert(conn, "utterances", {c: utterance.get(c) for c in _UTTERANCE_COLUMNS})
    return counts


def _insert(conn, table: str, row: dict) -> int:
    """Insert ``row`` unless its id is already there; 1 if inserted, else 0."""
    # ON CONFLICT DO NOTHING skips only a duplicate id; a malformed row still fails loudly.
    try:
        return conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
                            f"ON CONFLICT DO NOTHING", list(row.values())).rowcount
    except sqlite3.IntegrityError as exc:
        raise ValueError(f"{table} row {next(iter(row.values()))}: {exc}") from exc


class Exports(LogDatabase):
    """Mixin of ``ExperimentLog``: the export and import methods (see the functions above)."""

    def export_csv(self, path, **filters) -> Path:
        """Write the filtered DataFrame as CSV (tags as JSON lists); returns the path."""
        return export_csv(self, path, **filters)

    def export_parquet(self, path, **filters) -> Path:
        """Write the filtered DataFrame as Parquet (dtypes kept; tags as lists); returns the path."""
        return export_parquet(self, path, **filters)

    def export_html(self, path, **filters) -> Path:
        """Write a self-contained HTML report (table + embedded players); returns the path."""
        return export_html(self, path, **filters)

    def export_bundle(self, path, experiment=None, **filters) -> Path:
        """Write a zip of the takes, their annotations, utterances and audio; returns the path."""
        return export_bundle(self, path, experiment=experiment, **filters)

    def import_bundle(self, path) -> dict:
        """Merge a bundle into this log without duplicates; returns counts of what was added."""
        return import_bundle(self, path)
