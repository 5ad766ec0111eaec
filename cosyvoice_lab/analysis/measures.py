"""Measurements of a recording, and groups of takes in one shape.

* :func:`measure` -- pitch (praat via parselmouth), loudness (ITU-R BS.1770, ``loudness.py``),
  speaking rate (the preview text is known, so no recogniser is needed), level and silence;
  voice quality (``analysis.voice``: HNR, CPP, jitter, shimmer, spectral tilt and centroid, F0
  and intensity variability) and predicted quality (``analysis.quality``: DNSMOS P.835).
* :func:`take_rows` -- a group of takes (a log DataFrame, or lists) as :class:`TakeRow` s, the
  one shape ``variation`` and ``adherence`` read.

parselmouth and pandas are imported inside the functions that need them, so
``import cosyvoice_lab`` stays fast.

Undefined values are NaN, never an exception: silence has no pitch, a clip shorter than the
400 ms loudness block has no LUFS, a take without text has no speaking rate. A measure that
fails outright gives NaN and says why in ``problems``; the take keeps every other value.

:data:`VERSION` is stored with every measurement (``measures_version``); takes measured by an
older version (0: before versions were kept) are brought up to date by ``Lab.remeasure``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.analysis import loudness
from cosyvoice_lab.audio import Recent
from cosyvoice_lab.design import detect_language

NAN = float("nan")
# Speech/silence is decided on 10 ms frames without overlap: edges blur by at most 10 ms.
# Spectra (the embedding) use 25 ms windows every 10 ms, the usual speech analysis frame.
HOP_S, FRAME_S = 0.010, 0.025
# A frame is speech when within 35 dB of the loudest frame and above -60 dBFS: relative, so a
# quieter copy trims the same way; floored, so near-silent hiss never counts as speech.
SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS = 35.0, -60.0
# Deep male voices reach ~70 Hz, children ~450 Hz; praat's 75-600 Hz default clips both ends.
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 700.0
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (int16 full scale is 0.99997)
LOUDNESS_BLOCK_S = loudness.BLOCK_S  # BS.1770 gating block: shorter clips have no integrated loudness
# 1: pitch, loudness, rate, level, silence. 2: + voice quality and DNSMOS, ``problems``.
# 3: DNSMOS of clips under 9 s on their own length (``analysis.quality``), not looped.
VERSION = 3
_TEXT_FIELDS = ("rate_unit", "problems")


@dataclass(frozen=True)
class Measurements:
    """What :func:`measure` found in one recording; NaN where a value is undefined.

    ``speaking_rate`` is text units per second of speech: CJK characters (about one syllable
    each) for zh, letters for en; ``rate_unit`` names which ("chars_per_s", "letters_per_s").
    """

    duration_s: float
    speech_duration_s: float  # first to last speech frame: leading/trailing silence trimmed
    median_f0_hz: float
    f0_p10_hz: float
    f0_p90_hz: float
    f0_spread_semitones: float  # p10-p90 range: how melodic the delivery is
    voiced_fraction: float  # voiced time / speech time
    loudness_lufs: float
    peak_dbfs: float
    clipping_ratio: float
    silence_ratio: float  # share of frames below the speech threshold, pauses included
    speaking_rate: float
    rate_unit: str | None
    # voice quality (see analysis.voice); NaN for takes measured before version 2
    hnr_db: float = NAN
    cpp_db: float = NAN
    jitter_percent: float = NAN
    shimmer_percent: float = NAN
    spectral_tilt_db_oct: float = NAN
    spectral_centroid_hz: float = NAN
    f0_sd_semitones: float = NAN
    intensity_sd_db: float = NAN
    # predicted quality (see analysis.quality), 1-5
    dnsmos_sig: float = NAN
    dnsmos_bak: float = NAN
    dnsmos_ovrl: float = NAN
    measures_version: int = VERSION
    problems: str | None = None  # "cpp: ...; dnsmos: ..." for measures that failed on this take

    def to_dict(self) -> dict:
        """Plain dict of every field (floats may be NaN), e.g. a take's ``metrics``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Measurements:
        """Inverse of :meth:`to_dict`; missing fields become NaN (text None, version 0: measured
        before versions were kept), extra keys are ignored."""
        values: dict[str, Any] = {
            f.name: data.get(f.name, None if f.name in _TEXT_FIELDS else NAN) for f in fields(cls)
        }
        version = data.get("measures_version")
        values["measures_version"] = int(version) if isinstance(version, (int, float)) and version == version else 0
        return cls(**values)


