"""Voice-quality and predicted-quality measures: on signals made here with a planted property,
on simulator previews of opposite words (en and zh), and as adherence verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosyvoice_lab.analysis import measure
from cosyvoice_lab.analysis.checks import CONSISTENT, NOT_MEASURABLE, adherence
from cosyvoice_lab.analysis.correlates import CORRELATES, MARGINS
from cosyvoice_lab.analysis.measures import VERSION, Measurements
from cosyvoice_lab.offline import engine
from cosyvoice_lab.prompts.lexicon import LEXICON, read_claims
from cosyvoice_lab.prompts.spec import PromptSpec

SR = 16000
TEXT = {
    "en": "Good evening, and welcome to the late news. Here are tonight's headlines, and the weather.",
    "zh": "今天天气很好，我们一起去公园散步吧，那里有很多花和树。",
}


def pulses(f0=120.0, seconds=2.0, jitter=0.0, seed=0, sr=SR) -> np.ndarray:
    """A glottal-like pulse train (one decaying click per period) through two vowel resonances;
    ``jitter`` is the relative random perturbation of each period."""
    from scipy.signal import lfilter  # here: scipy.signal costs 1.5 s to import, paid by the workers that use it

    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * sr))
    t = 0.05
    while t < seconds - 0.05:
        x[int(t * sr)] = 1.0
        t += (1 + jitter * rng.standard_normal()) / f0
    x = lfilter([1.0], [1, -0.95], x)  # a -6 dB/octave source, like a voice
    for f in (700.0, 1200.0):
        r, theta = 0.97, 2 * np.pi * f / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    return 0.3 * x / np.max(np.abs(x))


def with_noise(x, snr_db, seed=1):
    noise = np.random.default_rng(seed).standard_normal(len(x))
    return x + noise * np.sqrt(np.mean(x**2)) * 10 ** (-snr_db / 20)


def tilted(x, db_per_octave, sr=SR):
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    octaves = np.log2(np.maximum(freqs, 500.0) / 500.0)
    return np.fft.irfft(spectrum * 10 ** (db_per_octave * octaves / 20), len(x))


def measured(x, sr=SR, **kw) -> Measurements:
    return measure(x, sample_rate=sr, predicted_quality=kw.pop("predicted_quality", False), **kw)


# --- controlled signals ------------------------------------------------------------------------


def test_added_noise_lowers_hnr_and_cpp():
    clean, noisy = measured(pulses()), measured(with_noise(pulses(), 5.0))
    assert clean.hnr_db > noisy.hnr_db + 3
    assert clean.cpp_db > noisy.cpp_db + 2


def test_perturbed_periods_raise_jitter_and_lower_hnr():
    steady, shaky = measured(pulses(jitter=0.0)), measured(pulses(jitter=0.03))
    assert shaky.jitter_percent > 3 * steady.jitter_percent
    assert shaky.jitter_percent > 1.0 > steady.jitter_percent
    assert shaky.hnr_db < steady.hnr_db


def test_a_tilted_spectrum_moves_tilt_and_centroid():
    dark, flat, bright = (measured(tilted(pulses(), d)) for d in (-4.0, 0.0, 4.0))
    assert dark.spectral_tilt_db_oct < flat.spectral_tilt_db_oct < bright.spectral_tilt_db_oct
    # the planted slope is recovered (up to the source's own slope), octave for octave
    assert bright.spectral_tilt_db_oct - dark.spectral_tilt_db_oct == pytest.approx(8.0, abs=1.0)
    assert dark.spectral_centroid_hz < flat.spectral_centroid_hz < bright.spectral_centroid_hz


def test_a_wider_melody_and_louder_swings_raise_the_variability_measures():
    t = np.arange(int(2.0 * SR)) / SR

    def glide(semitones, swing_db):
        f0 = 150 * 2 ** (semitones / 12 * np.sin(2 * np.pi * 1.0 * t))
        level = 10 ** (swing_db / 20 * np.sin(2 * np.pi * 3.0 * t))
        return 0.2 * level * np.sign(np.sin(2 * np.pi * np.cumsum(f0) / SR))

    flat, wide = measured(glide(1, 1)), measured(glide(6, 8))
    assert wide.f0_sd_semitones > flat.f0_sd_semitones + 2
    assert wide.intensity_sd_db > flat.intensity_sd_db + 3


def test_the_measures_agree_across_sample_rates():
    import soxr

    x24 = engine.render(TEXT["en"], engine.settings_for("A calm man.", "en", "v1"), 24000).astype(np.float64)
    a, b = measured(x24, 24000), measured(soxr.resample(x24, 24000, 48000), sr=48000)
    assert a.spectral_centroid_hz == pytest.approx(b.spectral_centroid_hz, rel=0.05)
    assert a.spectral_tilt_db_oct == pytest.approx(b.spectral_tilt_db_oct, abs=0.5)
    assert a.cpp_db == pytest.approx(b.cpp_db, abs=1.0)


@pytest.mark.parametrize("x", [np.zeros(SR), 0.3 * np.sin(np.arange(100))], ids=["silence", "6 ms"])
def test_silence_or_a_tiny_clip_gives_nan_with_a_reason_never_an_error(x):
    m = measured(x, predicted_quality=True)
    for name in ("hnr_db", "cpp_db", "jitter_percent", "spectral_centroid_hz", "f0_sd_semitones", "dnsmos_ovrl"):
        assert math.isnan(getattr(m, name)), name
    assert m.measures_version == VERSION
    assert "dnsmos" in m.problems  # why the quality model gave nothing


def test_old_measurements_read_back_with_nan_and_version_zero():
    old = {"median_f0_hz": 120.0, "rate_unit": "letters_per_s"}  # a take measured before version 2
    m = Measurements.from_dict(old)
    assert m.median_f0_hz == 120.0 and math.isnan(m.hnr_db) and m.measures_version == 0 and m.problems is None


def test_dnsmos_hears_background_noise():
    x = engine.render(TEXT["en"], engine.settings_for("A calm man.", "en", "v1"), 24000).astype(np.float64)
    clean, noisy = (
        measured(x, 24000, predicted_quality=True),
        measured(with_noise(x, 5.0), 24000, predicted_quality=True),
    )
    for m in (clean, noisy):
        assert 1.0 <= m.dnsmos_ovrl <= 5.0 and 1.0 <= m.dnsmos_sig <= 5.0
    assert clean.dnsmos_bak > noisy.dnsmos_bak + 0.5
    assert clean.dnsmos_ovrl > noisy.dnsmos_ovrl
    assert clean.problems is None


QUALITY_PREVIEWS = [  # (prompt, language, text): 2.8-8.5 s of speech, both languages, three timbres
    ("A calm middle-aged man with a deep voice.", "en", TEXT["en"]),
    ("A young woman with a bright, cheerful voice.", "en", "The quick brown fox jumps over the lazy dog."),
    ("An elderly man, slow and hoarse, breathy", "en", TEXT["en"]),
    ("沉稳的中年男声", "zh", TEXT["zh"]),
    ("年轻女声，明亮欢快", "zh", "这本书讲述了一个小村庄里发生的故事。"),
    ("A young woman with a bright, cheerful voice.", "en", "Please bring an umbrella tomorrow afternoon."),
]


def test_dnsmos_on_the_clips_own_length_agrees_with_the_looped_reference_within_its_tolerance():
    from cosyvoice_lab.analysis import quality, voice

    diffs = []
    for prompt, language, text in QUALITY_PREVIEWS:
        x = engine.render(text, engine.settings_for(prompt, language, "v1"), 24000).astype(np.float64)
        y = voice.resampled(x, 24000)
        assert len(y) < quality.INPUT_S * quality.RATE  # the short-clip path, not the reference's windows
        new, old = quality.dnsmos(y), quality.dnsmos_reference(y)
        for name in quality.COLUMNS:
            assert abs(new[name] - old[name]) <= quality.TOLERANCE[name], (prompt, name, new, old)
        diffs.append([new[name] - old[name] for name in quality.COLUMNS])
    means = np.mean(diffs, axis=0)
    for name, mean in zip(quality.COLUMNS, means, strict=True):
        assert abs(mean) <= quality.MEAN_TOLERANCE[name], (name, means)


def test_dnsmos_of_a_long_clip_is_the_reference_itself_and_the_freed_graph_matches_it_on_a_full_window():
    from cosyvoice_lab.analysis import quality, voice

    x = engine.render(TEXT["en"] + " " + TEXT["en"], engine.settings_for("A calm man.", "en", "v1"), 24000)
    y = voice.resampled(x.astype(np.float64), 24000)
    assert len(y) >= quality.INPUT_S * quality.RATE
    assert quality.dnsmos(y) == quality.dnsmos_reference(y)
    window = np.clip(y[: int(quality.INPUT_S * quality.RATE)], -1, 1).astype(np.float32)[None]
    freed, published = quality.session(), quality.session(free=False)
    assert np.allclose(freed.run(None, {"input_1": window})[0], published.run(None, {"input_1": window})[0], atol=1e-5)


def test_one_quality_session_serves_every_thread_without_a_memory_arena():
    from concurrent.futures import ThreadPoolExecutor

    from cosyvoice_lab.analysis import quality

    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(lambda _: quality.session(), range(8)))
    assert all(s is sessions[0] for s in sessions)
    assert not sessions[0].get_session_options().enable_cpu_mem_arena
    assert sessions[0].get_session_options().intra_op_num_threads == quality.OPTIONS.intra_op_threads


# --- the simulator's opposite words ----------------------------------------------------------

PAIRS = {  # word pair -> (en prompt, zh prompt) for each side, and the measures that must move
    "breathy vs clear": (("A man with a breathy voice.", "气声的男声"), ("A man with a clear voice.", "清澈的男声")),
    "husky vs clear": (("A man with a husky voice.", "沙哑的男声"), ("A man with a clear voice.", "清澈的男声")),
    "bright vs warm": (("A man with a bright voice.", "明亮的男声"), ("A man with a warm voice.", "温暖的男声")),
    "lively vs calm": (("A lively man.", "活泼的男声"), ("A calm man.", "沉稳的男声")),
}
RENDERED = {"breathy", "husky", "bright", "warm", "lively", "calm"}  # words offline/timbre.py renders
EXPECT = {  # measure, sign of (first - second)
    "breathy vs clear": (("hnr_db", -1), ("cpp_db", -1)),
    "husky vs clear": (("jitter_percent", +1), ("shimmer_percent", +1), ("hnr_db", -1)),
    "bright vs warm": (("spectral_centroid_hz", +1), ("spectral_tilt_db_oct", +1)),
    "lively vs calm": (("f0_sd_semitones", +1),),
}


def preview(prompt: str, language: str, seed: str) -> Measurements:
    x = engine.render(TEXT[language], engine.settings_for(prompt, language, seed), 24000)
    return measure(x, TEXT[language], sample_rate=24000, predicted_quality=False)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("pair", list(PAIRS))
def test_simulator_previews_of_opposite_words_differ_in_the_expected_direction(pair, language):
    index = 0 if language == "en" else 1
    first, second = (PAIRS[pair][side][index] for side in (0, 1))
    for seed in ("voice-a", "voice-b"):  # two voices of each prompt, each the same draw on both sides
        a, b = preview(first, language, seed), preview(second, language, seed)
        for name, sign in EXPECT[pair]:
            va, vb = getattr(a, name), getattr(b, name)
            assert sign * (va - vb) > 0, f"{pair} ({language}, {seed}): {name} {va:.2f} vs {vb:.2f}"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_adherence_judges_timbre_and_energy_words_on_simulator_takes(language):
    index = 0 if language == "en" else 1
    prompts = [sides[i][index] for sides in PAIRS.values() for i in (0, 1)]
    prompts = list(dict.fromkeys(prompts))  # "clear" appears twice
    group = [(p, preview(p, language, "voice-a")) for p in prompts]
    judged = {(j.voice_prompt, j.dimension): j for j in adherence(group)}
    for prompt in prompts:
        for claim in read_claims(prompt).values():
            if (claim.dimension, claim.value) in CORRELATES:
                j = judged[(prompt, claim.dimension)]
                assert j.verdict != NOT_MEASURABLE, (prompt, j.reason)
                if claim.value in RENDERED:  # the simulator does not render "clear": judged, either way
                    assert j.verdict == CONSISTENT, (prompt, j.reason)


# --- the lexicon and the table ----------------------------------------------------------------


def test_every_correlate_names_a_lexicon_claim_and_a_measure_with_a_margin():
    for (dimension, value), found in CORRELATES.items():
        assert value in LEXICON[dimension], (dimension, value)
        assert found.reason and found.measures
        for column, direction in found.measures:
            assert column in MARGINS and direction in (-1, 1)
            assert column in Measurements.__dataclass_fields__


NOTEBOOK_02_PROMPTS = [
    PromptSpec.preset("audiobook_narrator").render(),
    "A bright, high-pitched, cheerful voice for a cartoon character, fast and playful",
    "A friendly young man with a clear voice, relaxed and conversational, for a podcast",
]


def test_at_most_a_third_of_notebook_02s_claims_are_not_measurable():
    import json
    from pathlib import Path

    notebook = Path(__file__).parent.parent / "notebooks" / "02_compare_plus_vs_flash.ipynb"
    source = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    assert all(p in source for p in NOTEBOOK_02_PROMPTS[1:]), "the notebook's prompts changed: update this test"
    # two voices of each prompt, as the notebook's repeats give, measured and judged together
    group = [(p, preview(p, "en", seed)) for p in NOTEBOOK_02_PROMPTS for seed in ("r0", "r1")]
    judged = adherence(group)
    unmeasurable = [j for j in judged if j.verdict == NOT_MEASURABLE]
    assert len(unmeasurable) <= len(judged) / 3, [(j.dimension, j.claim, j.reason) for j in unmeasurable]


def test_a_sound_measured_again_is_not_analysed_again_and_gives_the_same_figures(monkeypatch, tmp_path):
    """What the measuring stage found for a preview is what measuring it again finds, at once: the
    figures are remembered by the sound's samples, not by the object that holds them or its text."""
    from cosyvoice_lab.analysis import measures, quality
    from cosyvoice_lab.audio import Audio

    x = engine.render(TEXT["en"], engine.settings_for("A bright young woman.", "en", "v1"), 24000)
    x = x.astype(np.float64) * (1 + 1e-9 * np.random.default_rng().random())  # a sound no other test measured
    analysed = {"pitch": 0, "dnsmos": 0}

    def counting(name, real):
        def counted(*args, **kwargs):
            analysed[name] += 1
            return real(*args, **kwargs)

        return counted

    monkeypatch.setattr(measures, "pitch_track", counting("pitch", measures.pitch_track))
    monkeypatch.setattr(quality, "dnsmos", counting("dnsmos", quality.dnsmos))

    first = measure(x, TEXT["en"], sample_rate=24000)
    again = measure(x.copy(), TEXT["en"], sample_rate=24000)  # another array, the same samples
    assert analysed == {"pitch": 1, "dnsmos": 1}
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731 -- NaN equals NaN here
    assert all(same(a, b) for a, b in zip(first.to_dict().values(), again.to_dict().values(), strict=True))
    # a preview as the log keeps it: a file read back is the same sound as the one written
    Audio.from_numpy(x, 24000).save(tmp_path / "take.wav")
    stored = [measure(Audio.load(tmp_path / "take.wav"), TEXT["en"]) for _ in range(2)]
    assert analysed == {"pitch": 2, "dnsmos": 2}
    assert stored[0].median_f0_hz == stored[1].median_f0_hz and stored[0].dnsmos_ovrl == stored[1].dnsmos_ovrl

    # the speaking rate follows the text given, not the first call's
    shorter = measure(x, TEXT["en"][: len(TEXT["en"]) // 2], sample_rate=24000)
    assert shorter.speaking_rate < first.speaking_rate and shorter.median_f0_hz == first.median_f0_hz
    # without predicted quality: the same figures, the quality fields NaN; in two steps, the same again
    plain = measure(x, TEXT["en"], sample_rate=24000, predicted_quality=False)
    assert math.isnan(plain.dnsmos_ovrl) and plain.median_f0_hz == first.median_f0_hz
    assert measures.predicted_quality(x, sample_rate=24000)["dnsmos_ovrl"] == first.dnsmos_ovrl
    assert analysed == {"pitch": 2, "dnsmos": 2}

    # one sample changed is another sound: analysed afresh
    changed = x.copy()
    changed[len(x) // 2] += 0.01
    measure(changed, TEXT["en"], sample_rate=24000)
    assert analysed == {"pitch": 3, "dnsmos": 3}


def test_what_is_remembered_of_sounds_is_bounded_and_the_least_recently_used_goes_first():
    from cosyvoice_lab.audio import Recent

    made = []
    recent = Recent(2)
    get = lambda key: recent.get_or_make(key, lambda: made.append(key) or f"figures of {key}")  # noqa: E731
    assert [get("a"), get("b"), get("a")] == ["figures of a", "figures of b", "figures of a"]
    get("c")  # a third sound: "b", used least recently, is forgotten; "a" stays
    assert recent.get("b") is None and recent.get("a") == "figures of a"
    get("b")
    assert made == ["a", "b", "c", "b"]
