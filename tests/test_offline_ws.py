"""The simulator's synthesis WebSocket, over loopback with ``websocket-client`` (no mocks),
and the official dashscope SDK pointed at the simulator."""

from __future__ import annotations

import io
import json
import struct
import time
import uuid

import numpy as np
import parselmouth
import pytest
import requests
import soundfile as sf
import websocket

from cosyvoice_lab import catalog
from cosyvoice_lab.offline import Faults, serve

MODEL = "cosyvoice-v3.5-plus"
EN_TEXT = "The first sentence is here. Is this the second one? Yes, and this is the third!"
ZH_TEXT = "床前明月光，疑是地上霜。举头望明月！低头思故乡。"


# quick timing: designs at once, first audio at the documented minimum, no real-time pacing
# (timing itself is tested in test_offline_streaming.py)
QUICK = {"model_profiles": {"*": {"design_latency": 0}}, "first_audio_seconds": 0.2, "realtime_factor": 0}


@pytest.fixture(scope="module")
def sim():
    with serve(synthesis_rps=None, enrollment_rps=None, **QUICK) as s:
        yield s


@pytest.fixture(scope="module")
def voice(sim):
    return design(sim, "A deep male voice, calm and steady.", "Hello there.", "en")


@pytest.fixture(autouse=True)
def _clean(request):
    if "sim" in request.fixturenames:
        s = request.getfixturevalue("sim")
        s.faults = Faults()
        s.state.synth_gap_seconds = catalog.SYNTH_GAP_SECONDS