def samples(audio, sample_rate: int | None) -> tuple[np.ndarray, int]:
    if hasattr(audio, "to_numpy"):
        return np.asarray(audio.to_numpy(), dtype=np.float64), int(audio.sample_rate)
    if sample_rate is None:
        raise ValueError("a numpy array needs sample_rate=")
    x = np.asarray(audio)
    # integer PCM (e.g. int16 from a WAV read) to [-1, 1], so levels mean dBFS either way
    x = x / -float(np.iinfo(x.dtype).min) if x.dtype.kind == "i" else x.astype(np.float64)
    return (x.mean(axis=1) if x.ndim == 2 else x), int(sample_rate)


def frame_levels_db(x: np.ndarray, sr: int, frame_s: float = HOP_S) -> np.ndarray:
    """RMS level in dBFS of frames ``frame_s`` long every 10 ms, via cumulative sums (fast)."""
    frame, hop = int(frame_s * sr), int(HOP_S * sr)
    if len(x) == 0:
        return np.zeros(0)
    if len(x) < frame:
        frame = len(x)
    cs = np.concatenate(([0.0], np.cumsum(x * x)))
    starts = np.arange(0, len(x) - frame + 1, hop)
    power = (cs[starts + frame] - cs[starts]) / frame
    with np.errstate(divide="ignore"):
        return 10 * np.log10(np.maximum(power, 0.0))


def speech_frames(x: np.ndarray, sr: int, frame_s: float = HOP_S) -> np.ndarray:
    return _speech_mask(frame_levels_db(x, sr, frame_s))


def _speech_mask(db: np.ndarray) -> np.ndarray:
    if len(db) == 0:
        return np.zeros(0, bool)
    return db > max(db.max() - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)


def pitch_track(x: np.ndarray, sr: int):
    """praat's pitch track (autocorrelation, a frame every 10 ms), or None for a clip too short
    for its analysis window (no pitch, not an error). Shared with ``plots.plot_take``."""
    import parselmouth

    try:
        return parselmouth.Sound(x, sr).to_pitch_ac(
            time_step=HOP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ
        )
    except parselmouth.PraatError:
        return None


def _f0_values(pitch) -> np.ndarray:
    """F0 of each voiced 10 ms frame of a pitch track; empty if none."""
    if pitch is None:
        return np.zeros(0)
    f0 = pitch.selected_array["frequency"]
    return f0[f0 > 0]


