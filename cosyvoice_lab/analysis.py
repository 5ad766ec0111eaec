"""Measurements of a recording, and how much recordings of one prompt vary.

* :func:`measure` -- pitch (praat via parselmouth), loudness (ITU-R BS.1770 via pyloudnorm),
  speaking rate (the preview text is known, so no recogniser is needed), level and silence.
* :func:`speaker_embedding`, :func:`pairwise`, :func:`variation` -- how far apart takes are,
  and how much repeats of one prompt differ (the service gives different voices for
  identical prompts, so variance is measured rather than assumed away).

Two neighbours complete the picture and are reachable from here too: ``checks`` judges a
recording against the claims of its prompt (``analysis.adherence`` is ``checks.adherence``),
``plots`` draws figures. parselmouth, pyloudnorm, pandas and matplotlib are imported inside
the functions that need them, so ``import cosyvoice_lab`` stays fast.

Undefined values are NaN, never an exception: silence has no pitch, a clip shorter than the
400 ms loudness block has no LUFS, a take without text has no speaking rate.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from . import catalog
from .design import detect_language

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
LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: shorter clips have no integrated loudness
# Embedding: MFCCs of a 60-7600 Hz mel scale, a band every preview rate (16/24/48 kHz) holds,
# so embeddings of previews at different rates compare.
N_MELS, N_MFCC, MEL_FMIN, MEL_FMAX = 40, 20, 60.0, 7600.0
# Pairwise differences are divided by these "clearly audible" steps before they are combined.
# On simulator speech, one voice repeating a text differs by ~2 dB and two voices by 6-8 dB.
SPECTRAL_SCALE = 3.0
SCALES = {"pitch_semitones": 2.0, "rate_percent": 10.0, "loudness_lu": 3.0, "spectral_db": SPECTRAL_SCALE}

# Names that live in the neighbouring modules but are asked for here (see the docstring).
_ELSEWHERE = {"adherence": "checks", "adherence_table": "checks", "Judgement": "checks",
              "plot_take": "plots", "plot_pitch_rate": "plots", "plot_measure_by_prompt": "plots"}


def __getattr__(name: str):
    # Lazy, so that checks/plots can import this module without a cycle.
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(f".{_ELSEWHERE[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    def to_dict(self) -> dict:
        """Plain dict of every field (floats may be NaN), e.g. a take's ``metrics``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Measurements":
        """Inverse of :meth:`to_dict`; missing fields become NaN, extra keys are ignored."""
        return cls(**{f.name: data.get(f.name, None if f.name == "rate_unit" else NAN) for f in fields(cls)})


def _samples(audio, sample_rate: int | None) -> tuple[np.ndarray, int]:
    if hasattr(audio, "to_numpy"):
        return np.asarray(audio.to_numpy(), dtype=np.float64), int(audio.sample_rate)
    if sample_rate is None:
        raise ValueError("a numpy array needs sample_rate=")
    x = np.asarray(audio)
    # integer PCM (e.g. int16 from a WAV read) to [-1, 1], so levels mean dBFS either way
    x = x / -float(np.iinfo(x.dtype).min) if x.dtype.kind == "i" else x.astype(np.float64)
    return (x.mean(axis=1) if x.ndim == 2 else x), int(sample_rate)


def _frame_db(x: np.ndarray, sr: int, frame_s: float = HOP_S) -> np.ndarray:
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


def _speech_frames(x: np.ndarray, sr: int, frame_s: float = HOP_S) -> np.ndarray:
    db = _frame_db(x, sr, frame_s)
    if len(db) == 0:
        return np.zeros(0, bool)
    return db > max(db.max() - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)


