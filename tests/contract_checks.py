"""Contract checks that run unchanged against the offline simulator and the real service.

Each check takes a ``DashScopeClient``, a ``Synthesizer`` and a ``cleanup`` list (voice ids it
created, deleted by the caller's fixture whatever happens). Test modules parametrise over them:
``tests/test_contract_offline.py`` (always) and ``tests/live/test_live_contract.py`` (opt-in).

Written for the real service's pace: a new voice may stay DEPLOYING for minutes (the official
sample polls every 10 s, 30 times), a preview's WAV header may carry placeholder sizes (as
streamed syntheses do), and a just-deleted voice may still answer a query for a moment.
"""

import io
import time
import uuid

import numpy as np
import pytest
import soundfile as sf

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import AuthenticationError, SynthesisError, ValidationError, VoiceNotFound
from cosyvoice_lab.service.http import DashScopeClient
from cosyvoice_lab.service.speech import fix_wav_sizes

PREFIX = "cvlabtest"
READY_TIMEOUT_S, READY_INTERVAL_S = 300.0, 10.0  # the official sample: every 10 s, 30 times
GONE_TRIES, GONE_INTERVAL_S = 10, 2.0  # how long a deleted voice may still be seen
EN = VoiceDesign(
    "A calm, deep male narrator in his fifties, slow and warm.",
    "Good evening, and welcome.",
    prefix=PREFIX,
    target_model=catalog.V35_FLASH,
)
ZH = VoiceDesign(
    "温柔的年轻女声，语速适中，吐字清晰。",
    "大家好，欢迎收听。",
    prefix=PREFIX,
    target_model=catalog.V35_FLASH,
    response_format="mp3",
    sample_rate=16000,
)


def check_design_list_query_delete(client, synth, cleanup):
    created = client.create_voice(EN)
    cleanup.append(created.voice_id)
    m = catalog.VOICE_ID_RE.match(created.voice_id)
    assert m and m.group("model") == EN.target_model and m.group("prefix") == PREFIX
    samples, rate = sf.read(io.BytesIO(fix_wav_sizes(created.preview.data)))
    assert rate == 24000 and 0.5 < len(samples) / rate < 20 and np.abs(samples).max() > 0.01
    info = client.wait_until_ready(created.voice_id, timeout=READY_TIMEOUT_S, interval=READY_INTERVAL_S)
    assert info.status == "OK"
    assert created.voice_id in {v.voice_id for v in client.list_voices(prefix=PREFIX)}
    client.delete_voice(created.voice_id)
    cleanup.remove(created.voice_id)
    assert_gone(client, created.voice_id)


def assert_gone(client, voice_id: str, tries: int = GONE_TRIES, interval: float = GONE_INTERVAL_S) -> None:
    """A deleted voice answers VoiceNotFound, allowing the service a moment to forget it."""
    for _ in range(tries - 1):
        try:
            client.query_voice(voice_id)
        except VoiceNotFound:
            return
        time.sleep(interval)  # still seen just after the delete: ask again
    with pytest.raises(VoiceNotFound):
        client.query_voice(voice_id)


def check_chinese_mp3_preview(client, synth, cleanup):
    created = client.create_voice(ZH)
    cleanup.append(created.voice_id)
    assert (created.preview.format, created.preview.sample_rate) == ("mp3", 16000)
    assert created.preview.duration > 0.5


def check_speak_with_designed_voice(client, synth, cleanup):
    created = client.create_voice(EN)
    cleanup.append(created.voice_id)
    result = synth.speak(created.voice_id, "One sentence. And a second one.")
    assert result.audio.duration > 1.0 and result.characters > 0
    assert result.cost_cny == pytest.approx(catalog.synthesis_cost_cny(EN.target_model, result.characters))
    with pytest.raises(ValidationError):
        synth.speak(created.voice_id, "Wrong model.", model=catalog.V35_PLUS)


