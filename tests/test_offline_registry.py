"""Several simulators on one state dir (issue 12: a notebook and the CLI on one lab folder):
real processes, one SQLite store, every voice kept and seen by all."""

from __future__ import annotations

import concurrent.futures as cf
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import requests

from cosyvoice_lab import catalog
from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline import serve
from cosyvoice_lab.offline.registry import NotAVoiceStore, Registry

INSTANT = {"*": {"design_latency": 0}}
CHILD = """
import sys
from cosyvoice_lab.offline import serve
with serve(state_dir=sys.argv[1], quota=int(sys.argv[2]), enrollment_rps=None,
           model_profiles={"*": {"design_latency": 0}}) as sim:
    print(sim.port, flush=True)
    sys.stdin.read()  # serve until the parent closes stdin
"""


class Remote:
    """A simulator in another process, reached over loopback like any client would."""

    def __init__(self, port: int):
        self.base_url = f"http://127.0.0.1:{port}/api/v1"

    def call(self, action: str, **fields) -> requests.Response:
        return requests.post(
            self.base_url + catalog.CUSTOMIZATION_PATH,
            timeout=30,
            headers={"Authorization": f"Bearer {OFFLINE_API_KEY}"},
            json={"model": "voice-enrollment", "input": {"action": action, **fields}},
        )

    def create(self, n: int) -> requests.Response:
        return self.call(
            "create_voice",
            target_model=catalog.V35_PLUS,
            prefix="proc",
            language_hints=["en"],
            voice_prompt=f"A calm voice number {n}.",
            preview_text="Hello.",
        )

    def listed(self) -> set[str]:
        r = self.call("list_voice", page_size=1000)
        assert r.status_code == 200, r.text
        return {v["voice_id"] for v in r.json()["output"]["voice_list"]}


@pytest.fixture
def two_processes(tmp_path, request):
    quota = getattr(request, "param", catalog.VOICE_QUOTA)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(quota)],
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        yield [Remote(int(p.stdout.readline())) for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=10)


def create_in_both(remotes, per_process: int) -> list[requests.Response]:
    jobs = [(r, i) for i in range(per_process) for r in remotes]  # interleaved: both at once
    with cf.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda job: job[0].create(job[1]), jobs))


def test_two_processes_see_and_keep_each_others_voices(two_processes):
    a, b = two_processes
    answers = create_in_both(two_processes, 12)
    assert [r.status_code for r in answers] == [200] * 24
    made = {r.json()["output"]["voice_id"] for r in answers}
    assert a.listed() == b.listed() == made  # the last writer no longer wins


@pytest.mark.parametrize("two_processes", [10], indirect=True)
def test_the_quota_counts_the_voices_of_both(two_processes):
    a, b = two_processes
    answers = create_in_both(two_processes, 8)
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 10 and codes.count(400) == 6
    assert {r.json()["code"] for r in answers if r.status_code == 400} == {"Throttling.AllocationQuota"}
    assert len(a.listed()) == len(b.listed()) == 10


def test_a_delete_in_one_is_seen_by_the_other(two_processes):
    a, b = two_processes
    vid = a.create(1).json()["output"]["voice_id"]
    assert b.call("query_voice", voice_id=vid).json()["output"]["status"] == "OK"
    assert b.call("delete_voice", voice_id=vid).status_code == 200
    r = a.call("query_voice", voice_id=vid)
    assert r.status_code == 400 and r.json()["code"] == "BadRequest.ResourceNotExist"
    assert a.listed() == b.listed() == set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_notebook_and_the_cli_on_one_folder(tmp_path):
    """The reported case: `cosyvoice-lab offline --state` beside an in-process simulator."""
    port = _free_port()
    cli = subprocess.Popen(
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
            "*:design_latency=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        remote = Remote(port)
        for _ in range(100):
            try:
                remote.listed()
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        with serve(state_dir=tmp_path, api_key=OFFLINE_API_KEY, model_profiles=INSTANT) as notebook:
            here = Remote(notebook.port)
            made = {x.create(i).json()["output"]["voice_id"] for i in range(3) for x in (remote, here)}
            assert len(made) == 6 and remote.listed() == here.listed() == made
    finally:
        cli.terminate()
        cli.communicate(timeout=10)
    with serve(state_dir=tmp_path, model_profiles=INSTANT) as later:  # and after both are gone
        assert {v["voice_id"] for v in later.voices()} == made


def test_a_foreign_sqlite_file_is_left_untouched(tmp_path):
    path = tmp_path / "voices.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE takes (id TEXT)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(NotAVoiceStore):
        Registry(tmp_path)
    assert path.read_bytes() == before and not (tmp_path / "voices.sqlite3-wal").exists()


def test_two_registries_in_one_process_share_the_store(tmp_path):
    a, b = Registry(tmp_path, quota=2), Registry(tmp_path, quota=2)
    a.add({"voice_id": "v1", "prefix": "p"})
    b.add({"voice_id": "v2", "prefix": "p"})
    assert [v["voice_id"] for v in a.voices()] == [v["voice_id"] for v in b.voices()] == ["v2", "v1"]
    assert a.count() == b.count() == 2
    a.close()
    b.close()
