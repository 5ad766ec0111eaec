"""The schema of a bundle's tables: every row checked and cleaned before anything is merged.

A bundle is untrusted input (a teammate's zip, or anyone's): each table (``manifest.json``,
``takes.json``, ``annotations.json``, ``utterances.json``, ``ratings.json``: every star rating, own
and listening, from format 3; an older bundle's tables are converted on read, ``current_rows``) is
checked field by field, with types
that are really those types (``chosen: "no"`` is not a boolean, ``"repeat": "x"`` not a number,
``24000.0`` not a sample rate), enums from ``catalog`` and ``take``, id shapes (uuid4 hex ids,
designed voice ids as the contract gives them), ISO 8601 times, audio store names and size caps
(``catalog.BUNDLE_*``). A row that fails raises ``RowError`` naming the table, the row's index
and its id; what passes comes back cleaned (times in the log's fixed-width form), so every
accepted row loads back into ``log.df``, the exports and ``Take`` objects.

Pure functions: nothing here reads the zip or opens the database (``bundle.py`` does both).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from cosyvoice_lab import catalog, jsontext
from cosyvoice_lab.log.audio_store import is_name, name_for
from cosyvoice_lab.log.ratings import ANONYMOUS, OWN, clean_name, clean_rater
from cosyvoice_lab.log.rows import clean_metrics, clean_tag
from cosyvoice_lab.log.schema import ANNOTATION_ACTIONS, RATING_KINDS
from cosyvoice_lab.take import BACKENDS, STATUSES, experiment_problems, iso, parse_iso

ACTIONS = ANNOTATION_ACTIONS
_ID = re.compile(r"[0-9a-f]{32}")  # uuid4 hex: take, annotation and utterance ids
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODEL = re.compile(r"cosyvoice-v[0-9.]+-(?:plus|flash)")  # the model part of catalog.VOICE_ID_RE
# Every design family's target models, languages and voice ids (catalog.FAMILIES, contract §12).
_TARGET_MODELS = frozenset(m for f in catalog.FAMILIES.values() for m in f.target_models) | set(catalog.MODELS)
_LANGUAGES = tuple(dict.fromkeys(x for f in catalog.FAMILIES.values() for x in (*catalog.LANGUAGES, *f.languages)))
_TEXT = catalog.BUNDLE_MAX_TEXT_CHARS
_NAME = catalog.BUNDLE_MAX_NAME_CHARS
_MISSING = object()

Check = Callable[[Any], Any]


class RowError(ValueError):
    """A row of a bundle table that breaks the schema: names the table, the row and the field."""

    def __init__(self, table: str, index: int, row_id: object, problem: str) -> None:
        noun = table.removesuffix("s.json")
        shown = f" ({noun} {str(row_id)[:80]!r})" if isinstance(row_id, str) else ""
        super().__init__(f"{table} row {index}{shown}: {problem}")
        self.table, self.index, self.row_id = table, index, row_id


# --- field checks: each returns the cleaned value or raises ValueError ---------------------------


def _nullable(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _text(limit: int, *, printable: bool = False) -> Check:
    def check(v):
        if not isinstance(v, str):
            raise ValueError(f"must be text, got {type(v).__name__}")
        if len(v) > limit:
            raise ValueError(f"is {len(v)} characters long, over the limit of {limit}")
        if printable and not v.isprintable():
            raise ValueError("holds control characters")
        return v

    return check


def _enum(values) -> Check:
    def check(v):
        if v not in tuple(values):
            raise ValueError(f"must be one of {tuple(values)}, got {str(v)[:40]!r}")
        return v

    return check


def _int(low: int, high: int) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {type(v).__name__} {str(v)[:40]!r}")
        if not low <= v <= high:
            raise ValueError(f"must be from {low} to {high}, got {v}")
        return v

    return check


def _number(low: float = 0.0, high: float = 1e12) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {type(v).__name__} {str(v)[:40]!r}")
        if not low <= v <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, got {v}")
        return float(v)

    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {type(v).__name__} {str(v)[:40]!r}")
    return v


def _pattern(regex: re.Pattern, what: str) -> Check:
    def check(v):
        if not isinstance(v, str) or not regex.fullmatch(v):
            raise ValueError(f"must be {what}, got {str(v)[:80]!r}")
        return v

    return check


# Times every reader can hold: pandas keeps nanoseconds, so 1677-2262 at most; a log's times are
# from this century, and a year like 2263 made the whole log unreadable (issue 23, item 5).
_YEARS = range(1970, 2200)


def _time(v):
    if not isinstance(v, str) or len(v) > 40:
        raise ValueError(f"must be an ISO 8601 time, got {str(v)[:40]!r}")
    try:
        parsed = parse_iso(v)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"must be an ISO 8601 time, got {v!r}") from exc
    if parsed is None or parsed.year not in _YEARS:
        raise ValueError(f"must be a time between {_YEARS[0]} and {_YEARS[-1]}, got {v!r}")
    return iso(parsed)


def _model(v):
    if v in _TARGET_MODELS or (isinstance(v, str) and _MODEL.fullmatch(v)):
        return v
    raise ValueError(f"must be a design family's target model (e.g. {catalog.DEFAULT_MODEL}), got {str(v)[:80]!r}")


def _voice_id(v):
    if isinstance(v, str) and catalog.family_of_voice(v) is not None:
        return v
    raise ValueError(
        "must be a designed voice id (<model>-vd-<prefix>-<32 hex>, or qwen-tts-vd-<name>-voice-<time>-<4>), "
        f"got {str(v)[:80]!r}"
    )


def _audio_name(v):
    if not is_name(v):
        raise ValueError(f"names audio {str(v)[:80]!r}, which is not an audio store name (audio/<sha256>.<ext>)")
    return v


def _json_object(v):
    if not isinstance(v, dict):
        raise ValueError(f"must be a JSON object, got {type(v).__name__}")
    if len(json.dumps(v, ensure_ascii=False)) > _TEXT:
        raise ValueError(f"is over {_TEXT} characters of JSON")
    return v


def _params(v):
    text = _text(_TEXT)(v)
    try:
        parsed = jsontext.loads(text)
    except ValueError as exc:
        raise ValueError("must be the JSON text of an object") from exc
    if not isinstance(parsed, dict):
        raise ValueError("must be the JSON text of an object")
    return text


def _metrics(v):
    if not isinstance(v, Mapping):
        raise ValueError(f"must be a JSON object, got {type(v).__name__}")
    try:
        cleaned = clean_metrics(v)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    if any(isinstance(x, str) and len(x) > _TEXT for x in cleaned.values()) or len(cleaned) > catalog.BUNDLE_MAX_TAGS:
        raise ValueError(f"holds more than {catalog.BUNDLE_MAX_TAGS} metrics or a text over {_TEXT} characters")
    return cleaned


def _tags(v):
    if not isinstance(v, list) or len(v) > catalog.BUNDLE_MAX_TAGS:
        raise ValueError(f"must be a list of at most {catalog.BUNDLE_MAX_TAGS} tags")
    return [clean_tag(t) for t in v]


_ID_CHECK = _pattern(_ID, "32 lowercase hex digits (a uuid4)")
_SHORT = _nullable(_text(_NAME, printable=True))


def _experiment(v):
    """An experiment's name, by the same rule as where names enter (``take.experiment_problems``)."""
    if found := experiment_problems(v):
        raise ValueError(found[0].message)
    return v


