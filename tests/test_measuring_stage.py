"""The measuring stage (lab/stage.py): takes are recorded ok and playable before their measures,
measures fill in on a pool that never exceeds its bound, one quality-model session serves it,
and a stop in the middle leaves every take ok and measurable later. Real simulator, real
SQLite logs; the only thing held back is the measure function's start (a gate around the real
one), so that "before the measures" is a state the test can look at."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cosyvoice_lab import Lab, PromptSpec
from cosyvoice_lab.analysis import measures
from cosyvoice_lab.analysis.measures import VERSION
from cosyvoice_lab.lab.stage import MeasuringOptions, MeasuringStage, cores
from cosyvoice_lab.offline import serve

PROMPTS = ["a deep, slow elderly male voice", "a bright, fast young female voice"]
PREVIEW = "Hello there, how are you today?"


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None) as s:
        yield s


@pytest.fixture
def gate(monkeypatch):
    """Measuring waits at this gate until the test opens it (the measure itself is the real one)."""
    opened, real = threading.Event(), measures.measure

    def gated(*args, **kw):
        assert opened.wait(120), "the test never opened the gate"
        return real(*args, **kw)

    monkeypatch.setattr(measures, "measure", gated)
    yield opened
    opened.set()


def lab_on(sim, tmp_path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("requests_per_second", None)
    return Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, **kw)


def measured(take) -> bool:
    return (take.metrics or {}).get("measures_version") == VERSION


def test_a_compare_returns_with_takes_ok_and_playable_and_measures_fill_in_after(sim, tmp_path, gate):
    lab = lab_on(sim, tmp_path)
    comp = lab.compare(PROMPTS, repeats=2, preview_text=PREVIEW)
    takes = comp.takes
    assert len(takes) == 8 and all(t.ok for t in takes)
    assert all(t.audio.duration > 0.5 for t in takes)  # playable now
    assert comp.html().count("<audio") == 8 and "measuring: 8 takes pending" in comp.html()
    assert not any(measured(t) for t in takes)
    assert sorted(comp.pending) == sorted(t.take_id for t in takes) and "measures pending for 8" in repr(comp)
    gate.set()
    summary = comp.summary()  # waits for the measures it reads: pitch, rate, loudness
    assert summary["m_median_f0_hz"].notna().all() and comp.measures.pending(quality=False) == []
    comp.measured()  # and predicted quality, the last to come
    assert comp.pending == [] and all(measured(t) for t in comp.takes)
    # filled in: DNSMOS's polynomial mapping can land a little outside 1-5 on robotic speech
    assert all(0 < t.metrics["dnsmos_ovrl"] < 6 for t in comp.takes), [t.metrics["dnsmos_ovrl"] for t in comp.takes]


def test_measuring_in_two_steps_gives_the_figures_of_one_measure_call(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    comp = lab.compare(PROMPTS[:1], target_models=["cosyvoice-v3.5-flash"], repeats=2, preview_text=PREVIEW).measured()
    for take in comp.takes:
        once = measures.measure(take.audio, take.design.preview_text, take.design.language_hint).to_dict()
        assert take.metrics.keys() >= once.keys()
        for name, value in once.items():
            stored = take.metrics[name]
            assert stored == value or (value != value and stored is None) or stored == pytest.approx(value), name


def test_design_returns_its_takes_measured(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    takes = lab.design("a calm deep male narrator", n=2, preview_text=PREVIEW)
    assert all(t.ok and measured(t) and t.metrics["median_f0_hz"] > 50 for t in takes)
    assert lab.measuring.pending() == []


def test_the_pool_never_exceeds_its_bound_and_shares_one_quality_session(sim, tmp_path):
    from cosyvoice_lab.analysis import quality

    lab = lab_on(sim, tmp_path, measuring=MeasuringOptions(workers=2))
    comp = lab.compare(PROMPTS, repeats=3, preview_text=PREVIEW).measured()
    assert 1 <= lab.measuring.threads <= 2 and 1 <= lab.measuring.peak_running <= 2
    assert all(measured(t) for t in comp.takes)
    before = quality.session()
    lab.compare(PROMPTS, repeats=1, preview_text=PREVIEW, experiment="again").measured()
    assert quality.session() is before  # the one session served both runs' threads
    assert MeasuringStage(lab.log).workers == cores()  # by default: the machine's cores, not the requests in flight


def test_a_stop_in_the_middle_leaves_takes_ok_and_the_next_compare_measures_them(sim, tmp_path, gate):
    lab = lab_on(sim, tmp_path, measuring=MeasuringOptions(workers=1))
    comp = lab.compare(PROMPTS, repeats=2, preview_text=PREVIEW, experiment="stopped")
    dropped = lab.measuring.cancel()  # what Ctrl-C does in the CLI: queued measures are dropped
    gate.set()
    lab.measuring.wait()
    assert dropped >= 7  # one was already at the gate
    takes = lab.log.takes(experiment="stopped")
    assert len(takes) == 8 and all(t.ok and t.audio_path for t in takes)
    assert sum(measured(t) for t in takes) == 8 - dropped
    sent = len(sim.voices())
    again = lab_on(sim, tmp_path).compare(PROMPTS, repeats=2, preview_text=PREVIEW, experiment="stopped")
    again.measured()
    assert len(sim.voices()) == sent, "nothing sent again"
    assert all(measured(t) for t in comp.takes)


def test_a_design_made_while_a_compare_measures_waits_for_its_own_measures_not_the_backlog(sim, tmp_path, gate):
    lab = lab_on(sim, tmp_path, measuring=MeasuringOptions(workers=1))
    comp = lab.compare(PROMPTS, repeats=2, preview_text=PREVIEW, experiment="backlog")  # 8 takes queued
    backlog = [t.take_id for t in comp.takes]
    designed: list = []
    single = threading.Thread(target=lambda: designed.append(lab.design("a calm deep narrator", preview_text=PREVIEW)))
    single.start()  # the one worker holds the backlog's first take at the gate; the design comes in behind it
    deadline = time.monotonic() + 120
    while not any(rank < 0 for rank, *_ in list(lab.measuring._queue.queue)):  # the design now waits for its take
        assert time.monotonic() < deadline and single.is_alive(), "the design never waited for its measures"
        time.sleep(0.01)
    gate.set()
    single.join(120)
    (take,) = designed
    assert measured(take) and take.metrics["median_f0_hz"] > 50
    # it went ahead: when it came back most of the backlog had not even had its first measures
    assert len(lab.measuring.pending(backlog, quality=False)) >= 6, lab.measuring.pending(backlog, quality=False)
    comp.measured()  # and the backlog is still measured, each take once
    assert all(measured(t) for t in comp.takes) and lab.measuring.pending() == []


def test_remeasure_after_a_stop_measures_what_was_dropped(sim, tmp_path, gate):
    lab = lab_on(sim, tmp_path, measuring=MeasuringOptions(workers=1))
    lab.compare(PROMPTS[:1], repeats=2, preview_text=PREVIEW, experiment="x")
    lab.measuring.cancel()
    gate.set()
    report = lab.remeasure(predicted_quality=False)
    assert set(report["action"]) <= {"measured", "up to date"} and (report["action"] == "measured").any()
    assert all((t.metrics or {}).get("measures_version") == VERSION for t in lab.log.takes())


def cli(*args: str, sim, tmp_path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    common = ["--folder", str(tmp_path / "lab"), "--base-url", sim.base_url, "--backend", "offline"]
    return subprocess.Popen([sys.executable, "-m", "cosyvoice_lab.cli", *args, *common], env=env, text=True, **kw)


def test_the_cli_compare_exits_with_every_measure_written(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    child = cli("compare", str(prompts), "--repeats", "2", "--json", sim=sim, tmp_path=tmp_path, stdout=subprocess.PIPE)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0 and json.loads(out)["ok"] == 8
    takes = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False).log.takes()
    assert len(takes) == 8 and all(measured(t) for t in takes)


def test_a_cli_design_without_predicted_quality_writes_every_other_measure(sim, tmp_path):
    """``--no-predicted-quality`` leaves out the DNSMOS model only: the take is measured (this
    version) with every other figure, and a design without the flag has the predicted quality too."""
    for flags in ([], ["--no-predicted-quality"]):
        child = cli("design", "a warm radio host", "--json", *flags, sim=sim, tmp_path=tmp_path, stdout=subprocess.PIPE)
        child.communicate(timeout=300)
        assert child.returncode == 0
    lab = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False)
    with_quality, without = lab.log.takes()
    assert measured(with_quality) and measured(without)
    quality = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
    assert all(1 <= with_quality.metrics[k] <= 5 for k in quality)
    assert not any(isinstance(without.metrics.get(k), float) and math.isfinite(without.metrics[k]) for k in quality)
    others = with_quality.metrics.keys() - set(quality) - {"problems"}
    assert others and all(without.metrics.get(k) is not None for k in others if with_quality.metrics[k] is not None)
    lab.remeasure(force=True)  # as the option's help says: measured again, with it
    assert all(1 <= lab.log.get(without.take_id).metrics[k] <= 5 for k in quality)


def test_ctrl_c_while_the_cli_measures_keeps_every_take_ok_and_a_rerun_measures_the_rest(sim, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    child = cli("compare", str(prompts), "--repeats", "4", sim=sim, tmp_path=tmp_path, stderr=subprocess.PIPE)
    lab = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # every design recorded, measures still running
        takes = lab.log.takes()
        if len(takes) == 16 and all(t.ok for t in takes):
            break
        time.sleep(0.02)
    unmeasured = sum(not measured(t) for t in lab.log.takes())
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    if unmeasured == 0:
        pytest.skip("the measures finished before the interrupt could be sent")
    assert child.returncode == 130 and "Traceback" not in err, err
    takes = lab.log.takes()
    assert len(takes) == 16 and all(t.ok for t in takes)
    if all(measured(t) for t in takes):
        pytest.skip("the measures finished before the interrupt reached them")
    assert "not measured" in err
    rerun = cli("compare", str(prompts), "--repeats", "4", sim=sim, tmp_path=tmp_path, stderr=subprocess.PIPE)
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and all(measured(t) for t in lab.log.takes())
    assert len(sim.voices()) == 16


def test_a_script_that_ends_after_compare_still_gets_every_figure(sim, tmp_path):
    """Two labs in one script, neither read after ``compare``: at exit the process waits for both
    stages' measures (as the CLI does), so the log holds every figure once the script is done."""
    script = f"""
from cosyvoice_lab import Lab
for name in ("a", "b"):
    lab = Lab({str(tmp_path)!r} + "/" + name, backend="offline", base_url={sim.base_url!r}, progress=False,
              requests_per_second=None)
    lab.compare({PROMPTS!r}, repeats=1, preview_text={PREVIEW!r})
"""
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"} | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("a", "b"):
        takes = Lab(tmp_path / name, backend="offline", base_url=sim.base_url, progress=False).log.takes()
        assert len(takes) == 4 and all(t.ok and measured(t) for t in takes), name


