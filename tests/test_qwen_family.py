"""The Qwen3-TTS voice-design family beside CosyVoice (contract §12): the catalog, validation
per family (with property tests), the simulator's wire shapes and errors, the client, and a
three-model comparison across families."""

import base64
import io
import re

import pytest
import requests
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import ValidationError, VoiceNotFound
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.http import DashScopeClient

PATH = "/services/audio/tts/customization"
INSTANT = {"*": {"design_latency": 0}}
QWEN = catalog.FAMILIES[catalog.QWEN_FAMILY]
COSY = catalog.FAMILIES[catalog.COSYVOICE_FAMILY]
# the documented create body (docs.qwencloud.com .../voice-design/create-voice; contract §12)
DOCUMENTED = {
    "model": "qwen-voice-design",
    "input": {
        "action": "create",
        "target_model": "qwen3-tts-vd-2026-01-26",
        "voice_prompt": "A calm young female voice with clear articulation and gentle tone.",
        "preview_text": "Hello, welcome to our program.",
        "preferred_name": "narrator",
        "language": "en",
    },
    "parameters": {"sample_rate": 24000, "response_format": "wav"},
}
OK = {
    "voice_prompt": "A calm, deep male voice.",
    "preview_text": "Good evening, everyone.",
    "target_model": catalog.QWEN_VD,
}


@pytest.fixture(scope="module")
def sim():
    with serve(enrollment_rps=None, model_profiles=INSTANT, quota=3) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(request):
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


def post(sim, body):
    return requests.post(sim.base_url + PATH, json=body, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=30)


def create(sim, **changes):
    body = {**DOCUMENTED, "input": {**DOCUMENTED["input"]}, "parameters": {**DOCUMENTED["parameters"]}}
    for key, value in changes.items():
        (body["parameters"] if key in ("sample_rate", "response_format") else body["input"])[key] = value
    return post(sim, body)


def refused(r, field):
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidParameter" and f"({field})" in r.json()["message"]


def fields(design):
    return sorted(p.field for p in design.problems())


# --- catalog ------------------------------------------------------------------------------------


def test_the_family_is_chosen_by_the_target_model():
    for model in QWEN.target_models:
        assert catalog.family_of_model(model) is QWEN and catalog.family_name(model) == "qwen"
    for model in catalog.MODELS:
        assert catalog.family_of_model(model) is COSY
    assert catalog.family_of_model("qwen-audio-3.0-tts-plus") is None  # no design contract found: not in the catalog
    assert set(QWEN.target_models) <= set(catalog.design_models("ap-southeast-1"))
    assert catalog.design_models("ap-southeast-1") == QWEN.target_models  # no CosyVoice design in Singapore


def test_qwen_voice_names_parse():
    for name in (
        "qwen-tts-vd-announcer-voice-20251210145409-a1b2",  # the reference pages' samples
        "qwen-tts-vd-announcer-voice-20251201102800-a1b2",
        "qwen-tts-vd-my_voice_2-voice-20250812105009984-838b",  # 17 digits, as the cloning samples
    ):
        assert catalog.family_of_voice(name) is QWEN
    assert catalog.prefix_of_voice("qwen-tts-vd-my_voice_2-voice-20250812105009984-838b") == "my_voice_2"
    assert catalog.family_of_voice(f"cosyvoice-v3.5-plus-vd-lab-{'0' * 32}") is COSY
    assert catalog.model_of_voice("qwen-tts-vd-announcer-voice-20251210145409-a1b2") is None  # names hold no model


# --- validation ---------------------------------------------------------------------------------


def test_qwen_limits_are_its_own():
    assert VoiceDesign(**OK).problems() == []
    assert VoiceDesign(**{**OK, "voice_prompt": "a" * 2048}).problems() == []
    assert fields(VoiceDesign(**{**OK, "voice_prompt": "a" * 2049})) == ["voice_prompt"]
    assert VoiceDesign(**{**OK, "voice_prompt": "a" * 600, "target_model": catalog.V35_PLUS}).problems() != []
    assert VoiceDesign(**OK, prefix="My_Name_16_chars").problems() == []
    assert fields(VoiceDesign(**OK, prefix="a" * 17)) == ["prefix"]
    assert fields(VoiceDesign(**{**OK, "target_model": catalog.V35_PLUS}, prefix="My_Name")) == ["prefix"]
    assert VoiceDesign(**OK, sample_rate=8000, response_format="opus").problems() == []
    assert fields(VoiceDesign(**{**OK, "target_model": catalog.V35_PLUS}, sample_rate=8000)) == ["sample_rate"]
    assert VoiceDesign(**OK, region="ap-southeast-1").problems() == []