_EXPERIMENT = _nullable(_experiment)
# The rates the service documents (previews and syntheses): a rate of 1 overrode a WAV's header
# and divided by zero later in evidence, the report and the panel (issue 23, item 5).
_RATES = tuple(
    sorted(
        {
            *catalog.PREVIEW_SAMPLE_RATES,
            *catalog.SYNTH_SAMPLE_RATES,
            *(r for f in catalog.FAMILIES.values() for r in f.sample_rates),
        }
    )
)


def _RATE(v):
    return _enum(_RATES)(_int(min(_RATES), max(_RATES))(v))


# field: (check, default; _MISSING = required)
DESIGN_FIELDS: dict[str, tuple[Check, Any]] = {
    "voice_prompt": (_text(_TEXT), _MISSING),
    "preview_text": (_text(_TEXT), _MISSING),
    "target_model": (_model, catalog.DEFAULT_MODEL),
    "prefix": (_text(_NAME, printable=True), catalog.DEFAULT_PREFIX),
    "language": (_nullable(_enum(_LANGUAGES)), None),
    "sample_rate": (_RATE, catalog.DEFAULT_PREVIEW_SAMPLE_RATE),
    "response_format": (_enum(catalog.SYNTH_FORMATS), catalog.DEFAULT_PREVIEW_FORMAT),
    "region": (_enum(catalog.REGIONS), catalog.DEFAULT_REGION),
}
TAKE_FIELDS: dict[str, tuple[Check, Any]] = {
    "take_id": (_ID_CHECK, _MISSING),
    "design": (_json_object, _MISSING),  # then checked with DESIGN_FIELDS
    "status": (_enum(STATUSES), "pending"),
    "experiment": (_EXPERIMENT, None),
    "backend": (_enum(BACKENDS), "offline"),
    "region": (_nullable(_enum(catalog.REGIONS)), None),
    "host": (_SHORT, None),
    "package_version": (_SHORT, None),
    "request_id": (_SHORT, None),
    "voice_id": (_nullable(_voice_id), None),
    "voice_status": (_SHORT, None),
    "started_at": (_time, _MISSING),
    "finished_at": (_nullable(_time), None),
    "latency_s": (_nullable(_number()), None),
    "audio_sha256": (_nullable(_pattern(_SHA256, "64 lowercase hex digits")), None),
    "audio_path": (_nullable(_audio_name), None),
    "audio_format": (_nullable(_enum(catalog.SYNTH_FORMATS)), None),
    "audio_sample_rate": (_nullable(_RATE), None),
    "audio_duration_s": (_nullable(_number()), None),
    "preview_missing": (_bool, False),
    "metrics": (_metrics, {}),
    "error_code": (_SHORT, None),
    "error_message": (_nullable(_text(_TEXT)), None),
    "prompt_spec": (_nullable(_json_object), None),
    "parent_take_id": (_nullable(_ID_CHECK), None),
    "cell": (_SHORT, None),
    "repeat": (_nullable(_int(0, 1_000_000)), None),
    "rating": (_nullable(_int(catalog.RATING_MIN, catalog.RATING_MAX)), None),
    "chosen": (_bool, False),
    "tags": (_tags, []),
    "notes": (_text(_TEXT), ""),
    "played": (_bool, False),
}
ANNOTATION_FIELDS: dict[str, tuple[Check, Any]] = {
    "annotation_id": (_ID_CHECK, _MISSING),
    "take_id": (_ID_CHECK, _MISSING),
    "at": (_time, _MISSING),
    "action": (_enum(ACTIONS), _MISSING),
    "value": (_nullable(_text(_TEXT)), None),
    "author": (_SHORT, None),
}
UTTERANCE_FIELDS: dict[str, tuple[Check, Any]] = {
    "utterance_id": (_ID_CHECK, _MISSING),
    "take_id": (_ID_CHECK, _MISSING),
    "created_at": (_time, _MISSING),
    "text": (_text(catalog.SYNTH_TASK_MAX_CHARS), _MISSING),
    "params": (_params, _MISSING),
    "characters": (_int(0, 10 * catalog.SYNTH_TASK_MAX_CHARS), _MISSING),
    "cost_cny": (_number(), _MISSING),
    "request_id": (_SHORT, None),
    "audio_sha256": (_nullable(_pattern(_SHA256, "64 lowercase hex digits")), None),
    "audio_file": (_nullable(_audio_name), None),
    "audio_format": (_nullable(_enum(catalog.SYNTH_FORMATS)), None),
    "audio_sample_rate": (_nullable(_RATE), None),
    "audio_duration_s": (_nullable(_number()), None),
}
_SESSION = _nullable(lambda v: clean_name(v, "a session id"))
_STARS = _nullable(_int(catalog.RATING_MIN, catalog.RATING_MAX))
RATING_FIELDS: dict[str, tuple[Check, Any]] = {
    "rating_id": (_ID_CHECK, _MISSING),
    "take_id": (_ID_CHECK, _MISSING),
    "session_id": (_SESSION, None),
    "kind": (_enum(RATING_KINDS), _MISSING),
    "rater": (clean_rater, _MISSING),
    "rating": (_STARS, _MISSING),
    "at": (_time, _MISSING),
    "position": (_nullable(_int(0, catalog.BUNDLE_MAX_ROWS)), None),
    "hidden_repeat": (_bool, False),
}
# ratings.json of bundle formats 2 (listening ratings only, a blind round's seed on its unrated rows)
LEGACY_RATING_FIELDS: dict[str, tuple[Check, Any]] = {
    "rating_id": (_ID_CHECK, _MISSING),
    "take_id": (_ID_CHECK, _MISSING),
    "session_id": (_SESSION, None),
    "seed": (_nullable(_int(0, 2**catalog.BLIND_SEED_BITS - 1)), None),
    "kind": (_enum(catalog.RATING_KINDS), _MISSING),
    "rater": (clean_rater, _MISSING),
    "rating": (_STARS, _MISSING),
    "at": (_time, _MISSING),
}
# The first bundle format whose ratings.json holds every rating (own ones too, no seeds; issue #25).
ONE_RATINGS_FORMAT = 3
MANIFEST_FIELDS: dict[str, tuple[Check, Any]] = {
    "version": (_int(1, 1_000_000), _MISSING),
    "package_version": (_SHORT, None),
    "created_at": (_nullable(_time), None),
    "experiment": (_EXPERIMENT, None),
    "counts": (_nullable(_json_object), None),
}


