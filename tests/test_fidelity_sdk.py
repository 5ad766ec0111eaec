"""Fidelity proof that does not rest on our reading of the docs: the official dashscope SDK,
unmodified, pointed at the simulator, manages and speaks voices designed by our client."""

import io

import pytest
import soundfile as sf

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.http import DashScopeClient

dashscope = pytest.importorskip("dashscope")
from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer, VoiceEnrollmentException, VoiceEnrollmentService  # noqa: E402


@pytest.fixture
def sim():
    with serve(enrollment_rps=None, synthesis_rps=None) as s:
        saved = dashscope.api_key, dashscope.base_http_api_url, dashscope.base_websocket_api_url
        dashscope.api_key, dashscope.base_http_api_url = s.api_key, s.base_url
        dashscope.base_websocket_api_url = s.ws_url
        try:
            yield s
        finally:
            dashscope.api_key, dashscope.base_http_api_url, dashscope.base_websocket_api_url = saved


def our_voices(sim, n=2):
    client = DashScopeClient(api_key=sim.api_key, base_url=sim.base_url, backend="offline")
    designs = [
        VoiceDesign("a calm deep male narrator", "Good evening.", prefix="fid"),
        VoiceDesign("温柔的年轻女声", "大家好。", prefix="fid", target_model=catalog.V35_FLASH),
    ]
    return [client.create_voice(d) for d in designs[:n]]


def test_sdk_lists_queries_and_deletes_voices_our_client_designed(sim):
    created = our_voices(sim)
    service = VoiceEnrollmentService()
    listed = service.list_voices(prefix="fid", page_size=100)
    assert {v["voice_id"] for v in listed} == {c.voice_id for c in created}
    for c in created:
        out = service.query_voice(c.voice_id)
        assert out["status"] == "OK" and out["target_model"] == c.target_model
        assert out["voice_prompt"] == c.design.voice_prompt
    service.delete_voice(created[0].voice_id)
    with pytest.raises(VoiceEnrollmentException) as info:
        service.query_voice(created[0].voice_id)
    assert "BadRequest.ResourceNotExist" in str(info.value)
    assert [v["voice_id"] for v in service.list_voices(prefix="fid")] == [created[1].voice_id]


def test_sdk_speaks_with_our_voices(sim):
    for c in our_voices(sim):
        audio = SpeechSynthesizer(
            model=c.target_model, voice=c.voice_id, format=AudioFormat.WAV_24000HZ_MONO_16BIT
        ).call("Hello. 你好。")
        samples, rate = sf.read(io.BytesIO(audio))
        assert rate == 24000 and len(samples) / rate > 0.5


def test_sdk_sees_a_wrong_key_as_401(sim):
    with pytest.raises(VoiceEnrollmentException) as info:
        VoiceEnrollmentService(api_key="sk-wrong").list_voices()
    assert "401" in str(info.value) and "InvalidApiKey" in str(info.value)


def test_sdk_pitfall_reproduced_after_four_dropped_connections(sim, monkeypatch):
    """Contract §7.3: after four failed connections the SDK raises UnboundLocalError. The
    simulator's dropped connections reproduce the real SDK's behaviour, not a cleaner one."""
    monkeypatch.setattr("time.sleep", lambda s: None)  # the SDK waits 2 s between attempts
    sim.faults.drop_rate = 1.0
    with pytest.raises(UnboundLocalError):
        VoiceEnrollmentService().list_voices()
