"""analysis (measure, embeddings, variation), checks (adherence) and plots, on synthetic signals
and, when the offline engine is there, on real simulator speech."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cosyvoice_lab.analysis as analysis
from cosyvoice_lab.analysis import Measurements, measure, measures, pairwise, speaker_embedding, variability, variation
from cosyvoice_lab.analysis import checks as checks
from cosyvoice_lab.analysis.checks import CONSISTENT, INCONSISTENT, NOT_MEASURABLE, adherence, adherence_table
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.prompts.spec import PromptSpec

SR = 24000


def sine(freq=200.0, seconds=2.0, amp=0.3, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def bursts(n=6, on=0.2, off=0.1, lead=0.5, freq=150.0, stretch=1.0, sr=SR):
    """Speech-like tone bursts between silences; ``stretch`` slows everything down."""
    silence = lambda s: np.zeros(int(s * stretch * sr))  # noqa: E731
    parts = [silence(lead)]
    for _ in range(n):
        parts += [sine(freq, on * stretch, 0.3, sr), silence(off)]
    return np.concatenate([*parts[:-1], silence(lead)])


def voice(f0=120.0, formants=(700, 1200, 2600), seconds=1.5, sr=SR, amp=0.3):
    """A buzzy source through resonances: a crude vowel whose spectrum depends on formants."""
    from scipy.signal import lfilter

    t = np.arange(int(seconds * sr)) / sr
    x = np.sign(np.sin(2 * np.pi * f0 * t)) * 0.5
    for f in formants:
        r, theta = 0.97, 2 * np.pi * f / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    return amp * x / np.max(np.abs(x))


def m(**values) -> dict:
    """A measurement row with only the values a test cares about."""
    base = dict.fromkeys(Measurements.__dataclass_fields__, math.nan)
    base["rate_unit"] = values.pop("rate_unit", "letters_per_s")
    return {**base, **values}


def verdicts(judgements, dimension):
    return [j.verdict for j in judgements if j.dimension == dimension]


# --- measure: synthetic signals ------------------------------------------------------------------


def test_sine_has_its_frequency_as_median_f0():
    r = measure(Audio.from_numpy(sine(200.0, 2.0), SR))
    assert r.median_f0_hz == pytest.approx(200.0, rel=0.01)
    assert r.f0_spread_semitones == pytest.approx(0.0, abs=0.2)
    assert r.voiced_fraction > 0.9
    assert r.silence_ratio == pytest.approx(0.0, abs=0.02)
    assert r.duration_s == pytest.approx(2.0)
    assert r.clipping_ratio == 0.0
    assert r.peak_dbfs == pytest.approx(20 * math.log10(0.3), abs=0.05)


def test_gliding_tone_has_a_pitch_spread():
    t = np.arange(2 * SR) / SR
    glide = 0.3 * np.sin(2 * np.pi * (100 * t + 25 * t * t))  # 100 -> 200 Hz: one octave
    r = measure(glide, sample_rate=SR)
    assert 8 < r.f0_spread_semitones < 12
    assert 100 < r.f0_p10_hz < r.median_f0_hz < r.f0_p90_hz < 200


def test_silence_gives_nan_not_an_exception():
    r = measure(Audio.from_numpy(np.zeros(SR), SR), "hello")
    assert math.isnan(r.median_f0_hz) and math.isnan(r.f0_spread_semitones)
    assert math.isnan(r.loudness_lufs) and math.isnan(r.peak_dbfs)
    assert r.silence_ratio == 1.0 and r.speech_duration_s == 0.0
    assert math.isnan(r.speaking_rate)


@pytest.mark.parametrize("n", [0, 10, 1000])
def test_tiny_clips_do_not_raise(n):
    r = measure(sine(200, 1.0)[:n], sample_rate=SR)
    assert math.isnan(r.loudness_lufs)
    assert r.duration_s == pytest.approx(n / SR)


def test_clip_shorter_than_the_loudness_block_has_pitch_but_no_lufs():
    r = measure(sine(200, 0.3), sample_rate=SR)
    assert math.isnan(r.loudness_lufs)
    assert r.median_f0_hz == pytest.approx(200, rel=0.02)


def test_clipped_sine_is_flagged():
    assert measure(np.clip(sine(200, 1.0, amp=1.5), -1, 1), sample_rate=SR).clipping_ratio > 0.3
    assert measure(sine(200, 1.0, amp=0.9), sample_rate=SR).clipping_ratio == 0.0


def test_a_louder_copy_measures_louder_by_the_gain():
    quiet = measure(sine(300, 2.0, amp=0.1), sample_rate=SR)
    loud = measure(sine(300, 2.0, amp=0.2), sample_rate=SR)
    gain = 20 * math.log10(2)
    assert loud.loudness_lufs - quiet.loudness_lufs == pytest.approx(gain, abs=0.05)
    assert loud.peak_dbfs - quiet.peak_dbfs == pytest.approx(gain, abs=0.01)
    assert loud.speech_duration_s == quiet.speech_duration_s  # trimming is relative to the peak


def test_leading_and_trailing_silence_are_trimmed_from_speech_time():
    x = bursts()  # 6 x 0.2 s on, 5 x 0.1 s off = 1.7 s between 0.5 s silences
    r = measure(x, "你好世界再见", sample_rate=SR)
    assert r.duration_s == pytest.approx(2.7, abs=0.01)
    assert r.speech_duration_s == pytest.approx(1.7, abs=0.04)
    assert r.silence_ratio == pytest.approx(1 - 1.2 / 2.7, abs=0.03)
    assert r.rate_unit == "chars_per_s"
    assert r.speaking_rate == pytest.approx(6 / 1.7, rel=0.03)


def test_time_stretching_changes_the_speaking_rate():
    text = "hello there"
    normal = measure(bursts(), text, "en", sample_rate=SR)
    slow = measure(bursts(stretch=2.0), text, "en", sample_rate=SR)
    assert normal.rate_unit == slow.rate_unit == "letters_per_s"
    assert slow.speaking_rate == pytest.approx(normal.speaking_rate / 2, rel=0.05)
    assert slow.median_f0_hz == pytest.approx(normal.median_f0_hz, rel=0.01)


def test_text_units_count_what_is_spoken():
    assert analysis.text_units("你好，world！") == (2, "chars_per_s")
    assert analysis.text_units("Hello, world 2!") == (11, "letters_per_s")
    assert analysis.text_units("Hello", "zh") == (0, "chars_per_s")
    assert analysis.text_units(None) == (0, None)


def test_measurements_round_trip_through_dict():
    r = measure(sine(), "hi", sample_rate=SR)
    again = Measurements.from_dict({**r.to_dict(), "extra": 1})
    assert again.to_dict().keys() == r.to_dict().keys()
    assert all(
        (a == b) or (a != a and b != b) for a, b in zip(again.to_dict().values(), r.to_dict().values(), strict=False)
    )
    assert math.isnan(Measurements.from_dict({}).median_f0_hz)


def test_bare_arrays_need_a_sample_rate():
    with pytest.raises(ValueError, match="sample_rate"):
        measure(np.zeros(100))


def test_int16_arrays_are_scaled_to_full_scale():
    x = sine(200, 1.0, amp=0.5)
    as_int = measure((x * 32768).astype(np.int16), sample_rate=SR)
    assert as_int.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert as_int.loudness_lufs == pytest.approx(measure(x, sample_rate=SR).loudness_lufs, abs=0.01)


def test_stereo_arrays_are_mixed_down():
    x = sine()
    assert measure(np.stack([x, x], axis=1), sample_rate=SR).median_f0_hz == pytest.approx(200, rel=0.01)


# --- adherence ----------------------------------------------------------------------------------------


def test_deep_prompt_with_the_highest_voice_is_inconsistent():
    group = [
        ("A man with a deep voice.", m(median_f0_hz=160.0)),
        ("A speaker.", m(median_f0_hz=110.0)),
        ("A calm speaker.", m(median_f0_hz=120.0)),
    ]
    pitch = [j for j in adherence(group) if j.dimension == "pitch"]
    assert [j.verdict for j in pitch] == [INCONSISTENT]
    assert "above" in pitch[0].reason and "rank 3 of 3" in pitch[0].reason
    assert pitch[0].reference == pytest.approx(115.0)


def test_deep_prompt_with_the_lowest_voice_is_consistent():
    group = [
        ("A man with a deep voice.", m(median_f0_hz=85.0)),
        ("A speaker.", m(median_f0_hz=110.0)),
        ("A calm speaker.", m(median_f0_hz=120.0)),
    ]
    assert verdicts(adherence(group), "pitch") == [CONSISTENT]


def test_a_claim_barely_borne_out_is_inconsistent():
    group = [
        ("A high-pitched voice.", m(median_f0_hz=202.0)),
        ("A speaker.", m(median_f0_hz=200.0)),
        ("A speaker.", m(median_f0_hz=199.0)),
    ]
    judgement = next(j for j in adherence(group) if j.dimension == "pitch")
    assert judgement.verdict == INCONSISTENT and "at least 1 semitones above" in judgement.reason


def test_pitch_is_compared_within_gender():
    group = [
        ("A woman with a deep voice.", m(median_f0_hz=175.0)),
        ("A man.", m(median_f0_hz=110.0)),
        ("A man.", m(median_f0_hz=115.0)),
        ("A woman.", m(median_f0_hz=220.0)),
    ]
    judgement = next(j for j in adherence(group) if j.dimension == "pitch")
    assert judgement.verdict == CONSISTENT and judgement.reference == 220.0


def test_relative_claims_need_a_group():
    group = [("A deep voice.", m(median_f0_hz=90.0)), ("A speaker.", m(median_f0_hz=120.0))]
    judgement = adherence(group)[0]
    assert judgement.verdict == NOT_MEASURABLE and "at least 3" in judgement.reason


def test_repeats_of_one_relative_claim_have_nothing_to_compare_with():
    group = [("A deep voice.", m(median_f0_hz=f)) for f in (90.0, 95.0, 100.0)]
    assert set(verdicts(adherence(group), "pitch")) == {NOT_MEASURABLE}


def test_pace_and_volume_are_judged_on_rate_and_loudness():
    group = [
        ("They speak slowly.", m(speaking_rate=10.0, loudness_lufs=-20.0)),
        ("They speak fast.", m(speaking_rate=16.0, loudness_lufs=-20.0)),
        ("A soft, quiet voice.", m(speaking_rate=13.0, loudness_lufs=-28.0)),
        ("A loud voice.", m(speaking_rate=13.0, loudness_lufs=-26.0)),
    ]
    result = adherence(group)
    assert verdicts(result, "pace") == [CONSISTENT, CONSISTENT]
    assert verdicts(result, "volume") == [CONSISTENT, INCONSISTENT]


def test_speaking_rates_in_different_units_are_not_compared():
    group = [
        ("They speak slowly.", m(speaking_rate=3.0, rate_unit="chars_per_s")),
        ("A speaker.", m(speaking_rate=13.0)),
        ("A speaker.", m(speaking_rate=12.0)),
    ]
    assert verdicts(adherence(group), "pace") == [NOT_MEASURABLE]


@pytest.mark.parametrize(
    "f0, verdict", [(100.0, CONSISTENT), (230.0, INCONSISTENT), (165.0, NOT_MEASURABLE), (math.nan, NOT_MEASURABLE)]
)
def test_gender_is_judged_on_absolute_f0_with_an_ambiguous_band(f0, verdict):
    assert verdicts(adherence([("A man.", m(median_f0_hz=f0))]), "gender") == [verdict]
    mirrored = {CONSISTENT: INCONSISTENT, INCONSISTENT: CONSISTENT}.get(verdict, verdict)
    assert verdicts(adherence([("一位女性。", m(median_f0_hz=f0))]), "gender") == [mirrored]


@pytest.mark.parametrize("f0, verdict", [(320.0, CONSISTENT), (120.0, INCONSISTENT), (225.0, NOT_MEASURABLE)])
def test_child_is_judged_on_very_high_f0_only(f0, verdict):
    result = adherence([("A little boy.", m(median_f0_hz=f0))])
    assert verdicts(result, "age") == [verdict]
    assert verdicts(result, "gender") == [NOT_MEASURABLE]  # a child's pitch does not tell


def test_what_cannot_be_measured_says_so():
    text = PromptSpec.preset("game_villain").render()
    result = {j.dimension: j for j in adherence([(text, m(median_f0_hz=100.0))])}
    for dimension in ("timbre", "emotion", "articulation", "scenario", "energy"):
        if dimension in result:
            assert result[dimension].verdict == NOT_MEASURABLE
    # menacing and dramatic have no acoustic correlate: said so; husky has one, but one take
    # without voice-quality measures cannot be judged: also said so
    assert "no established acoustic correlate" in result["emotion"].reason
    assert "offline" in result["articulation"].reason
    assert "no jitter in this take" in result["timbre"].reason
    assert result["age"].verdict == NOT_MEASURABLE  # middle-aged: an adult age
    assert {"timbre", "emotion", "scenario"} <= set(result)


def test_adherence_accepts_a_dataframe_and_prompts_given_separately():
    frame = pd.DataFrame(
        [
            {"voice_prompt": "A deep voice.", **m(median_f0_hz=90.0)},
            {"voice_prompt": "A speaker.", **m(median_f0_hz=120.0)},
            {"voice_prompt": "A speaker.", **m(median_f0_hz=125.0)},
        ],
        index=["t1", "t2", "t3"],
    )
    assert adherence(frame)[0].take == "t1"
    records = [Measurements.from_dict(m(median_f0_hz=f)) for f in (90.0, 120.0, 125.0)]
    assert adherence(records, prompts=["A deep voice.", "A speaker.", "A speaker."])[0].verdict == CONSISTENT
    table = adherence_table(frame)
    assert list(table.columns[:6]) == ["take", "voice_prompt", "dimension", "claim", "words", "verdict"]
    assert table.loc[0, "verdict"] == CONSISTENT


def test_adherence_input_errors():
    with pytest.raises(ValueError, match="2 prompts for 1 takes"):
        adherence([m()], prompts=["a", "b"])
    with pytest.raises(ValueError, match="no voice prompt"):
        adherence([m()])


def test_analysis_package_re_exports_the_notebook_names():
    import cosyvoice_lab.analysis as package

    assert package.adherence is checks.adherence and package.measure is measures.measure
    assert set(package.__all__) >= {"adherence_table", "measure", "plot_take", "speaker_embedding", "variation"}
    with pytest.raises(AttributeError):
        package.no_such_thing  # noqa: B018


# --- embeddings and variation -----------------------------------------------------------------------


def test_embedding_ignores_level_and_tells_spectra_apart():
    a = speaker_embedding(voice(formants=(700, 1200, 2600)), sample_rate=SR)
    a_quiet = speaker_embedding(0.2 * voice(formants=(700, 1200, 2600)), sample_rate=SR)
    b = speaker_embedding(voice(formants=(300, 2300, 3000)), sample_rate=SR)
    assert a.shape == (2 * (variability.N_MFCC - 1),)
    assert variability.spectral_distance(a, a_quiet) < 0.1
    assert variability.spectral_distance(a, b) > 5 * variability.spectral_distance(a, a_quiet) + 1


def test_embedding_of_silence_is_nan_and_compares_as_nan():
    e = speaker_embedding(np.zeros(SR), sample_rate=SR)
    assert np.isnan(e).all()
    assert math.isnan(variability.spectral_distance(e, e))


def test_embeddings_compare_across_sample_rates():
    from scipy.signal import resample_poly

    x = voice(formants=(700, 1200, 2600))
    at_16k = speaker_embedding(resample_poly(x, 2, 3), sample_rate=16000)
    other = speaker_embedding(voice(formants=(300, 2300, 3000)), sample_rate=SR)
    own = speaker_embedding(x, sample_rate=SR)
    assert variability.spectral_distance(own, at_16k) < variability.spectral_distance(own, other) / 2


def test_pairwise_has_one_row_per_pair():
    group = [
        ("A", m(median_f0_hz=100.0, loudness_lufs=-20.0)),
        ("A", m(median_f0_hz=200.0, loudness_lufs=-20.0)),
        ("B", m(median_f0_hz=100.0, loudness_lufs=-23.0)),
    ]
    table = pairwise(group)
    assert len(table) == 3
    first = table.iloc[0]
    assert bool(first.same_prompt) and first.pitch_semitones == pytest.approx(12.0)
    assert first.distance == pytest.approx(math.sqrt(((12 / 2) ** 2 + 0) / 2))
    assert math.isnan(first.spectral_db)  # no embeddings given


def test_variation_scores_repeats_of_each_prompt():
    x, y = voice(120, (700, 1200, 2600)), voice(180, (300, 2300, 3000))
    takes = [("steady", x), ("steady", x), ("wild", x), ("wild", y), ("single", y)]
    group = [(p, measure(a, "hello", sample_rate=SR)) for p, a in takes]
    embeddings = [speaker_embedding(a, sample_rate=SR) for _, a in takes]
    table = variation(group, embeddings=embeddings).set_index("voice_prompt")
    assert table.loc["steady", "variability"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc["wild", "variability"] > 1.0
    assert table.loc["wild", "pitch_sd_semitones"] > 4
    assert math.isnan(table.loc["single", "variability"]) and table.loc["single", "takes"] == 1


# --- plots ------------------------------------------------------------------------------------------


@pytest.fixture()
def mpl():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def test_plot_take_draws_spectrogram_and_pitch(mpl):
    fig = analysis.plot_take(Audio.from_numpy(sine(200, 1.0), SR), title="a sine")
    assert isinstance(fig, mpl) and len(fig.axes) == 2
    assert isinstance(analysis.plot_take(np.zeros(100), sample_rate=SR), mpl)  # silence, too short


def test_plot_pitch_rate_colours_by_model(mpl):
    frame = pd.DataFrame(
        [
            {**m(median_f0_hz=100 + i, speaking_rate=12 + i), "target_model": model}
            for i, model in enumerate(["plus", "flash", "plus"])
        ]
    )
    fig = analysis.plot_pitch_rate(frame)
    assert isinstance(fig, mpl)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["flash", "plus"]


def test_plot_measure_by_prompt_numbers_chinese_prompts_when_no_font_draws_them(mpl):
    frame = pd.DataFrame(
        [
            {"voice_prompt": p, "median_f0_hz": f}
            for p, f in [("一位男性。", 100), ("一位男性。", 105), ("一位女性。", 220)]
        ]
    )
    fig = analysis.plot_measure_by_prompt(frame)
    assert isinstance(fig, mpl)
    from cosyvoice_lab.analysis import plots as plots

    if plots._cjk_font() is None:
        assert fig.prompt_key == {"P1": "一位男性。", "P2": "一位女性。"}
    with pytest.raises(KeyError, match="no column 'loudness'"):
        analysis.plot_measure_by_prompt(frame, "loudness")


# --- loudness: BS.1770 as pyloudnorm measures it, without scipy.signal -------------------------------


def _clips(sr):
    """Clips a preview may be: speech-like voiced bursts with pauses, noise, tones low and high,
    a quiet stretch inside loud speech (the relative gate's case), just over one block, silence."""
    rng = np.random.default_rng(sr)
    quiet_inside = np.concatenate([voice(seconds=1.0, sr=sr), 0.002 * rng.normal(size=sr), voice(seconds=1.0, sr=sr)])
    gaps = bursts(n=12, sr=sr) != 0
    return {
        "voiced bursts": voice(seconds=len(gaps) / sr + 0.01, sr=sr)[: len(gaps)] * gaps,
        "noise": 0.1 * rng.normal(size=3 * sr),
        "1 kHz tone": sine(1000.0, 2.5, sr=sr),
        "40 Hz tone": sine(40.0, 2.5, sr=sr),
        "speech with a quiet stretch": quiet_inside,
        "just over one block": 0.05 * rng.normal(size=int(0.41 * sr)),
        "silence": np.zeros(sr),
        "below the absolute gate": 1e-5 * rng.normal(size=sr),
    }


@given(st.integers(1, 10**7))
@settings(max_examples=300, deadline=None)
def test_the_loudness_fft_size_is_scipys_fast_length(n):
    from scipy.fft import next_fast_len

    from cosyvoice_lab.analysis.loudness import fast_length

    assert fast_length(n) == next_fast_len(n, real=True)


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 24000, 44100, 48000])
def test_loudness_is_pyloudnorms_to_a_millionth_of_a_lu_at_every_rate(sr):
    import pyloudnorm  # the dev extra's reference

    from cosyvoice_lab.analysis import loudness

    for name, x in _clips(sr).items():
        expected = pyloudnorm.Meter(sr).integrated_loudness(x)
        got = loudness.integrated_loudness(x, sr)
        if math.isinf(expected):
            assert got == expected, name
        else:
            assert got == pytest.approx(expected, abs=1e-6), name
    with pytest.raises(ValueError, match="shorter than one 400 ms block"):
        loudness.integrated_loudness(np.zeros(int(0.3 * sr)), sr)
    with pytest.raises(ValueError, match="one channel"):
        loudness.integrated_loudness(np.zeros((sr, 2)), sr)


