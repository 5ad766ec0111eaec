"""DashScopeClient against the real offline simulator on loopback: shapes, errors, retries."""

import logging

import numpy as np
import parselmouth
import pytest
import requests

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import (
    APIError,
    AuthenticationError,
    ConnectionFailed,
    InvalidParameter,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    ValidationError,
    VoiceNotFound,
    VoiceNotReady,
    VoiceQuotaExceeded,
)
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.http import DashScopeClient, RetryPolicy

EN = VoiceDesign(
    "A calm, deep male narrator in his fifties, slow and warm",
    "Good evening, and welcome to the late news.",
    prefix="test",
)
ZH = VoiceDesign("沉稳的中年男性，音色低沉浑厚", "各位听众朋友，大家好，欢迎收听晚间新闻。", prefix="test")


QUICK = {"*": {"design_latency": 0}}  # the simulator's assumed design time would only slow these tests


@pytest.fixture(scope="module")
def sim():
    with serve(enrollment_rps=None, model_profiles=QUICK) as s:  # rate limiting has tests of its own
        yield s


@pytest.fixture
def fresh(sim):
    sim.reset()
    yield sim
    sim.reset()


def client_for(sim, **kw):
    sleeps = []
    kw.setdefault("sleep", sleeps.append)
    kw.setdefault("base_url", sim.base_url)
    c = DashScopeClient(api_key=sim.api_key, backend="offline", **kw)
    c.sleeps = sleeps
    return c


def median_f0(audio):
    samples = audio.to_numpy().astype(np.float64)
    pitch = parselmouth.Sound(samples, audio.sample_rate).to_pitch()
    f0 = pitch.selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


@pytest.mark.parametrize("design", [EN, ZH], ids=["en", "zh"])
@pytest.mark.parametrize("fmt,rate", [("wav", 24000), ("mp3", 16000), ("pcm", 48000)])
def test_design_returns_voice_and_playable_speech(fresh, design, fmt, rate):
    client = client_for(fresh)
    created = client.create_voice(design.replace(response_format=fmt, sample_rate=rate))
    assert catalog.model_of_voice(created.voice_id) == design.target_model
    assert created.voice_id.startswith(f"{design.target_model}-vd-test-")
    assert (created.preview.format, created.preview.sample_rate) == (fmt, rate)
    samples = created.preview.to_numpy()
    assert 1.0 < created.preview.duration < 15.0, "a short sentence of speech"
    assert np.sqrt(np.mean(samples**2)) > 0.01, "not silence"
    info = client.query_voice(created.voice_id)
    assert (info.status, info.voice_prompt, info.preview_text) == ("OK", design.voice_prompt, design.preview_text)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deep_male_prompt_is_lower_than_high_young_female(fresh, lang):
    client = client_for(fresh)
    if lang == "en":
        deep = VoiceDesign("a deep, low-pitched elderly male voice", "Hello, this is a test of my voice.")
        high = VoiceDesign("a high-pitched young female voice, bright", "Hello, this is a test of my voice.")
    else:
        deep = VoiceDesign("低沉浑厚的老年男声", "大家好，这是我的声音测试。")
        high = VoiceDesign("高亢清亮的年轻女声", "大家好，这是我的声音测试。")
    low_f0 = median_f0(client.create_voice(deep).preview)
    high_f0 = median_f0(client.create_voice(high).preview)
    assert low_f0 * 1.5 < high_f0, (low_f0, high_f0)


def test_list_all_pages_newest_first_and_prefix_filter(fresh):
    client = client_for(fresh)
    ids = [client.create_voice(EN.replace(prefix="pa" if i % 2 else "pb")).voice_id for i in range(7)]
    everything = client.list_voices(page_size=2)
    assert sorted(v.voice_id for v in everything) == sorted(ids)
    created = [v.gmt_create for v in everything]
    assert created == sorted(created, reverse=True)
    assert {v.voice_id for v in client.list_voices(prefix="pa")} == set(ids[1::2])
    assert all(
        v.target_model == EN.target_model and v.gmt_create.utcoffset().total_seconds() == 8 * 3600 for v in everything
    )


def test_delete_then_query_is_not_found(fresh):
    client = client_for(fresh)
    vid = client.create_voice(EN).voice_id
    client.delete_voice(vid)
    with pytest.raises(VoiceNotFound) as info:
        client.query_voice(vid)
    assert info.value.status == 400 and info.value.code == "BadRequest.ResourceNotExist" and info.value.request_id
    with pytest.raises(VoiceNotFound):
        client.delete_voice(vid)