def test_a_tunes_designs_get_what_the_search_reads_and_remeasure_adds_predicted_quality(sim, tmp_path):
    """lab.tune never reads predicted quality: its designs are measured without the quality model
    (pitch, pace, clearness in the log), count as not yet fully measured, and a remeasure completes
    them; a compare on the same lab still gets predicted quality."""
    lab = lab_on(sim, tmp_path)
    tuning = lab.tune(
        PromptSpec(gender="male"), target={"pitch": "-3 st"}, budget=3, repeats=2, preview_text=PREVIEW, keep=True
    )
    takes = lab.log.takes(experiment=tuning.experiment, status="ok")
    assert takes and all(t.metrics["median_f0_hz"] > 0 and t.metrics.get("hnr_db") is not None for t in takes)
    assert not [t for t in takes if t.metrics.get("dnsmos_ovrl") is not None or measured(t)]
    assert not lab.measuring.pending()  # nothing left running for them
    report = lab.remeasure(takes)
    assert set(report["action"]) == {"measured"}
    assert all(measured(t) and 0 < t.metrics["dnsmos_ovrl"] < 6 for t in lab.log.takes(experiment=tuning.experiment))
    comp = lab.compare(PROMPTS[:1], repeats=1, preview_text=PREVIEW, experiment="after")
    assert all(measured(t) and t.metrics["dnsmos_ovrl"] > 0 for t in comp.measured().takes)