def design(s, prompt, preview, lang, model=MODEL) -> str:
    r = requests.post(
        s.base_url + catalog.CUSTOMIZATION_PATH,
        timeout=10,
        headers={"Authorization": f"Bearer {s.api_key}"},
        json={
            "model": "voice-enrollment",
            "input": {
                "action": "create_voice",
                "target_model": model,
                "prefix": "ws",
                "voice_prompt": prompt,
                "preview_text": preview,
                "language_hints": [lang],
            },
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["output"]["voice_id"]


def connect(s, key=None, path=""):
    return websocket.create_connection(
        s.ws_url + path, timeout=10, header=[f"Authorization: bearer {key or s.api_key}"]
    )


def run_task(voice_id, task_id, model=MODEL, **params):
    payload = {
        "task_group": "audio",
        "task": "tts",
        "function": "SpeechSynthesizer",
        "model": model,
        "parameters": {
            "text_type": "PlainText",
            "voice": voice_id,
            "format": "wav",
            "sample_rate": 24000,
            "volume": 50,
            "rate": 1,
            "pitch": 1,
            **params,
        },
        "input": {},
    }
    return {"header": {"action": "run-task", "task_id": task_id, "streaming": "duplex"}, "payload": payload}


def cont(task_id, text, **extra):
    return {
        "header": {"action": "continue-task", "task_id": task_id, "streaming": "duplex"},
        "payload": {"input": {"text": text}, **extra},
    }


def finish(task_id, **inp):
    return {"header": {"action": "finish-task", "task_id": task_id, "streaming": "duplex"}, "payload": {"input": inp}}


def send(ws, msg):
    ws.send(json.dumps(msg, ensure_ascii=False))


def receive(ws) -> tuple[list, bytes]:
    """Events (binary frames as ("audio", n)) until task-finished/-failed, and the audio."""
    events, audio = [], b""
    while True:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY:
            events.append(("audio", len(data)))
            audio += data
            continue
        msg = json.loads(data)
        events.append(msg)
        if msg["header"]["event"] in ("task-finished", "task-failed"):
            return events, audio


def synthesize(s, voice_id, texts, **params):
    ws = connect(s)
    tid = uuid.uuid4().hex
    send(ws, run_task(voice_id, tid, **params))
    started = json.loads(ws.recv())
    assert started["header"] == {"task_id": tid, "event": "task-started", "attributes": {}}, started
    for text in texts:
        send(ws, cont(tid, text))
    send(ws, finish(tid))
    events, audio = receive(ws)
    ws.close()
    return events, audio


def expect_failure(ws, code, message=None):
    msg = json.loads(ws.recv())
    assert msg["header"]["event"] == "task-failed", msg
    assert msg["header"]["error_code"] == code, msg
    if message is not None:
        assert msg["header"]["error_message"] == message
    assert msg["payload"] == {}
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(3):  # the server closes the connection after task-failed
            if ws.recv() in ("", b""):
                raise websocket.WebSocketConnectionClosedException("closed")
    return msg


def check_order(events, sentences, text=None):
    """sentence-begin, N x (sentence-synthesis + one binary frame), sentence-end, per sentence;
    ``usage.characters`` counts the raw ``text`` sent (default: the sentences back to back),
    whitespace included, cumulatively up to each sentence's end."""
    text = "".join(sentences) if text is None else text
    i, total, end_at = 0, 0, 0
    for index, sentence in enumerate(sentences):
        out = events[i]["payload"]["output"]
        assert (out["type"], out["sentence"]["index"], out["original_text"]) == ("sentence-begin", index, sentence)
        i += 1
        frames = 0
        while events[i]["payload"]["output"]["type"] == "sentence-synthesis":
            assert events[i + 1][0] == "audio" and events[i + 1][1] > 0
            i, frames = i + 2, frames + 1
        assert frames >= 1
        end = events[i]["payload"]
        end_at = len(text) if index == len(sentences) - 1 else text.index(sentence, end_at) + len(sentence)
        total = catalog.billed_characters(text[:end_at])
        assert (end["output"]["type"], end["output"]["original_text"]) == ("sentence-end", sentence)
        assert end["usage"] == {"characters": total}
        i += 1
    last = events[i]
    assert last["header"]["event"] == "task-finished" and i == len(events) - 1
    assert uuid.UUID(last["header"]["attributes"]["request_uuid"])
    assert last["payload"]["usage"] == {"characters": total}


# --- happy paths -----------------------------------------------------------------------------------


def test_english_three_sentences_make_one_valid_wav(sim, voice):
    events, audio = synthesize(sim, voice, [EN_TEXT])
    sentences = ["The first sentence is here.", "Is this the second one?", "Yes, and this is the third!"]
    check_order(events, sentences, EN_TEXT)
    assert events[-1]["payload"]["usage"]["characters"] == len(EN_TEXT) == len("".join(sentences)) + 2  # 2 spaces
    assert audio[:4] == b"RIFF" and struct.unpack("<I", audio[4:8])[0] == len(audio) - 8
    assert audio.count(b"RIFF") == 1  # only the first frame carries a header
    x, rate = sf.read(io.BytesIO(audio))
    assert rate == 24000 and 3.0 < len(x) / rate < 9.0


def test_chinese_text_in_several_continue_tasks(sim):
    voice = design(sim, "沉稳的中年男性，音色低沉", "大家好", "zh")
    events, audio = synthesize(sim, voice, ["床前明月光，疑是地上霜。举头", "望明月！低头思故乡。"])
    check_order(events, ["床前明月光，疑是地上霜。", "举头望明月！", "低头思故乡。"])
    assert events[-1]["payload"]["usage"]["characters"] == 20 * 2 + 4
    x, rate = sf.read(io.BytesIO(audio))
    assert rate == 24000 and 2.5 < len(x) / rate < 10.0


# espeak-ng keeps synthesis state from one call to the next inside the C library (the same
# call sequence gives the same samples in a fresh process; re-initialising or reseeding it does
# not reset that state), so one sentence with one voice comes out up to ~60 ms longer or shorter
# depending on what the process spoke before. Two tasks of the same text can therefore differ by
# that much per sentence; a lost or doubled frame is at least CHUNK_SECONDS / 2 = 0.25 s.
ENGINE_SLACK_S = 0.1  # per sentence


def sentence_bytes(events) -> list[int]:
    """Bytes of the binary frames between each sentence-begin and its sentence-end."""
    out = []
    for e in events:
        if isinstance(e, tuple):
            out[-1] += e[1]
        elif e["payload"].get("output", {}).get("type") == "sentence-begin":
            out.append(0)
    return out


@pytest.mark.parametrize("fmt, rate", [("mp3", 22050), ("mp3", 48000), ("pcm", 16000), ("opus", 24000), ("wav", 8000)])
def test_frames_concatenate_to_the_whole_recording(sim, voice, fmt, rate):
    wav_events, wav = synthesize(sim, voice, [EN_TEXT], format="wav", sample_rate=rate)
    events, audio = synthesize(sim, voice, [EN_TEXT], format=fmt, sample_rate=rate)
    assert sum(1 for e in events if isinstance(e, tuple)) >= 3
    info = sf.info(io.BytesIO(wav))
    if fmt == "pcm":  # sentence by sentence: the frames of each cover all of its audio
        wav_sentences = sentence_bytes(wav_events)
        wav_sentences[0] -= len(wav) - 2 * info.frames  # the header rides in the first frame
        pcm_sentences = sentence_bytes(events)
        assert len(audio) % 2 == 0 and sum(pcm_sentences) == len(audio)
        for got, expected in zip(pcm_sentences, wav_sentences, strict=True):
            assert abs(got - expected) / 2 / rate < ENGINE_SLACK_S, (pcm_sentences, wav_sentences)
        return
    x, got = sf.read(io.BytesIO(audio))
    slack = ENGINE_SLACK_S * len(sentence_bytes(events)) + 0.1  # + encoder padding
    assert got == rate and abs(len(x) / got - info.duration) < slack  # every sentence decodes, not just the first


def test_sdk_default_format_means_mp3_22050(sim, voice):
    _, audio = synthesize(
        sim, voice, ["Hello there."], format="Default", sample_rate=0, seed=0, type=0, enable_ssml=True
    )
    assert audio[:3] == b"ID3" or audio[0] == 0xFF
    assert sf.info(io.BytesIO(audio)).samplerate == 22050


def test_sdk_repeated_fields_and_flush_are_accepted(sim, voice):
    ws = connect(sim, path="/")  # with the trailing slash of some official samples
    tid = uuid.uuid4().hex
    send(ws, run_task(voice, tid))
    json.loads(ws.recv())
    sdk = {"model": MODEL, "task_group": "audio", "task": "tts", "function": "SpeechSynthesizer"}
    send(ws, cont(tid, "One. ", **sdk))
    send(
        ws,
        {
            "header": {"action": "continue-task", "task_id": tid, "streaming": "duplex"},
            "payload": {**sdk, "input": {"flush": True}},
        },
    )
    send(ws, cont(tid, "Two.", **sdk))
    send(ws, finish(tid))
    events, _ = receive(ws)
    check_order(events, ["One.", "Two."], "One. Two.")
    # the connection is reusable with a new task id
    tid2 = uuid.uuid4().hex
    send(ws, run_task(voice, tid2))
    assert json.loads(ws.recv())["header"]["event"] == "task-started"
    send(ws, cont(tid2, "Three."))
    send(ws, finish(tid2))
    events, _ = receive(ws)
    check_order(events, ["Three."])
    ws.close()


def test_new_run_task_aborts_the_current_one(sim, voice):
    ws = connect(sim)
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    send(ws, run_task(voice, a))
    json.loads(ws.recv())
    send(ws, cont(a, "Never spoken."))
    send(ws, run_task(voice, b))
    assert json.loads(ws.recv())["header"] == {"task_id": b, "event": "task-started", "attributes": {}}
    send(ws, cont(b, "Spoken."))
    send(ws, finish(b))
    events, _ = receive(ws)
    check_order(events, ["Spoken."])
    assert all(e["header"]["task_id"] == b for e in events if isinstance(e, dict))
    ws.close()


def test_other_languages_and_cancel(sim, voice):
    events, audio = synthesize(sim, voice, ["Bonjour à tous."], language_hints=["fr"])
    check_order(events, ["Bonjour à tous."])
    ws, tid = _started(sim, voice)
    send(ws, cont(tid, "Never spoken."))
    send(ws, finish(tid, directive="cancel"))  # SDK 2.0 streaming_cancel()
    events, audio = receive(ws)
    assert audio == b"" and [e["header"]["event"] for e in events] == ["task-finished"]
    ws.close()


def test_continue_for_a_task_that_is_not_running(sim, voice):
    ws = connect(sim)
    send(ws, cont(uuid.uuid4().hex, "Hello."))
    expect_failure(ws, "InvalidParameter")


def _measure(audio):
    x, rate = sf.read(io.BytesIO(audio))
    f0 = parselmouth.Sound(x, rate).to_pitch().selected_array["frequency"]
    return len(x) / rate, float(np.median(f0[f0 > 0])), float(np.sqrt(np.mean(x**2)))


def test_rate_pitch_volume_change_the_voice(sim, voice):
    base = _measure(synthesize(sim, voice, [EN_TEXT])[1])
    fast = _measure(synthesize(sim, voice, [EN_TEXT], rate=2.0, pitch=2.0, volume=100)[1])
    quiet = _measure(synthesize(sim, voice, [EN_TEXT], volume=10)[1])
    assert fast[0] < 0.75 * base[0] and fast[1] > 1.2 * base[1] and fast[2] > 1.3 * base[2]
    assert quiet[2] < 0.4 * base[2]


def test_client_disconnect_aborts_silently(sim, voice):
    ws = connect(sim)
    tid = uuid.uuid4().hex
    send(ws, run_task(voice, tid))
    json.loads(ws.recv())
    send(ws, cont(tid, EN_TEXT * 20))
    send(ws, finish(tid))
    ws.close()
    time.sleep(0.2)
    events, _ = synthesize(sim, voice, ["Still here."])  # the server is fine
    check_order(events, ["Still here."])


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, code, message",
    [
        (lambda m: m["payload"].pop("input"), "InvalidParameter", "InvalidParameter: task can not be null"),
        (
            lambda m: m["payload"].pop("model"),
            "InvalidParameter",
            "Missing required parameter 'payload.model'! Please follow the protocol!",
        ),
        (
            lambda m: m["payload"]["parameters"].update(voice="cosyvoice-v3.5-plus-vd-ws-" + "0" * 32),
            "InvalidParameter",
            "[tts:]Engine return error code: 418",
        ),
        (
            lambda m: m["payload"].update(model="cosyvoice-v3.5-flash"),
            "InvalidParameter",
            "[tts:]Engine return error code: 418",
        ),
        (lambda m: m["payload"]["parameters"].update(format="flac"), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(sample_rate=12345), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(volume=101), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(rate=2.5), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(pitch=0.4), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(instruction="慢" * 51), "InvalidParameter", None),
        (lambda m: m["payload"]["parameters"].update(seed=catalog.SYNTH_SEED_RANGE[1] + 1), "InvalidParameter", None),
    ],
)
def test_run_task_failures(sim, voice, mutate, code, message):
    ws = connect(sim)
    msg = run_task(voice, uuid.uuid4().hex)
    mutate(msg)
    send(ws, msg)
    failed = expect_failure(ws, code, message)
    assert failed["header"]["task_id"] == msg["header"]["task_id"]


def test_instruction_at_the_limit_is_accepted(sim, voice):
    events, _ = synthesize(sim, voice, ["Hi."], instruction="慢" * 50)
    check_order(events, ["Hi."])


def test_a_simulator_failure_ends_the_task_as_the_service_would(sim, voice, monkeypatch):
    from cosyvoice_lab.offline import engine

    def broken(*args):
        raise ValueError("engine trouble")

    monkeypatch.setattr(engine, "render_task", broken)
    ws, tid = _started(sim, voice)
    send(ws, cont(tid, "Hello."))
    send(ws, finish(tid))
    expect_failure(ws, "InternalError")


@pytest.mark.parametrize("status", ["UNDEPLOYED", "DEPLOYING"])
def test_voice_that_is_not_ok_fails_with_418(sim, status):
    vid = design(sim, "A man.", "Hi.", "en")
    sim.set_status(vid, status)
    ws = connect(sim)
    send(ws, run_task(vid, uuid.uuid4().hex))
    expect_failure(ws, "InvalidParameter", "[tts:]Engine return error code: 418")


def _started(sim, voice):
    ws = connect(sim)
    tid = uuid.uuid4().hex
    send(ws, run_task(voice, tid))
    assert json.loads(ws.recv())["header"]["event"] == "task-started"
    return ws, tid


def test_empty_text_at_finish(sim, voice):
    ws, tid = _started(sim, voice)
    send(ws, cont(tid, "  \n "))
    send(ws, finish(tid))
    expect_failure(ws, "InvalidParameter", "Please ensure input text is valid.")


def test_too_much_text_in_one_continue_task(sim, voice):
    ws, tid = _started(sim, voice)
    send(ws, cont(tid, "a" * (catalog.SYNTH_CONTINUE_MAX_CHARS + 1)))
    expect_failure(ws, "InvalidParameter")


def test_too_much_text_in_one_task(sim, voice):
    ws, tid = _started(sim, voice)
    chunk = "a" * catalog.SYNTH_CONTINUE_MAX_CHARS
    for _ in range(catalog.SYNTH_TASK_MAX_CHARS // catalog.SYNTH_CONTINUE_MAX_CHARS):
        send(ws, cont(tid, chunk))
    send(ws, cont(tid, "b"))
    expect_failure(ws, "InvalidParameter")


def test_gap_between_continue_tasks(sim, voice):
    sim.state.synth_gap_seconds = 0.3
    ws, tid = _started(sim, voice)
    send(ws, cont(tid, "Hello."))
    t = time.monotonic()
    expect_failure(ws, "CLIENT_ERROR", "request timeout after 0.3 seconds.")
    assert 0.25 < time.monotonic() - t < 2


def test_idle_connection_is_closed():
    with serve(synth_idle_seconds=0.3) as s:
        ws = connect(s)
        t = time.monotonic()
        op, _ = ws.recv_data(control_frame=True)
        assert op == websocket.ABNF.OPCODE_CLOSE and 0.25 < time.monotonic() - t < 2


def test_synthesis_rate_limit():
    with serve(synthesis_rps=1) as s:
        vid = design(s, "A man.", "Hi.", "en")
        synthesize(s, vid, ["One."])
        ws = connect(s)
        send(ws, run_task(vid, uuid.uuid4().hex))
        expect_failure(ws, "Throttling.RateQuota", "Requests rate limit exceeded, try again later.")
        assert [st for _, a, st in s.request_log if a == "run-task"] == [200, 429]


def test_malformed_json_closes_with_1007(sim):
    ws = connect(sim)
    ws.send("{not json")
    op, data = ws.recv_data(control_frame=True)
    assert op == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", data[:2])[0] == 1007


@pytest.mark.parametrize("header", [None, "Authorization: Bearer sk-wrong"])
def test_bad_key_refuses_the_upgrade_with_401(sim, header):
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(sim.ws_url, timeout=5, header=[header] if header else [])
    assert exc.value.status_code == 401


# --- faults over WebSocket ------------------------------------------------------------------------------


def test_handshake_faults(sim):
    sim.faults = Faults(error_rate=1.0, seed=1)
    statuses = set()
    for _ in range(12):
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            connect(sim)
        statuses.add(exc.value.status_code)
    assert statuses == {429, 500, 503}
    sim.faults = Faults(drop_rate=1.0)
    with pytest.raises((websocket.WebSocketException, ConnectionError)):
        connect(sim)


def test_handshake_hang_outlasts_the_client_and_stop_is_prompt():
    with serve(faults={"hang_rate": 1.0, "hang_seconds": 30}) as s:
        t = time.monotonic()
        with pytest.raises((websocket.WebSocketTimeoutException, TimeoutError)):
            websocket.create_connection(s.ws_url, timeout=0.4, header=[f"Authorization: Bearer {s.api_key}"])
        s.faults.hang_rate = 0.0
        open_socket = connect(s)  # an open connection must not delay stop()
    assert time.monotonic() - t < 3
    open_socket.close()


def test_run_task_internal_error(sim, voice):
    ws = connect(sim)
    sim.faults.error_rate = 1.0
    send(ws, run_task(voice, uuid.uuid4().hex))
    expect_failure(ws, "InternalError")


def test_drop_midway_leaves_partial_audio_and_no_task_finished(sim, voice):
    ws = connect(sim)
    sim.faults.drop_rate = 1.0
    tid = uuid.uuid4().hex
    send(ws, run_task(voice, tid))
    assert json.loads(ws.recv())["header"]["event"] == "task-started"
    send(ws, cont(tid, EN_TEXT))
    send(ws, finish(tid))
    seen = []
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            op, data = ws.recv_data()
            if op == websocket.ABNF.OPCODE_CLOSE or data in ("", b""):
                raise websocket.WebSocketConnectionClosedException("closed")
            seen.append(op)
    assert websocket.ABNF.OPCODE_BINARY in seen


# --- the official SDK, pointed at the simulator ---------------------------------------------------------------


@pytest.fixture
def sdk(sim):
    dashscope = pytest.importorskip("dashscope")
    saved = dashscope.api_key, dashscope.base_http_api_url, dashscope.base_websocket_api_url
    dashscope.api_key = sim.api_key
    dashscope.base_http_api_url = sim.base_url
    dashscope.base_websocket_api_url = sim.ws_url
    yield dashscope
    dashscope.api_key, dashscope.base_http_api_url, dashscope.base_websocket_api_url = saved


def test_sdk_voice_enrollment_list_query_delete(sim, sdk):
    from dashscope.audio.tts_v2 import VoiceEnrollmentException, VoiceEnrollmentService

    vid = design(sim, "A calm woman.", "Hello there.", "en")
    service = VoiceEnrollmentService()
    listed = service.list_voices(prefix="ws", page_size=1000)
    assert vid in [v["voice_id"] for v in listed]
    assert service.query_voice(vid)["status"] == "OK"
    service.delete_voice(vid)
    with pytest.raises(VoiceEnrollmentException) as exc:
        service.query_voice(vid)
    assert "BadRequest.ResourceNotExist" in str(exc.value) and "400" in str(exc.value)
    assert uuid.UUID(service.get_last_request_id())


def test_sdk_speech_synthesizer_call(sim, sdk, voice):
    from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer

    audio = SpeechSynthesizer(model=MODEL, voice=voice).call("Hello from the simulator. Two sentences.")
    info = sf.info(io.BytesIO(audio))
    assert info.samplerate == 22050 and info.duration > 1.0  # Default = mp3 at 22050 Hz
    wav = SpeechSynthesizer(model=MODEL, voice=voice, format=AudioFormat.WAV_24000HZ_MONO_16BIT).call("你好。")
    x, rate = sf.read(io.BytesIO(wav))
    assert rate == 24000 and len(x) / rate > 0.3


def test_sdk_sees_task_failed(sim, sdk):
    from dashscope.audio.tts_v2 import SpeechSynthesizer

    with pytest.raises(Exception) as exc:
        SpeechSynthesizer(model=MODEL, voice="cosyvoice-v3.5-plus-vd-ws-" + "0" * 32).call("Hi.")
    assert "418" in str(exc.value)
