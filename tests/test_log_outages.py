"""The log's storage goes away in the middle of a compare (issue 23 items 3 and 4): the PostgreSQL
server restarts, the disk fills up. Real things only: a private PostgreSQL cluster that this test
restarts (not the session's, which other tests use), a real tmpfs of a few MiB that fills up, the
offline simulator on loopback and the real ``cosyvoice-lab compare`` in a child process.
"""

import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from processes import child_env, cli_process

from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.offline import serve

PROMPTS = [
    "a deep, slow elderly male voice",
    "a bright, fast young female voice",
    "a warm radio host",
    "a calm, gentle storyteller",
    "a crisp news anchor",
]  # x 2 models x 2 repeats = 20 takes


def compare(sim, prompts: Path, home: Path, log: str | None = None, repeats: int = 2) -> subprocess.Popen:
    """A CLI compare; without the quality model, whose later second write per take comes after the outages
    these tests make (every other measure is written, as they check)."""
    args = ["compare", str(prompts), "--repeats", str(repeats), "--concurrency", "4", "--json", "--experiment", "x"]
    args += ["--no-predicted-quality"]
    args += ["--base-url", sim.base_url, "--backend", "offline", "--folder", str(home / "lab")]
    args += ["--log", log] if log else []
    return cli_process(*args, env=child_env(COSYVOICE_LAB_HOME=str(home)))


def creates(sim) -> int:
    return sum(action == "create_voice" for _, action, _ in sim.request_log)


@pytest.fixture
def private_pg():
    """A PostgreSQL cluster of this test's own, which it may restart."""
    from pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    server = PgServer(bindir).start()
    yield server
    server.stop()


def test_a_compare_rides_out_a_postgresql_restart_and_keeps_every_preview(tmp_path, private_pg, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    url = private_pg.new_database()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 1}}) as sim:
        child = compare(sim, prompts, tmp_path, url)
        while creates(sim) < 6 and child.poll() is None:  # the compare is under way
            time.sleep(0.05)
        private_pg.halt()  # every session ended, as an administrator's restart does
        before = creates(sim)
        time.sleep(3)  # down for 3 s while designs go on
        private_pg.resume()
        out, err = child.communicate(timeout=300)
        assert 0 < before < 20, "the restart landed in the middle of the compare"
        assert child.returncode == 0, err
        assert "Traceback" not in err
        assert json.loads(out.splitlines()[-1])["ok"] == 20
        assert "waiting for the log's database" in err
    with ExperimentLog(url) as log:
        takes = log.takes(experiment="x")
        assert len(takes) == 20 and all(t.status == "ok" for t in takes)
        assert all(t.audio is not None and t.audio.duration > 0 for t in takes), "every preview kept"
        assert all((t.metrics or {}).get("measures_version") for t in takes), "and measured"


def test_the_panel_answers_json_503_while_its_database_is_down_and_records_again_after(tmp_path, private_pg):
    import requests

    from cosyvoice_lab import Lab
    from cosyvoice_lab.panel import Panel

    url = private_pg.new_database()
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0}}) as sim:
        lab = Lab(tmp_path, log=url, backend="offline", base_url=sim.base_url, progress=False, measure=False)
        lab.compare(PROMPTS[:1], repeats=2, experiment="p", check_quota=False, verify=False)
    lab.log.db.reconnect_timeout_s = 1  # a panel's rater is told at once; a compare waits longer
    with Panel(lab.log, "p", port=0) as panel:
        base = f"http://127.0.0.1:{panel.port}"
        session = requests.get(base + "/api/session", params={"rater": "ana"}, timeout=30).json()
        first, second = session["items"][:2]
        private_pg.halt()
        try:
            body = {"session": session["session"], "item": first["id"], "rating": 4}
            answers = [
                requests.post(base + "/api/rating", json=body, timeout=30),
                requests.get(base + first["audio_url"], timeout=30),
                requests.get(base + "/api/session", params={"rater": "ben"}, timeout=30),
            ]
        finally:
            private_pg.resume()
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["Content-Type"].startswith("application/json")
            assert "try again" in answer.json()["error"]
        body = {"session": session["session"], "item": second["id"], "rating": 5}
        assert requests.post(base + "/api/rating", json=body, timeout=30).status_code == 200
        assert requests.get(base + second["audio_url"], timeout=30).status_code == 200
    assert lab.log.ratings.to_dataframe("p")["rating"].tolist() == [5]


def test_the_dataframe_waits_for_a_restarted_server(tmp_path, private_pg, caplog):
    """``log.df`` while the server restarts: the connection its fast read (ADBC) kept is gone, and
    the read waits for the server as every read of the log does, then gives the same frame."""
    from cosyvoice_lab.design import VoiceDesign

    with ExperimentLog(private_pg.new_database(), folder=tmp_path / "local") as log:
        for i in range(5):
            take = log.table.start(VoiceDesign(PROMPTS[i], "Hello there."), backend="offline", experiment="x")
            log.table.finish(take.take_id, voice_id=f"v{i}", metrics={"f0": 100.0 + i})
        before = log.df
        private_pg.halt()
        back = threading.Timer(2.0, private_pg.resume)
        back.start()
        try:
            with caplog.at_level(logging.WARNING):
                after = log.df
        finally:
            back.join()
        assert "waiting for the log's database" in caplog.text
        pd.testing.assert_frame_equal(after, before, check_exact=True)
        pd.testing.assert_frame_equal(log.df, before, check_exact=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 2 MiB (a tmpfs; mounting needs root), for a log that fills it up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_fails_the_compare_and_the_next_run_adopts_what_it_could_not_record(tmp_path, small_disk):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:3]) + "\n")  # x 2 models x 3 repeats = 18 takes, ~4 MiB of previews
    home = small_disk / "home"
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0.2}}) as sim:
        first = compare(sim, prompts, home, repeats=3)
        out, err = first.communicate(timeout=300)
        assert "No space left on device" in err or "disk is full" in err, err
        assert first.returncode == 1, err  # some takes' outcomes could not be recorded
        assert "Traceback" not in err
        # room again: the next run adopts the voices whose outcome was lost and designs what was never sent
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        second = compare(sim, prompts, home, repeats=3)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["ok"] == 18
        voices = [v["voice_id"] for v in sim.voices()]
        assert creates(sim) == 18 == len(voices), "no cell designed twice"
    with ExperimentLog(home / "lab") as log:
        takes = log.takes(experiment="x")
        assert sorted(t.voice_id for t in takes if t.ok) == sorted(voices), "every voice made is in the log, once"
        lost = [t for t in takes if t.preview_missing]
        assert lost, "some previews were lost to the full disk"
        assert all(t.audio is not None for t in takes if not t.preview_missing)
