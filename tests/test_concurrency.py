"""The runner at the service's pace, against the real simulator on loopback: it sizes its
concurrency itself, backs off when the server answers 429 and recovers when it stops, shares a
key's budget between processes, says when there is nothing to send; the Speaker reuses its
connection. Counts, never timings."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from grants import record_grants, within

from cosyvoice_lab import Lab, catalog
from cosyvoice_lab.offline import serve
from cosyvoice_lab.service import RetryPolicy
from cosyvoice_lab.service.ratelimit import Limits


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setenv("COSYVOICE_LAB_RUNTIME_DIR", str(tmp_path / "runtime"))


def lab_on(sim, folder, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("measure", False)
    return Lab(folder, backend="offline", base_url=sim.base_url, **kw)


def throttled(sim):
    return sum(1 for *_, status in sim.request_log if status == 429)


@pytest.fixture
def grants(monkeypatch):
    """The instants the lab's rate limiter let a request go (tests/grants.py)."""
    return record_grants(monkeypatch.setattr)


def test_defaults_go_past_a_fixed_pool_at_the_clients_margin_under_the_limit(tmp_path, grants):
    """Whether the simulator answers 429 depends on when it gets to each request (a loaded machine
    bunches them: ``benchmarks/runner_bench.py`` counts 429s on a quiet one); what the client
    promises is its pace: at most 9 requests in any 1.1 s, every request the server saw granted."""
    with serve(model_profiles={"*": {"design_latency": 1.0}}) as sim:
        lab = lab_on(sim, tmp_path / "lab")
        comp = lab.compare(["a calm narrator"], repeats=12)  # 24 takes, listings before and after
        assert all(t.ok for t in comp.takes) and len(comp.takes) == 24
        assert lab.pacer.peak_in_flight > 4  # the old fixed pool: 4 threads
        # designs, listings and queries share one budget, as on the service
        assert len(grants) >= len(sim.request_log) >= 24
        assert within(grants, 1.0 + Limits().window_slack) <= Limits().requests_per_second < catalog.ENROLLMENT_RPS


def test_concurrency_given_is_an_upper_bound(tmp_path):
    with serve(model_profiles={"*": {"design_latency": 0.3}}) as sim:
        lab = lab_on(sim, tmp_path / "lab", concurrency=3)
        takes = lab.design("a calm narrator", n=9)
        assert all(t.ok for t in takes) and lab.pacer.peak_in_flight == 3


def test_backs_off_when_the_server_answers_429_and_recovers_when_it_stops(tmp_path):
    with serve(model_profiles={"*": {"design_latency": 0.3}}) as sim:
        lab = lab_on(sim, tmp_path / "lab", retry=RetryPolicy(max_attempts=8))
        design, _ = lab.make_design("a calm narrator")
        phases = {"before": [], "limited": [], "after": []}
        phase = ["before"]

        def on_done(index, take, error):
            finished = sum(len(v) for v in phases.values()) + 1
            if finished == 10:  # the service starts refusing: 2 requests/second
                phase[0] = "limited"
                sim.state.enrollment_rps = 2.0
            elif finished == 22:  # and stops
                phase[0] = "after"
                sim.state.enrollment_rps = catalog.ENROLLMENT_RPS
            phases[phase[0]].append((lab.pacer.limit(), lab.pacer.throttled_count, lab.pacer.cap))

        lab.run_designs([design] * 45, on_done=on_done)
        before = max(limit for limit, _, _ in phases["before"])
        # (a 429 before the limit drops is the machine's doing, not the client's: see the test above)
        assert phases["limited"][-1][1] > phases["before"][-1][1]  # the server said 429 ...
        assert min(limit for limit, _, _ in phases["limited"]) < before  # ... and the runner backed off
        # 429s stopped: the window the 429s cut is open again, as wide as the limit before them. (The
        # limit itself also follows the latencies: on a loaded machine those before were inflated.)
        assert phases["after"][-1][2] >= before
        assert throttled(sim) == lab.pacer.throttled_count


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[3])
    from grants import record_grants
    from cosyvoice_lab import Lab
    granted = record_grants()
    lab = Lab(sys.argv[2], backend="offline", base_url=sys.argv[1], progress=False, measure=False)
    comp = lab.compare(["a calm narrator"], repeats=10)
    print(json.dumps({"errors": [t.error_code for t in comp.takes], "grants": granted}))
    """
)


def test_two_processes_with_one_key_share_its_budget(tmp_path):
    """Together they keep the client's pace (at most 9 requests in any 1.1 s, from their shared
    window's clock), every request the server saw granted by one of them."""
    with serve(model_profiles={"*": {"design_latency": 0.5}}) as sim:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, sim.base_url, str(tmp_path / f"lab{i}"), str(Path(__file__).parent)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        said = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
        assert [s["errors"] for s in said] == [[None] * 20, [None] * 20]  # every take ok
        granted = [t for s in said for t in s["grants"]]
        assert len(granted) >= len(sim.request_log) >= 40
        assert within(granted, 1.0 + Limits().window_slack) <= Limits().requests_per_second


