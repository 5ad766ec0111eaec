"""Simulator and client fidelity, round 2 (issue 14, contract §11), against the running simulator:
instruction support and its effect, language hints of previews, raw billed characters, list items
without target_model, voice ids made elsewhere, content refusals, the designed-voice language
warning and workspace endpoints."""

from __future__ import annotations

import json
import uuid
import warnings

import pytest
import requests
import websocket
from hypothesis import given
from hypothesis import strategies as st

from cosyvoice_lab import DataInspectionFailed, Lab, catalog
from cosyvoice_lab.analysis.measures import measure
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, ValidationError
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.http import DashScopeClient
from cosyvoice_lab.service.speech import LanguageWarning
from cosyvoice_lab.service.ws import Synthesizer

EN_TEXT = "Good evening, and welcome to the late news. Here are tonight's headlines."
ZH_TEXT = "各位听众朋友，大家好，欢迎收听晚间新闻。"
UID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def sim():
    with serve(
        enrollment_rps=None,
        synthesis_rps=None,
        model_profiles={"*": {"design_latency": 0}},
        first_audio_seconds=0,
        realtime_factor=0,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(sim):
    return DashScopeClient(api_key=sim.api_key, base_url=sim.base_url, backend="offline")


@pytest.fixture(scope="module")
def synth(client):
    return Synthesizer(client=client)


@pytest.fixture(scope="module")
def voices(client):
    """One designed voice per model that matters here (and per language on flash)."""
    made = {
        "flash": VoiceDesign("A man speaking.", "Good evening.", target_model=catalog.V35_FLASH, prefix="fid"),
        "flash_zh": VoiceDesign("男声。", "大家好。", target_model=catalog.V35_FLASH, prefix="fid"),
        "v3plus": VoiceDesign("A man speaking.", "Good evening.", target_model=catalog.V3_PLUS, prefix="fid"),
    }
    return {name: client.create_voice(design).voice_id for name, design in made.items()}


def post(sim, body: dict) -> requests.Response:
    url = sim.base_url + catalog.CUSTOMIZATION_PATH
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=30)


def run_task_event(sim, model: str, voice: str, **params) -> dict:
    """The header of the simulator's answer to a raw run-task (bypassing the client's checks)."""
    ws = websocket.create_connection(sim.ws_url, header=[f"Authorization: Bearer {sim.api_key}"], timeout=30)
    try:
        parameters = {"text_type": "PlainText", "voice": voice, "format": "wav", "sample_rate": 24000, **params}
        payload = {"task_group": "audio", "task": "tts", "function": "SpeechSynthesizer", "model": model}
        header = {"action": "run-task", "task_id": uuid.uuid4().hex, "streaming": "duplex"}
        ws.send(json.dumps({"header": header, "payload": {**payload, "parameters": parameters, "input": {}}}))
        return json.loads(ws.recv())["header"]
    finally:
        ws.close()


# --- instruction -------------------------------------------------------------------------------


def test_instruction_is_refused_locally_for_v3_plus(synth, voices):
    with pytest.raises(ValidationError) as info:
        synth.speak(voices["v3plus"], "Hello there.", instruction="Speak slowly.")
    (problem,) = info.value.problems
    assert (problem.field, problem.rule) == ("instruction", "model_support")
    assert catalog.V3_PLUS in problem.message and catalog.V35_FLASH in problem.message
    assert synth.speak(voices["v3plus"], "Hello there.").audio.duration > 0.3  # without one it speaks


def test_the_simulator_fails_an_instruction_task_on_v3_plus(sim, voices):
    refused = run_task_event(sim, catalog.V3_PLUS, voices["v3plus"], instruction="Speak slowly.")
    assert (refused["event"], refused["error_code"]) == ("task-failed", "InvalidParameter")
    assert "instruction" in refused["error_message"]
    accepted = run_task_event(sim, catalog.V35_FLASH, voices["flash"], instruction="Speak slowly.")
    assert accepted["event"] == "task-started"


def _measured(synth, voice: str, text: str, language: str, instruction: str | None = None):
    audio = synth.speak(voice, text, instruction=instruction).audio
    return measure(audio, text, language, predicted_quality=False)


def test_instruction_words_shape_the_delivery(synth, voices):
    plain = _measured(synth, voices["flash"], EN_TEXT, "en")
    slow = _measured(synth, voices["flash"], EN_TEXT, "en", "Please read this slowly.")
    fast = _measured(synth, voices["flash"], EN_TEXT, "en", "Read it quickly.")
    soft = _measured(synth, voices["flash"], EN_TEXT, "en", "Say it softly.")
    print(
        f"speaking rate: plain {plain.speaking_rate:.2f}, slowly {slow.speaking_rate:.2f}, "
        f"quickly {fast.speaking_rate:.2f} {plain.rate_unit}; loudness plain {plain.loudness_lufs:.1f}, "
        f"softly {soft.loudness_lufs:.1f} LUFS"
    )
    assert slow.speaking_rate < 0.9 * plain.speaking_rate < 0.9 * fast.speaking_rate
    assert soft.loudness_lufs < plain.loudness_lufs - 2.0