def integrated_loudness(x: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770) of ``x``; NaN when too short or all silence."""
    if len(x) <= LOUDNESS_BLOCK_S * sr:
        return NAN
    value = loudness.integrated_loudness(x, sr)
    return value if math.isfinite(value) else NAN  # -inf: everything gated as silence


def text_units(text: str | None, language: str | None = None) -> tuple[int, str | None]:
    """How much there is to say in ``text``: ``(count, unit)`` for the speaking rate.

    Args:
        text: the preview text (None gives ``(0, None)``).
        language: 'zh' counts CJK characters, 'en' counts letters and digits; None derives
            it (any CJK character means zh).

    Returns:
        ``(count, "chars_per_s" | "letters_per_s")``.
    """
    if not text:
        return 0, None
    if language is None:
        language = detect_language(text) or "en"
    if language == "zh":
        return sum(catalog.is_cjk(c) for c in text), "chars_per_s"
    return sum(c.isalnum() and not catalog.is_cjk(c) for c in text), "letters_per_s"


def _content(x: np.ndarray, sr: int) -> tuple:
    """A key naming a sound by its samples: a 16-byte BLAKE2b digest, their count and rate."""
    return hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest(), len(x), sr


# Measuring the same recording again (a preview the measuring stage measured, read back from the
# log; a report or a notebook measuring it once more) costs a hash, not the analysis.
_SOUNDS = Recent(256)  # every measure but the speaking rate (it needs the text) and predicted quality
_QUALITY = Recent(256)  # predicted quality: the costliest measure


def measure(
    audio,
    text: str | None = None,
    language: str | None = None,
    *,
    sample_rate: int | None = None,
    predicted_quality: bool = True,
) -> Measurements:
    """Measure one recording.

    The same sound measured again in this process (by its samples, whatever object holds them)
    is answered from the last 256 sounds' figures, not analysed again.

    Args:
        audio: an :class:`~cosyvoice_lab.audio.Audio`, or a float array with ``sample_rate``.
        text: what the recording says (the preview text), for the speaking rate.
        language: 'zh' or 'en' (derived from ``text`` when None).
        sample_rate: only for a bare array.
        predicted_quality: also run the DNSMOS model (the costliest measure: ~0.3-0.6 s of CPU for
            a 5 s preview, where the rest costs ~0.15 s).

    Returns:
        :class:`Measurements`; undefined values are NaN (silence has no pitch), and a measure
        that failed is NaN with its reason in ``problems``.

    Raises:
        ValueError: for a bare array without ``sample_rate``.
    """
    x, sr = samples(audio, sample_rate)
    key = _content(x, sr)
    found = dict(_SOUNDS.get_or_make(key, lambda: _sound_measures(x, sr)))  # a copy: popped below
    speech_s = found["speech_duration_s"]
    units, unit = text_units(text, language)
    problems = [found.pop("problems")]
    if predicted_quality:
        scored = dict(_QUALITY.get_or_make(key, lambda: _score_quality(x, sr)))
        problems.append(scored.pop("problems"))
        found.update(scored)
    return Measurements(
        **found,
        speaking_rate=units / speech_s if units and speech_s else NAN,
        rate_unit=unit,
        problems="; ".join(p for p in problems if p) or None,
    )


def _sound_measures(x: np.ndarray, sr: int) -> dict[str, Any]:
    """Every field of :class:`Measurements` but the speaking rate and predicted quality."""
    frame_db = frame_levels_db(x, sr)
    speech = _speech_mask(frame_db)
    idx = np.flatnonzero(speech)
    speech_s = 0.0 if len(idx) == 0 else float(min((idx[-1] - idx[0] + 1) * HOP_S, len(x) / sr))
    pitch = pitch_track(x, sr) if len(idx) else None
    f0 = _f0_values(pitch)
    p10, p50, p90 = np.percentile(f0, [10, 50, 90]) if len(f0) else (NAN, NAN, NAN)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return dict(
        duration_s=len(x) / sr,
        speech_duration_s=speech_s,
        median_f0_hz=float(p50),
        f0_p10_hz=float(p10),
        f0_p90_hz=float(p90),
        f0_spread_semitones=float(12 * np.log2(p90 / p10)) if len(f0) else NAN,
        voiced_fraction=min(1.0, len(f0) * HOP_S / speech_s) if speech_s else NAN,
        loudness_lufs=integrated_loudness(x, sr),
        peak_dbfs=20 * math.log10(peak) if peak > 0 else NAN,
        clipping_ratio=float(np.mean(np.abs(x) >= CLIP_LEVEL)) if len(x) else 0.0,
        silence_ratio=float(1 - speech.mean()) if len(speech) else 1.0,
        **voice_measures(x, sr, pitch, f0, frame_db, speech),
    )


def voice_measures(x, sr, pitch, f0, frame_db, speech) -> dict[str, Any]:
    """The voice-quality fields of :class:`Measurements` and ``problems``, each group computed on
    its own: one that fails is NaN and named in ``problems``, the others stand."""
    from cosyvoice_lab.analysis import voice

    out: dict[str, Any] = {}
    problems = []
    y = voice.resampled(x, sr) if speech.any() else np.zeros(0)
    steps = {
        "hnr": lambda: {"hnr_db": voice.harmonicity(pitch)},
        "cpp": lambda: {"cpp_db": voice.cepstral_peak_prominence(y, voice.voiced_times(pitch))},
        "jitter/shimmer": lambda: voice.perturbation(x, sr, pitch),
        "spectrum": lambda: voice.spectral_shape(*voice.long_term_spectrum(y, speech)),
        "variability": lambda: {
            "f0_sd_semitones": voice.f0_sd_semitones(f0),
            "intensity_sd_db": voice.intensity_sd_db(frame_db, speech),
        },
    }
    for name, step in steps.items():
        try:
            out.update(step())
        except Exception as exc:  # one failed measure must not cost the take its others
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    out["problems"] = "; ".join(problems) or None
    return out


def predicted_quality(audio, *, sample_rate: int | None = None) -> dict[str, Any]:
    """The predicted-quality fields of :class:`Measurements` alone (``dnsmos_*``, computed as
    :func:`measure` computes them, and remembered as it remembers them), and ``problems``: why
    they are NaN, or None. For measuring in two steps: ``measure(predicted_quality=False)``
    first, this after."""
    x, sr = samples(audio, sample_rate)
    return dict(_QUALITY.get_or_make(_content(x, sr), lambda: _score_quality(x, sr)))


def _score_quality(x: np.ndarray, sr: int) -> dict[str, Any]:
    from cosyvoice_lab.analysis import quality, voice

    nan = dict.fromkeys(quality.COLUMNS, NAN)
    if not speech_frames(x, sr).any():
        return {**nan, "problems": "dnsmos: no speech to score"}
    try:
        return {**quality.dnsmos(voice.resampled(x, sr)), "problems": None}
    except Exception as exc:  # NaN and the reason, as for every other measure
        return {**nan, "problems": f"dnsmos: {type(exc).__name__}: {exc}"}


# --- groups of takes ---------------------------------------------------------------------


@dataclass
class TakeRow:
    """One take of a group, normalised: its label, prompt, measurement values, embedding."""

    key: object
    prompt: str | None  # None only until take_rows has checked it
    values: dict
    embedding: np.ndarray | None = None

    def get(self, column: str) -> float:
        v: Any = self.values.get(column)
        try:
            return float(v)
        except (TypeError, ValueError):
            return NAN


def _as_values(m) -> dict:
    return m.to_dict() if isinstance(m, Measurements) else dict(m)


def measurement_columns(frame):
    """The log's DataFrame in the shape measurements use: ``m_<name>`` columns also as
    ``<name>``."""
    extra = {k[2:]: frame[k] for k in frame.columns if isinstance(k, str) and k.startswith("m_") and k[2:] not in frame}
    return frame.assign(**extra) if extra else frame


def take_rows(group, prompts=None, prompt_column: str = "voice_prompt") -> list[TakeRow]:
    """A group of takes in one shape, whatever form it came in.

    Args:
        group: a DataFrame (one row per take; ``prompt_column``, measurement columns and an
            optional ``embedding`` column; the index labels the takes); or a list of
            ``(voice_prompt, Measurements | dict[, embedding])``; or a list of
            Measurements/dicts with ``prompts`` given separately (or dicts holding the prompt).
        prompts: voice prompts aligned with ``group``, overriding any prompt column.
        prompt_column: where DataFrames and dicts keep the prompt.

    Returns:
        One :class:`TakeRow` per take, in order.

    Raises:
        ValueError: when a take has no prompt, or ``prompts`` has the wrong length.
    """
    if hasattr(group, "iterrows"):
        group = measurement_columns(group)
        rows = [
            TakeRow(k, r.get(prompt_column) if prompts is None else None, r.to_dict(), r.get("embedding"))
            for k, r in group.iterrows()
        ]
    elif prompts is not None:
        rows = [TakeRow(i, None, _as_values(m)) for i, m in enumerate(group)]
    else:
        rows = []
        for i, item in enumerate(group):
            if isinstance(item, tuple):
                rows.append(TakeRow(i, item[0], _as_values(item[1]), item[2] if len(item) > 2 else None))
            else:
                values = _as_values(item)
                rows.append(TakeRow(i, values.get(prompt_column), values, values.get("embedding")))
    if prompts is not None:
        if len(prompts) != len(rows):
            raise ValueError(f"{len(prompts)} prompts for {len(rows)} takes")
        for row, prompt in zip(rows, prompts, strict=False):
            row.prompt = prompt
    for row in rows:
        if not isinstance(row.prompt, str):
            raise ValueError(f"take {row.key!r} has no voice prompt (column {prompt_column!r})")
    return rows