def test_qwen_preview_text_may_be_in_its_ten_languages():
    de = VoiceDesign(
        OK["voice_prompt"], "Guten Abend, meine Damen und Herren.", target_model=catalog.QWEN_VD, language="de"
    )
    assert de.problems() == []
    ja = VoiceDesign("温柔的女声", "こんにちは、皆さん。", target_model=catalog.QWEN_VD, language="ja")
    assert ja.problems() == []
    assert fields(ja.replace(target_model=catalog.V35_PLUS)) == ["language", "preview_text"]
    assert fields(de.replace(language="nl")) == ["language"]
    assert fields(de.replace(voice_prompt="Глубокий мужской голос")) == ["voice_prompt"]  # descriptions: zh/en only
    assert fields(VoiceDesign(OK["voice_prompt"], "Hello there.", target_model=catalog.QWEN_VD, language="zh")) == [
        "language"
    ]


def test_every_problem_at_once_each_naming_its_field():
    d = VoiceDesign("a" * 2049, "b" * 1025, target_model=catalog.QWEN_VD, prefix="bad-name", sample_rate=22050)
    with pytest.raises(ValidationError) as info:
        d.validate()
    assert {p.field for p in info.value.problems} == {"voice_prompt", "preview_text", "prefix", "sample_rate"}
    assert "preferred_name" in str(info.value)  # the prefix travels as preferred_name


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcXYZ019_-. é", max_size=20))
def test_property_names_follow_each_familys_rule(name):
    qwen_ok = re.fullmatch(r"[A-Za-z0-9_]{1,16}", name) is not None
    cosy_ok = re.fullmatch(r"[a-z0-9]{1,10}", name) is not None
    assert ("prefix" in fields(VoiceDesign(**OK, prefix=name))) is not qwen_ok
    assert ("prefix" in fields(VoiceDesign(**{**OK, "target_model": catalog.V35_PLUS}, prefix=name))) is not cosy_ok


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2300), st.integers(1, 1200), st.sampled_from(catalog.design_models("cn-beijing")))
def test_property_length_limits_per_family(prompt_len, preview_len, model):
    fam = catalog.family_of_model(model)
    found = fields(VoiceDesign("a" * prompt_len, "b" * preview_len, target_model=model))
    assert ("voice_prompt" in found) is (prompt_len > fam.voice_prompt_max)
    assert ("preview_text" in found) is (preview_len > fam.preview_text_max)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([None, *QWEN.languages, "nl"]), st.sampled_from([8000, 16000, 22050, 24000, 48000]))
def test_property_payload_matches_the_documented_shape(language, rate):
    d = VoiceDesign(**OK, language=language, sample_rate=rate)
    if language == "nl" or rate == 22050 or language == "zh":  # zh: the preview text is English
        with pytest.raises(ValidationError):
            d.to_payload()
        return
    body = d.to_payload()
    assert body["model"] == "qwen-voice-design" and body["input"]["action"] == "create"
    assert set(body["input"]) == {
        "action",
        "target_model",
        "voice_prompt",
        "preview_text",
        "preferred_name",
        "language",
    }
    assert body["input"]["language"] == (language or "en") and body["parameters"]["sample_rate"] == rate


# --- the simulator, raw ---------------------------------------------------------------------------


def test_documented_request_gets_the_documented_answer(sim):
    r = create(sim)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"output", "usage", "request_id"} and body["usage"] == {"count": 1}
    out = body["output"]
    assert set(out) == {"voice", "preview_audio", "target_model"} and out["target_model"] == catalog.QWEN_VD
    assert re.fullmatch(r"qwen-tts-vd-narrator-voice-\d{14}-[0-9a-f]{4}", out["voice"])
    assert out["preview_audio"]["sample_rate"] == 24000 and out["preview_audio"]["response_format"] == "wav"
    samples, rate = sf.read(io.BytesIO(base64.b64decode(out["preview_audio"]["data"])))
    assert rate == 24000 and len(samples) / rate > 0.5


