"""Model profiles (issue 14): by default plus and flash differ only in design latency; planted
differences (pitch_shift, pace, adherence, variation, noise) are measurable in the previews."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import socket
import subprocess
import sys
import time

import numpy as np
import parselmouth
import pytest
import requests
import soundfile as sf

from cosyvoice_lab import catalog, cli
from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline import ModelProfile, serve, shared
from cosyvoice_lab.offline.engine import render, settings_for
from cosyvoice_lab.offline.profiles import DEFAULTS, merge_options, parse_option, resolve
from cosyvoice_lab.offline.registry import Registry

PLUS, FLASH = catalog.V35_PLUS, catalog.V35_FLASH
PROMPTS = [
    ("A calm middle-aged man with a deep voice.", "Good evening, and welcome to the late news.", "en"),
    ("A cheerful young woman, lively and bright.", "Hello everyone, and thanks for joining us today.", "en"),
    ("沉稳的中年男性，音色低沉浑厚", "各位听众朋友，大家好，欢迎收听晚间新闻。", "zh"),
]
REPEATS = 4
SEED = 20261130
INSTANT = {"design_latency": 0}


def create(sim, model: str, prompt: str, preview: str, lang: str) -> tuple[str, np.ndarray, int, float]:
    t = time.monotonic()
    r = requests.post(
        sim.base_url + catalog.CUSTOMIZATION_PATH,
        timeout=30,
        headers={"Authorization": f"Bearer {sim.api_key}"},
        json={
            "model": "voice-enrollment",
            "input": {
                "action": "create_voice",
                "target_model": model,
                "prefix": "prof",
                "voice_prompt": prompt,
                "preview_text": preview,
                "language_hints": [lang],
            },
        },
    )
    took = time.monotonic() - t
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    x, rate = sf.read(io.BytesIO(base64.b64decode(out["preview_audio"]["data"])))
    return out["voice_id"], x, rate, took


def median_f0(x: np.ndarray, rate: int) -> float:
    f0 = parselmouth.Sound(x, rate).to_pitch(pitch_floor=60, pitch_ceiling=600).selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def design_all(model: str, model_profiles=None) -> list[tuple]:
    """Every prompt REPEATS times on ``model``, in one order, from one seed: the n-th voice of
    every model gets the same per-voice draw."""
    with serve(seed=SEED, enrollment_rps=None, model_profiles=model_profiles) as sim:
        made = [create(sim, model, *p) for p in PROMPTS for _ in range(REPEATS)]
        settings = {v["voice_id"]: v["settings"] for v in sim.voices()}
    return [(settings[vid], median_f0(x, rate), took) for vid, x, rate, took in made]


def both_models(model_profiles=None):
    with cf.ThreadPoolExecutor(2) as pool:  # each model in its own simulator, at the same time
        plus, flash = pool.map(lambda m: design_all(m, model_profiles), (PLUS, FLASH))
    return plus, flash


def semitones(a: float, b: float) -> float:
    return 12 * np.log2(b / a)


def test_by_default_plus_and_flash_differ_in_latency_only():
    plus, flash = both_models()
    for (p_settings, p_f0, _), (f_settings, f_f0, _) in zip(plus, flash, strict=True):
        assert p_settings == f_settings  # same draw, same voice
        assert abs(semitones(p_f0, f_f0)) < 0.3
    p_lat, f_lat = [t for *_, t in plus], [t for *_, t in flash]
    assert np.mean(f_lat) < 0.85 * np.mean(p_lat)  # flash "responds faster" (the simulator's assumption)
    assert min(f_lat) >= 0.2 and max(p_lat) <= 0.8  # quick enough for a notebook


def test_a_planted_pitch_shift_on_flash_measures_about_three_semitones():
    plus, flash = both_models({"*": INSTANT, FLASH: {"pitch_shift": 3}})
    shifts = [semitones(p_f0, f_f0) for (_, p_f0, _), (_, f_f0, _) in zip(plus, flash, strict=True)]
    assert len(shifts) == len(PROMPTS) * REPEATS == 12
    assert abs(np.mean(shifts) - 3) < 1 and min(shifts) > 2, shifts


def test_default_profiles_are_labelled_and_ordered():
    qwen = catalog.FAMILIES[catalog.QWEN_FAMILY].target_models  # the Qwen design family: plus's latency
    assert set(DEFAULTS) == set(catalog.MODELS) | set(qwen)
    assert all(DEFAULTS[m] == DEFAULTS[PLUS] for m in qwen)
    assert DEFAULTS[FLASH].design_latency < DEFAULTS[PLUS].design_latency
    assert DEFAULTS[FLASH].pitch_shift == DEFAULTS[PLUS].pitch_shift == 0
    assert all(0.2 <= p.design_latency <= 0.6 for p in DEFAULTS.values())


# --- each planted difference, at the engine ------------------------------------------------------

SEEDS = [f"{PLUS}-vd-t-{i:032x}" for i in range(4)]
TEXT = "Good evening, and welcome to the late news. Here are tonight's headlines."


def test_pace_speeds_the_voice_up():
    normal = [len(render(TEXT, settings_for("A calm man.", "en", s))) for s in SEEDS]
    fast = [len(render(TEXT, settings_for("A calm man.", "en", s, ModelProfile(pace=1.5)))) for s in SEEDS]
    assert np.mean(fast) < 0.8 * np.mean(normal)


def test_without_adherence_the_words_do_not_move_the_voice():
    deaf = ModelProfile(adherence=0)
    for s in SEEDS:
        assert settings_for("A deep, slow, soft male voice.", "en", s, deaf) == settings_for(
            "A high-pitched, fast, loud, breathy female voice.", "en", s, deaf
        )
    half = ModelProfile(adherence=0.5)
    pitch = {
        name: np.mean([settings_for(p, "en", s, prof).pitch for s in SEEDS])
        for name, p, prof in (
            ("deep", "A deep male voice.", None),
            ("half", "A deep male voice.", half),
            ("neutral", "A male voice.", None),
        )
    }
    assert pitch["deep"] < pitch["half"] < pitch["neutral"]


def test_variation_scales_the_per_voice_spread():
    def spread(profile):
        return np.std([settings_for("A calm man.", "en", f"seed{i}", profile).pitch for i in range(30)])

    assert spread(ModelProfile(variation=0)) == 0
    assert spread(None) < spread(ModelProfile(variation=2.5))


def test_noise_is_a_quality_loss():
    def hnr(profile):
        x = render(TEXT, settings_for("A calm man.", "en", SEEDS[0], profile), 24000)
        h = parselmouth.Sound(x.astype(np.float64), 24000).to_harmonicity()
        return float(np.mean(h.values[h.values > -200]))

    assert hnr(ModelProfile(noise=1.0)) < hnr(None) - 5


# --- how profiles are given -------------------------------------------------------------------


def test_resolve_merges_all_models_then_one():
    got = resolve({"*": {"noise": 0.5}, FLASH: {"pitch_shift": 3}})
    assert got[FLASH].pitch_shift == 3 and got[FLASH].noise == 0.5 and got[PLUS].noise == 0.5
    assert got[PLUS].design_latency == DEFAULTS[PLUS].design_latency
    assert resolve({PLUS: ModelProfile(pace=2)})[PLUS] == ModelProfile(pace=2)


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"cosyvoice-v9": {"pace": 1}}, "no such model"),
        ({FLASH: {"pitchshift": 3}}, "pitchshift"),
        ({FLASH: {"adherence": 2}}, "adherence=2.0"),
    ],
)
def test_bad_profiles_are_refused_with_a_clear_message(bad, word):
    with pytest.raises(ValueError, match=word):
        resolve(bad)
    with pytest.raises(ValueError, match=word):
        serve(model_profiles=bad).__enter__()


def test_parse_cli_option():
    assert parse_option(f"{FLASH}:pitch_shift=3,pace=1.1") == (FLASH, {"pitch_shift": 3.0, "pace": 1.1})
    assert merge_options([f"{FLASH}:pitch_shift=3", f"{FLASH}:noise=0.2", "*:design_latency=0"]) == {
        FLASH: {"pitch_shift": 3.0, "noise": 0.2},
        "*": {"design_latency": 0.0},
    }
    for bad in ("pitch_shift=3", f"{FLASH}:", f"{FLASH}:pitch_shift", f"{FLASH}:pitch_shift=high"):
        with pytest.raises(ValueError, match="profile"):
            parse_option(bad)


def test_cli_refuses_a_bad_profile(capsys):
    assert cli.main(["offline", "--profile", "cosyvoice-v9:pace=1"]) == cli.EXIT_INPUT
    assert "no such model" in capsys.readouterr().err


def test_cli_plants_a_profile(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cosyvoice_lab.cli",
            "offline",
            "--port",
            str(port),
            "--api-key",
            OFFLINE_API_KEY,
            "--state",
            str(tmp_path),
            "--profile",
            f"{FLASH}:pitch_shift=3",
            "--profile",
            "*:design_latency=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sim = type("Remote", (), {"base_url": f"http://127.0.0.1:{port}/api/v1", "api_key": OFFLINE_API_KEY})
        for _ in range(100):
            try:
                create(sim, FLASH, *PROMPTS[0])
                break
            except requests.ConnectionError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert [v["settings"]["shift"] for v in Registry(tmp_path).voices()] == [3.0]


def test_profiles_change_at_runtime_and_through_shared(tmp_path):
    with serve(model_profiles={"*": INSTANT}) as sim:
        sim.model_profiles = {"*": INSTANT, FLASH: {"pitch_shift": -2}}
        create(sim, FLASH, *PROMPTS[0])
        assert sim.voices()[0]["settings"]["shift"] == -2
    sim = shared(tmp_path / "lab", model_profiles={FLASH: {"pace": 1.2}})
    assert sim.model_profiles[FLASH].pace == 1.2
    assert shared(tmp_path / "lab") is sim and sim.model_profiles[FLASH].pace == 1.2  # kept when not given
    assert shared(tmp_path / "lab", model_profiles={}) is sim and sim.model_profiles[FLASH].pace == 1.0