def check_errors(client, synth, cleanup):
    with pytest.raises(VoiceNotFound):
        client.query_voice(f"{catalog.V35_FLASH}-vd-{PREFIX}-{uuid.uuid4().hex}")
    bad = DashScopeClient(api_key="sk-" + "0" * 32, base_url=client.base_url, region=client.region)
    with pytest.raises(AuthenticationError) as info:
        bad.list_page()
    assert info.value.status == 401 and info.value.code == "InvalidApiKey"
    with pytest.raises(SynthesisError):
        synth.speak(f"{catalog.V35_FLASH}-vd-{PREFIX}-{uuid.uuid4().hex}", "Nobody here.", wait_ready=False)


def check_listing_and_billing_as_documented(client, synth, cleanup):
    """Contract §11: list items may omit target_model (the client derives it from the id); the
    raw text is billed, whitespace included."""
    created = client.create_voice(EN)
    cleanup.append(created.voice_id)
    listed = {v.voice_id: v for v in client.list_voices(prefix=PREFIX)}
    assert listed[created.voice_id].target_model == EN.target_model
    text = "One sentence.  And a second one."
    assert synth.speak(created.voice_id, text).characters == catalog.billed_characters(text) == 32


# --- the Qwen design family (contract §12) ---------------------------------------------------
# Live, each Qwen design is billed ($0.2 a voice): these checks design two voices in all.
QWEN_EN = VoiceDesign(
    "A calm young female voice with clear articulation and a gentle tone.",
    "Hello, welcome to our program.",
    prefix=PREFIX,
    target_model=catalog.QWEN_VD,
)


def check_qwen_design_list_query_delete(client, synth, cleanup):
    created = client.create_voice(QWEN_EN)
    cleanup.append(created.voice_id)
    m = catalog.QWEN_VOICE_ID_RE.match(created.voice_id)
    assert m and m.group("prefix") == PREFIX and created.target_model == catalog.QWEN_VD
    samples, rate = sf.read(io.BytesIO(fix_wav_sizes(created.preview.data)))
    assert rate == 24000 and 0.5 < len(samples) / rate < 30 and np.abs(samples).max() > 0.01
    info = client.query_voice(created.voice_id)
    assert info.target_model == catalog.QWEN_VD and info.voice_prompt == QWEN_EN.voice_prompt
    listed = {v.voice_id: v for v in client.list_voices(prefix=PREFIX, family=catalog.QWEN_FAMILY)}
    assert listed[created.voice_id].target_model == catalog.QWEN_VD
    assert created.voice_id not in {v.voice_id for v in client.list_voices(prefix=PREFIX)}  # CosyVoice's list
    client.delete_voice(created.voice_id)
    cleanup.remove(created.voice_id)
    assert_gone(client, created.voice_id)


def check_qwen_other_language_and_format(client, synth, cleanup):
    design = QWEN_EN.replace(preview_text="Guten Abend und willkommen.", language="de", response_format="mp3")
    created = client.create_voice(design)
    cleanup.append(created.voice_id)
    assert (created.preview.format, created.preview.sample_rate) == ("mp3", 24000)
    assert created.preview.duration > 0.5


def check_qwen_limits_and_errors(client, synth, cleanup):
    """Broken limits never leave the client (each names its field); an unknown Qwen voice is
    VoiceNotFound. Nothing here is designed, so nothing is billed."""
    with pytest.raises(ValidationError) as info:
        client.create_voice(QWEN_EN.replace(voice_prompt="a" * 2049, prefix="x" * 17))
    assert {p.field for p in info.value.problems} == {"voice_prompt", "prefix"}
    with pytest.raises(VoiceNotFound):
        client.query_voice(f"qwen-tts-vd-{PREFIX}-voice-20250101000000-0000")


CHECKS = [
    check_design_list_query_delete,
    check_chinese_mp3_preview,
    check_speak_with_designed_voice,
    check_errors,
    check_listing_and_billing_as_documented,
    check_qwen_design_list_query_delete,
    check_qwen_other_language_and_format,
    check_qwen_limits_and_errors,
]