def test_wrong_key_is_authentication_error_without_the_key(fresh):
    client = DashScopeClient(api_key="sk-wrongkey-1234567890", base_url=fresh.base_url)
    with pytest.raises(AuthenticationError) as info:
        client.list_voices()
    assert info.value.status == 401 and info.value.code == "InvalidApiKey"
    assert "1234567890" not in str(info.value) and "1234567890" not in repr(client)


def test_quota_exceeded(sim):
    with serve(quota=2, enrollment_rps=None) as small:
        client = client_for(small)
        client.create_voice(EN)
        client.create_voice(EN)
        with pytest.raises(VoiceQuotaExceeded) as info:
            client.create_voice(EN)
        assert info.value.status == 400 and info.value.code == "Throttling.AllocationQuota"
        assert "quota" in info.value.message
        assert len(small.voices()) == 2


def test_server_side_invalid_parameter_maps(sim):
    with serve(intl=True) as intl:
        with pytest.raises(InvalidParameter) as info:
            client_for(intl).create_voice(EN)
        assert info.value.status == 400 and info.value.code == "InvalidParameter"


def test_rate_limit_maps_with_retry_after(sim):
    with serve(enrollment_rps=1) as slow:
        client = client_for(slow, retry=RetryPolicy(max_attempts=1))
        client.list_page()
        with pytest.raises(RateLimited) as info:
            client.list_page()
        assert info.value.status == 429 and info.value.retry_after >= 1


def test_rate_limited_reads_retry_and_honour_retry_after(sim):
    with serve(enrollment_rps=1) as slow:
        import time

        client = client_for(slow, sleep=time.sleep)
        t0 = time.monotonic()
        client.list_page()
        client.list_page()  # 429 once, waits Retry-After, then succeeds
        assert time.monotonic() - t0 >= 0.9


def test_invalid_design_never_reaches_the_network(fresh):
    client = client_for(fresh)
    before = len(fresh.request_log)
    with pytest.raises(ValidationError):
        client.create_voice(EN.replace(prefix="Bad Prefix"))
    assert len(fresh.request_log) == before


def test_connection_refused_is_connection_failed_and_never_sent():
    port = _free_port()
    client = DashScopeClient(api_key="sk-x", base_url=f"http://127.0.0.1:{port}/api/v1", sleep=lambda s: None)
    with pytest.raises(ConnectionFailed) as info:
        client.create_voice(EN)
    assert info.value.never_sent


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_management_calls_survive_transient_faults(fresh):
    client = client_for(fresh, retry=RetryPolicy(max_attempts=8), timeout=0.5)
    ids = [client.create_voice(EN).voice_id for _ in range(3)]
    fresh.faults.error_rate, fresh.faults.drop_rate, fresh.faults.hang_rate = 0.3, 0.1, 0.05
    fresh.faults.hang_seconds, fresh.faults.seed = 1.0, 7
    for _ in range(5):
        assert {v.voice_id for v in client.list_voices()} >= set(ids)
    for vid in ids:
        assert client.query_voice(vid).status == "OK"
    assert client.sleeps, "some retries happened"


def test_create_never_makes_two_voices_for_one_call(fresh):
    client = client_for(fresh, create_timeout=0.5)  # designs are instant here (QUICK): only a hang times out
    fresh.faults.error_rate, fresh.faults.drop_rate, fresh.faults.hang_rate = 0.35, 0.2, 0.1
    fresh.faults.hang_seconds, fresh.faults.seed = 1.0, 11
    outcomes = {"ok": 0, "unknown": 0, "refused": 0}
    for _ in range(30):
        before = len(fresh.voices())
        try:
            created = client.create_voice(EN)
            outcomes["ok"] += 1
            assert len(fresh.voices()) == before + 1
            assert created.voice_id in {v["voice_id"] for v in fresh.voices()}
        except OutcomeUnknown as exc:
            outcomes["unknown"] += 1
            assert exc.design == EN and exc.sent_at is not None
            assert len(fresh.voices()) in (before, before + 1)
        except (RateLimited, ServerError):
            outcomes["refused"] += 1
            assert len(fresh.voices()) == before
    assert outcomes["ok"] and outcomes["unknown"], outcomes


def test_wait_until_ready(fresh):
    client = client_for(fresh)
    vid = client.create_voice(EN).voice_id
    fresh.set_status(vid, "UNDEPLOYED")
    with pytest.raises(VoiceNotReady, match="UNDEPLOYED"):
        client.wait_until_ready(vid)
    fresh.set_status(vid, "DEPLOYING")
    with pytest.raises(VoiceNotReady, match="DEPLOYING"):
        client.wait_until_ready(vid, timeout=4, interval=2)
    assert len(client.sleeps) == 2


