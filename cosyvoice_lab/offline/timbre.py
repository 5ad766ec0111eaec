"""Voice quality the simulator adds after espeak-ng: what the timbre words and the model
profiles do to the rendered samples.

espeak-ng's variants give a voice its gender and rough character; the words of a prompt that
describe timbre move the sound the way their acoustic measures expect:

* ``shift`` (semitones): the whole voice higher or lower, by PSOLA (praat's overlap-add), so
  the formants stay where they are and the duration is kept (a model profile's pitch_shift);
* ``breath`` (0-1): aspiration noise following the speech envelope, and weaker upper
  harmonics: a lower harmonics-to-noise ratio (breathy);
* ``rasp`` (0-1): period-to-period irregularity of pitch (jitter) and loudness (shimmer), and
  some noise (husky, raspy, hoarse);
* ``tilt`` (dB per octave above 500 Hz): brighter (positive, a higher spectral centroid) or
  warmer (negative, a steeper spectral slope);
* ``noise`` (0-1): a quality loss: steady noise from 40 dB SNR (0) down to 10 dB (1).

Every effect keeps the level (RMS) of the speech, so loudness words stay the only thing that
moves loudness. The random parts are seeded by the text and the settings: a voice says the
same sentence the same way twice.
"""

from __future__ import annotations

import zlib

import numpy as np

TILT_CORNER_HZ = 500.0
_NOISE_SNR_DB = (40.0, 10.0)  # noise=0 -> 40 dB, noise=1 -> 10 dB
_BREATH_NOISE = 0.4  # aspiration noise RMS relative to the speech at breath=1
_BREATH_BAND_HZ = (800.0, 6000.0)  # where aspiration noise sits
_BREATH_TILT_DB = -3.0  # breathy voices lose upper harmonics
_RASP_JITTER = 0.03  # relative period perturbation at rasp=1
_RASP_SHIMMER = 0.45  # relative amplitude perturbation at rasp=1
_RASP_NOISE = 0.25
_TILT_OCTAVES_MAX = 4.0  # the tilt stops at 8 kHz: above it espeak has only noise to lift


def rng_for(text: str, *parts: object) -> np.random.Generator:
    """A generator seeded by ``text`` and ``parts`` (stable across processes, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr((text, *parts)).encode("utf-8")))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _keep_level(x: np.ndarray, level: float) -> np.ndarray:
    now = _rms(x)
    return x if now == 0 or level == 0 else x * (level / now)


def _smooth_noise(rng: np.random.Generator, n: int, rate: int, cutoff_hz: float) -> np.ndarray:
    """Unit-variance noise low-passed at ``cutoff_hz`` (a brick wall in the spectrum)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > cutoff_hz] = 0
    out = np.fft.irfft(spectrum, n)
    sd = out.std()
    return out / sd if sd > 0 else out


def _band(x: np.ndarray, rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, len(x))


def _envelope(x: np.ndarray, rate: int, seconds: float = 0.02) -> np.ndarray:
    width = max(1, int(seconds * rate))
    return np.convolve(np.abs(x), np.ones(width) / width, mode="same")


def tilt(x: np.ndarray, rate: int, db_per_octave: float) -> np.ndarray:
    """``x`` with its spectrum above :data:`TILT_CORNER_HZ` tilted by ``db_per_octave``."""
    if not db_per_octave or len(x) < 2:
        return x
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    octaves = np.minimum(np.log2(np.maximum(freqs, TILT_CORNER_HZ) / TILT_CORNER_HZ), _TILT_OCTAVES_MAX)
    gain = 10 ** (db_per_octave * octaves / 20)
    return np.fft.irfft(np.fft.rfft(x) * gain, len(x))


def breath(x: np.ndarray, rate: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Aspiration noise (above ~1 kHz) riding on the speech envelope, weaker upper harmonics."""
    if amount <= 0 or not len(x):
        return x
    voiced = tilt(x, rate, _BREATH_TILT_DB * amount)
    hiss = _band(rng.standard_normal(len(x)), rate, *_BREATH_BAND_HZ)
    hiss *= _envelope(x, rate)
    hiss *= _BREATH_NOISE * amount * _rms(x) / max(_rms(hiss), 1e-12)
    return voiced + hiss


def rasp(x: np.ndarray, rate: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Jitter (a time warp that varies from one period to the next), shimmer (a fast random
    loudness change) and some noise."""
    if amount <= 0 or len(x) < 2:
        return x
    n = len(x)
    speed = 1 + _RASP_JITTER * amount * _smooth_noise(rng, n, rate, 120.0)
    where = np.clip(np.cumsum(speed) - speed[0], 0, n - 1)
    warped = np.interp(where, np.arange(n), x)
    shimmer = 1 + _RASP_SHIMMER * amount * _smooth_noise(rng, n, rate, 120.0)
    out = warped * np.clip(shimmer, 0.2, None)
    noise = rng.standard_normal(n) * _envelope(x, rate)
    noise *= _RASP_NOISE * amount * _rms(x) / max(_rms(noise), 1e-12)
    return out + noise


def add_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Steady white noise at an SNR between 40 dB (``amount`` 0) and 10 dB (1)."""
    if amount <= 0 or not len(x):
        return x
    snr_db = _NOISE_SNR_DB[0] + (_NOISE_SNR_DB[1] - _NOISE_SNR_DB[0]) * min(amount, 1.0)
    return x + rng.standard_normal(len(x)) * _rms(x) * 10 ** (-snr_db / 20)


def shift_pitch(x: np.ndarray, rate: int, semitones: float) -> np.ndarray:
    """``x`` ``semitones`` higher (or lower), same duration and formants (praat's PSOLA)."""
    if not semitones or len(x) < rate // 10:
        return x
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(x.astype(np.float64), rate)
    manipulation = call(sound, "To Manipulation", 0.01, 60, 600)
    tier = call(manipulation, "Extract pitch tier")
    call(tier, "Multiply frequencies", sound.xmin, sound.xmax, 2 ** (semitones / 12))
    call([tier, manipulation], "Replace pitch tier")
    out = call(manipulation, "Get resynthesis (overlap-add)").values[0]
    return np.asarray(out[: len(x)], dtype=np.float64)


def apply(
    x: np.ndarray,
    rate: int,
    *,
    shift: float = 0.0,
    breath_amount: float = 0.0,
    rasp_amount: float = 0.0,
    tilt_db: float = 0.0,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """All the effects on float samples ``x`` at ``rate``, in a fixed order; float32 in [-1, 1]."""
    if not (shift or breath_amount or rasp_amount or tilt_db or noise) or not len(x):
        return x
    rng = rng or np.random.default_rng(0)
    level = _rms(x)
    y = shift_pitch(x.astype(np.float64), rate, shift)
    y = rasp(y, rate, rasp_amount, rng)
    y = breath(y, rate, breath_amount, rng)
    y = _keep_level(tilt(y, rate, tilt_db), level)
    y = add_noise(y, noise, rng)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:  # a tilt or the noise can push peaks over full scale: scale, never clip
        y = y * (0.99 / peak)
    return y.astype(np.float32)
