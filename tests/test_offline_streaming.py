"""Synthesis streams per sentence as text arrives (issue 14, contract §11): first audio
200-800 ms after the text, real-time factor 0.1-0.5, not all at finish-task; and the official
dashscope SDK's streaming synthesis hears its first audio before it has sent finish-task."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import uuid

import numpy as np
import pytest
import requests
import soundfile as sf
import websocket

from cosyvoice_lab import catalog
from cosyvoice_lab.offline import serve

MODEL = catalog.V35_PLUS
TWO = "This is the first sentence, spoken while the client is still writing. And here is the second one. "


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    return tmp_path_factory.mktemp("account")


@pytest.fixture(scope="module")
def sim(account):  # the documented timing: first audio 0.2-0.8 s, real-time factor 0.1-0.5
    with serve(
        state_dir=account, enrollment_rps=None, synthesis_rps=None, model_profiles={"*": {"design_latency": 0}}
    ) as s:
        yield s


@pytest.fixture(scope="module")
def quick(account):  # the same account, answering at the documented minimum and without pacing
    with serve(
        state_dir=account, enrollment_rps=None, synthesis_rps=None, first_audio_seconds=0.2, realtime_factor=0
    ) as s:
        yield s


@pytest.fixture(scope="module")
def voice(sim):
    return test_voice(sim)


def message(action: str, task_id: str, **payload) -> str:
    return json.dumps({"header": {"action": action, "task_id": task_id, "streaming": "duplex"}, "payload": payload})


def start(s, voice_id: str, fmt: str = "wav") -> tuple[websocket.WebSocket, str]:
    ws = websocket.create_connection(s.ws_url, timeout=10, header=[f"Authorization: Bearer {s.api_key}"])
    tid = uuid.uuid4().hex
    ws.send(
        message(
            "run-task",
            tid,
            task_group="audio",
            task="tts",
            function="SpeechSynthesizer",
            model=MODEL,
            parameters={"text_type": "PlainText", "voice": voice_id, "format": fmt, "sample_rate": 24000},
            input={},
        )
    )
    assert json.loads(ws.recv())["header"]["event"] == "task-started"
    return ws, tid


def until(ws, kind: str) -> tuple[list, bytes, float]:
    """Events up to and including the first of ``kind`` (an output type or an event name)."""
    events, audio = [], b""
    while True:
        op, data = ws.recv_data()
        now = time.monotonic()
        if op == websocket.ABNF.OPCODE_BINARY:
            events.append(("audio", now))
            audio += data
            continue
        msg = json.loads(data)
        events.append((msg["payload"].get("output", {}).get("type") or msg["header"]["event"], now))
        if events[-1][0] == kind:
            return events, audio, now


def test_sentences_are_spoken_before_finish_task(sim, voice):
    ws, tid = start(sim, voice)
    sent = time.monotonic()
    ws.send(message("continue-task", tid, input={"text": TWO}))
    first, audio, _ = until(ws, "sentence-end")
    _, more, _ = until(ws, "sentence-end")  # both sentences, and finish-task not sent yet
    first_audio = next(t for kind, t in first if kind == "audio") - sent
    assert 0.2 <= first_audio <= 0.8 + 0.15, first_audio  # + the engine's own few ms
    ws.send(message("finish-task", tid, input={}))
    rest, tail, _ = until(ws, "task-finished")
    ws.close()
    assert tail == b"" and [k for k, _ in rest] == ["task-finished"]  # nothing was left for finish-task
    data = audio + more
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF  # the streaming size
    x, rate = sf.read(io.BytesIO(data))
    assert rate == 24000 and len(x) / rate > 2.5  # both sentences decode


def test_pacing_follows_the_real_time_factor():
    with serve(
        enrollment_rps=None,
        synthesis_rps=None,
        model_profiles={"*": {"design_latency": 0}},
        first_audio_seconds=0,
        realtime_factor=0.4,
    ) as s:
        ws, tid = start(s, test_voice(s))
        ws.send(message("continue-task", tid, input={"text": TWO}))
        ws.send(message("finish-task", tid, input={}))
        events, audio, finished = until(ws, "task-finished")
        ws.close()
    x, rate = sf.read(io.BytesIO(audio))
    first = next(t for kind, t in events if kind == "audio")
    took = finished - first
    assert 0.3 * len(x) / rate < took < 0.5 * len(x) / rate + 0.2, (took, len(x) / rate)


def test_voice(s) -> str:
    r = requests.post(
        s.base_url + catalog.CUSTOMIZATION_PATH,
        timeout=10,
        headers={"Authorization": f"Bearer {s.api_key}"},
        json={
            "model": "voice-enrollment",
            "input": {
                "action": "create_voice",
                "target_model": MODEL,
                "prefix": "stream",
                "voice_prompt": "A calm man.",
                "preview_text": "Hello there.",
                "language_hints": ["en"],
            },
        },
    )
    return r.json()["output"]["voice_id"]


test_voice.__test__ = False  # a helper, not a test


def test_an_incomplete_sentence_waits_for_more_text(sim, voice):
    ws, tid = start(sim, voice)
    ws.send(message("continue-task", tid, input={"text": "It is 3."}))  # "3." might go on as "3.5"
    ws.settimeout(1.2)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    ws.settimeout(10)
    ws.send(message("continue-task", tid, input={"text": "5 degrees. "}))
    until(ws, "sentence-end")
    ws.send(message("finish-task", tid, input={}))
    until(ws, "task-finished")
    ws.close()


def streamed(s, voice_id: str, fmt: str) -> bytes:
    """The audio of TWO, both sentences received before finish-task is sent."""
    ws, tid = start(s, voice_id, fmt=fmt)
    ws.send(message("continue-task", tid, input={"text": TWO}))
    _, first, _ = until(ws, "sentence-end")
    _, second, _ = until(ws, "sentence-end")
    ws.send(message("finish-task", tid, input={}))
    until(ws, "task-finished")
    ws.close()
    return first + second


def test_streamed_mp3_decodes_whole(quick, voice):
    x, rate = sf.read(io.BytesIO(streamed(quick, voice, "mp3")))
    y, _ = sf.read(io.BytesIO(streamed(quick, voice, "wav")))
    assert rate == 24000 and abs(len(x) - len(y)) / rate < 0.3  # the second sentence decodes too


def test_the_whole_text_at_once_is_one_exact_file(quick, voice):
    """SDK call() and our client send everything, then finish-task: an exact header."""
    ws, tid = start(quick, voice)
    ws.send(message("continue-task", tid, input={"text": TWO}))
    ws.send(message("finish-task", tid, input={}))
    _, audio, _ = until(ws, "task-finished")
    ws.close()
    assert struct.unpack("<I", audio[4:8])[0] == len(audio) - 8


# --- the official SDK ----------------------------------------------------------------------------


def test_sdk_streaming_hears_audio_before_finish_task(sim, voice):
    dashscope = pytest.importorskip("dashscope")
    from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer

    class Heard(ResultCallback):
        def __init__(self):
            self.first = threading.Event()
            self.chunks: list[bytes] = []

        def on_data(self, data: bytes) -> None:
            self.chunks.append(data)
            self.first.set()

    saved = dashscope.api_key, dashscope.base_websocket_api_url
    dashscope.api_key, dashscope.base_websocket_api_url = sim.api_key, sim.ws_url
    try:
        heard = Heard()
        synth = SpeechSynthesizer(model=MODEL, voice=voice, format=AudioFormat.PCM_24000HZ_MONO_16BIT, callback=heard)
        synth.streaming_call("Good evening. ")
        synth.streaming_call("This sentence arrives a little later, ")
        assert heard.first.wait(5), "no audio before finish-task"  # streaming_complete() sends finish-task
        before_finish = len(heard.chunks)
        synth.streaming_call("and then it ends.")
        synth.streaming_complete()
    finally:
        dashscope.api_key, dashscope.base_websocket_api_url = saved
    assert before_finish >= 1 and len(heard.chunks) > before_finish
    samples = np.frombuffer(b"".join(heard.chunks), "<i2")
    assert len(samples) / 24000 > 2.0
    assert 0 < synth.get_first_package_delay() < 2000  # ms, as the SDK measures it


def test_the_gap_timeout_counts_from_the_end_of_the_audio():
    """A client that listens before it writes on is not cut off while audio still comes."""
    with serve(
        enrollment_rps=None,
        synthesis_rps=None,
        model_profiles={"*": {"design_latency": 0}},
        first_audio_seconds=0,
        realtime_factor=0.5,
        synth_gap_seconds=0.6,
    ) as s:
        ws, tid = start(s, test_voice(s))
        ws.send(message("continue-task", tid, input={"text": TWO}))
        events, _, _ = until(ws, "sentence-end")
        events += until(ws, "sentence-end")[0]  # > 1 s of audio production, longer than the gap
        assert "task-failed" not in [k for k, _ in events]
        ws.send(message("finish-task", tid, input={}))
        until(ws, "task-finished")
        ws.send(
            message(
                "run-task",
                tid + "x",
                task_group="audio",
                task="tts",
                function="SpeechSynthesizer",
                model=MODEL,
                parameters={"text_type": "PlainText", "voice": test_voice(s)},
                input={},
            )
        )
        assert json.loads(ws.recv())["header"]["event"] == "task-started"
        failed = json.loads(ws.recv())  # silence after task-started is a gap again
        ws.close()
    assert failed["header"]["event"] == "task-failed" and failed["header"]["error_code"] == "CLIENT_ERROR"