def test_new_voice_deploying_then_ok(sim):
    with serve(deploying_seconds=0.5, model_profiles={"*": {"design_latency": 0}}) as slow:
        import time

        client = client_for(slow, sleep=time.sleep)
        vid = client.create_voice(EN).voice_id
        assert client.query_voice(vid).status == "DEPLOYING"
        assert client.wait_until_ready(vid, timeout=5, interval=0.2).status == "OK"


def test_literal_contract_example_with_plain_requests(sim):
    body = {
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
    r = requests.post(
        sim.base_url + "/services/audio/tts/customization",
        json=body,
        headers={"Authorization": f"Bearer {sim.api_key}"},
    )
    assert r.status_code == 200
    data = r.json()
    assert set(data) == {"output", "usage", "request_id"} and data["usage"] == {"count": 1}
    out = data["output"]
    assert set(out) == {"preview_audio", "target_model", "voice_id"}
    assert out["preview_audio"]["sample_rate"] == 24000 and out["preview_audio"]["response_format"] == "wav"
    assert catalog.VOICE_ID_RE.match(out["voice_id"]).group("prefix") == "announcer"


def test_key_never_in_logs_or_errors(caplog):
    key = "sk-SECRETsecret-0123456789"
    caplog.set_level(logging.DEBUG)
    with serve(api_key=key, enrollment_rps=None) as s:
        client = DashScopeClient(api_key=key, base_url=s.base_url, sleep=lambda x: None)
        client.create_voice(EN)
        s.faults.error_rate, s.faults.seed = 1.0, 3
        with pytest.raises(Exception) as info:
            client.list_voices()
        texts = [str(info.value), repr(info.value), repr(client), str(client.api_key)]
    assert not any("0123456789" in t for t in [*texts, caplog.text])


# --- every validation outcome agrees with the simulator ----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_texts = st.one_of(
    st.text(alphabet=st.sampled_from("abcdefgh XYZ,.!"), max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x4E50), max_size=20),
    st.sampled_from(["", "   ", "x" * 501, "こんにちは", "Hello 😀", "温" * 201]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=_texts,
    preview=_texts,
    prefix=st.sampled_from(["ok1", "", "Bad", "toolongprefix", "a_b"]),
    model=st.sampled_from([*catalog.MODELS, "cosyvoice-v2"]),
    rate=st.sampled_from([16000, 24000, 48000, 8000]),
    fmt=st.sampled_from(["wav", "mp3", "pcm", "flac"]),
)
def test_invalid_designs_are_never_sent_and_valid_ones_are_accepted(sim, prompt, preview, prefix, model, rate, fmt):
    client = client_for(sim)
    design = VoiceDesign(prompt, preview, prefix=prefix, target_model=model, sample_rate=rate, response_format=fmt)
    before = len(sim.request_log)
    if design.problems():
        with pytest.raises(ValidationError):
            client.create_voice(design)
        assert len(sim.request_log) == before
    else:
        created = client.create_voice(design)
        assert created.preview.sample_rate == rate and created.preview.format == fmt
        client.delete_voice(created.voice_id)


# --- the contract's error table, as the simulator answers it, maps to the exception tree ----


@pytest.mark.parametrize(
    "body,status,code,cls",
    [
        ("not json", 400, "BadRequest.IllegalInput", InvalidParameter),
        ({"input": {"action": "list_voice"}}, 400, "BadRequest.EmptyModel", InvalidParameter),
        ({"model": "voice-enrollment"}, 400, "BadRequest.EmptyInput", InvalidParameter),
        ({"model": "qwen-voice-design", "input": {"action": "list_voice"}}, 400, "InvalidParameter", InvalidParameter),
        (
            {"model": "voice-enrollment", "input": {"action": "update_voice", "voice_id": "x", "url": "https://a"}},
            400,
            "BadRequest.ResourceNotExist",
            VoiceNotFound,
        ),
    ],
)
def test_error_answers_map_to_exception_classes(sim, body, status, code, cls):
    client = client_for(sim)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    resp = requests.post(client.url, headers={"Authorization": f"Bearer {sim.api_key}"}, **kwargs)
    assert resp.status_code == status
    with pytest.raises(cls) as info:
        client._parse(resp)
    assert info.value.code == code and info.value.request_id


