"""What a tuning aims at: measures, goals and tolerances, read from what a person writes.

``lab.tune(start, target={"pitch": "-3 st", "speaking_rate": "-15 %"})`` names measures by their
column (``median_f0_hz``, ``m_median_f0_hz``), their plain name (``"speaking rate"``) or a
dimension (``pitch``, ``pace``, ``volume``); a goal is absolute (a number in the measure's unit,
or ``"110 Hz"``, ``"-20 LUFS"``) or relative to the start's measured mean (``"-3 st"``,
``"-15 %"``, ``"+2 LU"``). A named profile (:data:`PROFILES`) is a ready-made relative target.

Pitch is compared in semitones, as everywhere in the lab (``analysis.names``); every other
measure on its own scale. Each target has a tolerance, the band around the goal that counts as
reached (defaults: :data:`DEFAULT_TOLERANCES`). Pure: strings in, :class:`Target` out; every
problem is reported at once, each naming its field (``target[pitch]``, ``tolerance[pace]``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from cosyvoice_lab.analysis import names
from cosyvoice_lab.analysis.measures import Measurements
from cosyvoice_lab.errors import Problem

# Measurements fields a target may name (numbers that describe the voice, not the text or the code)
MEASURES = tuple(
    f.name
    for f in fields(Measurements)
    if f.name not in ("duration_s", "rate_unit", "problems", "measures_version", "clipping_ratio")
)
ALIASES = {"pitch": "median_f0_hz", "pace": "speaking_rate", "volume": "loudness_lufs", "loudness": "loudness_lufs"}
PITCH_COLUMNS = ("median_f0_hz", "f0_p10_hz", "f0_p90_hz")  # compared in semitones

# named relative targets: lab.tune(start, target="deeper")
PROFILES: dict[str, dict[str, str]] = {
    "deeper": {"pitch": "-3 st"},
    "higher": {"pitch": "+3 st"},
    "slower": {"speaking_rate": "-15 %"},
    "faster": {"speaking_rate": "+15 %"},
    "louder": {"loudness_lufs": "+3 LU"},
    "softer": {"loudness_lufs": "-3 LU"},
    "deeper and slower": {"pitch": "-3 st", "speaking_rate": "-15 %"},
}

# the band that counts as reached, per measure: (amount, "abs" in the compared unit | "rel" fraction of the goal)
DEFAULT_TOLERANCES: dict[str, tuple[float, str]] = {
    "median_f0_hz": (1.0, "abs"),  # 1 semitone: about the smallest pitch step listeners name
    "f0_p10_hz": (1.0, "abs"),
    "f0_p90_hz": (1.0, "abs"),
    "speaking_rate": (0.10, "rel"),
    "loudness_lufs": (2.0, "abs"),
}
_BY_SUFFIX = (
    ("_semitones", (0.5, "abs")),
    ("_db", (1.5, "abs")),
    ("_db_oct", (1.0, "abs")),
    ("_percent", (0.25, "rel")),
)
_FALLBACK = (0.10, "rel")

_AMOUNT = re.compile(r"^\s*(?P<sign>[+-]?)\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[^\d\s].*?)?\s*$")
_UNITS = {
    "st": "st",
    "semitone": "st",
    "semitones": "st",
    "%": "%",
    "percent": "%",
    "hz": "hz",
    "lufs": "lufs",
    "lu": "lu",
    "db": "db",
    "db/oct": "db",
    "/s": "abs",
    "ms": "ms",
}


@dataclass(frozen=True)
class Target:
    """One measure to reach.

    Attributes:
        column: the Measurements field (``median_f0_hz``); ``name`` its plain name; ``unit`` the
            unit it is compared in ("st" for pitch).
        kind: "absolute" (``amount`` is the goal on the compared scale), "shift" (the start's mean
            plus ``amount``) or "ratio" (the start's mean times ``1 + amount``).
        tolerance: (amount, "abs" | "rel"): the half-width of the band that counts as reached.
        text: what was written.
    """

    column: str
    kind: str
    amount: float
    tolerance: tuple[float, str]
    text: str

    @property
    def name(self) -> str:
        return names.name("m_" + self.column)

    @property
    def unit(self) -> str:
        return "st" if self.column in PITCH_COLUMNS else names.unit("m_" + self.column)

    def compared(self, value: float) -> float:
        """A raw measurement on the scale the target compares it on (pitch: semitones from 100 Hz)."""
        if self.column in PITCH_COLUMNS:
            return 12 * math.log2(value / names.PITCH_REFERENCE_HZ) if value > 0 else math.nan
        return value

    def raw(self, value: float) -> float:
        """Inverse of :meth:`compared`."""
        return names.PITCH_REFERENCE_HZ * 2 ** (value / 12) if self.column in PITCH_COLUMNS else value

    def goal(self, start: float) -> float:
        """The goal on the compared scale, given the start's mean (compared scale)."""
        if self.kind == "absolute":
            return self.amount
        if self.kind == "shift":
            return start + self.amount
        if self.column in PITCH_COLUMNS:  # a ratio of Hz is a shift in semitones
            return start + 12 * math.log2(1 + self.amount)
        return start * (1 + self.amount)

    def band(self, goal: float) -> float:
        """The tolerance's half-width on the compared scale, around ``goal``."""
        amount, how = self.tolerance
        if how == "abs":
            return amount
        if self.column in PITCH_COLUMNS:
            return 12 * math.log2(1 + amount)
        return abs(goal) * amount


def column_of(name: object) -> str | None:
    """The Measurements field a name means (column, ``m_`` column, plain name, dimension), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    key = key[2:] if key.startswith("m_") else key
    if key in MEASURES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    plain = {names.name("m_" + m): m for m in MEASURES if "m_" + m in names.MEASURES}
    return plain.get(key) or plain.get(key.replace("_", " "))


def _amount(text: str) -> tuple[str, float, str] | None:
    """``"-3 st"`` -> ("-", 3.0, "st"); None if unreadable."""
    m = _AMOUNT.match(text)
    if not m:
        return None
    unit = (m["unit"] or "").strip().lower()
    unit = _UNITS.get(unit, unit) if unit else ""
    number = float(m["number"])
    return m["sign"], -number if m["sign"] == "-" else number, unit


def _goal(column: str, value: object, field: str) -> tuple[str, float] | Problem:
    """(kind, amount) of one goal, or the problem with it."""
    pitch = column in PITCH_COLUMNS
    help_ = (
        "a number (Hz), '110 Hz', '-3 st' or '-10 %' (relative to the start)"
        if pitch
        else "a number (absolute), '+2' in the measure's unit with a sign or '-15 %' (relative to the start)"
    )
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return Problem(field, "type", f"expected {help_}, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or (pitch and value <= 0):
            return Problem(field, "range", f"{value!r} is not a usable goal; expected {help_}")
        return ("absolute", math.log2(value / names.PITCH_REFERENCE_HZ) * 12 if pitch else float(value))
    read = _amount(value)
    if read is None:
        return Problem(field, "format", f"cannot read {value!r}; expected {help_}")
    sign, number, unit = read
    if unit == "%":
        if not sign:
            return Problem(field, "format", f"{value!r}: a percentage is relative, write it with a sign ('-{value}')")
        if number <= -100:
            return Problem(field, "range", f"{value!r} would make the measure zero or negative")
        return ("ratio", number / 100)
    if unit == "st":
        if not pitch:
            return Problem(field, "unit", f"{value!r}: semitones are for pitch; expected {help_}")
        if not sign:
            return Problem(field, "format", f"{value!r}: semitones are relative, write them with a sign ('-3 st')")
        return ("shift", number)
    if unit == "hz" and pitch:
        return (
            Problem(field, "range", f"{value!r} is not a pitch")
            if number <= 0
            else ("absolute", 12 * math.log2(number / names.PITCH_REFERENCE_HZ))
        )
    if pitch:
        return Problem(field, "unit", f"{value!r}: unknown unit for pitch; expected {help_}")
    if unit in ("", "lu", "db", "abs", "ms") or unit == "lufs":
        if unit == "lufs" or not sign:
            return ("absolute", number)
        return ("shift", number)
    return Problem(field, "unit", f"{value!r}: unknown unit {unit!r}; expected {help_}")


def _tolerance(column: str, value: object, field: str) -> tuple[float, str] | Problem:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return Problem(field, "type", f"expected a positive number or '10 %', got {type(value).__name__}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        read = _amount(value)
        if read is None or read[0]:
            return Problem(
                field, "format", f"cannot read {value!r}; expected a positive amount like '1 st', '2' or '10 %'"
            )
        _, number, unit = read
    if not (math.isfinite(number) and number > 0):
        return Problem(field, "range", f"a tolerance must be positive, got {value!r}")
    if unit == "%":
        return (number / 100, "rel")
    if column in PITCH_COLUMNS and unit not in ("", "st"):
        return Problem(field, "unit", f"{value!r}: a pitch tolerance is in semitones ('1 st') or '%'")
    return (number, "abs")


def default_tolerance(column: str) -> tuple[float, str]:
    """The band that counts as reached when none is given (see :data:`DEFAULT_TOLERANCES`)."""
    if column in DEFAULT_TOLERANCES:
        return DEFAULT_TOLERANCES[column]
    return next((t for suffix, t in _BY_SUFFIX if column.endswith(suffix)), _FALLBACK)


def valid_names() -> str:
    return ", ".join([*ALIASES, *MEASURES])


def read_targets(target: object, tolerance: Mapping | None = None) -> tuple[list[Target], list[Problem]]:
    """The targets of ``target`` (a dict or a profile name) with their tolerances, and every
    problem found (each naming its field); a profile's name is looked up in :data:`PROFILES`."""
    problems: list[Problem] = []
    if isinstance(target, str):
        if target not in PROFILES:
            return [], [Problem("target", "profile", f"unknown profile {target!r}; profiles: {', '.join(PROFILES)}")]
        target = PROFILES[target]
    if not isinstance(target, Mapping):
        return [], [
            Problem("target", "type", f"expected a dict of measures or a profile name, got {type(target).__name__}")
        ]
    tolerance = tolerance or {}
    if not isinstance(tolerance, Mapping):
        problems.append(
            Problem("tolerance", "type", f"expected a dict like {{'pitch': '1 st'}}, got {type(tolerance).__name__}")
        )
        tolerance = {}
    tolerances: dict[str, tuple[object, object]] = {}
    for key, value in tolerance.items():
        column = column_of(key)
        if column is None:
            problems.append(Problem(f"tolerance[{key}]", "name", f"unknown measure; valid: {valid_names()}"))
        else:
            tolerances[column] = (key, value)
    out: list[Target] = []
    for key, value in target.items():
        field = f"target[{key}]"
        column = column_of(key)
        if column is None:
            problems.append(Problem(field, "name", f"unknown measure {key!r}; valid: {valid_names()}"))
            continue
        if any(t.column == column for t in out):
            problems.append(Problem(field, "duplicate", f"{column} is named twice"))
            continue
        goal = _goal(column, value, field)
        if column in tolerances:
            written, amount = tolerances[column]
            tol = _tolerance(column, amount, f"tolerance[{written}]")
        else:
            tol = default_tolerance(column)
        for found in (goal, tol):
            if isinstance(found, Problem):
                problems.append(found)
        if not isinstance(goal, Problem) and not isinstance(tol, Problem):
            out.append(Target(column, goal[0], goal[1], tol, str(value)))
    if not target:
        problems.append(Problem("target", "empty", "name at least one measure, e.g. {'pitch': '-3 st'}"))
    for column, (written, _) in tolerances.items():
        if column not in {t.column for t in out} and not any(p.field.startswith("target[") for p in problems):
            problems.append(Problem(f"tolerance[{written}]", "name", "a tolerance for a measure that is not a target"))
    return out, problems
