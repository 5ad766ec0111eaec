"""The simulator's speech engine: prompt words -> espeak-ng settings -> real speech."""

from __future__ import annotations

import io
import threading
import uuid

import numpy as np
import parselmouth
import pytest
import soundfile as sf

from cosyvoice_lab.offline import engine
from cosyvoice_lab.offline.engine import VoiceSettings, settings_for

EN_TEXT = "Hello everyone, and welcome to the evening news."
ZH_TEXT = "各位听众朋友，大家好，欢迎收听晚间新闻。"
DEEP = {"en": "A deep male voice, low and resonant.", "zh": "沉稳的中年男性，音色低沉浑厚"}
HIGH = {"en": "A high-pitched young female voice, bright and lively.", "zh": "年轻女性，声音清亮高亢，活泼"}


def median_f0(samples: np.ndarray, rate: int) -> float:
    f0 = parselmouth.Sound(samples.astype(np.float64), rate).to_pitch().selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def seeds(n: int) -> list[str]:
    return [f"cosyvoice-v3.5-plus-vd-t-{uuid.UUID(int=i).hex}" for i in range(n)]


# --- prompt words -> settings --------------------------------------------------------------


@pytest.mark.parametrize("lang, voice", [("en", "en-us"), ("zh", "cmn")])
def test_language_picks_the_espeak_voice(lang, voice):
    assert settings_for("a calm voice", lang, "x").voice.startswith(voice + "+")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_gender_picks_the_variant(lang):
    for seed in seeds(10):
        assert settings_for(DEEP[lang], lang, seed).voice.split("+")[1] in engine.MALE_VARIANTS
        assert settings_for(HIGH[lang], lang, seed).voice.split("+")[1] in engine.FEMALE_VARIANTS


def _mean(prompt: str, attr: str, lang: str = "en") -> float:
    return float(np.mean([getattr(settings_for(prompt, lang, s), attr) for s in seeds(12)]))


@pytest.mark.parametrize(
    "prompt_a, prompt_b, attr",
    [
        ("a deep voice", "a high-pitched voice", "pitch"),
        ("an adult man", "a child", "pitch"),
        ("a man speaking slowly", "a man speaking fast", "rate"),
        ("an elderly man", "a young man", "rate"),
        ("a calm man", "a lively man", "range"),
        ("an elderly woman", "a young woman", "range"),
        ("a soft voice", "a loud voice", "volume"),
        ("语速缓慢的男声", "语速快的男声", "rate"),
        ("低沉的男声", "高亢的男声", "pitch"),
    ],
)
def test_prompt_words_move_the_settings(prompt_a, prompt_b, attr):
    assert _mean(prompt_a, attr) < _mean(prompt_b, attr)


def test_elderly_is_slightly_lower_than_middle_aged():
    assert _mean("an elderly man", "pitch") < _mean("a middle-aged man", "pitch")


def test_identical_prompts_give_different_but_reproducible_voices():
    made = {settings_for(DEEP["en"], "en", s) for s in seeds(10)}
    assert len(made) > 5
    assert settings_for(DEEP["en"], "en", "v1") == settings_for(DEEP["en"], "en", "v1")


def test_settings_round_trip_and_adjust():
    s = settings_for(HIGH["zh"], "zh", "v")
    assert VoiceSettings.from_dict(s.to_dict()) == s
    assert s.adjusted() == s
    fast = s.adjusted(rate=2.0, pitch=2.0, volume=100)
    assert fast.rate > s.rate and fast.pitch > s.pitch and fast.volume == min(200, 2 * s.volume)
    slow = s.adjusted(rate=0.5, pitch=0.5, volume=0)
    assert slow.rate < s.rate and slow.pitch < s.pitch and slow.volume == 0


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang, text, lo, hi", [("en", EN_TEXT, 1.5, 6.0), ("zh", ZH_TEXT, 2.0, 8.0)])
@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_render_is_speech_of_plausible_length(lang, text, lo, hi, rate):
    x = engine.render(text, settings_for("a calm voice", lang, "v"), rate)
    assert x.dtype == np.float32 and lo < len(x) / rate < hi
    assert 0.05 < np.abs(x).max() <= 1.0
    # speech has pauses and sounds: the loudness envelope varies a lot
    frames = np.abs(x[: len(x) // 480 * 480]).reshape(-1, 480).mean(axis=1)
    assert frames.max() > 10 * np.percentile(frames, 10)


@pytest.mark.parametrize("lang, text", [("en", EN_TEXT), ("zh", ZH_TEXT)])
def test_deep_male_is_clearly_lower_than_high_young_female(lang, text):
    deep = [median_f0(engine.render(text, settings_for(DEEP[lang], lang, s)), engine.ENGINE_RATE) for s in seeds(4)]
    high = [median_f0(engine.render(text, settings_for(HIGH[lang], lang, s)), engine.ENGINE_RATE) for s in seeds(4)]
    assert max(deep) < 130 < 180 < min(high)
    assert max(deep) * 1.8 < min(high)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "pcm"])
def test_preview_encodes(fmt):
    audio = engine.preview(EN_TEXT, settings_for("a voice", "en", "v"), sample_rate=16000, fmt=fmt)
    assert audio.format == fmt and audio.sample_rate == 16000
    if fmt != "pcm":
        _y, rate = sf.read(io.BytesIO(audio.data))
        assert rate == 16000
    assert 1.5 < audio.duration < 6.0


def test_rendering_is_thread_safe():
    # each rendering starts espeak-ng afresh, so a text comes out sample for sample the same in
    # any thread; a race would mix the samples of the two texts
    jobs = [("Hi.", settings_for("a man", "en", "a")), (ZH_TEXT, settings_for("女声", "zh", "b"))] * 4
    expected = [engine.render(t, s).tobytes() for t, s in jobs]
    results: list = [None] * len(jobs)

    def work(i):
        results[i] = engine.render(*jobs[i]).tobytes()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_ssml_tags_are_not_read_aloud():
    s = settings_for("a voice", "en", "v")
    plain = engine.render("Hello there.", s)
    tagged = engine.render('<speak><break time="1ms"/>Hello there.</speak>', s)
    assert abs(len(tagged) - len(plain)) < 0.3 * engine.ENGINE_RATE


def test_opus_uses_a_rate_opus_knows():
    assert engine.encoding_rate("opus", 22050) == 24000
    assert engine.encoding_rate("opus", 44100) == 48000
    assert engine.encoding_rate("wav", 22050) == 22050


def test_a_voice_renders_a_text_the_same_whatever_was_rendered_before():
    # espeak-ng keeps C statics across renderings (pitch flutter, phase, echo): the same voice once
    # came out a few samples longer or shorter, and a little different, after other renderings
    calm = settings_for("A calm middle-aged man with a deep voice.", "en", "v1")
    first = engine.render("Good evening, and welcome to the late news.", calm)
    engine.render(
        "A cheerful young woman, lively and bright, says something else.", settings_for("A cheerful girl", "en", "v2")
    )
    engine.render("各位听众朋友，大家好。", settings_for("沉稳的中年男性", "zh", "v3"))
    again = engine.render("Good evening, and welcome to the late news.", calm)
    assert len(first) == len(again) and np.array_equal(first, again)