@pytest.mark.parametrize("seed_status", [429, 500, 503])
def test_injected_service_errors_map(sim, seed_status):
    from cosyvoice_lab.offline import Fault

    class Always:  # the simulator's fault hook, fixed to one answer
        latency = 0.0

        def draw(self):
            return Fault("error", seed_status)

    saved = sim.faults
    sim.state.faults = Always()
    try:
        with pytest.raises(RateLimited if seed_status == 429 else ServerError) as info:
            client_for(sim, retry=RetryPolicy(max_attempts=1)).list_page()
    finally:
        sim.state.faults = saved
    assert info.value.status == seed_status


# --- Retry-After on a 503, from a plain local server (the simulator's 503s carry none) -------


class _Scripted:
    """A loopback HTTP server answering POSTs from a list of (status, headers, body), recording each."""

    def __init__(self, answers):
        import http.server
        import json
        import threading

        self.answers, self.seen = list(answers), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status, headers, body = outer.answers.pop(0)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


UNAVAILABLE = (503, {"Retry-After": "7"}, {"code": "ServiceUnavailable", "message": "try later", "request_id": "r1"})


def test_503_retry_after_is_honoured_for_list_and_create_is_not_repeated():
    server = _Scripted([UNAVAILABLE, (200, {}, {"output": {"voice_list": []}, "request_id": "r2"}), UNAVAILABLE])
    try:
        slept = []
        client = DashScopeClient(api_key="sk-x", base_url=server.base_url, sleep=slept.append)
        assert client.list_voices() == [] and slept == [7.0]
        with pytest.raises(OutcomeUnknown) as info:
            client.create_voice(EN)
        assert isinstance(info.value.cause, ServerError) and info.value.cause.retry_after == 7.0
        assert [b["input"]["action"] for b in server.seen] == ["list_voice", "list_voice", "create_voice"]
        assert slept == [7.0], "a create that may have reached the service is never sent again"
    finally:
        server.close()


# --- a server that echoes the key back never gets it into an error (issue 12.7) ----------------

ECHOED_KEY = "sk-Echo-Secret-0123456789abcdef"  # hyphens inside: only the literal replacement catches it
OTHER_KEY = "sk-SomebodyElse0123456789"  # key-shaped, not ours: the pattern catches it