def _fields(table: str, index: int, row: object, fields: Mapping[str, tuple[Check, Any]], id_key: str | None) -> dict:
    if not isinstance(row, dict):
        raise RowError(table, index, None, f"must be a JSON object, got {type(row).__name__}")
    row_id = row.get(id_key) if id_key else None
    out = {}
    for name, (check, default) in fields.items():
        value = row.get(name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise RowError(table, index, row_id, f"{name} is missing")
            out[name] = default.copy() if isinstance(default, (dict, list)) else default
            continue
        try:
            out[name] = check(value)
        except ValueError as exc:
            raise RowError(table, index, row_id, f"{name} {exc}") from None
    return out


def check_take(index: int, row: object) -> dict:
    """A ``takes.json`` row, checked and cleaned (a dict ``Take.from_dict`` reads).

    Raises:
        RowError: a field is missing, of the wrong type, outside its enum or range, too long.
    """
    out = _fields("takes.json", index, row, TAKE_FIELDS, "take_id")
    out["design"] = _fields("takes.json", index, out["design"], DESIGN_FIELDS, None)
    sha, path, fmt = out["audio_sha256"], out["audio_path"], out["audio_format"]
    if path is not None and (sha is None or fmt is None or path != name_for(sha, fmt)):
        raise RowError(
            "takes.json", index, out["take_id"], f"audio_path {path!r} is not the name of its audio_sha256 and format"
        )
    if path is None and sha is not None:
        raise RowError("takes.json", index, out["take_id"], "has an audio_sha256 but no audio_path")
    return out


def check_annotation(index: int, row: object) -> dict:
    """An ``annotations.json`` row, checked (a rating is "1"-"5", a tag a valid tag...).

    Raises:
        RowError: as ``check_take``.
    """
    out = _fields("annotations.json", index, row, ANNOTATION_FIELDS, "annotation_id")
    action, value = out["action"], out["value"]
    try:
        if action == "rate" and value is not None and value not in {str(r) for r in range(1, 6)}:
            raise ValueError(f"a rating must be '1' to '5' or null, got {value[:40]!r}")
        if action in ("tag", "untag"):
            out["value"] = clean_tag(value)
        if action in ("choose", "unchoose", "played") and value is not None:
            raise ValueError(f"a {action} event has no value, got {value[:40]!r}")
    except ValueError as exc:
        raise RowError("annotations.json", index, out["annotation_id"], f"value {exc}") from None
    return out


def check_utterance(index: int, row: object) -> dict:
    """An ``utterances.json`` row, checked.

    Raises:
        RowError: as ``check_take``.
    """
    out = _fields("utterances.json", index, row, UTTERANCE_FIELDS, "utterance_id")
    sha, name, fmt = out["audio_sha256"], out["audio_file"], out["audio_format"]
    if name is not None and (sha is None or fmt is None or name != name_for(sha, fmt)):
        raise RowError(
            "utterances.json",
            index,
            out["utterance_id"],
            f"audio_file {name!r} is not the name of its audio_sha256 and format",
        )
    return out


def check_rating(index: int, row: object) -> dict:
    """A ``ratings.json`` row (a star rating, ``ratings.py``), checked: an own rating is outside
    any round (no session, position or repeat); a hidden repeat is a showing in a round (a session
    and a position). Raises RowError."""
    out = _fields("ratings.json", index, row, RATING_FIELDS, "rating_id")
    problem = None
    if out["kind"] == OWN and (out["session_id"], out["position"], out["hidden_repeat"]) != (None, None, False):
        problem = "kind 'own' is a rating outside any round: it has no session_id, position or hidden_repeat"
    elif out["hidden_repeat"] and (out["session_id"] is None or out["position"] is None):
        problem = "hidden_repeat is a showing in a round: it needs a session_id and a position"
    if problem:
        raise RowError("ratings.json", index, out["rating_id"], problem)
    return out


def check_legacy_rating(index: int, row: object) -> dict:
    """A ``ratings.json`` row of a bundle of format 2, checked. Raises RowError."""
    return _fields("ratings.json", index, row, LEGACY_RATING_FIELDS, "rating_id")


def current_rows(version: int, rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """A bundle's checked tables in the current format (``ONE_RATINGS_FORMAT``).

    From an earlier format: a blind round's seed-only rows are left out (a round's seed is in its
    round, which bundles do not carry), listening ratings get no position and no repeat, and every
    "rate" annotation event becomes an own rating (its ``annotation_id`` as ``rating_id``, as
    revision 0006 converts a log's). From format 3 on, a "rate" event is refused: a rating is a
    row of ratings.json.

    Raises:
        RowError: a "rate" event in a bundle of format 3 or later, or one whose author is no rater's name.
    """
    annotations = rows["annotations.json"]
    rates = [(index, a) for index, a in enumerate(annotations) if a["action"] == "rate"]
    if version >= ONE_RATINGS_FORMAT:
        if rates:
            index, event = rates[0]
            raise RowError(
                "annotations.json", index, event["annotation_id"], "is a rating: a rating is a row of ratings.json"
            )
        return rows
    listening = [
        {**{k: v for k, v in r.items() if k != "seed"}, "position": None, "hidden_repeat": False}
        for r in rows["ratings.json"]
        if r["seed"] is None
    ]
    own = [
        check_rating(index, {"rating_id": a["annotation_id"], "take_id": a["take_id"], "session_id": None,
                             "kind": OWN, "rater": a["author"] or ANONYMOUS,
                             "rating": None if a["value"] is None else int(a["value"]), "at": a["at"]})
        for index, a in rates
    ]  # fmt: skip
    kept = [a for a in annotations if a["action"] != "rate"]
    return {**rows, "annotations.json": kept, "ratings.json": listening + own}


def check_manifest(manifest: object) -> dict:
    """``manifest.json``, checked (its ``format`` is checked by the caller first).

    Raises:
        RowError: a field of the wrong type.
    """
    return _fields("manifest.json", 0, manifest, MANIFEST_FIELDS, None)


def check_table(table: str, rows: object, check: Callable[[int, object], dict], id_key: str) -> list[dict]:
    """Every row of a table checked, identical duplicates dropped.

    Raises:
        RowError: not a list, too many rows, a bad row, or one id given twice with different content.
    """
    if not isinstance(rows, list):
        raise RowError(table, 0, None, f"the table must be a JSON list of rows, got {type(rows).__name__}")
    if len(rows) > catalog.BUNDLE_MAX_ROWS:
        raise RowError(table, catalog.BUNDLE_MAX_ROWS, None, f"over the limit of {catalog.BUNDLE_MAX_ROWS} rows")
    seen: dict[str, dict] = {}
    for index, row in enumerate(rows):
        clean = check(index, row)
        first = seen.setdefault(clean[id_key], clean)
        if first != clean:
            raise RowError(table, index, clean[id_key], "conflicts with an earlier row of the same id")
    return list(seen.values())