def test_measuring_a_preview_loads_neither_scipy_signal_nor_scipy_stats():
    """A CLI design or compare measures every preview: scipy's signal and statistics packages
    would cost it 0.7-1 s of start-up (they came with pyloudnorm's filters)."""
    code = (
        "import sys, numpy as np; from cosyvoice_lab.analysis import measure; from cosyvoice_lab.audio import Audio; "
        "t = np.arange(48000) / 24000; "
        "m = measure(Audio.from_numpy(0.3 * np.sin(2 * np.pi * 180 * t), 24000), 'Hello.'); "
        "assert np.isfinite(m.loudness_lufs), m; "
        "print(sorted(x for x in sys.modules if x in ('scipy.signal', 'scipy.stats', 'pyloudnorm')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- import cost ---------------------------------------------------------------------------------------


def test_analysis_modules_load_heavy_libraries_only_when_used():
    code = (
        "import sys; import cosyvoice_lab; before = set(sys.modules); "
        "import cosyvoice_lab.analysis.measures, cosyvoice_lab.analysis.checks, cosyvoice_lab.analysis.plots; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
        "{'parselmouth', 'pyloudnorm', 'matplotlib', 'scipy', 'pandas', 'ipywidgets'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- real speech from the offline simulator's engine -------------------------------------------------


def _engine():
    try:
        from cosyvoice_lab.offline import engine
    except Exception as exc:
        pytest.skip(f"offline speech engine not importable: {exc}")
    if not (callable(getattr(engine, "render", None)) and callable(getattr(engine, "settings_for", None))):
        pytest.skip("cosyvoice_lab.offline.engine has no render()/settings_for() to speak with")
    return engine


PREVIEW = {
    "en": "Good evening, and welcome to the late news. Here are tonight's headlines.",
    "zh": "各位听众朋友，大家好，欢迎收听晚间新闻。",
}
PITCH_SPECS = {
    "deep male": PromptSpec(gender="male", pitch="low"),
    "neutral": PromptSpec(),
    "high young female": PromptSpec(gender="female", age="young", pitch="high"),
}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_simulator_speech_follows_pitch_words(language):
    engine = _engine()
    group, f0 = [], {}
    for name, spec in PITCH_SPECS.items():
        prompt = spec.render(language)
        values = []
        for seed in range(3):
            settings = engine.settings_for(prompt, language, f"cosyvoice-v3.5-plus-vd-test-{name}-{seed}")
            samples = engine.render(PREVIEW[language], settings, SR)
            result = measure(samples, PREVIEW[language], sample_rate=SR, predicted_quality=False)  # pitch, gender
            values.append(result.median_f0_hz)
            group.append((prompt, result))
        f0[name] = values
    assert max(f0["deep male"]) < min(f0["neutral"])
    assert max(f0["neutral"]) < min(f0["high young female"])
    judged = [j for j in adherence(group) if j.dimension in ("pitch", "gender")]
    assert judged and all(j.verdict == CONSISTENT for j in judged), [j.reason for j in judged]


def test_log_frames_work_as_they_come(tmp_path):
    """The log names measurements m_<name> and the model column 'target_model'; analysis takes it as is."""
    from cosyvoice_lab import Lab
    from cosyvoice_lab.analysis.checks import adherence_table
    from cosyvoice_lab.analysis.plots import plot_pitch_rate

    lab = Lab(tmp_path / "lab", backend="offline", progress=False)
    lab.compare(
        ["a deep slow male voice", "a high-pitched fast young female voice", "a neutral voice"],
        target_models=["cosyvoice-v3.5-flash"],
        repeats=1,
        experiment="frames",
    ).measured()  # the compare returned with its designs in; its measures are written now
    df = lab.log.df
    table = adherence_table(df)
    assert len(table)
    # the m_ columns were read: relative pitch claims got a verdict (which one depends on the
    # random variation of the neutral voice), and gender, judged on absolute F0, is right
    pitch = set(table.loc[table["dimension"] == "pitch", "verdict"].astype(str))
    assert pitch and pitch <= {CONSISTENT, INCONSISTENT}
    assert set(table.loc[table["dimension"] == "gender", "verdict"].astype(str)) == {CONSISTENT}
    fig = plot_pitch_rate(df)
    assert fig.axes[0].get_legend() is not None
    assert len(variation(df))