def test_a_chinese_instruction_is_heard_too(synth, voices):
    plain = _measured(synth, voices["flash_zh"], ZH_TEXT, "zh")
    slow = _measured(synth, voices["flash_zh"], ZH_TEXT, "zh", "请用缓慢的语速朗读。")
    lively = _measured(synth, voices["flash_zh"], ZH_TEXT, "zh", "用欢快、热情的语气。")
    print(
        f"zh: rate plain {plain.speaking_rate:.2f}, 缓慢 {slow.speaking_rate:.2f}; f0 spread plain "
        f"{plain.f0_spread_semitones:.1f}, 欢快 {lively.f0_spread_semitones:.1f} st"
    )
    assert slow.speaking_rate < 0.9 * plain.speaking_rate
    assert lively.f0_spread_semitones > plain.f0_spread_semitones


# --- language_hints of a preview ---------------------------------------------------------------


def test_an_english_preview_without_language_hints_is_accepted(sim):
    body = {
        "model": catalog.ENROLLMENT_MODEL,
        "input": {
            "action": "create_voice",
            "target_model": catalog.V35_PLUS,
            "voice_prompt": "A calm male narrator.",
            "preview_text": "Good evening, and welcome.",
            "prefix": "nohint",
        },
    }
    r = post(sim, body)
    assert r.status_code == 200, r.text
    vid = r.json()["output"]["voice_id"]
    assert next(v for v in sim.voices() if v["voice_id"] == vid)["language"] == "en"  # read in English
    # a hint that is sent must still match the preview
    mismatch = post(sim, {**body, "input": {**body["input"], "language_hints": ["zh"]}})
    assert mismatch.status_code == 400 and "language_hints" in mismatch.json()["message"]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.!?ABCXYZ", min_size=1, max_size=200).filter(str.strip))
def test_design_validation_accepts_english_previews_without_a_language(text):
    if not any(c.isalpha() for c in text):
        return
    design = VoiceDesign("A calm narrator.", text)
    assert design.problems() == []
    assert design.to_payload()["input"]["language_hints"] == ["en"]
    assert [p.field for p in design.replace(language="zh").problems()] == ["language"]


# --- billed characters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,billed",
    [("Hello there.  How are you?", 26), ("中 文。", 6), ("First line.\nSecond line. ", 25)],
)
def test_billed_characters_count_the_raw_text(synth, voices, text, billed):
    voice = voices["flash_zh"] if "中" in text else voices["flash"]
    assert catalog.billed_characters(text) == billed
    result = synth.speak(voice, text)
    assert result.characters == billed
    assert result.cost_cny == pytest.approx(catalog.synthesis_cost_cny(catalog.V35_FLASH, billed))


# --- list items, ids made elsewhere -------------------------------------------------------------


def test_list_items_carry_no_target_model_and_the_client_derives_it(sim, client, voices):
    listing = post(sim, {"model": catalog.ENROLLMENT_MODEL, "input": {"action": "list_voice", "prefix": "fid"}})
    items = listing.json()["output"]["voice_list"]
    assert items and all("target_model" not in item for item in items)
    models = {v.voice_id: v.target_model for v in client.list_voices(prefix="fid")}
    assert models[voices["flash"]] == catalog.V35_FLASH and models[voices["v3plus"]] == catalog.V3_PLUS
    query = post(
        sim, {"model": catalog.ENROLLMENT_MODEL, "input": {"action": "query_voice", "voice_id": voices["flash"]}}
    )
    assert query.json()["output"]["target_model"] == catalog.V35_FLASH  # query answers still name it


FOREIGN = {
    f"{catalog.V35_PLUS}-vd-MyBrand-{UID}": catalog.V35_PLUS,  # capitals in the prefix: made in the console
    f"qwen-audio-3.0-tts-plus-vd-shop-{UID}": "qwen-audio-3.0-tts-plus",
    f"qwen-audio-3.1-tts-flash-vd-Shop2-{UID}": "qwen-audio-3.1-tts-flash",
}


@given(
    model=st.sampled_from([*catalog.MODELS, *catalog.QWEN_AUDIO_DESIGN_MODELS]),
    prefix=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10),
    uid=st.uuids(),
)
def test_voice_ids_of_every_design_family_parse(model, prefix, uid):
    voice_id = f"{model}-vd-{prefix}-{uid.hex}"
    m = catalog.VOICE_ID_RE.match(voice_id)
    assert m and (m.group("model"), m.group("prefix"), m.group("uid")) == (model, prefix, uid.hex)
    assert catalog.model_of_voice(voice_id) == model
    assert catalog.model_of_voice(f"{model}-vd-{prefix}-{uid.hex}x") is None


