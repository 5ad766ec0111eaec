"""Speech synthesis over the WebSocket, against the real offline simulator on loopback."""

from __future__ import annotations

import io
import logging
import re
import socket
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import (
    AuthenticationError,
    ConnectionFailed,
    RateLimited,
    RequestTimeout,
    ServerError,
    SynthesisError,
    ValidationError,
    VoiceNotFound,
    VoiceNotReady,
)
from cosyvoice_lab.offline import Fault, Faults, serve
from cosyvoice_lab.service.http import DashScopeClient, RetryPolicy
from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult, estimate_cost, fix_wav_sizes, split_text
from cosyvoice_lab.service.wire import ws_url_for
from cosyvoice_lab.service.ws import Synthesizer

EN_SCRIPT = (
    "The lighthouse keeper climbed the stairs at dusk. "
    "Far below, the waves broke against the rocks! "
    "Would the ship arrive before the storm?"
)
EN_SENTENCES = [
    "The lighthouse keeper climbed the stairs at dusk.",
    "Far below, the waves broke against the rocks!",
    "Would the ship arrive before the storm?",
]
ZH_SCRIPT = "今天天气很好。我们去公园散步吧！你想喝茶吗？"
ZH_SENTENCES = ["今天天气很好。", "我们去公园散步吧！", "你想喝茶吗？"]