def _pitch(x: np.ndarray, sr: int):
    """praat's pitch track (autocorrelation, a frame every 10 ms), or None for a clip too short
    for its analysis window (no pitch, not an error). Shared with ``plots.plot_take``."""
    import parselmouth

    try:
        return parselmouth.Sound(x, sr).to_pitch_ac(
            time_step=HOP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    except parselmouth.PraatError:
        return None


def _f0_values(x: np.ndarray, sr: int) -> np.ndarray:
    """F0 of each voiced 10 ms frame; empty if none."""
    pitch = _pitch(x, sr)
    if pitch is None:
        return np.zeros(0)
    f0 = pitch.selected_array["frequency"]
    return f0[f0 > 0]


@lru_cache(maxsize=8)
def _meter(sr: int):
    import pyloudnorm

    return pyloudnorm.Meter(sr)


def _loudness(x: np.ndarray, sr: int) -> float:
    if len(x) <= LOUDNESS_BLOCK_S * sr:
        return NAN
    value = _meter(sr).integrated_loudness(x)
    return float(value) if math.isfinite(value) else NAN  # -inf: everything gated as silence


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


def measure(audio, text: str | None = None, language: str | None = None, *,
            sample_rate: int | None = None) -> Measurements:
    """Measure one recording.

    Args:
        audio: an :class:`~cosyvoice_lab.audio.Audio`, or a float array with ``sample_rate``.
        text: what the recording says (the preview text), for the speaking rate.
        language: 'zh' or 'en' (derived from ``text`` when None).
        sample_rate: only for a bare array.

    Returns:
        :class:`Measurements`; undefined values are NaN (silence has no pitch).

    Raises:
        ValueError: for a bare array without ``sample_rate``.
    """
    x, sr = _samples(audio, sample_rate)
    speech = _speech_frames(x, sr)
    idx = np.flatnonzero(speech)
    speech_s = 0.0 if len(idx) == 0 else float(min((idx[-1] - idx[0] + 1) * HOP_S, len(x) / sr))
    f0 = _f0_values(x, sr) if len(idx) else np.zeros(0)
    p10, p50, p90 = np.percentile(f0, [10, 50, 90]) if len(f0) else (NAN, NAN, NAN)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    units, unit = text_units(text, language)
    return Measurements(
        duration_s=len(x) / sr,
        speech_duration_s=speech_s,
        median_f0_hz=float(p50),
        f0_p10_hz=float(p10),
        f0_p90_hz=float(p90),
        f0_spread_semitones=float(12 * np.log2(p90 / p10)) if len(f0) else NAN,
        voiced_fraction=min(1.0, len(f0) * HOP_S / speech_s) if speech_s else NAN,
        loudness_lufs=_loudness(x, sr),
        peak_dbfs=20 * math.log10(peak) if peak > 0 else NAN,
        clipping_ratio=float(np.mean(np.abs(x) >= CLIP_LEVEL)) if len(x) else 0.0,
        silence_ratio=float(1 - speech.mean()) if len(speech) else 1.0,
        speaking_rate=units / speech_s if units and speech_s else NAN,
        rate_unit=unit,
    )


# --- groups of takes ---------------------------------------------------------------------


@dataclass
class TakeRow:
    """One take of a group, normalised: its label, prompt, measurement values, embedding."""

    key: object
    prompt: str
    values: dict
    embedding: np.ndarray | None = None

    def get(self, column: str) -> float:
        v = self.values.get(column)
        try:
            return float(v)
        except (TypeError, ValueError):
            return NAN


def _as_values(m) -> dict:
    return m.to_dict() if isinstance(m, Measurements) else dict(m)


def measurement_columns(frame):
    """The log's DataFrame in the shape measurements use: ``m_<name>`` columns also as
    ``<name>``, and ``model`` also as ``target_model`` (the log keeps both forms apart)."""
    extra = {k[2:]: frame[k] for k in frame.columns if isinstance(k, str) and k.startswith("m_") and k[2:] not in frame}
    if "model" in frame and "target_model" not in frame:
        extra["target_model"] = frame["model"]
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
        rows = [TakeRow(k, r.get(prompt_column) if prompts is None else None, r.to_dict(),
                        r.get("embedding")) for k, r in group.iterrows()]
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
        for row, prompt in zip(rows, prompts):
            row.prompt = prompt
    for row in rows:
        if not isinstance(row.prompt, str):
            raise ValueError(f"take {row.key!r} has no voice prompt (column {prompt_column!r})")
    return rows


# --- embeddings and variation ------------------------------------------------------------


@lru_cache(maxsize=8)
def _mel_dct(sr: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filterbank (N_MELS x bins) and orthonormal DCT-II matrix (N_MFCC x N_MELS)."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges_mel = np.linspace(mel(MEL_FMIN), mel(min(MEL_FMAX, sr / 2)), N_MELS + 2)
    edges = 700 * (10 ** (edges_mel / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.maximum(0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    k, n = np.arange(N_MFCC)[:, None], np.arange(N_MELS)[None, :]
    dct = np.sqrt(2 / N_MELS) * np.cos(np.pi * k * (2 * n + 1) / (2 * N_MELS))
    dct[0] /= np.sqrt(2)
    return bank, dct


def speaker_embedding(audio, *, sample_rate: int | None = None) -> np.ndarray:
    """A light spectral fingerprint of a voice: mean and spread of its MFCCs over speech.

    MFCCs 1-19 (c0, the level, is left out so loudness does not count as identity), in dB,
    from speech frames only. Computed with numpy: no model, no download. It tells voices
    apart coarsely; it is not a trained speaker-verification embedding.

    Args:
        audio: an Audio, or a float array with ``sample_rate``.

    Returns:
        float array of 2 x (N_MFCC - 1) values (means, then standard deviations); all NaN when
        the recording holds no speech.
    """
    x, sr = _samples(audio, sample_rate)
    frame, hop = int(FRAME_S * sr), int(HOP_S * sr)
    speech = _speech_frames(x, sr, FRAME_S)
    if len(x) < frame or not speech.any():
        return np.full(2 * (N_MFCC - 1), np.nan)
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][speech]
    n_fft = 1 << (frame - 1).bit_length()
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), n_fft)) ** 2
    bank, dct = _mel_dct(sr, n_fft)
    mfcc = (10 * np.log10(power @ bank.T + 1e-12)) @ dct.T
    return np.concatenate([mfcc[:, 1:].mean(axis=0), mfcc[:, 1:].std(axis=0)])


def spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two :func:`speaker_embedding` vectors, in dB (NaN if either is NaN)."""
    if a is None or b is None:
        return NAN
    d = float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))
    return d if math.isfinite(d) else NAN


def _pair(a: TakeRow, b: TakeRow) -> dict:
    fa, fb = a.get("median_f0_hz"), b.get("median_f0_hz")
    ra, rb = a.get("speaking_rate"), b.get("speaking_rate")
    same_unit = a.values.get("rate_unit") == b.values.get("rate_unit")
    parts = {
        "pitch_semitones": abs(12 * math.log2(fa / fb)) if fa > 0 and fb > 0 else NAN,
        # log ratio in percent: symmetric, and ~ the plain percentage for small differences
        "rate_percent": abs(100 * math.log(ra / rb)) if ra > 0 and rb > 0 and same_unit else NAN,
        "loudness_lu": abs(a.get("loudness_lufs") - b.get("loudness_lufs")),
        "spectral_db": spectral_distance(a.embedding, b.embedding),
    }
    scaled = [(v / SCALES[k]) ** 2 for k, v in parts.items() if math.isfinite(v)]
    return {"take_a": a.key, "take_b": b.key, "prompt_a": a.prompt, "prompt_b": b.prompt,
            "same_prompt": a.prompt == b.prompt, **parts,
            "distance": math.sqrt(sum(scaled) / len(scaled)) if scaled else NAN}


def _with_embeddings(rows: list[TakeRow], embeddings) -> list[TakeRow]:
    if embeddings is not None:
        if len(embeddings) != len(rows):
            raise ValueError(f"{len(embeddings)} embeddings for {len(rows)} takes")
        for row, e in zip(rows, embeddings):
            row.embedding = e
    return rows


def pairwise(group, prompts=None, *, embeddings=None, prompt_column: str = "voice_prompt"):
    """How far apart every two takes of a group are.

    Args:
        group, prompts, prompt_column: as for :func:`take_rows`.
        embeddings: :func:`speaker_embedding` vectors aligned with the takes (else taken from
            an ``embedding`` column/element, else the spectral part is left out).

    Returns:
        A pandas DataFrame, one row per pair: ``take_a``, ``take_b``, ``prompt_a``,
        ``prompt_b``, ``same_prompt``, absolute differences ``pitch_semitones``,
        ``rate_percent`` (only between the same rate unit), ``loudness_lu``, ``spectral_db``,
        and ``distance``: the root mean square of those divided by :data:`SCALES` (1 = about one
        clearly audible step), over the parts that are defined.
    """
    import pandas as pd

    rows = _with_embeddings(take_rows(group, prompts, prompt_column), embeddings)
    pairs = [_pair(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    columns = ["take_a", "take_b", "prompt_a", "prompt_b", "same_prompt", *SCALES, "distance"]
    return pd.DataFrame(pairs, columns=columns)


def _spread(rows: list[TakeRow]) -> dict:
    f0 = np.array([r.get("median_f0_hz") for r in rows])
    rate = np.array([r.get("speaking_rate") for r in rows])
    lufs = np.array([r.get("loudness_lufs") for r in rows])

    def sd(v):
        v = v[np.isfinite(v)]
        return float(np.std(v, ddof=1)) if len(v) > 1 else NAN

    with np.errstate(divide="ignore", invalid="ignore"):
        semitones = 12 * np.log2(f0)
    return {"pitch_sd_semitones": sd(semitones),
            "rate_cv_percent": 100 * sd(rate) / float(np.nanmean(rate)) if np.isfinite(rate).sum() > 1 else NAN,
            "loudness_sd_lu": sd(lufs)}


def _mean(pairs: list[dict], key: str) -> float:
    values = [p[key] for p in pairs if math.isfinite(p[key])]
    return float(np.mean(values)) if values else NAN


def variation(group, prompts=None, *, embeddings=None, prompt_column: str = "voice_prompt"):
    """How much repeats of each prompt differ from one another.

    Args:
        group, prompts, prompt_column: as for :func:`take_rows`.
        embeddings: as for :func:`pairwise`.

    Returns:
        A pandas DataFrame, one row per distinct prompt (first-seen order): ``voice_prompt``,
        ``takes``, ``pitch_sd_semitones``, ``rate_cv_percent``, ``loudness_sd_lu`` (spread
        among its takes), ``spectral_db`` and ``variability`` (mean pairwise
        ``spectral_db``/``distance`` among its takes, see :func:`pairwise`). NaN for a prompt
        with a single take: one take shows no variation.
    """
    import pandas as pd

    rows = _with_embeddings(take_rows(group, prompts, prompt_column), embeddings)
    by_prompt: dict[str, list[TakeRow]] = {}
    for row in rows:
        by_prompt.setdefault(row.prompt, []).append(row)
    out = []
    for prompt, members in by_prompt.items():
        pairs = [_pair(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
        out.append({"voice_prompt": prompt, "takes": len(members), **_spread(members),
                    "spectral_db": _mean(pairs, "spectral_db"), "variability": _mean(pairs, "distance")})
    columns = ["voice_prompt", "takes", "pitch_sd_semitones", "rate_cv_percent", "loudness_sd_lu",
               "spectral_db", "variability"]
    return pd.DataFrame(out, columns=columns)
