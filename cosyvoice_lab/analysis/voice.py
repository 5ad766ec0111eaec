"""Voice quality of one recording: how noisy, how irregular, how bright, how animated.

* ``hnr_db`` -- harmonics-to-noise ratio: praat's autocorrelation strength r of each voiced
  frame (the pitch track ``measure`` already computes), as 10 log10(r / (1 - r)), averaged in
  dB; the same estimate as praat's "To Harmonicity (ac)" at no extra cost. Breathy and hoarse
  voices are lower.
* ``cpp_db`` -- cepstral peak prominence (Hillenbrand 1994): the height of the cepstral peak at
  the voice's period above the regression line of the cepstrum, averaged over voiced frames.
  The most robust single correlate of breathiness and dysphonia; lower is breathier.
* ``jitter_percent``, ``shimmer_percent`` -- praat's local jitter and shimmer (period-to-period
  differences of duration and of peak amplitude) over the glottal pulses; rough, husky voices
  are higher.
* ``spectral_tilt_db_oct`` -- the slope of the long-term spectrum of speech in dB per octave,
  0.5-8 kHz; steeper (more negative) sounds darker/warmer, flatter sounds brighter.
* ``spectral_centroid_hz`` -- the power-weighted mean frequency of that spectrum (60 Hz-8 kHz).
* ``f0_sd_semitones`` -- standard deviation of F0 over voiced frames, in semitones: melody.
* ``intensity_sd_db`` -- standard deviation of the 10 ms frame level over speech, in dB.

Spectral measures run on a 16 kHz copy, so previews at 16, 24 and 48 kHz compare.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

NAN = float("nan")
ANALYSIS_RATE = 16000  # spectral measures (and the quality model) work at this rate
CPP_FRAME_S = 0.040  # two periods of a 50 Hz voice
CPP_QUEFRENCY_S = (1 / 700, 1 / 60)  # where the cepstral peak may lie: the pitch search range
CPP_TREND_FROM_S = 0.001  # the regression line starts at 1 ms (below it: the spectral envelope)
TILT_BAND_HZ = (500.0, 8000.0)  # the simulator's and the literature's "above 500 Hz" slope
CENTROID_BAND_HZ = (60.0, 8000.0)
# praat's usual jitter/shimmer arguments: shortest and longest period, largest period factor,
# largest amplitude factor (Boersma's defaults for voice-quality work).
PERIOD_MIN_S, PERIOD_MAX_S, PERIOD_FACTOR, AMPLITUDE_FACTOR = 0.0001, 0.02, 1.3, 1.6
MIN_VOICED_FRAMES = 5  # fewer voiced frames than this: no voice-quality value, not an error


def resampled(x: np.ndarray, sr: int, rate: int = ANALYSIS_RATE) -> np.ndarray:
    """``x`` at ``rate`` (soxr), unchanged when already there."""
    if sr == rate:
        return x
    import soxr

    return np.asarray(soxr.resample(x, sr, rate), dtype=np.float64)


def harmonicity(pitch) -> float:
    """Mean HNR in dB over the voiced frames of a praat pitch track (NaN with too few)."""
    if pitch is None:
        return NAN
    arr = pitch.selected_array
    r = arr["strength"][arr["frequency"] > 0]
    if len(r) < MIN_VOICED_FRAMES:
        return NAN
    r = np.clip(r, 1e-6, 1 - 1e-6)  # praat caps HNR the same way (r -> 1 is a pure tone)
    return float(np.mean(10 * np.log10(r / (1 - r))))


def voiced_times(pitch) -> np.ndarray:
    """Centre times (s) of the voiced frames of a pitch track."""
    if pitch is None:
        return np.zeros(0)
    return np.asarray(pitch.xs())[pitch.selected_array["frequency"] > 0]


def cepstral_peak_prominence(y: np.ndarray, times: np.ndarray, rate: int = ANALYSIS_RATE) -> float:
    """Mean CPP (dB) of 40 ms Hann frames of ``y`` centred on the voiced ``times``."""
    frame = int(CPP_FRAME_S * rate)
    starts = np.round(times * rate).astype(int) - frame // 2
    starts = starts[(starts >= 0) & (starts + frame <= len(y))]
    if len(starts) < MIN_VOICED_FRAMES:
        return NAN
    frames = y[starts[:, None] + np.arange(frame)] * np.hanning(frame)
    n_fft = 1 << (frame - 1).bit_length()
    log_power = 10 * np.log10(np.abs(np.fft.rfft(frames, n_fft)) ** 2 + 1e-12)
    cepstrum = 10 * np.log10(np.abs(np.fft.irfft(log_power, n_fft)) ** 2 + 1e-12)[:, : n_fft // 2]
    quefrency = np.arange(n_fft // 2) / rate
    peak_zone = (quefrency >= CPP_QUEFRENCY_S[0]) & (quefrency <= CPP_QUEFRENCY_S[1])
    trend_zone = quefrency >= CPP_TREND_FROM_S
    slope, intercept = np.polyfit(quefrency[trend_zone], cepstrum[:, trend_zone].T, 1)
    zone = cepstrum[:, peak_zone]
    at = np.argmax(zone, axis=1)
    q = quefrency[peak_zone][at]
    return float(np.mean(zone[np.arange(len(zone)), at] - (slope * q + intercept)))


def perturbation(x: np.ndarray, sr: int, pitch) -> dict[str, float]:
    """``jitter_percent`` and ``shimmer_percent`` (local) from praat's glottal pulses (NaN with too few)."""
    if pitch is None or np.count_nonzero(pitch.selected_array["frequency"]) < MIN_VOICED_FRAMES:
        return {"jitter_percent": NAN, "shimmer_percent": NAN}
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(x, sr)
    pulses = call([sound, pitch], "To PointProcess (cc)")
    jitter = call(pulses, "Get jitter (local)", 0, 0, PERIOD_MIN_S, PERIOD_MAX_S, PERIOD_FACTOR)
    shimmer = call(
        [sound, pulses], "Get shimmer (local)", 0, 0, PERIOD_MIN_S, PERIOD_MAX_S, PERIOD_FACTOR, AMPLITUDE_FACTOR
    )
    return {"jitter_percent": _percent(jitter), "shimmer_percent": _percent(shimmer)}