def test_each_limit_is_refused_naming_its_field(sim):
    refused(create(sim, voice_prompt="a" * 2049), "voice_prompt")
    refused(create(sim, preview_text="b" * 1025), "preview_text")
    refused(create(sim, preferred_name="a" * 17), "preferred_name")
    refused(create(sim, preferred_name="bad-name"), "preferred_name")
    refused(create(sim, language="nl"), "language")
    refused(create(sim, language="zh"), "language")  # must match the English preview text
    refused(create(sim, target_model=catalog.V35_PLUS), "target_model")
    refused(create(sim, sample_rate=22050), "sample_rate")
    refused(create(sim, response_format="flac"), "response_format")
    refused(post(sim, {"model": "qwen-voice-design", "input": {"action": "create_voice"}}), "action")
    assert create(sim, voice_prompt="a" * 2048, preferred_name="a" * 16).status_code == 200


def test_other_languages_and_formats(sim):
    r = create(sim, preview_text="Guten Abend und willkommen.", language="de", sample_rate=8000, response_format="opus")
    assert r.status_code == 200, r.text
    assert r.json()["output"]["preview_audio"]["response_format"] == "opus"
    assert create(sim, language=None).json()["output"]["voice"]  # language omitted: accepted


def test_list_query_delete_shapes_and_families_apart(sim):
    name = create(sim).json()["output"]["voice"]
    listed = post(sim, {"model": "qwen-voice-design", "input": {"action": "list", "page_size": 10, "page_index": 0}})
    out = listed.json()["output"]
    assert (out["page_index"], out["page_size"], out["total_count"]) == (0, 10, 1) and listed.json()["usage"] == {}
    assert set(out["voice_list"][0]) == {
        "voice",
        "target_model",
        "language",
        "voice_prompt",
        "preview_text",
        "gmt_create",
        "gmt_modified",
    }
    cosy = post(sim, {"model": "voice-enrollment", "input": {"action": "list_voice"}}).json()["output"]["voice_list"]
    assert cosy == []  # each family lists its own voices
    queried = post(sim, {"model": "qwen-voice-design", "input": {"action": "query", "voice": name}}).json()
    assert queried["output"]["voice"] == name and queried["usage"] == {} and "status" not in queried["output"]
    r = post(sim, {"model": "voice-enrollment", "input": {"action": "query_voice", "voice_id": name}})
    assert r.status_code == 400 and r.json()["code"] == "BadRequest.ResourceNotExist"
    deleted = post(sim, {"model": "qwen-voice-design", "input": {"action": "delete", "voice": name}}).json()
    assert deleted["output"] == {"voice": name} and deleted["usage"] == {}
    r = post(sim, {"model": "qwen-voice-design", "input": {"action": "query", "voice": name}})
    assert r.status_code == 400 and r.json()["code"] == "BadRequest.ResourceNotExist"


def test_each_family_has_its_own_quota(sim):
    for _ in range(3):
        assert create(sim).status_code == 200
    r = create(sim)
    assert r.status_code == 400 and r.json()["code"] == "Throttling.AllocationQuota"
    client = DashScopeClient(api_key=sim.api_key, base_url=sim.base_url)
    client.create_voice(
        VoiceDesign("A deep voice.", "Hello there.", target_model=catalog.V35_FLASH)
    )  # CosyVoice's free


def test_singapore_designs_qwen_voices_only():
    with serve(enrollment_rps=None, model_profiles=INSTANT, intl=True) as s:
        assert create(s).status_code == 200
        client = DashScopeClient(api_key=s.api_key, base_url=s.base_url, region="ap-southeast-1")
        assert client.create_voice(VoiceDesign(**OK, region="ap-southeast-1")).voice_id.startswith("qwen-tts-vd-lab-")


# --- the client -----------------------------------------------------------------------------------


