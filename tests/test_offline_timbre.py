"""Timbre words are heard (issue 14): breathy, husky, bright, warm, soft/loud and calm/lively
move the rendered voice the way their acoustic measures expect, in English and Chinese."""

from __future__ import annotations

import base64
import io

import numpy as np
import parselmouth
import pytest
import requests
import soundfile as sf
from parselmouth.praat import call

from cosyvoice_lab import catalog
from cosyvoice_lab.offline import serve
from cosyvoice_lab.offline.engine import render, settings_for, timbre_words

RATE = 24000
TEXT = {
    "en": "Good evening, and welcome to the late news. Here are tonight's headlines.",
    "zh": "各位听众朋友，大家好，欢迎收听晚间新闻。",
}
PROMPTS = {
    "en": {
        "neutral": "A man speaking.",
        "breathy": "A breathy man speaking.",
        "husky": "A husky man speaking.",
        "raspy": "A man with a raspy voice.",
        "bright": "A man with a bright voice.",
        "warm": "A man with a warm voice.",
        "soft": "A man speaking softly.",
        "loud": "A man speaking loudly.",
        "calm": "A calm man.",
        "lively": "A lively man.",
    },
    "zh": {
        "neutral": "男声。",
        "breathy": "带气声的男声。",
        "husky": "沙哑的男声。",
        "raspy": "嘶哑的男声。",
        "bright": "明亮的男声。",
        "warm": "温暖的男声。",
        "soft": "轻声细语的男声。",
        "loud": "洪亮的男声。",
        "calm": "平静的男声。",
        "lively": "活泼的男声。",
    },
}
SEEDS = [f"{catalog.V35_PLUS}-vd-t-{i:032x}" for i in range(3)]


def speak(lang: str, word: str, seed: str) -> np.ndarray:
    return render(TEXT[lang], settings_for(PROMPTS[lang][word], lang, seed), RATE).astype(np.float64)


def hnr(x: np.ndarray) -> float:
    h = parselmouth.Sound(x, RATE).to_harmonicity()
    return float(np.mean(h.values[h.values > -200]))


def jitter_shimmer(x: np.ndarray) -> tuple[float, float]:
    sound = parselmouth.Sound(x, RATE)
    points = call(sound, "To PointProcess (periodic, cc)", 60, 600)
    return (
        call(points, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3),
        call([sound, points], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6),
    )


def centroid(x: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((np.fft.rfftfreq(len(x), 1 / RATE) * power).sum() / power.sum())


def f0_spread(x: np.ndarray) -> float:
    """10-90 % range of F0 in semitones."""
    f0 = parselmouth.Sound(x, RATE).to_pitch(pitch_floor=60, pitch_ceiling=600).selected_array["frequency"]
    st = 12 * np.log2(f0[f0 > 0] / np.median(f0[f0 > 0]))
    return float(np.percentile(st, 90) - np.percentile(st, 10))


def level_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x**2))))


def paired(lang: str, a: str, b: str, measure) -> tuple[np.ndarray, np.ndarray]:
    """``measure`` of the same voices (same seeds) described with word ``a`` and with ``b``."""
    return (
        np.array([measure(speak(lang, a, s)) for s in SEEDS]),
        np.array([measure(speak(lang, b, s)) for s in SEEDS]),
    )


LANGS = pytest.mark.parametrize("lang", ["en", "zh"])


@LANGS
def test_the_words_are_read(lang):
    read = {word: timbre_words(PROMPTS[lang][word]) for word in ("breathy", "husky", "raspy", "bright", "warm")}
    assert read == {
        "breathy": {"breathy"},
        "husky": {"husky"},
        "raspy": {"husky"},
        "bright": {"bright"},
        "warm": {"warm"},
    }


@LANGS
def test_breathy_lowers_the_harmonics_to_noise_ratio(lang):
    neutral, breathy = paired(lang, "neutral", "breathy", hnr)
    assert (breathy < neutral - 4).all(), (neutral, breathy)


@LANGS
@pytest.mark.parametrize("word", ["husky", "raspy"])
def test_husky_lowers_hnr_and_raises_jitter_and_shimmer(lang, word):
    neutral, husky = paired(lang, "neutral", word, lambda x: (hnr(x), *jitter_shimmer(x)))
    assert (husky[:, 0] < neutral[:, 0] - 4).all()  # HNR, dB
    # jitter and shimmer (local): espeak's own perturbation varies with what the process spoke
    # before, so every voice must move the right way and the mean decides by how much
    assert husky[:, 1].mean() > 1.5 * neutral[:, 1].mean() and (husky[:, 1] > neutral[:, 1]).all()
    assert husky[:, 2].mean() > 1.25 * neutral[:, 2].mean() and (husky[:, 2] > neutral[:, 2]).all()


@LANGS
def test_bright_raises_and_warm_lowers_the_spectral_centroid(lang):
    neutral, bright = paired(lang, "neutral", "bright", centroid)
    _, warm = paired(lang, "neutral", "warm", centroid)
    assert (bright > 1.3 * neutral).all() and (warm < 0.85 * neutral).all(), (warm, neutral, bright)


@LANGS
def test_soft_is_quieter_than_loud(lang):
    soft, loud = paired(lang, "soft", "loud", level_db)
    assert (loud - soft > 6).all(), (soft, loud)


@LANGS
def test_lively_has_a_wider_pitch_range_than_calm(lang):
    calm, lively = paired(lang, "calm", "lively", f0_spread)
    assert (lively > 1.4 * calm).all(), (calm, lively)


def test_timbre_words_are_heard_in_the_previews_too():
    """End to end: the service's own previews of a breathy and a plain voice."""

    def preview_hnr(sim, prompt):
        r = requests.post(
            sim.base_url + catalog.CUSTOMIZATION_PATH,
            timeout=30,
            headers={"Authorization": f"Bearer {sim.api_key}"},
            json={
                "model": "voice-enrollment",
                "input": {
                    "action": "create_voice",
                    "target_model": catalog.V35_FLASH,
                    "prefix": "timbre",
                    "voice_prompt": prompt,
                    "preview_text": TEXT["en"],
                    "language_hints": ["en"],
                },
            },
        )
        x, rate = sf.read(io.BytesIO(base64.b64decode(r.json()["output"]["preview_audio"]["data"])))
        h = parselmouth.Sound(x, rate).to_harmonicity()
        return float(np.mean(h.values[h.values > -200]))

    with serve(seed=3, model_profiles={"*": {"design_latency": 0}}) as sim:
        plain = preview_hnr(sim, PROMPTS["en"]["neutral"])
    with serve(seed=3, model_profiles={"*": {"design_latency": 0}}) as sim:  # same draw, other words
        breathy = preview_hnr(sim, PROMPTS["en"]["breathy"])
    assert breathy < plain - 4
