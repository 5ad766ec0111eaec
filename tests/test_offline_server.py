"""The simulator's HTTP side, tested over loopback with plain ``requests`` (no mocks)."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import re
import socket
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import parselmouth
import pytest
import requests
import soundfile as sf

from cosyvoice_lab import catalog
from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline import Faults, Simulator, serve, shared

PATH = catalog.CUSTOMIZATION_PATH
# contract §2.2, verbatim
EXAMPLE = {
    "model": "voice-enrollment",
    "input": {
        "action": "create_voice",
        "target_model": "cosyvoice-v3.5-plus",
        "voice_prompt": "沉稳的中年男性，音色低沉浑厚",
        "preview_text": "各位听众朋友，大家好",
        "prefix": "announcer",
        "language_hints": ["zh"],
    },
    "parameters": {"sample_rate": 24000, "response_format": "wav"},
}
EN_DESIGN = {
    "model": "voice-enrollment",
    "input": {
        "action": "create_voice",
        "target_model": "cosyvoice-v3.5-flash",
        "prefix": "en",
        "voice_prompt": "A calm woman in her thirties.",
        "preview_text": "Hello, and welcome to the show.",
        "language_hints": ["en"],
    },
}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


INSTANT = {"*": {"design_latency": 0}}  # the models' design latency is tested in test_offline_profiles.py


@pytest.fixture(scope="module")
def sim():
    with serve(enrollment_rps=None, model_profiles=INSTANT) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(request):
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


def post(s, body, *, key=None, timeout=10, **kw):
    headers = {"Authorization": f"Bearer {key or s.api_key}", **kw.pop("headers", {})}
    if isinstance(body, (bytes, str)):
        return requests.post(s.base_url + PATH, data=body, headers=headers, timeout=timeout, **kw)
    return requests.post(s.base_url + PATH, json=body, headers=headers, timeout=timeout, **kw)


def design(**changes):
    body = copy.deepcopy(EXAMPLE)
    for k, v in changes.items():
        if k in ("sample_rate", "response_format"):
            body["parameters"][k] = v
        elif v is None:
            body["input"].pop(k, None)
        else:
            body["input"][k] = v
    return body


def create(s, **changes) -> str:
    r = post(s, design(**changes))
    assert r.status_code == 200, r.text
    return r.json()["output"]["voice_id"]


def action(s, name, **fields):
    return post(s, {"model": "voice-enrollment", "input": {"action": name, **fields}})


def assert_error(r, status, code, message=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["code"] == code
    assert UUID_RE.match(body["request_id"]) and r.headers["x-request-id"] == body["request_id"]
    if message is not None:
        assert body["message"] == message


def decode(preview: dict) -> tuple[np.ndarray, int]:
    data = base64.b64decode(preview["data"])
    if preview["response_format"] == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, preview["sample_rate"]
    return sf.read(io.BytesIO(data), dtype="float32")


def median_f0(x, rate) -> float:
    f0 = parselmouth.Sound(x.astype(np.float64), rate).to_pitch().selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


# --- create ---------------------------------------------------------------------------------


def test_documented_example_returns_documented_shape(sim):
    r = requests.post(
        sim.base_url + PATH,
        json=EXAMPLE,
        timeout=10,
        headers={"Authorization": f"Bearer {sim.api_key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"output", "usage", "request_id"}
    assert set(body["output"]) == {"preview_audio", "target_model", "voice_id"}  # no status
    assert body["usage"] == {"count": 1} and UUID_RE.match(body["request_id"])
    assert r.headers["x-request-id"] == body["request_id"]
    assert body["output"]["target_model"] == "cosyvoice-v3.5-plus"
    m = catalog.VOICE_ID_RE.match(body["output"]["voice_id"])
    assert m and m.group("model") == "cosyvoice-v3.5-plus" and m.group("prefix") == "announcer"
    preview = body["output"]["preview_audio"]
    assert set(preview) == {"data", "sample_rate", "response_format"}
    assert (preview["sample_rate"], preview["response_format"]) == (24000, "wav")
    x, rate = decode(preview)
    assert rate == 24000 and 1.0 < len(x) / rate < 5.0  # ten characters of Mandarin


@pytest.mark.parametrize("fmt, rate", [("mp3", 48000), ("pcm", 16000), ("wav", 16000)])
def test_english_preview_in_requested_format_and_rate(sim, fmt, rate):
    body = copy.deepcopy(EN_DESIGN)
    body["parameters"] = {"sample_rate": rate, "response_format": fmt}
    preview = post(sim, body).json()["output"]["preview_audio"]
    assert (preview["sample_rate"], preview["response_format"]) == (rate, fmt)
    x, got = decode(preview)
    assert got == rate and 1.2 < len(x) / rate < 5.0 and np.abs(x).max() > 0.05


def test_defaults_without_parameters(sim):
    body = copy.deepcopy(EXAMPLE)
    del body["parameters"]
    preview = post(sim, body).json()["output"]["preview_audio"]
    assert (preview["sample_rate"], preview["response_format"]) == (24000, "wav")
    body["parameters"] = {}  # what SDK 1.x sends
    assert post(sim, body).status_code == 200


def test_sdk_style_headers_are_accepted(sim):
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json; charset=utf-8",
        "user-agent": "dashscope/2.0.2",
        "X-DashScope-WorkSpace": "ws-1",
        "x-dashscope-sdk-client": "python",
        "x-dashscope-sdk-session-id": "abc",
    }
    r = post(sim, json.dumps(EXAMPLE, ensure_ascii=False).encode(), headers=headers)
    assert r.status_code == 200


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deep_male_preview_is_lower_than_high_young_female(sim, lang):
    prompts = {
        "en": ("A deep male voice, low and resonant.", "A high-pitched young female voice, bright."),
        "zh": ("沉稳的中年男性，音色低沉浑厚", "年轻女性，声音清亮高亢"),
    }[lang]
    text = {"en": "Good evening, and welcome to the news.", "zh": "各位听众朋友，大家好，欢迎收听。"}[lang]
    f0 = []
    for prompt in prompts:
        preview = post(sim, design(voice_prompt=prompt, preview_text=text, language_hints=[lang])).json()["output"][
            "preview_audio"
        ]
        f0.append(median_f0(*decode(preview)))
    assert f0[0] * 1.8 < f0[1], f0


def test_limits_are_inclusive(sim):
    create(
        sim,
        voice_prompt="低" * catalog.VOICE_PROMPT_MAX,
        preview_text="好" * catalog.PREVIEW_TEXT_MAX,
        prefix="a" * catalog.PREFIX_MAX,
    )


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code, message",
    [
        (b"not json", "BadRequest.IllegalInput", "The input parameter requires json format."),
        (b"[1, 2]", "BadRequest.IllegalInput", None),
        (b'{"input": {"action": "list_voice"}}', "BadRequest.EmptyModel", None),
        (b'{"model": "voice-enrollment"}', "BadRequest.EmptyInput", None),
        (
            b'{"model": "qwen-voice-enrollment", "input": {"action": "list"}}',  # Qwen cloning: not simulated
            "InvalidParameter",
            "url error, please check url!",
        ),
        (  # the Qwen design family's verbs are create/list/query/delete (contract §12)
            b'{"model": "qwen-voice-design", "input": {"action": "list_voice"}}',
            "InvalidParameter",
            "Required parameter(action) missing or invalid, please check the request parameters.",
        ),
        (b'{"model": "voice-enrollment", "input": {"action": "create"}}', "InvalidParameter", None),
    ],
)
def test_envelope_errors(sim, body, code, message):
    assert_error(post(sim, body), 400, code, message)


def _field_message(field):
    return f"Required parameter({field}) missing or invalid, please check the request parameters."


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"target_model": "cosyvoice-v2"}, "target_model"),
        ({"target_model": None}, "target_model"),
        ({"prefix": "Announcer"}, "prefix"),
        ({"prefix": "a" * 11}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "an-nouncer"}, "prefix"),
        ({"voice_prompt": ""}, "voice_prompt"),
        ({"voice_prompt": "x" * 501}, "voice_prompt"),
        ({"voice_prompt": None}, "voice_prompt"),
        ({"preview_text": "  "}, "preview_text"),
        ({"preview_text": "好" * 201}, "preview_text"),
        ({"language_hints": ["fr"]}, "language_hints"),
        ({"language_hints": "zh"}, "language_hints"),
        ({"language_hints": ["zh"], "preview_text": "Hello there."}, "language_hints"),
        ({"language_hints": ["en"]}, "language_hints"),  # Chinese preview, en hint
        ({"sample_rate": 22050}, "sample_rate"),
        ({"sample_rate": "24000"}, "sample_rate"),
        ({"sample_rate": 24000.0}, "sample_rate"),
        ({"response_format": "opus"}, "response_format"),
    ],
)
def test_design_validation_names_the_field(sim, changes, field):
    assert_error(post(sim, design(**changes)), 400, "InvalidParameter", _field_message(field))
    assert sim.voices() == []


def test_a_simulator_failure_answers_in_the_error_shape(sim, monkeypatch):
    from cosyvoice_lab.offline import engine

    def broken(*args, **kwargs):
        raise ValueError("engine trouble")

    monkeypatch.setattr(engine, "preview", broken)
    assert_error(post(sim, EXAMPLE), 500, "InternalError")


def test_international_mode_rejects_every_design():
    with serve(intl=True) as s:
        assert_error(post(s, EXAMPLE), 400, "InvalidParameter")
        assert s.voices() == []


def test_quota_counts_voices_and_delete_frees_a_slot():
    with serve(quota=2) as s:
        first = create(s)
        create(s)
        assert_error(post(s, EXAMPLE), 400, "Throttling.AllocationQuota", "Your current quota is 2")
        assert action(s, "delete_voice", voice_id=first).status_code == 200
        create(s)


def test_default_quota_is_the_catalog_one(sim):
    assert sim.state.registry.quota == catalog.VOICE_QUOTA == 1000


# --- list / query / update / delete -----------------------------------------------------------------


def test_list_filters_orders_and_pages(sim):
    ids = [create(sim, prefix=p) for p in ("aa", "bb", "aa", "aa")]
    r = action(sim, "list_voice")
    body = r.json()
    assert r.status_code == 200 and set(body) == {"output", "usage", "request_id"}
    assert set(body["output"]) == {"voice_list"} and body["usage"] == {"count": 1}
    assert [v["voice_id"] for v in body["output"]["voice_list"]] == ids[::-1]  # newest first
    item = body["output"]["voice_list"][0]
    assert set(item) == {  # no target_model: "仅Qwen返回" (contract §11)
        "voice_id",
        "voice_prompt",
        "preview_text",
        "gmt_create",
        "gmt_modified",
        "status",
    }
    assert item["status"] == "OK" and item["voice_prompt"] == EXAMPLE["input"]["voice_prompt"]
    aa = [v["voice_id"] for v in action(sim, "list_voice", prefix="aa").json()["output"]["voice_list"]]
    assert aa == [ids[3], ids[2], ids[0]]
    page = action(sim, "list_voice", prefix="aa", page_size=2, page_index=1).json()["output"]["voice_list"]
    assert [v["voice_id"] for v in page] == [ids[0]]
    assert action(sim, "list_voice", page_size=0).json()["output"]["voice_list"] == []
    assert action(sim, "list_voice", page_size=1000).status_code == 200


def test_list_times_are_utc_plus_8(sim):
    create(sim)
    item = action(sim, "list_voice").json()["output"]["voice_list"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", item["gmt_create"])
    stamp = datetime.strptime(item["gmt_create"], catalog.TIME_FORMAT).replace(tzinfo=timezone(timedelta(hours=8)))
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 5


@pytest.mark.parametrize(
    "fields", [{"page_size": 1001}, {"page_size": -1}, {"page_index": -1}, {"page_index": "0"}, {"page_size": 1.5}]
)
def test_list_rejects_bad_paging(sim, fields):
    assert_error(action(sim, "list_voice", **fields), 400, "InvalidParameter", _field_message(next(iter(fields))))


def test_query_shape(sim):
    vid = create(sim)
    body = action(sim, "query_voice", voice_id=vid).json()
    assert body["usage"] == {"count": 1}
    assert set(body["output"]) == {
        "voice_id",
        "gmt_create",
        "gmt_modified",
        "preview_text",
        "target_model",
        "status",
        "voice_prompt",
    }
    assert body["output"]["voice_id"] == vid and body["output"]["status"] == "OK"


def test_delete_then_unknown(sim):
    vid = create(sim)
    r = action(sim, "delete_voice", voice_id=vid)
    assert r.status_code == 200 and r.json() == {
        "output": {},
        "usage": {"count": 1},
        "request_id": r.headers["x-request-id"],
    }
    for name in ("query_voice", "delete_voice", "update_voice"):
        assert_error(
            action(sim, name, voice_id=vid), 400, "BadRequest.ResourceNotExist", "The Required resource not exist."
        )
    assert_error(action(sim, "query_voice"), 400, "InvalidParameter", _field_message("voice_id"))


def test_update_is_not_for_designed_voices(sim):
    vid = create(sim)
    assert_error(
        action(sim, "update_voice", voice_id=vid, url="https://example.com/a.wav"),
        400,
        "InvalidParameter",
        "update_voice is not supported for designed voices",
    )


def test_status_lifecycle():
    with serve(deploying_seconds=1.0) as s:
        vid = create(s)
        assert action(s, "query_voice", voice_id=vid).json()["output"]["status"] == "DEPLOYING"
        s.clock.advance(1.1)  # the simulator's clock, driven: no sleep
        assert action(s, "query_voice", voice_id=vid).json()["output"]["status"] == "OK"
        s.set_status(vid, "UNDEPLOYED")
        assert action(s, "list_voice").json()["output"]["voice_list"][0]["status"] == "UNDEPLOYED"
        with pytest.raises(KeyError):
            s.set_status("nope", "OK")


# --- auth and logging -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-x"}, {"Authorization": "Basic c2s6eA=="}],
)
def test_wrong_or_missing_key_is_401(sim, headers):
    r = requests.post(sim.base_url + PATH, json=EXAMPLE, headers=headers, timeout=10)
    assert_error(r, 401, "InvalidApiKey", "Invalid API-key provided.")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_scheme_word_is_case_insensitive(sim, scheme):
    r = requests.post(
        sim.base_url + PATH,
        json={"model": "voice-enrollment", "input": {"action": "list_voice"}},
        headers={"Authorization": f"{scheme} {sim.api_key}"},
        timeout=10,
    )
    assert r.status_code == 200


def test_key_resolution(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-from-env")
    assert Simulator().api_key == "sk-from-env"
    assert Simulator(api_key="sk-arg").api_key == "sk-arg"
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    assert Simulator().api_key == OFFLINE_API_KEY


def test_key_never_logged(caplog):
    secret = "sk-very-secret-key-0123456789"
    caplog.set_level(logging.DEBUG)
    with serve(api_key=secret) as s:
        create(s)
        action(s, "list_voice")
        post(s, EXAMPLE, key="sk-wrong-" + secret)
        post(s, b"garbage")
    lines = [r.getMessage() for r in caplog.records]
    offline = [r for r in caplog.records if r.name == "cosyvoice_lab.offline"]
    assert len(offline) >= 4
    assert all(re.search(r"^POST \S+ -> \d+ in [\d.]+ ms request_id=[0-9a-f-]{36}$", r.getMessage()) for r in offline)
    assert not any(secret in line for line in lines) and secret not in caplog.text


def test_listens_on_loopback_only(sim):
    assert sim.base_url.startswith("http://127.0.0.1:") and sim.ws_url.startswith("ws://127.0.0.1:")
    addrs = [a[0] for a in sim._runner.addresses]
    assert addrs == ["127.0.0.1"]


# --- rate limits ------------------------------------------------------------------------------


def test_enrollment_rate_limit_429_with_retry_after():
    with serve(enrollment_rps=4) as s:
        codes = [action(s, "list_voice") for _ in range(7)]
        assert [r.status_code for r in codes] == [200] * 4 + [429] * 3
        assert_error(codes[-1], 429, "Throttling.RateQuota", "Requests rate limit exceeded, try again later.")
        assert int(codes[-1].headers["Retry-After"]) >= 1
        s.clock.advance(1.05)  # a second later on the simulator's clock, without sleeping it
        assert action(s, "list_voice").status_code == 200
        times = [t for t, _, status in s.request_log if status == 200]
        assert all(sum(1 for u in times if t <= u < t + 1) <= 4 for t in times)


def test_rate_limit_can_be_disabled(sim):
    assert all(action(sim, "list_voice").status_code == 200 for _ in range(25))


def test_request_log_and_reset(sim):
    create(sim)
    action(sim, "list_voice")
    log = sim.request_log
    assert [(a, st) for _, a, st in log] == [("create_voice", 200), ("list_voice", 200)]
    assert log[0][0] <= log[1][0] <= time.monotonic()
    sim.reset()
    assert sim.request_log == [] and sim.voices() == []


# --- faults ---------------------------------------------------------------------------------------


def test_latency_is_added():
    with serve(faults=Faults(latency=0.25)) as s:
        t = time.monotonic()
        assert action(s, "list_voice").status_code == 200
        assert time.monotonic() - t >= 0.25


def test_errors_are_429_500_503_and_reproducible():
    def run():
        with serve(faults={"error_rate": 1.0, "seed": 7}) as s:
            rs = [action(s, "list_voice") for _ in range(30)]
        return rs

    rs = run()
    assert {r.status_code for r in rs} == {429, 500, 503}
    for r in rs:
        code = {429: "Throttling.RateQuota", 500: "InternalError", 503: "ServiceUnavailable"}[r.status_code]
        assert_error(r, r.status_code, code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
    assert [r.status_code for r in run()] == [r.status_code for r in rs]


def test_500s_and_drops_sometimes_happen_after_the_voice_was_stored(sim):
    sim.faults = Faults(error_rate=1.0, seed=3)
    statuses = [post(sim, EXAMPLE).status_code for _ in range(30)]
    stored_on_500 = len(sim.voices())
    assert 0 < stored_on_500 < statuses.count(500)  # some 500s stored their voice, some did not
    assert stored_on_500 == len(sim.voices())
    sim.reset()
    sim.faults = Faults(drop_rate=1.0, seed=3)
    for _ in range(12):
        with pytest.raises(requests.ConnectionError):
            post(sim, EXAMPLE)
    assert 0 < len(sim.voices()) < 12
    assert all(status == 0 for _, _, status in sim.request_log)


def test_faults_are_mutable_at_runtime(sim):
    assert action(sim, "list_voice").status_code == 200
    sim.faults.error_rate = 1.0
    assert action(sim, "list_voice").status_code in (429, 500, 503)
    sim.faults.error_rate = 0.0
    assert action(sim, "list_voice").status_code == 200


def test_hang_outlasts_the_client_timeout_but_the_voice_exists():
    with serve(faults=Faults(hang_rate=1.0, hang_seconds=30)) as s:
        t = time.monotonic()
        with pytest.raises(requests.Timeout):
            post(s, EXAMPLE, timeout=0.5)
        assert len(s.voices()) == 1
    assert time.monotonic() - t < 5  # stop() releases the hanging request


# --- persistence and lifecycle --------------------------------------------------------------------


def test_voices_survive_a_restart(tmp_path):
    with serve(state_dir=tmp_path) as s:
        vid = create(s)
        gone = create(s, prefix="gone")
        action(s, "delete_voice", voice_id=gone)
        before = s.voices()
    # one SQLite store (issue 12: several simulators may share the folder); no temp files left
    assert {p.name for p in tmp_path.iterdir()} <= {"voices.sqlite3", "voices.sqlite3-wal", "voices.sqlite3-shm"}
    with sqlite3.connect(tmp_path / "voices.sqlite3") as db:
        assert [r[0] for r in db.execute("SELECT voice_id FROM voices")] == [vid]
    with serve(state_dir=tmp_path) as s:
        assert s.voices() == before and "settings" in before[0]
        assert action(s, "query_voice", voice_id=vid).json()["output"]["status"] == "OK"
        assert_error(action(s, "query_voice", voice_id=gone), 400, "BadRequest.ResourceNotExist")


def test_start_stop_and_shared():
    sim = Simulator.start(enrollment_rps=1)
    try:
        assert sim.port and action(sim, "list_voice").status_code == 200
    finally:
        sim.stop()
    assert sim.port is None
    again = Simulator(port=0).start()
    again.stop()
    assert shared() is shared() and shared().port


def test_unknown_route_is_json_404(sim):
    r = requests.get(sim.base_url + "/nope", timeout=5)
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


def test_port_in_use_raises():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(OSError):
            Simulator(port=sock.getsockname()[1]).start()


def test_concurrent_creates_respect_quota():
    import concurrent.futures as cf

    with serve(quota=3, enrollment_rps=None) as s:
        with cf.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: post(s, EXAMPLE).status_code, range(8)))
        assert codes.count(200) == 3 and codes.count(400) == 5 and len(s.voices()) == 3


def test_uuid_shaped_voice_ids_are_unique(sim):
    ids = {create(sim) for _ in range(3)}
    assert len(ids) == 3 and all(len(uuid.UUID(i.rsplit("-", 1)[1]).hex) == 32 for i in ids)


def test_action_latency_slows_only_that_action():
    import time as _time

    from cosyvoice_lab.offline import serve as _serve

    with _serve(enrollment_rps=None, faults={"action_latency": {"list_voice": 0.5}}) as s:
        url = s.base_url + catalog.CUSTOMIZATION_PATH
        headers = {"Authorization": f"Bearer {s.api_key}"}
        t0 = _time.monotonic()
        requests.post(url, json={"model": "voice-enrollment", "input": {"action": "list_voice"}}, headers=headers)
        listed = _time.monotonic() - t0
        t0 = _time.monotonic()
        requests.post(
            url,
            json={"model": "voice-enrollment", "input": {"action": "query_voice", "voice_id": "x"}},
            headers=headers,
        )
        queried = _time.monotonic() - t0
    assert listed >= 0.5 > queried


def test_the_simulators_clock_is_the_machines_until_a_test_moves_it():
    from cosyvoice_lab.offline.state import Clock

    clock = Clock()
    assert abs(clock.time() - time.time()) < 1 and clock.monotonic() >= time.monotonic() - 1
    clock.advance(60)
    assert clock.time() - time.time() > 59
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
