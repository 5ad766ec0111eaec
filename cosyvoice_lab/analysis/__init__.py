"""Analysis of takes: measurements, variation between repeats, adherence to the prompt's
words, and figures.

- ``measure`` -- pitch, loudness, speaking rate, level and silence of one recording; voice
  quality (HNR, CPP, jitter, shimmer, spectral tilt and centroid, F0 and intensity variability)
  and predicted quality (DNSMOS P.835).
- ``variation`` -- a spectral fingerprint or a speaker embedding per take; how far apart takes
  and repeats are.
- ``adherence`` -- each claim of a prompt ("deep", "slow", "female") judged against measurements.
- ``plots`` -- matplotlib figures (matplotlib loads only when a figure is drawn).
"""

from __future__ import annotations

from cosyvoice_lab.analysis.checks import Judgement, adherence, adherence_table
from cosyvoice_lab.analysis.measures import Measurements, measure, measurement_columns, take_rows, text_units
from cosyvoice_lab.analysis.plots import plot_measure_by_prompt, plot_pitch_rate, plot_take
from cosyvoice_lab.analysis.variability import (
    pairwise,
    speaker_embedding,
    spectral_distance,
    variation,
    voice_embedding,
)

__all__ = [
    "Judgement",
    "Measurements",
    "adherence",
    "adherence_table",
    "measure",
    "measurement_columns",
    "pairwise",
    "plot_measure_by_prompt",
    "plot_pitch_rate",
    "plot_take",
    "speaker_embedding",
    "spectral_distance",
    "take_rows",
    "text_units",
    "variation",
    "voice_embedding",
]