def test_rerunning_a_finished_compare_says_nothing_to_send(tmp_path, capsys):
    with serve(model_profiles={"*": {"design_latency": 0}}) as sim:
        lab = lab_on(sim, tmp_path / "lab", progress=True)
        lab.compare(["a calm narrator"], repeats=3, experiment="again", verify=False, check_quota=False)
        capsys.readouterr()
        creates = sum(1 for _, action, _ in sim.request_log if action == "create_voice")
        lab.compare(["a calm narrator"], repeats=3, experiment="again", verify=False, check_quota=False)
        err = capsys.readouterr().err
        assert "6 takes reused, nothing to send" in err and "0/0" not in err
        assert sum(1 for _, action, _ in sim.request_log if action == "create_voice") == creates


def test_progress_shows_reused_in_flight_failed_and_rate(tmp_path, capsys):
    with serve(model_profiles={"*": {"design_latency": 0}}) as sim:
        lab = lab_on(sim, tmp_path / "lab", progress=True)
        lab.compare(["a calm narrator"], repeats=2, experiment="more", verify=False, check_quota=False)
        lab.compare(["a calm narrator"], repeats=3, experiment="more", verify=False, check_quota=False)
        err = capsys.readouterr().err.replace("\r", "\n")
        assert "reused 4" in err and "in flight" in err and "failed 0" in err and "takes/s" in err
        assert "6/6" in err


def test_the_speaker_reuses_one_connection(tmp_path):
    with serve(model_profiles={"*": {"design_latency": 0}}, first_audio_seconds=0, realtime_factor=0) as sim:
        lab = lab_on(sim, tmp_path / "lab")
        take = lab.design("a calm narrator", preview_text="Hello there.")
        for text in ("One.", "Two.", "Three."):
            assert lab.speak(take, text).sentences == [text]
        actions = [action for _, action, _ in sim.request_log]
        assert actions.count("run-task") == 3 and actions.count("ws-connect") == 1
        assert lab.speaker.synthesizer.connector.reused == 2


def test_a_kept_connection_the_server_closed_is_replaced(tmp_path):
    with serve(
        model_profiles={"*": {"design_latency": 0}}, first_audio_seconds=0, realtime_factor=0, synth_idle_seconds=0.2
    ) as sim:
        lab = lab_on(sim, tmp_path / "lab")
        take = lab.design("a calm narrator", preview_text="Hello there.")
        assert lab.speak(take, "One.").sentences == ["One."]
        import time

        time.sleep(0.6)  # the server closes the idle connection
        assert lab.speak(take, "Two.").sentences == ["Two."]
        actions = [action for _, action, _ in sim.request_log]
        assert actions.count("ws-connect") == 2 and actions.count("run-task") == 2


def test_a_connection_that_failed_a_task_is_not_kept(tmp_path):
    from cosyvoice_lab.errors import CosyVoiceLabError

    with serve(model_profiles={"*": {"design_latency": 0}}, first_audio_seconds=0, realtime_factor=0) as sim:
        lab = lab_on(sim, tmp_path / "lab")
        take = lab.design("a calm narrator", preview_text="Hello there.")
        ghost = catalog.V35_PLUS + "-vd-lab-" + "0" * 32
        with pytest.raises(CosyVoiceLabError):
            lab.speaker.synthesizer.speak(ghost, "Nobody.", wait_ready=False)
        assert lab.speak(take, "One.").sentences == ["One."]
        assert lab.speak(take, "Two.").sentences == ["Two."]
        actions = [action for _, action, _ in sim.request_log]
        assert actions.count("ws-connect") == 2  # the failed task's, then one kept for both
        assert lab.speaker.synthesizer.connector.reused == 1
