"""Which measurement tells whether a voice is what a word says: the word -> measure table.

Each entry maps a claim of the lexicon (``prompts.lexicon``: dimension, value; the same for its
English and Chinese words) to the measures (columns of ``Measurements``) it should move, the
direction (+1 higher, -1 lower than the other takes of the group) and the reason in one line,
from the voice-quality literature. The first measure decides the verdict; the others are
reported beside it. Words absent here have no established acoustic correlate, and
:data:`NO_CORRELATE` says why for each dimension.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Correlate:
    """The measures a claim should move: ``((column, +1 | -1), ...)`` and why."""

    measures: tuple[tuple[str, int], ...]
    reason: str


_DARK = (("spectral_tilt_db_oct", -1), ("spectral_centroid_hz", -1))
_BRIGHT = (("spectral_centroid_hz", +1), ("spectral_tilt_db_oct", +1))
_WIDE = (("f0_sd_semitones", +1), ("intensity_sd_db", +1))
_NARROW = (("f0_sd_semitones", -1), ("intensity_sd_db", -1))
_LIVELY = "animated speech moves pitch and loudness more (Scherer 2003; Banse & Scherer 1996)"
_CALM = "calm speech keeps pitch and loudness steadier (Scherer 2003)"

CORRELATES: dict[tuple[str, str], Correlate] = {
    ("timbre", "breathy"): Correlate(
        (("hnr_db", -1), ("cpp_db", -1)), "air escaping the glottis adds noise: lower HNR and a weaker cepstral peak"
    ),
    ("timbre", "clear"): Correlate(
        (("hnr_db", +1), ("cpp_db", +1)),
        "a clear voice is the opposite of breathy or hoarse: more harmonic, less noise",
    ),
    ("timbre", "husky"): Correlate(
        (("jitter_percent", +1), ("shimmer_percent", +1), ("hnr_db", -1)),
        "hoarse, raspy voices vibrate irregularly: more jitter and shimmer, lower HNR",
    ),
    ("timbre", "smooth"): Correlate(
        (("jitter_percent", -1), ("shimmer_percent", -1)), "smooth is the absence of roughness: steadier periods"
    ),
    ("timbre", "bright"): Correlate(
        _BRIGHT, "bright voices carry more high-frequency energy: higher centroid, flatter slope"
    ),
    ("timbre", "warm"): Correlate(_DARK, "warm voices carry less high-frequency energy: steeper slope, lower centroid"),
    ("timbre", "mellow"): Correlate(_DARK, "mellow, like warm, is a dark voice: steeper slope, lower centroid"),
    ("energy", "lively"): Correlate(_WIDE, _LIVELY),
    ("energy", "calm"): Correlate(_NARROW, _CALM),
    ("emotion", "lively"): Correlate(_WIDE, _LIVELY),
    ("emotion", "cheerful"): Correlate(_WIDE, "joy widens the pitch range (Scherer 2003; Banse & Scherer 1996)"),
    ("emotion", "excited"): Correlate(_WIDE, "high arousal widens the pitch and loudness range (Scherer 2003)"),
    ("emotion", "calm"): Correlate(_NARROW, _CALM),
    ("emotion", "sad"): Correlate(_NARROW, "sadness flattens pitch and loudness (Scherer 2003)"),
}

NO_CORRELATE = {
    "timbre": "no established acoustic correlate for this timbre word (magnetic, rich, sweet, metallic: by ear)",
    "emotion": "no established acoustic correlate for this emotion (it needs a listener or a trained classifier)",
    "energy": "energy and mood need a listener; no offline measure",
    "articulation": "articulation needs a recogniser; none offline for both languages",
    "accent": "accent needs an accent classifier; none offline",
    "scenario": "a use, not a property of the sound",
}

# How far a take must sit from the others' median, per measure, to count as borne out, and in
# what unit the difference is taken: "dB" and "st" are differences, "%" a ratio.
MARGINS: dict[str, tuple[float, str]] = {
    "hnr_db": (1.0, "dB"),
    "cpp_db": (1.0, "dB"),
    "jitter_percent": (20.0, "%"),
    "shimmer_percent": (10.0, "%"),
    "spectral_tilt_db_oct": (1.0, "dB/oct"),
    "spectral_centroid_hz": (10.0, "%"),
    "f0_sd_semitones": (0.3, "st"),
    "intensity_sd_db": (0.5, "dB"),
}
LABELS = {
    "hnr_db": ("HNR", "dB"),
    "cpp_db": ("CPP", "dB"),
    "jitter_percent": ("jitter", "%"),
    "shimmer_percent": ("shimmer", "%"),
    "spectral_tilt_db_oct": ("spectral tilt", "dB/oct"),
    "spectral_centroid_hz": ("spectral centroid", "Hz"),
    "f0_sd_semitones": ("F0 variability", "st"),
    "intensity_sd_db": ("intensity variability", "dB"),
}


def correlate(dimension: str, value: str) -> Correlate | None:
    """The measures that judge the claim ``dimension = value``, or None if none does."""
    return CORRELATES.get((dimension, value))


def difference(column: str, value: float, reference: float) -> float:
    """``value`` minus ``reference`` in the unit of :data:`MARGINS` (percent for ratios)."""
    unit = MARGINS[column][1]
    return 100 * (value / reference - 1) if unit == "%" else value - reference
