"""One rule per input, at entry, the same in the client, the simulator and the log (issue 23,
items 10-12): a prefix with a trailing newline, texts made of invisible characters, experiment
names that the log's own bundles would refuse."""

import json
import os
import subprocess
import sys

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import ValidationError
from cosyvoice_lab.lab.lab import Lab
from cosyvoice_lab.log.bundle_schema import TAKE_FIELDS
from cosyvoice_lab.offline import serve
from cosyvoice_lab.offline.customization import ApiError, validate_design
from cosyvoice_lab.take import experiment_problems


@pytest.fixture(scope="module")
def sim():
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0}}) as s:
        yield s


def post_design(sim, **inp) -> requests.Response:
    body = {
        "model": catalog.ENROLLMENT_MODEL,
        "input": {
            "action": "create_voice",
            "target_model": catalog.V35_FLASH,
            "prefix": "lab",
            "voice_prompt": "A calm voice.",
            "preview_text": "Hello there.",
            **inp,
        },
    }
    url = sim.base_url + catalog.CUSTOMIZATION_PATH
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=30)


# --- item 10: "$" matched before a trailing newline --------------------------------------------


@pytest.mark.parametrize("prefix", ["lab\n", "lab\r\n", "\nlab"])
def test_a_prefix_with_a_newline_is_refused_by_client_and_simulator(sim, prefix):
    problems = VoiceDesign("A calm voice.", "Hello there.", prefix=prefix).problems()
    assert [p.field for p in problems] == ["prefix"]
    answer = post_design(sim, prefix=prefix)
    assert answer.status_code == 400 and answer.json()["code"] == "InvalidParameter"


def test_no_voice_id_with_a_newline_parses():
    good = f"{catalog.V35_FLASH}-vd-lab-{'a' * 32}"
    assert catalog.model_of_voice(good) == catalog.V35_FLASH
    assert catalog.model_of_voice(good + "\n") is None
    assert catalog.WORKSPACE_RE.match("ws-1\n") is None


# --- item 12: one text rule for the client and the simulator -----------------------------------

ZERO_WIDTH_AND_BIDI = "\u200b\u200c\u200d\u2060\ufeff\u202e\u202a\u2066"
TEXTS = st.text(
    alphabet=st.sampled_from(
        list("ab Z.,!?1") + list("声音温柔，。") + list(ZERO_WIDTH_AND_BIDI) + ["\u0301", "\U0001f600", "é", "\ue000"]
    ),
    max_size=12,
)


def simulator_accepts(prompt: str) -> bool:
    inp = {"target_model": catalog.V35_FLASH, "prefix": "lab", "voice_prompt": prompt, "preview_text": "Hello."}
    try:
        validate_design(inp, {}, intl=False)
    except ApiError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_client_and_simulator_accept_exactly_the_same_descriptions(prompt):
    client_accepts = not [p for p in VoiceDesign(prompt, "Hello.").problems() if p.field == "voice_prompt"]
    assert client_accepts == simulator_accepts(prompt)


@pytest.mark.parametrize(
    "prompt",
    ["\u200b\u200b\u200b", "\u202e\u200d\u200b", "。。。", "A calm voice\u200b", "A calm 😀 voice", "cafe\u0301 voice"],
)
def test_invisible_emoji_or_wordless_descriptions_are_refused_on_both_sides(sim, prompt):
    assert [p.field for p in VoiceDesign(prompt, "Hello.").problems()] == ["voice_prompt"]
    answer = post_design(sim, voice_prompt=prompt)
    assert answer.status_code == 400 and answer.json()["code"] == "InvalidParameter"


def test_ordinary_chinese_and_english_descriptions_still_pass(sim):
    for prompt in ["温柔的年轻女声，语速适中。", "A calm, deep narrator — café jazz, 50s…"]:
        assert VoiceDesign(prompt, "Hello.").problems() == []
        assert post_design(sim, voice_prompt=prompt).status_code == 200


# --- item 11: experiment names, one rule at entry -----------------------------------------------

BAD_NAMES = ["a\tb", "line\nbreak", "private\ue000use", "x" * 201, "   ", "zero\u200bwidth"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_experiment_name_is_refused_before_anything_is_sent(sim, tmp_path, name):
    lab = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False, measure=False)
    before = len(sim.request_log)
    with pytest.raises(ValidationError, match="experiment"):
        lab.design("A calm voice.", preview_text="Hello.", experiment=name)
    with pytest.raises(ValidationError, match="experiment"):
        lab.compare(["A calm voice."], target_models=[catalog.V35_FLASH], repeats=1, experiment=name, check_quota=False)
    assert len(sim.request_log) == before and len(lab.log) == 0


