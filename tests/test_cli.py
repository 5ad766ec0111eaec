"""The real `cosyvoice-lab` command in a subprocess, against a simulator on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline import serve


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None) as s:
        yield s


def cli(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cosyvoice_lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def common(sim, tmp_path):
    return ["--folder", str(tmp_path / "lab"), "--base-url", sim.base_url, "--backend", "offline"]


def test_help_teaches():
    out = cli("--help")
    assert out.returncode == 0
    for word in ("design", "compare", "voices", "log", "offline", "examples"):
        assert word in out.stdout


BLAS_THREADS = (
    "import os, sys\n"
    "from cosyvoice_lab.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "import numpy\n"
    "from threadpoolctl import threadpool_info\n"
    "blas = sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'})\n"
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), blas)\n"
)


def test_a_command_runs_blas_on_one_thread_unless_the_environment_says_otherwise():
    """The command spreads its measuring over the cores itself; BLAS's own threads only spin."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "DASHSCOPE_API_KEY")}
    ran = subprocess.run([sys.executable, "-c", BLAS_THREADS, "--version"], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[-2] == "1 [1]"
    told = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS, "--version"],
        capture_output=True,
        text=True,
        env={**env, "OPENBLAS_NUM_THREADS": "2"},
    )
    assert told.returncode == 0, told.stderr
    assert told.stdout.split("\n")[-2] == "2 [2]"
    # main() called from a process that loaded numpy already leaves the environment alone
    loaded = subprocess.run(
        [sys.executable, "-c", "import numpy\n" + BLAS_THREADS, "--version"], capture_output=True, text=True, env=env
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split("\n")[-2].startswith("None ")


def test_design_json_and_exit_code(sim, tmp_path):
    out = cli("design", "a calm deep male narrator", "-n", "2", "--json", *common(sim, tmp_path))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert {r["voice_id"] for r in rows} == {v["voice_id"] for v in sim.voices()}


def test_invalid_design_exits_2_and_sends_nothing(sim, tmp_path):
    out = cli("design", "a voice", "--prefix", "Bad Prefix", *common(sim, tmp_path))
    assert out.returncode == 2 and "prefix" in out.stderr and "'badprefix'" in out.stderr
    assert not sim.request_log


def test_wrong_key_exits_3_without_showing_it(sim, tmp_path):
    out = cli(
        "voices",
        "list",
        "--folder",
        str(tmp_path / "lab"),
        "--base-url",
        sim.base_url,
        env={"DASHSCOPE_API_KEY": "sk-wrong-0123456789abcdef"},
    )
    assert out.returncode == 3 and "InvalidApiKey" in out.stderr
    assert "0123456789" not in out.stderr + out.stdout


def test_compare_file_resume_voices_cleanup_and_export(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# casting\na deep slow male voice\na bright fast female voice\n")
    args = common(sim, tmp_path)
    out = cli("compare", str(prompts), "--repeats", "2", "--json", *args)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["takes"] == 8 and summary["ok"] == 8
    creates = len(sim.voices())
    assert cli("compare", str(prompts), "--repeats", "2", "--json", *args).returncode == 0
    assert len(sim.voices()) == creates, "re-running sends nothing"

    listed = json.loads(cli("voices", "list", "--json", *args).stdout)
    assert len(listed) == 8 and all(v["known"] for v in listed)
    plan = cli("voices", "cleanup", *args)
    assert plan.returncode == 0 and "dry run" in plan.stderr and len(sim.voices()) == 8
    cleaned = cli("voices", "cleanup", "--yes", *args)
    assert cleaned.returncode == 0 and sim.voices() == []
    assert "deleted 8 voice(s), kept 0" in cleaned.stderr, "--yes says what it did, as the dry run says its plan"

    shown = json.loads(cli("log", "show", "--json", *args).stdout)
    assert len(shown) == 8
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.html", "table.csv", "bundle.zip"):
        out = cli("log", "export", str(tmp_path / name), *args)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / name).stat().st_size > 0
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, f"{name}: every export shared alike"
        again = cli("log", "export", str(tmp_path / name), *args)
        assert again.returncode == 2 and "--force" in again.stderr, "an existing file is never silently replaced"
        assert cli("log", "export", str(tmp_path / name), "--force", *args).returncode == 0
    assert cli("log", "export", str(tmp_path / "x.doc"), *args).returncode == 2


def test_compare_yaml_with_prompt_specs(sim, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- a warm narrator\n- {gender: female, age: young, pitch: high}\n")
    out = cli(
        "compare",
        str(prompts),
        "--repeats",
        "1",
        "--target-models",
        "cosyvoice-v3.5-flash",
        "--json",
        *common(sim, tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] == 2


def test_compare_across_families_with_a_model_flag_each(sim, tmp_path):
    """--target-model given three times compares all three (argparse's abbreviation of --target-models used to keep
    only the last), a Qwen model beside the CosyVoice pair, and the JSON says so per model."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a warm narrator\n")
    models = ["cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash", "qwen3-tts-vd-2026-01-26"]
    flags = [arg for m in models for arg in ("--target-model", m)]
    out = cli("compare", str(prompts), "--repeats", "1", *flags, "--json", *common(sim, tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] == 3 and f"comparing {', '.join(models)}" in out.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_command_serves_and_logs_without_key(tmp_path):
    port = _free_port()
    key = "sk-offlinecli-0123456789"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cosyvoice_lab.cli",
            "offline",
            "--port",
            str(port),
            "--api-key",
            key,
            "--state",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/services/audio/tts/customization"
        for _ in range(100):
            try:
                r = requests.post(
                    url,
                    json={"model": "voice-enrollment", "input": {"action": "list_voice"}},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=2,
                )
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["output"]["voice_list"] == []
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "list_voice" in output and "0123456789" not in output
    assert "it accepts the key given with --api-key" in output, "says which key, without showing a user's key"


def test_the_offline_command_prints_its_own_stand_in_key(tmp_path):

    proc = subprocess.Popen(
        [sys.executable, "-m", "cosyvoice_lab.cli", "offline", "--port", str(_free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"},
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert f"it accepts the API key {OFFLINE_API_KEY}" in lines[1], lines


def test_the_no_key_error_speaks_the_command_lines_language(tmp_path):
    out = cli(
        "design",
        "A calm voice.",
        "--folder",
        str(tmp_path / "lab"),
        "--backend",
        "dashscope",
        env={"HOME": str(tmp_path)},
    )
    assert out.returncode == 3, out.stderr
    assert "--backend offline" in out.stderr and "Lab(" not in out.stderr


def test_the_banner_names_the_model_asked_for(sim, tmp_path):
    out = cli("design", "A calm voice.", "--target-model", "cosyvoice-v3.5-flash", *common(sim, tmp_path))
    assert out.returncode == 0, out.stderr
    assert "model cosyvoice-v3.5-flash" in out.stderr and "cosyvoice-v3.5-plus" not in out.stderr.splitlines()[0]


def test_installed_console_script():
    script = os.path.join(os.path.dirname(sys.executable), "cosyvoice-lab")
    out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("cosyvoice-lab ")


def test_compare_takes_requests_per_second_and_not_rate(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a steady narrator\n")
    args = ["--target-models", "cosyvoice-v3.5-flash", "--repeats", "1", "--json", *common(sim, tmp_path)]
    out = cli("compare", str(prompts), "--requests-per-second", "20", "--concurrency", "2", *args)
    assert out.returncode == 0 and "deprecated" not in out.stderr, out.stderr
    assert "--requests-per-second" in cli("compare", "--help").stdout
    old = cli("compare", str(prompts), "--rate", "20", "--new-repeats", *args)
    assert old.returncode == 2 and "--rate" in old.stderr  # `rate` is speaking speed only: no alias


# --- exit codes as the README states them: 0 ok, 1 some takes failed in this run, 2 bad input,
# 3 no or rejected key, 4 service or network failure, 130 interrupted


def test_a_missing_prompts_file_is_one_line_and_exit_2(sim, tmp_path):
    out = cli("compare", str(tmp_path / "prompts.txt"), *common(sim, tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "prompts.txt" in out.stderr and "no such file" in out.stderr
    assert not sim.request_log


def test_a_rejected_key_exits_3_for_designs_and_compares(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a steady narrator\n")
    env = {"DASHSCOPE_API_KEY": "sk-rejected-0123456789abcdef"}
    where = ["--folder", str(tmp_path / "lab"), "--base-url", sim.base_url]
    design = cli("design", "a calm voice", *where, env=env)
    compare = cli("compare", str(prompts), "--repeats", "1", *where, env=env)
    for out in (design, compare):
        assert out.returncode == 3, out.stderr
        assert "0123456789" not in out.stderr + out.stdout


def test_the_network_down_exits_4(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    where = ["--folder", str(tmp_path / "lab"), "--backend", "offline", "--base-url", f"http://127.0.0.1:{port}/api/v1"]
    out = cli("design", "a calm voice", *where)
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr


def test_a_resumed_compare_answers_for_what_it_sent(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, quota=3, model_profiles={"*": {"design_latency": 0}}) as sim:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a steady narrator\na bright host\n")
        args = [
            str(prompts),
            "--repeats",
            "2",
            "--target-models",
            "cosyvoice-v3.5-flash",
            "--json",
            *common(sim, tmp_path),
        ]
        first = cli("compare", *args)
        assert first.returncode == 1 and json.loads(first.stdout)["ok"] == 3  # the 4th: the account is full
        sim.state.registry.quota = 10
        resumed = cli("compare", *args)  # sends the failed cell again; the earlier failure stays in the log
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["ok"] == 4 and len(sim.voices()) == 4
        assert cli("compare", *args).returncode == 0  # nothing left to send


def test_an_interrupted_compare_exits_130(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0.5}}) as sim:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a steady narrator\n")
        env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
        args = ["compare", str(prompts), "--repeats", "20", "--concurrency", "1", *common(sim, tmp_path)]
        child = subprocess.Popen(
            [sys.executable, "-m", "cosyvoice_lab.cli", *args], stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(600):
            if sim.voices():
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 130, err
        assert "Traceback" not in err


def test_a_design_says_where_its_preview_is_and_log_preview_finds_saves_and_plays_it(sim, tmp_path):
    """Issue 26, item 10: hearing a design from the command line."""
    args = common(sim, tmp_path)
    out = cli("design", "A calm, deep narrator.", *args)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stderr.splitlines() if x.startswith("preview "))
    path = line.split(": ", 1)[1]
    assert path.endswith(".wav") and os.path.getsize(path) > 1000
    [take] = json.loads(cli("log", "show", "--json", *args).stdout)
    by_take = cli("log", "preview", take["take_id"][:8], *args)
    by_voice = cli("log", "preview", take["voice_id"], *args)
    assert by_take.returncode == by_voice.returncode == 0 and by_take.stdout.strip() == by_voice.stdout.strip() == path
    saved = cli("log", "preview", take["voice_id"], "--save", str(tmp_path / "mine.wav"), *args)
    assert saved.returncode == 0 and (tmp_path / "mine.wav").read_bytes() == Path(path).read_bytes()
    again = cli("log", "preview", take["voice_id"], "--save", str(tmp_path / "mine.wav"), *args)
    assert again.returncode == 2 and "--force" in again.stderr
    missing = cli("log", "preview", "nosuchtake", *args)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no take or voice")
    player = tmp_path / "bin" / "aplay"  # a stand-in player on PATH: records what it was asked to play
    player.parent.mkdir()
    player.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "played"}\n')
    player.chmod(0o755)
    played = cli("log", "preview", take["take_id"], "--play", *args, env={"PATH": f"{player.parent}:/usr/bin:/bin"})
    assert played.returncode == 0, played.stderr
    assert (tmp_path / "played").read_text().split()[-1] == path


def test_a_compare_that_resumes_an_earlier_run_says_what_it_reused(sim, tmp_path):
    """Issue 26, item 14: a --repeats 3 compare after a --repeats 1 run of the same prompts (the
    same automatic experiment name) reported "4/4 ok" as if it had done it all."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a warm radio host\n")
    args = common(sim, tmp_path)
    first = cli("compare", str(prompts), "--repeats", "1", "--json", *args)
    assert first.returncode == 0 and json.loads(first.stdout)["reused"] == 0
    more = cli("compare", str(prompts), "--repeats", "3", *args)
    assert more.returncode == 0, more.stderr
    assert "2 take(s) reused from an earlier run of this experiment" in more.stderr and "4 sent now" in more.stderr
    again = json.loads(cli("compare", str(prompts), "--repeats", "3", "--json", *args).stdout)
    assert (again["sent"], again["reused"], again["takes"]) == (0, 6, 6)