def billed(text: str) -> int:
    """The billing rule written out independently of the catalog: CJK ideographs count 2."""
    return sum(2 if re.match(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", c) else 1 for c in text)


def no_sleep(_seconds):
    pass


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    # no assumed design time and no real-time pacing: these tests are about the protocol
    with serve(
        synthesis_rps=None,
        enrollment_rps=None,
        model_profiles={"*": {"design_latency": 0}},
        first_audio_seconds=0,
        realtime_factor=0,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(sim):
    with DashScopeClient(api_key=sim.api_key, base_url=sim.base_url, backend="offline", sleep=no_sleep) as c:
        yield c


@pytest.fixture(scope="module")
def voices(client):
    en = client.create_voice(
        VoiceDesign(
            "A calm, deep male narrator in his fifties, slow and warm", "Hello, this is my voice.", prefix="synthen"
        )
    )
    zh = client.create_voice(
        VoiceDesign(
            "温柔的年轻女声，语速适中，声音清亮", "大家好，欢迎收听。", target_model=catalog.V35_FLASH, prefix="synthzh"
        )
    )
    return {"en": en.voice_id, "zh": zh.voice_id}


@pytest.fixture()
def synth(sim, client):
    sim.faults = None
    return Synthesizer(client=client, sleep=no_sleep, seed=1)


def decode(result: SpeechResult):
    samples, rate = sf.read(io.BytesIO(result.audio.data), dtype="float32")
    return samples, rate


def assert_speech(result: SpeechResult, text: str, sentences: list[str], *, per_char=(0.02, 0.25)):
    """One valid recording: decodes, right rate, plausible length, not silence, sentences in order."""
    if result.audio.format == "pcm":
        samples, rate = result.audio.to_numpy(), result.audio.sample_rate
    else:
        samples, rate = decode(result)
    assert rate == result.audio.sample_rate
    seconds = len(samples) / rate
    lo, hi = per_char
    assert lo * len(text) < seconds < hi * len(text) + 1.0, (seconds, len(text))
    assert np.sqrt(np.mean(samples**2)) > 0.01
    assert result.sentences == sentences
    assert result.frames >= len(sentences)


# --- speaking -----------------------------------------------------------------------------------


def test_english_script_is_one_recording_in_order(synth, voices, sim):
    result = synth.speak(voices["en"], EN_SCRIPT)
    assert synth.ws_url == sim.ws_url  # derived from the client's base URL
    assert result.audio.format == "wav" and result.audio.sample_rate == 24000
    assert_speech(result, EN_SCRIPT, EN_SENTENCES)
    riff, data_size = struct.unpack("<I", result.audio.data[4:8])[0], result.audio.data.find(b"data")
    assert riff == len(result.audio.data) - 8 and data_size > 0
    assert result.model == catalog.V35_PLUS
    assert re.fullmatch(r"[0-9a-f]{32}", result.task_id)
    assert result.request_id and result.attempts == 1
    assert 0 < result.first_chunk_latency_s <= result.latency_s


def test_chinese_script_is_one_recording_in_order(synth, voices):
    result = synth.speak(voices["zh"], ZH_SCRIPT)
    assert_speech(result, ZH_SCRIPT, ZH_SENTENCES, per_char=(0.08, 0.6))
    assert result.model == catalog.V35_FLASH


def test_cost_is_characters_times_the_catalog_price(synth, voices):
    for voice, text, sentences in ((voices["en"], EN_SCRIPT, EN_SENTENCES), (voices["zh"], ZH_SCRIPT, ZH_SENTENCES)):
        model = catalog.model_of_voice(voice)
        price = catalog.MODELS[model].price_cny_per_10k_chars / 10_000
        assert estimate_cost(text, model) == (billed(text), pytest.approx(billed(text) * price))
        result = synth.speak(voice, text)
        # usage counts the raw text sent, the spaces between sentences included (contract §11)
        assert result.characters == billed(text) >= billed("".join(sentences))
        assert result.cost_cny == pytest.approx(result.characters * price)
    assert billed(ZH_SCRIPT) == 2 * 19 + 3  # 19 ideographs; full-width punctuation counts 1


def test_stream_yields_frames_in_order(synth, voices):
    stream = synth.stream(voices["en"], EN_SCRIPT)
    frames = list(stream)
    assert len(frames) > 1 and all(isinstance(f, bytes) for f in frames)
    assert frames[0][:4] == b"RIFF"
    assert fix_wav_sizes(b"".join(frames)) == stream.result.audio.data
    assert stream.result.sentences == EN_SENTENCES


def test_text_sent_in_several_continue_tasks_keeps_the_order(sim, client, voices):
    synth = Synthesizer(client=client, chunk_chars=60, sleep=no_sleep)
    assert len(split_text(EN_SCRIPT, 60)) == 3
    result = synth.speak(voices["en"], EN_SCRIPT)
    assert_speech(result, EN_SCRIPT, EN_SENTENCES)
    assert result.characters == billed(EN_SCRIPT)


@pytest.mark.parametrize(
    "fmt,rate,expect_rate", [("mp3", 22050, 22050), ("pcm", 16000, 16000), ("opus", 48000, 48000), ("wav", 8000, 8000)]
)
def test_formats_and_rates(synth, voices, fmt, rate, expect_rate):
    result = synth.speak(voices["en"], "Good morning. Have a nice day.", format=fmt, sample_rate=rate)
    assert result.audio.format == fmt and result.audio.sample_rate == expect_rate
    samples = result.audio.to_numpy()
    assert 0.8 < len(samples) / expect_rate < 8
    assert result.sentences == ["Good morning.", "Have a nice day."]


def test_waits_for_a_deploying_voice(sim, client):
    sim.state.deploying_seconds = 0.6
    try:
        design = VoiceDesign("A bright young female voice", "Hi there, friend.", prefix="deploy")
        voice = client.create_voice(design).voice_id
    finally:
        sim.state.deploying_seconds = 0.0
    assert client.query_voice(voice).status == "DEPLOYING"
    patient = DashScopeClient(api_key=sim.api_key, base_url=sim.base_url, backend="offline")  # really sleeps
    synth = Synthesizer(client=patient, ready_interval=0.2, ready_timeout=5)
    assert synth.speak(voice, "Now I am ready.").sentences == ["Now I am ready."]


# --- errors ---------------------------------------------------------------------------------------


def test_mismatched_model_is_refused_locally(sim, voices):
    before = len(sim.request_log)
    dead = Synthesizer(api_key=sim.api_key, ws_url=f"ws://127.0.0.1:{_free_port()}/api-ws/v1/inference")
    with pytest.raises(ValidationError) as e:
        dead.speak(voices["en"], EN_SCRIPT, model=catalog.V35_FLASH)
    bound = catalog.V35_PLUS
    assert f"voice {voices['en']} is bound to model {bound}; synthesis must use {bound}" in str(e.value)
    assert [p.field for p in e.value.problems] == ["model"]
    assert len(sim.request_log) == before  # nothing reached the simulator either


def test_every_local_problem_at_once(synth, voices):
    with pytest.raises(ValidationError) as e:
        synth.speak(voices["en"], "  ", model="cosyvoice-v9", volume=101, rate=3.0, sample_rate=12345)
    assert sorted(p.field for p in e.value.problems) == ["model", "rate", "sample_rate", "text", "volume"]


def test_empty_and_oversized_text_are_refused_locally(synth, voices):
    for text in ("", " \n\t"):
        with pytest.raises(ValidationError, match="text: must not be empty"):
            synth.speak(voices["en"], text)
    too_long = "字" * (catalog.SYNTH_TASK_MAX_CHARS // 2 + 1)  # under the limit in code points, over it billed
    with pytest.raises(ValidationError, match="one task takes at most"):
        synth.speak(voices["en"], too_long)
    synth.check(voices["en"], "a" * catalog.SYNTH_TASK_MAX_CHARS)  # exactly at the limit: fine
    with pytest.raises(ValidationError):
        synth.check(voices["en"], "a" * (catalog.SYNTH_TASK_MAX_CHARS + 1))


def test_unknown_voice_fails_on_the_server(synth, voices):
    ghost = catalog.V35_PLUS + "-vd-ghost-" + "0" * 32
    with pytest.raises(SynthesisError) as e:
        synth.speak(ghost, "Hello there.", wait_ready=False)
    assert e.value.code == "InvalidParameter" and "418" in e.value.message and e.value.task_id
    with pytest.raises(SynthesisError):
        synth.speak("longxiaochun_v2", "Hello there.", model=catalog.V3_FLASH)
    with pytest.raises(VoiceNotFound):  # waiting for it asks the account first
        synth.speak(ghost, "Hello there.")
    with pytest.raises(ValidationError, match="pass model="):
        synth.speak("longxiaochun_v2", "Hello there.")


def test_undeployed_voice(sim, client, synth):
    design = VoiceDesign("An old man, hoarse and slow", "Once upon a time.", prefix="undep")
    voice = client.create_voice(design).voice_id
    sim.set_status(voice, "UNDEPLOYED")
    with pytest.raises(VoiceNotReady):
        synth.speak(voice, "Hello.")
    with pytest.raises(SynthesisError, match="418"):
        synth.speak(voice, "Hello.", wait_ready=False)


def test_wrong_key_is_an_authentication_error(sim, voices, caplog):
    caplog.set_level(logging.DEBUG)
    key = "sk-wrong-key-0123456789"
    bad = Synthesizer(api_key=key, ws_url=sim.ws_url, sleep=no_sleep)
    with pytest.raises(AuthenticationError) as e:
        bad.speak(voices["en"], "Hello.")
    assert e.value.status in (401, 403)
    for text in (str(e.value), repr(e.value), repr(bad), caplog.text):
        assert key not in text
    assert sim.api_key not in repr(Synthesizer(api_key=sim.api_key, ws_url=sim.ws_url))


def test_connection_refused_is_retried_then_reported(sim):
    slept = []
    dead = Synthesizer(
        api_key=sim.api_key,
        ws_url=f"ws://127.0.0.1:{_free_port()}/api-ws/v1/inference",
        retry=RetryPolicy(max_attempts=3),
        sleep=slept.append,
    )
    with pytest.raises(ConnectionFailed) as e:
        dead.speak(catalog.V35_PLUS + "-vd-x-" + "0" * 32, "Hello.")
    assert e.value.never_sent and len(slept) == 2


def test_rate_limit_is_retried_with_retry_after(sim, client, voices):
    sim.state.synthesis_rps = 1.0
    sim.state.limiter.reset()
    try:
        strict = Synthesizer(client=client, retry=RetryPolicy(max_attempts=1))
        strict.speak(voices["en"], "One.")
        with pytest.raises((RateLimited, SynthesisError)) as e:
            strict.speak(voices["en"], "Two.")
        assert getattr(e.value, "code", "").startswith("Throttling")
        import time

        slept = []
        patient = Synthesizer(client=client, sleep=lambda s: (slept.append(s), time.sleep(s)))
        assert patient.speak(voices["en"], "Three.").sentences == ["Three."]
        assert slept and slept[0] >= 1.0  # a throttled task says no Retry-After: wait a whole second
    finally:
        sim.state.synthesis_rps = None


def test_soak_with_injected_faults_loses_no_success(sim, client, voices):
    """50 syntheses with 20 % injected faults: each call returns valid audio or raises a clear
    error; the caller repeats failures until 50 succeeded, all of them intact."""
    text = "The rain stopped. Birds began to sing."
    reference = Synthesizer(client=client).speak(voices["en"], text)
    sim.faults = {"error_rate": 0.10, "drop_rate": 0.07, "hang_rate": 0.03, "hang_seconds": 3.0, "seed": 7}
    synth = Synthesizer(client=client, sleep=no_sleep, connect_timeout=1.0, timeout=1.0, seed=7)
    successes, failures = [], []
    try:
        while len(successes) < 50:
            assert len(failures) < 50, failures
            try:
                successes.append(synth.speak(voices["en"], text))
            except (SynthesisError, ConnectionFailed, RequestTimeout, RateLimited, ServerError) as exc:
                assert str(exc)
                failures.append(exc)
    finally:
        sim.faults = None
    for result in successes:
        assert result.sentences == ["The rain stopped.", "Birds began to sing."]
        assert result.characters == billed(text)
        samples, rate = decode(result)
        # espeak-ng carries state between calls, so a clause may end ~60 ms earlier or later than
        # in the reference (see test_offline_ws ENGINE_SLACK_S); a lost or doubled frame is >= 0.25 s
        assert rate == 24000 and abs(len(samples) / rate - reference.audio.duration) < 0.1 * len(result.sentences)
        assert np.sqrt(np.mean(samples**2)) > 0.01
    assert len({r.task_id for r in successes}) == 50
    assert sum(r.attempts > 1 for r in successes) > 0  # faults before task-started were retried inside


class ScriptedFaults(Faults):
    """The simulator's fault hook with the draws written out: one per handshake, one per run-task."""

    def __init__(self, *draws):
        super().__init__()
        self.draws = list(draws)

    def draw(self):
        return self.draws.pop(0) if self.draws else None


def test_a_task_that_dropped_mid_audio_is_not_repeated(sim, synth, voices):
    sim.faults = ScriptedFaults(None, Fault("drop"))  # clean upgrade, then the audio stops half-way
    runs = sum(1 for _, action, _ in sim.request_log if action == "run-task")
    with pytest.raises(ConnectionFailed, match="may have been billed; not retried") as e:
        synth.speak(voices["en"], EN_SCRIPT, wait_ready=False)  # (a status query would draw too)
    assert not e.value.never_sent
    assert sum(1 for _, action, _ in sim.request_log if action == "run-task") == runs + 1


def test_internal_error_before_audio_is_retried(sim, synth, voices):
    sim.faults = ScriptedFaults(Fault("error", 503), None, Fault("error", 500))  # refused upgrade, failed run-task
    result = synth.speak(voices["en"], "Third time lucky.", wait_ready=False)
    assert result.attempts == 3 and result.sentences == ["Third time lucky."]


def test_abandoning_a_stream_closes_the_task(synth, voices):
    stream = synth.stream(voices["en"], EN_SCRIPT)
    with stream:
        first = next(stream)
    assert first[:4] == b"RIFF" and stream.result is None
    assert synth.speak(voices["en"], "Still fine.").sentences == ["Still fine."]


# --- options and text, no network ---------------------------------------------------------------------

valid_options = st.builds(
    SpeechOptions,
    format=st.sampled_from(catalog.SYNTH_FORMATS),
    sample_rate=st.sampled_from(catalog.SYNTH_SAMPLE_RATES),
    volume=st.integers(*catalog.SYNTH_VOLUME_RANGE),
    rate=st.floats(*catalog.SYNTH_RATE_RANGE),
    pitch=st.floats(*catalog.SYNTH_PITCH_RANGE),
    instruction=st.none() | st.text(st.sampled_from("abc 平静"), min_size=1, max_size=40).filter(str.strip),
    language_hints=st.none() | st.sampled_from([("en",), ("zh",), ["en", "zh"]]),
    seed=st.none() | st.integers(*catalog.SYNTH_SEED_RANGE),
)


@given(valid_options)
def test_valid_options_make_parameters(opts):
    assert opts.problems() == []
    params = opts.to_parameters("v")
    assert params["text_type"] == "PlainText" and params["voice"] == "v"
    assert {"format", "sample_rate", "volume", "rate", "pitch"} <= params.keys()
    assert ("seed" in params) == (opts.seed is not None)


bad_values = st.sampled_from(
    [
        ("format", "flac"),
        ("format", "Default"),
        ("sample_rate", 11025),
        ("sample_rate", "24000"),
        ("volume", -1),
        ("volume", 101),
        ("volume", 50.5),
        ("volume", True),
        ("rate", 0.49),
        ("rate", 2.01),
        ("rate", float("nan")),
        ("pitch", 0.0),
        ("pitch", "1"),
        ("seed", -1),
        ("seed", 65536),
        ("instruction", ""),
        ("instruction", "慢" * 51),
        ("language_hints", "en"),
        ("language_hints", []),
        ("language_hints", ["english!"]),
    ]
)


@given(st.lists(bad_values, min_size=1, max_size=5, unique_by=lambda kv: kv[0]))
def test_invalid_options_name_every_field(changes):
    opts = SpeechOptions(**dict(changes))
    with pytest.raises(ValidationError) as e:
        opts.validate()
    assert sorted(p.field for p in e.value.problems) == sorted(k for k, _ in changes)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=valid_options)
def test_valid_options_are_accepted_by_the_simulator(sim, client, voices, opts):
    sim.faults = None
    result = Synthesizer(client=client, options=opts).speak(voices["en"], "Hi there.")
    assert result.audio.format == opts.format
    assert len(result.audio.to_numpy()) / result.audio.sample_rate > 0.2


@given(st.text(st.sampled_from("ab .!?。，字\n"), max_size=300), st.integers(2, 40))
def test_split_text_keeps_everything_within_the_limit(text, limit):
    chunks = split_text(text, limit)
    assert all(catalog.billed_characters(c) <= limit and c.strip() for c in chunks)
    assert re.sub(r"\s", "", "".join(chunks)) == re.sub(r"\s", "", text)  # nothing lost, order kept


def test_split_text_prefers_sentence_ends():
    assert split_text("One. Two. Three.", 10) == ["One. Two.", " Three."]
    assert split_text("一二三。四五六。", 8) == ["一二三。", "四五六。"]


def test_fix_wav_sizes_repairs_a_streaming_header():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(100, np.int16), 16000, format="WAV", subtype="PCM_16")
    good = buf.getvalue()
    broken = bytearray(good)
    broken[4:8] = b"\xff\xff\xff\xff"
    broken[40:44] = b"\xff\xff\xff\xff"
    assert fix_wav_sizes(bytes(broken)) == good
    assert fix_wav_sizes(b"ID3 not a wav") == b"ID3 not a wav"


def test_ws_url_for_http_bases():
    assert ws_url_for("https://dashscope.aliyuncs.com/api/v1") == "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
    assert ws_url_for("http://127.0.0.1:8080/api/v1") == "ws://127.0.0.1:8080/api-ws/v1/inference"
    assert Synthesizer(api_key="sk-x").ws_url == catalog.REGIONS[catalog.DEFAULT_REGION].ws_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