def test_client_designs_lists_queries_and_deletes_both_families(sim):
    client = DashScopeClient(api_key=sim.api_key, base_url=sim.base_url)
    qwen = client.create_voice(VoiceDesign(**OK, prefix="mine_1", response_format="mp3", sample_rate=16000))
    other = client.create_voice(VoiceDesign(**OK, prefix="other"))
    cosy = client.create_voice(VoiceDesign("A deep voice.", "Hello there.", target_model=catalog.V35_PLUS))
    assert (qwen.preview.format, qwen.preview.sample_rate, qwen.target_model) == ("mp3", 16000, catalog.QWEN_VD)
    assert qwen.preview.duration > 0.5
    assert [v.voice_id for v in client.list_voices(family="qwen", prefix="mine_1")] == [qwen.voice_id]
    assert {v.voice_id for v in client.list_voices()} == {cosy.voice_id}  # the default lists CosyVoice's
    both = {v.voice_id: v for v in client.list_voices(family=None)}
    assert set(both) == {qwen.voice_id, other.voice_id, cosy.voice_id}
    assert both[qwen.voice_id].design_family == "qwen" and both[qwen.voice_id].target_model == catalog.QWEN_VD
    info = client.wait_until_ready(qwen.voice_id, timeout=1, interval=0.1)  # no status in this family
    assert info.language == "en" and info.voice_prompt == OK["voice_prompt"]
    client.delete_voice(qwen.voice_id)
    with pytest.raises(VoiceNotFound):
        client.query_voice(qwen.voice_id)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="ab_Z9-", min_size=0, max_size=18))
def test_property_client_and_simulator_agree_on_names(sim, name):
    client_ok = not [p for p in VoiceDesign(**OK, prefix=name).problems() if p.field == "prefix"]
    r = create(sim, preferred_name=name, preview_text="Hi.")
    assert (r.status_code == 200) is client_ok, r.text
    if r.status_code == 200:
        sim.reset()


# --- the lab: a comparison across families ------------------------------------------------------------


def test_compare_across_families_offline(tmp_path, monkeypatch):
    from cosyvoice_lab import Lab

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    models = ["cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash", catalog.QWEN_VD]
    with serve(enrollment_rps=None, model_profiles=INSTANT) as s:
        lab = Lab(tmp_path / "lab", backend="offline", base_url=s.base_url, progress=False, measure=False)
        cmp = lab.compare(["A deep, slow male narrator."], target_models=models, repeats=1)
        df = cmp.df
        assert list(df["status"]) == ["ok"] * 3
        assert dict(zip(df["target_model"].astype(str), df["design_family"].astype(str), strict=True)) == {
            models[0]: "cosyvoice",
            models[1]: "cosyvoice",
            models[2]: "qwen",
        }
        takes = lab.log.takes(experiment=cmp.experiment)
        assert {t.design_family for t in takes} == {"cosyvoice", "qwen"}
        qwen_take = next(t for t in takes if t.design_family == "qwen")
        with pytest.raises(ValidationError, match="Qwen3-TTS-VD voice"):  # no synthesis contract for the family
            lab.speak(qwen_take, "Hello there.")
        table = cmp.evidence().table
        cost = table[(table["family"] == "cost") & (table["b"] == catalog.QWEN_VD)]
        assert list(cost["estimate"]) == [pytest.approx(0.2)]  # a Qwen design costs 0.2 CNY, CosyVoice's is free
        voices = lab.voices()
        assert sorted(voices["design_family"]) == ["cosyvoice", "cosyvoice", "qwen"] and voices["known"].all()
        assert lab.quota("qwen") == {"held": 1, "limit": 1000, "free": 999}
        plan = lab.cleanup(dry_run=False)
        assert plan["done"].all() and len(plan) == 3 and s.voices() == []