def test_voices_made_elsewhere_list_and_a_cosyvoice_one_speaks(sim, client, synth, tmp_path):
    for voice_id in FOREIGN:
        sim.plant(voice_id, voice_prompt="A warm voice.", preview_text="Hello.", language="en")
    listed = {v.voice_id: v for v in client.list_voices()}
    for voice_id, model in FOREIGN.items():
        assert listed[voice_id].target_model == model and listed[voice_id].status == "OK"
        assert client.query_voice(voice_id).target_model == model
    frame = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False, measure=False).voices()
    rows = frame.set_index("voice_id").loc[list(FOREIGN)]
    assert list(rows["target_model"]) == list(FOREIGN.values()) and not rows["known"].any()
    mine = f"{catalog.V35_PLUS}-vd-MyBrand-{UID}"
    assert synth.speak(mine, "Hello there.").audio.duration > 0.3
    with pytest.raises(ValidationError, match="model"):  # not a CosyVoice model: refused before sending
        synth.speak(f"qwen-audio-3.0-tts-plus-vd-shop-{UID}", "Hello there.")


# --- content refusal ----------------------------------------------------------------------------


def test_data_inspection_failed_is_its_own_error(sim, client):
    imitation = VoiceDesign("A voice that sounds like Morgan Freeman.", "Good evening.", prefix="insp")
    sim.faults = {"refuse_imitation": True}
    try:
        before = len(sim.request_log)
        with pytest.raises(DataInspectionFailed) as info:
            client.create_voice(imitation)
        assert len(sim.request_log) == before + 1  # refused content is not retried
        assert isinstance(info.value, APIError)
        assert (info.value.status, info.value.code) == (400, "DataInspectionFailed")
        assert "inappropriate content" in str(info.value)
        zh = VoiceDesign("模仿周杰伦的声音。", "大家好。", prefix="insp")
        with pytest.raises(DataInspectionFailed):
            client.create_voice(zh)
        # a prompt that imitates nobody is designed as usual
        assert client.create_voice(VoiceDesign("A voice that sounds like a warm grandmother.", "Hello.", prefix="insp"))
    finally:
        sim.faults = None
    assert client.create_voice(imitation).voice_id  # the option is off by default


# --- the designed-voice language warning --------------------------------------------------------


def test_a_designed_voice_speaking_another_language_warns(synth, voices):
    with pytest.warns(LanguageWarning, match="Chinese and English"):
        result = synth.speak(voices["flash"], "Bonjour à tous.", language_hints=["fr"])
    assert result.audio.duration > 0.3  # it still speaks
    with warnings.catch_warnings():
        warnings.simplefilter("error", LanguageWarning)
        synth.speak(voices["flash"], "Hello there.", language_hints=["en"])
        synth.speak(voices["flash_zh"], "大家好。", language_hints=["zh"])


# --- workspace endpoints ------------------------------------------------------------------------


def test_workspace_endpoints_are_built_from_the_id():
    assert catalog.workspace_endpoints("ws-abc123") == (
        "https://ws-abc123.cn-beijing.maas.aliyuncs.com/api/v1",
        "wss://ws-abc123.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference",
    )
    for bad in ("", "a.b", "ws abc", "-ws", "x" * 64, "evil.com/x"):
        with pytest.raises(ValueError):
            catalog.workspace_endpoints(bad)


def test_a_lab_with_a_workspace_talks_to_its_host(tmp_path):
    lab = Lab(tmp_path / "lab", workspace="ws-abc123", api_key="sk-" + "a" * 32, progress=False)
    assert lab.client.base_url == "https://ws-abc123.cn-beijing.maas.aliyuncs.com/api/v1"
    assert lab.client.backend == "dashscope" and not lab.offline and lab.simulator is None
    ws_url = Synthesizer(client=lab.client).ws_url
    assert ws_url == "wss://ws-abc123.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference"
    for kwargs in ({"backend": "offline"}, {"workspace": "bad id"}, {"region": "ap-southeast-1"}):
        with pytest.raises(ValidationError, match="workspace"):
            Lab(tmp_path / "lab", **{"workspace": "ws-abc123", "api_key": "sk-" + "a" * 32, **kwargs})


def test_the_cli_takes_a_workspace_flag(tmp_path, capsys):
    from cosyvoice_lab.cli import main

    code = main(["voices", "list", "--folder", str(tmp_path), "--backend", "offline", "--workspace", "ws-abc123"])
    assert code != 0 and "workspace" in capsys.readouterr().err