def _percent(value) -> float:
    v = float(value)
    return 100 * v if math.isfinite(v) else NAN


def long_term_spectrum(y: np.ndarray, speech: np.ndarray, rate: int = ANALYSIS_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, mean power) of 25 ms Hann frames every 10 ms where ``speech`` is True.

    ``speech`` is the 10 ms speech/silence mask of the recording (one flag per hop).
    """
    frame, hop = int(0.025 * rate), int(0.010 * rate)
    if len(y) < frame:
        return np.zeros(0), np.zeros(0)
    windows = np.lib.stride_tricks.sliding_window_view(y, frame)[::hop]
    keep = speech[: len(windows)]
    windows = windows[: len(keep)][keep]
    if len(windows) < MIN_VOICED_FRAMES:
        return np.zeros(0), np.zeros(0)
    n_fft = 512
    power = np.mean(np.abs(np.fft.rfft(windows * np.hanning(frame), n_fft)) ** 2, axis=0)
    return np.fft.rfftfreq(n_fft, 1 / rate), power


def spectral_shape(freqs: np.ndarray, power: np.ndarray) -> dict[str, float]:
    """``spectral_tilt_db_oct`` (dB per octave over :data:`TILT_BAND_HZ`) and
    ``spectral_centroid_hz`` (over :data:`CENTROID_BAND_HZ`) of a long-term spectrum."""
    if len(freqs) == 0 or not np.any(power > 0):
        return {"spectral_tilt_db_oct": NAN, "spectral_centroid_hz": NAN}
    # third-octave band levels, so the many bins near 8 kHz do not outvote the few near 500 Hz
    edges = TILT_BAND_HZ[0] * 2 ** (np.arange(0, 13) / 3)
    centres, levels = [], []
    for lo, hi in itertools.pairwise(edges):
        band = (freqs >= lo) & (freqs < hi)
        if band.any() and hi <= freqs[-1] + 1:
            centres.append(math.log2(math.sqrt(lo * hi)))
            levels.append(10 * math.log10(float(power[band].mean()) + 1e-20))
    tilt = float(np.polyfit(centres, levels, 1)[0]) if len(centres) >= 3 else NAN
    band = (freqs >= CENTROID_BAND_HZ[0]) & (freqs <= CENTROID_BAND_HZ[1])
    total = float(power[band].sum())
    centroid = float((freqs[band] * power[band]).sum() / total) if total > 0 else NAN
    return {"spectral_tilt_db_oct": tilt, "spectral_centroid_hz": centroid}


def f0_sd_semitones(f0: np.ndarray) -> float:
    """Standard deviation of voiced F0 in semitones (NaN with too few voiced frames)."""
    return float(np.std(12 * np.log2(f0))) if len(f0) >= MIN_VOICED_FRAMES else NAN


def intensity_sd_db(frame_db: np.ndarray, speech: np.ndarray) -> float:
    """Standard deviation of the speech frames' level in dB (NaN with too few)."""
    levels = frame_db[: len(speech)][speech[: len(frame_db)]]
    return float(np.std(levels)) if len(levels) >= MIN_VOICED_FRAMES else NAN