def test_the_official_sdk_designs_lists_queries_and_deletes_against_the_simulator(sim):
    """dashscope 2.0's ``client.audio.voice_design`` (Qwen-only, contract §7.4), unmodified."""
    import warnings

    dashscope = pytest.importorskip("dashscope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "dashscope 2.0 audio API is a preview"
        design = dashscope.Client(api_key=sim.api_key, base_url=sim.base_url).audio.voice_design
        voice = design.create(
            target_model=catalog.QWEN_VD,
            voice_prompt="A calm voice.",
            preview_text="Hello there.",
            preferred_name="sdk",
            language="en",
            parameters={"sample_rate": 16000, "response_format": "wav"},
        )
        assert catalog.QWEN_VOICE_ID_RE.match(voice.voice) and voice.preview_audio["sample_rate"] == 16000
        assert [v["voice"] for v in design.list().voices] == [voice.voice]
        assert design.get(voice.voice).target_model == catalog.QWEN_VD
        assert design.delete(voice.voice).voice == voice.voice
        with pytest.raises(Exception, match=r"parameter\(voice_prompt\)"):
            design.create(
                target_model=catalog.QWEN_VD, voice_prompt="a" * 2049, preview_text="Hi.", preferred_name="sdk"
            )
    assert sim.voices() == []


def test_a_qwen_design_whose_answer_was_lost_is_adopted_or_failed(tmp_path, monkeypatch):
    """The runner's reliability holds for the Qwen family: a create answered 500/503 is settled by
    listing the family (its voice adopted when it was stored; a listing that fails too leaves it for
    the next run), and a re-run redoes the rest: every cell ok once, no voice twice, no orphan."""
    from cosyvoice_lab import Lab

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    prompts = ["a deep, slow elderly male voice", "a bright, fast young female voice"]
    with serve(enrollment_rps=None, model_profiles=INSTANT) as s:
        s.faults.error_rate, s.faults.seed = 0.6, 11
        lab = Lab(tmp_path / "lab", backend="offline", base_url=s.base_url, progress=False, measure=False)
        kw = {"target_models": [catalog.QWEN_VD], "repeats": 3, "experiment": "q"}
        kw["preview_text"] = "Testing one two three."
        takes = lab.compare(prompts, **kw).takes
        s.faults.error_rate = 0
        assert any(t.status != "ok" for t in takes), "this seed makes some 500s and 503s"
        adopted = [t for t in takes if t.ok and t.preview_missing]  # stored, answer lost: found by listing
        assert all(catalog.QWEN_VOICE_ID_RE.match(t.voice_id) for t in adopted)
        lab.compare(prompts, **kw)
        final = [t for t in lab.log.takes(experiment="q") if t.ok]
        assert len({t.cell for t in final}) == 6 and len({t.voice_id for t in final}) == len(final)
        assert {v["voice_id"] for v in s.voices()} == {t.voice_id for t in final}  # no orphan, none twice


def test_the_builder_offers_the_qwen_model_and_shows_each_familys_limit(tmp_path, monkeypatch):
    from cosyvoice_lab import Lab
    from cosyvoice_lab.widgets import PromptBuilder

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, model_profiles=INSTANT) as s:
        lab = Lab(tmp_path / "lab", backend="offline", base_url=s.base_url, progress=False, measure=False)
        b = PromptBuilder(lab, preset="voice_assistant")
        b.model.value = catalog.QWEN_VD
        b.prompt.value = "a calm voice " * 50  # 650 characters: for the Qwen family only
        assert "prompt 650/2048" in b.counters.value and "voice_prompt" not in b.messages.value
        assert not b.design_button.disabled
        b.model.value = "both"  # plus and flash: CosyVoice's 500
        assert "prompt 650/500" in b.counters.value and "limit is 500" in b.messages.value
        assert b.design_button.disabled


def test_a_key_that_cannot_list_qwen_voices_still_lists_and_cleans_cosyvoice(tmp_path, monkeypatch):
    """voices()/cleanup list every family; a family the service refuses to list (e.g. not
    activated: 403) is left out with a warning. Statuses are checked on CosyVoice's list only (the
    Qwen family reports none), so a CosyVoice lab makes no Qwen request when it designs."""
    from cosyvoice_lab import Lab
    from cosyvoice_lab.errors import api_error

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, model_profiles=INSTANT) as s:
        lab = Lab(tmp_path / "lab", backend="offline", base_url=s.base_url, progress=False, measure=False)
        take = lab.design("A deep voice.", preview_text="Hello there.")
        assert not [a for _, a, _ in s.request_log if a in QWEN.verbs.values()]
        real = lab.client.list_voices

        def refusing(*args, family=catalog.COSYVOICE_FAMILY, **kw):
            if family == catalog.QWEN_FAMILY:
                raise api_error(403, "AccessDenied.Unpurchased", "Access denied.", "r1")
            return real(*args, family=family, **kw)

        monkeypatch.setattr(lab.client, "list_voices", refusing)
        with pytest.warns(RuntimeWarning, match="Qwen3-TTS-VD voices"):
            plan = lab.cleanup(dry_run=False)
        assert list(plan["voice_id"]) == [take.voice_id] and plan["done"].all()