class _Echo:
    """A loopback HTTP server answering every POST (and WebSocket upgrade) with an error whose
    body repeats the request's Authorization header, as a careless proxy might."""

    def __init__(self, status=400, as_json=True):
        import http.server
        import json
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                auth = self.headers.get("Authorization", "")
                text = f"you sent Authorization: {auth}, and {OTHER_KEY} was seen too"
                body = (
                    json.dumps({"code": "InvalidParameter", "message": text, "request_id": auth}).encode()
                    if as_json
                    else text.encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if as_json else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/api/v1"
        self.ws_url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _assert_no_key(*texts):
    for text in texts:
        assert "0123456789abcdef" not in text and "Echo-Secret" not in text, text
        assert OTHER_KEY not in text, text


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_an_echoed_key_is_redacted_from_api_errors(as_json, caplog):
    caplog.set_level(logging.DEBUG)
    with _Echo(as_json=as_json) as echo:
        client = DashScopeClient(api_key=ECHOED_KEY, base_url=echo.base_url, sleep=lambda s: None)
        with pytest.raises(InvalidParameter if as_json else Exception) as info:
            client.list_voices()
    exc = info.value
    assert "you sent Authorization: Bearer sk-***" in str(exc)  # the echo stays readable, the key does not
    _assert_no_key(
        str(exc), repr(exc), exc.message, str(exc.request_id), repr(client), str(client.api_key), caplog.text
    )


def test_an_echoed_key_is_redacted_from_a_refused_websocket_upgrade():
    from cosyvoice_lab.service.ws import Synthesizer

    with _Echo() as echo:
        synth = Synthesizer(api_key=ECHOED_KEY, ws_url=echo.ws_url, sleep=lambda s: None)
        with pytest.raises(InvalidParameter) as info:
            synth.speak(catalog.V35_PLUS + "-vd-x-" + "0" * 32, "Hello.")
    _assert_no_key(str(info.value), repr(info.value), info.value.message, repr(synth))
    assert "sk-***" in str(info.value)


def test_the_cli_prints_an_echoed_key_redacted(tmp_path, monkeypatch, capsys):
    from cosyvoice_lab import cli

    monkeypatch.setenv("DASHSCOPE_API_KEY", ECHOED_KEY)
    with _Echo() as echo:
        code = cli.main(["voices", "list", "--folder", str(tmp_path / "lab"), "--base-url", echo.base_url])
    out = capsys.readouterr()
    assert code == cli.EXIT_SERVICE and "error:" in out.err and "sk-***" in out.err
    _assert_no_key(out.out, out.err)


@pytest.mark.parametrize("bad", ["\x1b[31m", "\n", "\r", "\t", " "])
def test_a_key_with_a_control_character_is_refused_before_any_request(fresh, bad):
    from cosyvoice_lab.errors import CredentialsError
    from cosyvoice_lab.service.ws import Synthesizer

    key = fresh.api_key[:6] + bad + fresh.api_key[6:]
    before = len(fresh.request_log)
    for make in (
        lambda: DashScopeClient(api_key=key, base_url=fresh.base_url),
        lambda: Synthesizer(api_key=key, ws_url=fresh.ws_url),
    ):
        with pytest.raises(CredentialsError, match="at character 7") as info:
            make()
        assert fresh.api_key[6:] not in str(info.value)
    assert len(fresh.request_log) == before


# --- a base URL without /api/v1 (issue 12.9) ----------------------------------------------------


def _host_of(sim):
    return sim.base_url.rsplit("/api/v1", 1)[0]


@pytest.mark.parametrize("tail", ["", "/"])
def test_a_bare_host_means_its_api_root(fresh, tail):
    client = client_for(fresh, base_url=_host_of(fresh) + tail)
    assert client.base_url == fresh.base_url
    created = client.create_voice(EN)
    assert created.voice_id in {v.voice_id for v in client.list_voices()}


def test_a_404_from_a_base_url_without_the_api_root_says_so(fresh):
    client = client_for(fresh, base_url=_host_of(fresh) + "/v1")
    with pytest.raises(APIError) as info:
        client.list_voices()
    message = str(info.value)
    assert info.value.status == 404 and "Not found!" in message
    assert "does not end in /api/v1" in message and repr(fresh.base_url) in message
    # at the right root a 404 is the service's own answer, passed on as it is
    server = _Scripted([(404, {}, {"code": "ModelNotFound", "message": "Model can not be found.", "request_id": "r"})])
    try:
        with pytest.raises(APIError) as info:
            DashScopeClient(api_key="sk-x", base_url=server.base_url).list_voices()
        assert info.value.status == 404 and info.value.message == "Model can not be found."
    finally:
        server.close()


def test_a_lab_on_a_bare_host_designs_and_speaks(fresh, tmp_path):
    from cosyvoice_lab.lab.lab import Lab

    lab = Lab(
        tmp_path / "lab",
        backend="offline",
        base_url=_host_of(fresh),
        progress=False,
        measure=False,
        requests_per_second=None,
    )
    take = lab.design("a calm, deep male narrator", preview_text="Good evening.")
    assert take.ok and take.voice_id, take.error_message
    assert lab.speak(take, "Hello there.").sentences == ["Hello there."]


# --- the one retry loop, on its own -------------------------------------------------------------


def test_the_retry_loop_is_bounded_logged_jittered_and_honours_retry_after(caplog):
    from cosyvoice_lab.service.retry import Retrier

    caplog.set_level(logging.WARNING)
    slept = []
    retrier = Retrier(
        RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=1.5, max_retry_after=5.0), sleep=slept.append, seed=1
    )

    def run(failures, retryable=lambda exc: isinstance(exc, ServerError)):
        tried = []
        for attempt in retrier.attempts("op", retryable=retryable):
            with attempt:
                tried.append(attempt.number)
                if failures:
                    raise failures.pop(0)
                return tried
        raise AssertionError("unreachable")

    def unavailable(retry_after=None):
        return ServerError(503, "ServiceUnavailable", "later", retry_after=retry_after)

    assert run([unavailable(), unavailable()]) == [1, 2, 3]
    assert len(slept) == 2 and 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 1.5  # full jitter under the cap
    assert caplog.text.count("retrying in") == 2 and "(attempt 3 of 3)" in caplog.text
    slept.clear()
    assert run([unavailable(retry_after=2.0), unavailable(retry_after=60.0)]) == [1, 2, 3]
    assert slept == [2.0, 5.0]  # Retry-After honoured, and capped
    slept.clear()
    with pytest.raises(ServerError):  # bounded: the third failure is raised
        run([unavailable(), unavailable(), unavailable()])
    with pytest.raises(RateLimited):  # not retryable: raised at once
        run([RateLimited(429, "Throttling", "slow down")])
    assert len(slept) == 2
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