@given(st.text(max_size=220))
def test_the_bundle_schema_and_the_entry_rule_agree_on_every_name(name):
    check, _ = TAKE_FIELDS["experiment"]
    try:
        check(name)
        bundle_accepts = True
    except ValueError:
        bundle_accepts = False
    assert bundle_accepts == (experiment_problems(name) == [])


def test_the_cli_refuses_a_bad_experiment_name_in_one_line_with_exit_2(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A calm voice.\n")
    args = ["compare", str(prompts), "--experiment", "a\tb", "--folder", str(tmp_path / "lab")]
    args += ["--base-url", sim.base_url, "--backend", "offline", "--repeats", "1"]
    done = subprocess.run([sys.executable, "-m", "cosyvoice_lab.cli", *args], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "experiment" in done.stderr


@pytest.mark.parametrize("args", [["--repeats", "0"], []])
def test_the_cli_refuses_an_empty_prompts_file_or_zero_repeats_in_one_line_with_exit_2(sim, tmp_path, args):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("" if not args else "A calm voice.\n")
    cmd = ["compare", str(prompts), "--folder", str(tmp_path / "lab"), "--base-url", sim.base_url]
    cmd += ["--backend", "offline", *args]
    done = subprocess.run([sys.executable, "-m", "cosyvoice_lab.cli", *cmd], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:"), done.stderr


# --- item 6: JSON nested too deep is bad input, not a crash ------------------------------------


def test_the_simulator_answers_400_to_a_body_nested_too_deep(sim):
    url = sim.base_url + catalog.CUSTOMIZATION_PATH
    headers = {"Authorization": f"Bearer {sim.api_key}", "Content-Type": "application/json"}
    for body in (
        b'{"model": ' + b"[" * 100_000,
        b'{"model": "voice-enrollment", "input": ' + b"[" * 300 + b"]" * 300 + b"}",
    ):
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["code"] == "BadRequest.IllegalInput", answer.text
    assert post_design(sim).status_code == 200, "and it still serves"


@given(st.recursive(st.none() | st.integers() | st.text(max_size=3), lambda kids: st.lists(kids, max_size=3)))
def test_json_depth_is_measured_without_recursion(value):
    from cosyvoice_lab import jsontext

    def deep(v):
        return 1 + max((deep(c) for c in v), default=0) if isinstance(v, list) else 0

    assert jsontext.depth(value) == deep(value)
    assert jsontext.loads(json.dumps(value)) == value


# --- item 2: a login in a service URL is refused, never shown or stored -------------------------

SECRET = "s3cr3t-LOGIN-CANARY"


@pytest.mark.parametrize("login", [f"user:{SECRET}", f"{SECRET}", f":{SECRET}"])
def test_a_base_url_with_a_login_is_refused_without_showing_it(sim, tmp_path, login, monkeypatch):
    from cosyvoice_lab.service.http import DashScopeClient
    from cosyvoice_lab.service.ws import Synthesizer

    url = sim.base_url.replace("http://", f"http://{login}@")
    monkeypatch.setenv("DASHSCOPE_API_KEY", sim.api_key)
    for make in (
        lambda: Lab(tmp_path / "lab", base_url=url, progress=False),
        lambda: DashScopeClient(api_key=sim.api_key, base_url=url),
        lambda: Synthesizer(api_key=sim.api_key, ws_url=sim.ws_url.replace("ws://", f"ws://{login}@")),
    ):
        with pytest.raises(ValueError, match="must not carry a login") as info:
            make()
        assert SECRET not in str(info.value) and "127.0.0.1" in str(info.value)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", url)
    with pytest.raises(ValueError, match="must not carry a login") as info:
        Lab(tmp_path / "lab2", progress=False)
    assert SECRET not in str(info.value)
    assert not (tmp_path / "lab").exists() or SECRET.encode() not in (tmp_path / "lab" / "log.sqlite3").read_bytes()


def test_the_cli_refuses_a_base_url_with_a_login_in_one_line(sim, tmp_path):
    url = sim.base_url.replace("http://", f"http://user:{SECRET}@")
    cmd = ["design", "A calm voice.", "--folder", str(tmp_path / "lab"), "--base-url", url]
    done = subprocess.run(
        [sys.executable, "-m", "cosyvoice_lab.cli", *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, "DASHSCOPE_API_KEY": sim.api_key},
    )
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stderr + done.stdout and "must not carry a login" in done.stderr
