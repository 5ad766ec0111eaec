"""What each measurement is called wherever a person reads it: evidence tables, sweeps, the
report and the plots. One mapping, in plain words, with the unit each is compared in.

Pitch is compared in semitones (from :data:`PITCH_REFERENCE_HZ`; only differences are shown),
everything else on its own scale. :data:`PRIMARY` are the measurements a comparison is run for
(the prompt's words and predicted quality); every other one is exploratory.
"""

from __future__ import annotations

import numpy as np

PITCH_REFERENCE_HZ = 100.0  # semitones are counted from here (only differences are shown)

# measurement column -> (plain name, unit it is compared in)
MEASURES: dict[str, tuple[str, str]] = {
    "m_median_f0_hz": ("pitch", "st"),
    "m_speaking_rate": ("speaking rate", "/s"),
    "m_loudness_lufs": ("loudness", "LU"),
    "m_predicted_mos": ("predicted quality", "MOS"),
    "m_dnsmos_ovrl": ("predicted quality", "MOS"),
    "m_dnsmos_sig": ("predicted clarity of the speech", "MOS"),
    "m_dnsmos_bak": ("predicted quietness of the background", "MOS"),
    "m_f0_sd_semitones": ("pitch variation (melody)", "st"),
    "m_intensity_sd_db": ("loudness variation", "dB"),
    "m_loudness_sd_lu": ("loudness variation", "LU"),
    "m_hnr_db": ("clearness (harmonics-to-noise)", "dB"),
    "m_cpp_db": ("clearness (cepstral peak)", "dB"),
    "m_jitter_percent": ("pitch roughness (jitter)", "%"),
    "m_shimmer_percent": ("loudness roughness (shimmer)", "%"),
    "m_spectral_tilt_db_oct": ("brightness (spectral tilt)", "dB/oct"),
    "m_spectral_centroid_hz": ("brightness (spectral centre)", "Hz"),
    "m_f0_spread_semitones": ("pitch range", "st"),
    "m_f0_p10_hz": ("low end of the pitch range", "Hz"),
    "m_f0_p90_hz": ("high end of the pitch range", "Hz"),
    "m_voiced_fraction": ("share of voiced speech", ""),
    "m_silence_ratio": ("share of silence", ""),
    "m_speech_duration_s": ("time spent speaking", "s"),
    "m_peak_dbfs": ("peak level", "dBFS"),
    "m_clipping_ratio": ("share of clipped samples", ""),
}
# the primary measurements (one predicted quality: the first the log holds)
PRIMARY = ("m_median_f0_hz", "m_speaking_rate", "m_loudness_lufs", "m_predicted_mos", "m_dnsmos_ovrl")
SKIPPED = ("m_duration_s", "m_measures_version")  # set by the preview text / the code, not the voice
# a sweep's dimension -> the measurement its words are about (primary for that sweep)
DIMENSION_MEASURES = {"pitch": "m_median_f0_hz", "pace": "m_speaking_rate", "volume": "m_loudness_lufs"}


def name(column: str) -> str:
    """The plain name of a measurement column (``"m_cpp_db"`` -> ``"clearness (cepstral peak)"``)."""
    if column in MEASURES:
        return MEASURES[column][0]
    return column.removeprefix("m_").replace("_", " ")


def unit(column: str) -> str:
    """The unit a measurement is compared in ("" when unknown)."""
    return MEASURES.get(column, ("", ""))[1]


def compared(frame, column: str):
    """``frame[column]`` on the scale it is compared on: pitch in semitones, the rest as is."""
    values = frame[column].astype(float)
    if column == "m_median_f0_hz":
        return 12 * np.log2(values.where(values > 0) / PITCH_REFERENCE_HZ)
    return values


_RAW_UNITS = {"_hz": "Hz", "_lufs": "LUFS", "_db": "dB", "_s": "s", "_percent": "%", "_semitones": "st", "_lu": "LU"}


def raw_label(column: str) -> str:
    """A plot axis for a column on its own scale: ``"m_median_f0_hz"`` -> ``"pitch (Hz)"``."""
    raw = next((u for suffix, u in _RAW_UNITS.items() if column.endswith(suffix)), "")
    return f"{name(column)} ({raw})" if raw else name(column)
