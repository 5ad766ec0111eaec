"""How far apart takes are, and how much repeats of one prompt differ: a light spectral
fingerprint (MFCCs) per take, a speaker embedding from a pretrained network
(:func:`voice_embedding`, see ``analysis.embedding``), pairwise distances and per-prompt spread.

The service gives different voices for identical prompts, so variance is measured rather than
assumed away.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cosyvoice_lab.analysis.measures import FRAME_S, HOP_S, NAN, TakeRow, samples, speech_frames, take_rows

# Embedding: MFCCs of a 60-7600 Hz mel scale, a band every preview rate (16/24/48 kHz) holds,
# so embeddings of previews at different rates compare.
N_MELS, N_MFCC, MEL_FMIN, MEL_FMAX = 40, 20, 60.0, 7600.0
# Pairwise differences are divided by these "clearly audible" steps before they are combined.
# On simulator speech, one voice repeating a text differs by ~2 dB and two voices by 6-8 dB.
SPECTRAL_SCALE = 3.0
VOICE_EMBEDDING_SIZE = 256  # analysis.embedding.SIZE, without importing it for a constant
_PAUSE_FRAMES = 15  # 10 ms frames of silence kept either side of speech
SCALES = {"pitch_semitones": 2.0, "rate_percent": 10.0, "loudness_lu": 3.0, "spectral_db": SPECTRAL_SCALE}

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
    x, sr = samples(audio, sample_rate)
    frame, hop = int(FRAME_S * sr), int(HOP_S * sr)
    speech = speech_frames(x, sr, FRAME_S)
    if len(x) < frame or not speech.any():
        return np.full(2 * (N_MFCC - 1), np.nan)
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][speech]
    n_fft = 1 << (frame - 1).bit_length()
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), n_fft)) ** 2
    bank, dct = _mel_dct(sr, n_fft)
    mfcc = (10 * np.log10(power @ bank.T + 1e-12)) @ dct.T
    return np.concatenate([mfcc[:, 1:].mean(axis=0), mfcc[:, 1:].std(axis=0)])


def voice_embedding(audio, *, sample_rate: int | None = None) -> np.ndarray:
    """The speaker embedding of a recording from a pretrained speaker-verification network
    (``analysis.embedding``): a unit vector of 256 values; the cosine of two is their similarity.

    Leading, trailing and long inner silences are left out (10 ms speech frames), and the
    recording is resampled to the network's 16 kHz.

    Args:
        audio: an Audio, or a float array with ``sample_rate``.

    Returns:
        float32 array of 256 values; all NaN when the recording holds no speech.
    """
    from cosyvoice_lab.analysis import embedding
    from cosyvoice_lab.analysis.voice import resampled

    x, sr = samples(audio, sample_rate)
    speech = speech_frames(x, sr)
    if not speech.any():
        return np.full(embedding.SIZE, np.nan, np.float32)
    # keep speech and pauses up to 0.3 s (the reference pipeline's VAD keeps short pauses too)
    keep = np.convolve(speech, np.ones(2 * _PAUSE_FRAMES + 1), mode="same") > 0
    hop = int(HOP_S * sr)
    x = x[: len(keep) * hop].reshape(-1, hop)[keep[: len(x) // hop]].ravel()
    return embedding.embed(resampled(x, sr, embedding.RATE))


def _is_voice_embedding(e) -> bool:
    return e is not None and len(e) == VOICE_EMBEDDING_SIZE


def spectral_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """RMS difference of two :func:`speaker_embedding` vectors, in dB (NaN if either is NaN)."""
    if a is None or b is None or _is_voice_embedding(a) or _is_voice_embedding(b):
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
    similarity = NAN
    if a.embedding is not None and b.embedding is not None and _is_voice_embedding(a.embedding):
        similarity = float(np.dot(a.embedding, b.embedding)) if _is_voice_embedding(b.embedding) else NAN
    scaled = [(v / SCALES[k]) ** 2 for k, v in parts.items() if math.isfinite(v)]
    return {
        "take_a": a.key,
        "take_b": b.key,
        "prompt_a": a.prompt,
        "prompt_b": b.prompt,
        "same_prompt": a.prompt == b.prompt,
        **parts,
        "distance": math.sqrt(sum(scaled) / len(scaled)) if scaled else NAN,
        "speaker_similarity": similarity if math.isfinite(similarity) else NAN,
    }


def _with_embeddings(rows: list[TakeRow], embeddings) -> list[TakeRow]:
    if embeddings is not None:
        if len(embeddings) != len(rows):
            raise ValueError(f"{len(embeddings)} embeddings for {len(rows)} takes")
        for row, e in zip(rows, embeddings, strict=False):
            row.embedding = e
    return rows


def pairwise(group, prompts=None, *, embeddings=None, prompt_column: str = "voice_prompt"):
    """How far apart every two takes of a group are.

    Args:
        group, prompts, prompt_column: as for :func:`take_rows`.
        embeddings: :func:`speaker_embedding` or :func:`voice_embedding` vectors aligned with
            the takes (else taken from an ``embedding`` column/element, else left out).

    Returns:
        A pandas DataFrame, one row per pair: ``take_a``, ``take_b``, ``prompt_a``,
        ``prompt_b``, ``same_prompt``, absolute differences ``pitch_semitones``,
        ``rate_percent`` (only between the same rate unit), ``loudness_lu``, ``spectral_db``,
        and ``distance``: the root mean square of those divided by :data:`SCALES` (1 = about one
        clearly audible step), over the parts that are defined; ``speaker_similarity``: the
        cosine of two :func:`voice_embedding` s (1 = the same voice), a column only when voice
        embeddings were given (MFCC fingerprints cannot say it).
    """
    import pandas as pd

    rows = _with_embeddings(take_rows(group, prompts, prompt_column), embeddings)
    pairs = [_pair(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    columns = ["take_a", "take_b", "prompt_a", "prompt_b", "same_prompt", *SCALES, "distance", "speaker_similarity"]
    return _similarity_if_known(pd.DataFrame(pairs, columns=columns), rows)


def _similarity_if_known(frame, rows: list[TakeRow]):
    """``frame`` without its ``speaker_similarity`` column when no take has a voice embedding:
    a column of NaN that nothing explains is worse than none."""
    if any(_is_voice_embedding(row.embedding) for row in rows):
        return frame
    return frame.drop(columns="speaker_similarity")


def _spread(rows: list[TakeRow]) -> dict:
    f0 = np.array([r.get("median_f0_hz") for r in rows])
    rate = np.array([r.get("speaking_rate") for r in rows])
    lufs = np.array([r.get("loudness_lufs") for r in rows])

    def sd(v):
        v = v[np.isfinite(v)]
        return float(np.std(v, ddof=1)) if len(v) > 1 else NAN

    with np.errstate(divide="ignore", invalid="ignore"):
        semitones = 12 * np.log2(f0)
    return {
        "pitch_sd_semitones": sd(semitones),
        "rate_cv_percent": 100 * sd(rate) / float(np.nanmean(rate)) if np.isfinite(rate).sum() > 1 else NAN,
        "loudness_sd_lu": sd(lufs),
    }


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
        ``spectral_db``/``distance`` among its takes, see :func:`pairwise`) and
        ``speaker_similarity`` (mean pairwise; a column only when :func:`voice_embedding` s were
        given). NaN for a prompt with a single take: one take shows no variation.
    """
    import pandas as pd

    rows = _with_embeddings(take_rows(group, prompts, prompt_column), embeddings)
    by_prompt: dict[str | None, list[TakeRow]] = {}
    for row in rows:
        by_prompt.setdefault(row.prompt, []).append(row)
    out = []
    for prompt, members in by_prompt.items():
        pairs = [_pair(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
        out.append(
            {
                "voice_prompt": prompt,
                "takes": len(members),
                **_spread(members),
                "spectral_db": _mean(pairs, "spectral_db"),
                "variability": _mean(pairs, "distance"),
                "speaker_similarity": _mean(pairs, "speaker_similarity"),
            }
        )
    columns = [
        "voice_prompt",
        "takes",
        "pitch_sd_semitones",
        "rate_cv_percent",
        "loudness_sd_lu",
        "spectral_db",
        "variability",
        "speaker_similarity",
    ]
    return _similarity_if_known(pd.DataFrame(out, columns=columns), rows)
