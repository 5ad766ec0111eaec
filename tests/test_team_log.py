"""A team's log on PostgreSQL: several processes writing one database at once, raters on two
machines, and whole logs copied between a folder and a database (``cosyvoice-lab log copy``).

Real processes, a real PostgreSQL server (tests/pgserver.py: Debian's binaries, a fresh database
per test), real SQLite folders, and one offline simulator started here on loopback that every
process reaches through the same base URL.
"""

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from processes import child_env, cli_process
from sqlalchemy import text

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.copy import COUNTS, copy_log, slices
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.offline import serve

PROMPTS = ["a deep, slow elderly male voice", "a bright, fast young female voice", "a warm radio host"]
DESIGN = VoiceDesign("一位低沉温暖的男声，语速缓慢", "你好，欢迎收听今天的节目。")
EN = VoiceDesign("A bright, cheerful young woman", "Hello there, welcome.", target_model="cosyvoice-v3.5-flash")
ZEROS = dict.fromkeys(COUNTS, 0)


def tone(seed: int, fmt: str = "wav") -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(4800) / (4 + seed)), 24000, fmt)


def voice(i: int) -> str:
    return f"cosyvoice-v3.5-plus-vd-lab-{i:032x}"


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(**env),
    )
    assert done.returncode == 0, done.stderr
    return done


def populate(log: ExperimentLog) -> dict:
    """Takes with previews (one PCM), a failure, a reconciled take, a pending one; annotations by
    two people, ratings, an utterance and claimed cells."""
    takes = {}
    for i, (design, audio) in enumerate([(DESIGN, tone(1)), (EN, tone(2)), (DESIGN, tone(3, "pcm"))]):
        claimed = log.table.claim(design, experiment="exp", cell=f"p{i}|r0", backend="offline", prompt_spec={"i": i})
        assert claimed is not None
        takes[f"ok{i}"] = log.table.finish(
            claimed.take_id, voice_id=voice(i), audio=audio, request_id=f"r{i}", metrics={"f0_mean_hz": 100.0 + i}
        )
    failed = log.table.start(EN, backend="dashscope", experiment="other")
    takes["failed"] = log.table.fail(failed.take_id, error_code="InvalidParameter", error_message="bad & <worse>")
    unknown = log.table.start(DESIGN, backend="offline", experiment="exp")
    log.table.fail(unknown.take_id, error_code="OutcomeUnknown", error_message="timeout", status="unknown")
    takes["reconciled"] = log.table.reconcile(unknown.take_id, voice_id=voice(9))
    takes["pending"] = log.table.start(EN, backend="offline", experiment="exp")
    first = takes["ok0"].take_id
    log.rate(first, 5, rater="ana")
    log.tag(first, "warm", "keeper", rater="ana")
    log.untag(first, "keeper", rater="ben")
    log.note(first, "the one", rater="ben")
    log.choose(takes["ok1"].take_id, rater="ana")
    log.mark_played(first)
    log.ratings.add(first, 4, rater="ana", session_id="round-1")
    log.ratings.add(first, 2, rater="ben", kind="adherence", session_id="round-1")
    log.utterances.add(
        takes["ok1"].take_id, text="A longer line.", params={"rate": 1.0}, characters=14, cost_cny=0.001, audio=tone(7)
    )
    return takes


def frame(log: ExperimentLog) -> pd.DataFrame:
    """The takes as a user compares them across logs (the audio path names each log's own store)."""
    return log.df.drop(columns=["audio_path"]).sort_values("take_id").reset_index(drop=True)


def record_of(log: ExperimentLog) -> dict:
    """Everything a copy must carry, in a form that does not depend on the kind of log."""
    history = log.annotations().drop(columns=["annotation_id"]).sort_values(["take_id", "at", "action", "value"])
    utterances = log.utterances.to_dataframe().drop(columns=["audio_path"], errors="ignore").sort_values("utterance_id")
    return {
        "history": history.reset_index(drop=True),
        "utterances": utterances.reset_index(drop=True),
        "ratings": log.ratings.to_dataframe().sort_values(["take_id", "rater"]).reset_index(drop=True),
        "claims": sorted(log.db.query("SELECT experiment, cell, take_id FROM cell_claims")),
        "audio": {t.take_id: t.audio.sha256 for t in log.takes() if t.audio_path},
        "spoken": sorted(log.utterances.audio(u).sha256 for u in log.utterances.to_dataframe()["utterance_id"]),
    }


def assert_same_record(a: ExperimentLog, b: ExperimentLog, *, pending_became_interrupted: str | None = None) -> None:
    left, right = frame(a), frame(b)
    if pending_became_interrupted:  # a take pending when copied arrives without an outcome
        row = left["take_id"] == pending_became_interrupted
        assert right.loc[row, "status"].tolist() == ["interrupted"]
        left, right = left[~row].reset_index(drop=True), right[~row].reset_index(drop=True)
        left["status"] = left["status"].astype(str)
        right["status"] = right["status"].astype(str)
    pd.testing.assert_frame_equal(left, right, check_categorical=False)
    ra, rb = record_of(a), record_of(b)
    for part in ("history", "utterances", "ratings"):
        pd.testing.assert_frame_equal(ra[part], rb[part], check_categorical=False)
    assert ra["claims"] == rb["claims"] and ra["audio"] == rb["audio"] and ra["spoken"] == rb["spoken"]


@pytest.fixture(params=["folder", "postgresql"])
def any_log(request, tmp_path) -> str:
    """A new log of either kind: a folder (SQLite), or a fresh PostgreSQL database's URL."""
    return str(tmp_path / "log") if request.param == "folder" else request.getfixturevalue("pg_log_url")


# --- copying whole logs -------------------------------------------------------------------------


def test_a_folder_copied_into_a_database_and_back_keeps_everything(tmp_path, pg_log_url):
    with ExperimentLog(tmp_path / "mine") as mine:
        takes = populate(mine)
        pending = takes["pending"].take_id
        counts = copy_log(mine, pg_log_url)
        expected = {"takes": 6, "annotations": 6, "utterances": 1, "audio_files": 4, "ratings": 3, "cell_claims": 3}
        assert counts == {**ZEROS, **expected}
        with ExperimentLog(pg_log_url) as team:
            assert team.audio_dir is None, "the audio lives in the database, not in a folder"
            assert_same_record(mine, team, pending_became_interrupted=pending)
            assert copy_log(mine, team) == ZEROS, "copying twice adds nothing"
            assert len(team) == 6
        back = copy_log(pg_log_url, tmp_path / "back")
        assert back["takes"] == 6 and back["audio_files"] == 4
        with ExperimentLog(tmp_path / "back") as again:
            assert_same_record(mine, again, pending_became_interrupted=pending)
            assert again.get(takes["ok2"].take_id).audio.data == tone(3, "pcm").data


def test_an_outcome_settled_after_the_copy_arrives_with_the_next_copy(tmp_path, any_log):
    with ExperimentLog(tmp_path / "src") as src:
        pending = src.table.start(EN, backend="offline", experiment="exp")
        copy_log(src, any_log)
        src.table.finish(pending.take_id, voice_id=voice(1), audio=tone(1))
        src.rate(pending.take_id, 3)
        assert copy_log(src, any_log) == {**ZEROS, "takes_updated": 1, "ratings": 1, "audio_files": 1}
    with ExperimentLog(any_log) as dst:
        take = dst.get(pending.take_id)
        assert take.ok and take.rating == 3 and take.audio.data == tone(1).data


def test_a_destination_holding_another_take_under_a_copied_id_is_refused_whole(tmp_path, any_log):
    with ExperimentLog(tmp_path / "src") as src:
        populate(src)
        copy_log(src, any_log)
        first = src.takes()[0].take_id
        late = src.table.start(DESIGN, backend="offline", experiment="later")
    with ExperimentLog(any_log) as dst, dst.db.transaction() as conn:
        conn.execute(text("UPDATE takes SET voice_prompt = 'someone else' WHERE take_id = :id"), {"id": first})
    with pytest.raises(LogError, match=f"take {first} \\(voice_prompt\\).*nothing was copied"):
        copy_log(tmp_path / "src", any_log)
    with ExperimentLog(any_log) as dst:
        assert late.take_id not in set(dst.df["take_id"]), "nothing was copied"


def test_a_log_is_not_copied_onto_itself(tmp_path):
    with ExperimentLog(tmp_path / "a") as log:
        log.table.start(DESIGN, backend="offline")
        with pytest.raises(LogError, match="both the source and the destination"):
            copy_log(log, tmp_path / "a")
        assert len(log) == 1


def test_a_big_log_travels_in_slices_and_still_arrives_whole(tmp_path, any_log):
    with ExperimentLog(tmp_path / "src") as src:
        for i in range(23):
            take = src.table.start(DESIGN if i % 2 else EN, backend="offline", experiment=f"e{i % 3}")
            src.table.finish(take.take_id, voice_id=voice(i), audio=tone(i % 4))
        # several takes started at one instant must not be split between slices (or lost at an edge)
        src.db.query("UPDATE takes SET started_at = (SELECT min(started_at) FROM takes) WHERE experiment = 'e1'")
        counts = copy_log(src, any_log, chunk_takes=4)
        assert counts["takes"] == 23 and counts["audio_files"] == 4
        with ExperimentLog(any_log) as dst:
            pd.testing.assert_frame_equal(frame(src), frame(dst), check_categorical=False)


@given(st.lists(st.integers(0, 30), max_size=60).map(sorted), st.integers(1, 8))
def test_slices_hold_every_take_once_and_never_split_an_instant(starts, size):
    ranges = slices(starts, size)
    assert sum(n for _, _, n in ranges) == len(starts)
    for start in starts:  # each start time lies in exactly one [since, until)
        inside = [(a, b) for a, b, _ in ranges if (a is None or a <= start) and (b is None or start < b)]
        assert len(inside) == 1
    for (_, _, n), (since, _, _) in pairwise(ranges):
        assert n >= size and since is not None, "only the last range may be short"


def test_the_copy_command_moves_a_folder_into_a_database_without_printing_its_password(tmp_path, pg_log_url):
    with ExperimentLog(tmp_path / "mine") as mine:
        populate(mine)
    command = [sys.executable, "-m", "cosyvoice_lab.cli", "log", "copy", str(tmp_path / "mine"), pg_log_url]
    first = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300, env=child_env())
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["takes"] == 6
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_env())
    assert again.returncode == 0 and "0 takes" in again.stdout
    password = pg_log_url.split(":")[2].split("@")[0]
    for done in (first, again):
        assert password not in done.stdout + done.stderr
    onto_itself = subprocess.run([*command[:-2], pg_log_url, pg_log_url], capture_output=True, text=True, timeout=300)
    assert onto_itself.returncode != 0 and "both the source and the destination" in onto_itself.stderr
    assert password not in onto_itself.stdout + onto_itself.stderr


# --- bundles between the two kinds --------------------------------------------------------------


def test_a_bundle_moves_from_a_folder_to_a_database_and_back(tmp_path, pg_log_url):
    with ExperimentLog(tmp_path / "mine") as mine:
        takes = populate(mine)
        mine.bundles.export(tmp_path / "mine.zip")
        with ExperimentLog(pg_log_url) as team:
            counts = team.bundles.merge(tmp_path / "mine.zip")
            assert counts["takes"] == 6 and counts["audio_files"] == 4
            assert team.bundles.merge(tmp_path / "mine.zip")["takes"] == 0, "merging twice adds nothing"
            team.bundles.export(tmp_path / "team.zip")
        names = set(zipfile.ZipFile(tmp_path / "team.zip").namelist())
        assert {n for n in names if n.startswith("audio/")} == {
            n for n in zipfile.ZipFile(tmp_path / "mine.zip").namelist() if n.startswith("audio/")
        }
        with ExperimentLog(tmp_path / "theirs") as theirs:
            theirs.bundles.merge(tmp_path / "team.zip")
            left, right = frame(mine), frame(theirs)
            pending = left["take_id"] == takes["pending"].take_id
            assert right.loc[pending, "status"].tolist() == ["interrupted"]
            pd.testing.assert_frame_equal(
                left[~pending].reset_index(drop=True), right[~pending].reset_index(drop=True), check_categorical=False
            )
            assert theirs.get(takes["ok0"].take_id).audio.data == tone(1).data


# --- several processes on one database ----------------------------------------------------------


def compare_popen(sim, prompts: Path, url: str, user: str, home: Path) -> subprocess.Popen:
    args = ["compare", str(prompts), "--repeats", "3", "--concurrency", "4", "--json", "--experiment", "team"]
    args += ["--base-url", sim.base_url, "--backend", "offline"]
    return cli_process(
        *args, env=child_env(COSYVOICE_LAB_LOG=url, COSYVOICE_LAB_USER=user, COSYVOICE_LAB_HOME=str(home))
    )


READ_EVERY_PREVIEW = """
    import json, sys
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    with ExperimentLog(sys.argv[1]) as log:
        print(json.dumps({t.take_id: t.audio.sha256 for t in log.takes()}))
"""


def test_three_processes_comparing_into_one_database_design_every_cell_once(tmp_path, pg_log_url, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 1}}) as sim:  # long enough to overlap
        children = [compare_popen(sim, prompts, pg_log_url, user, tmp_path / user) for user in ("ana", "ben", "eve")]
        outputs = [child.communicate(timeout=300) for child in children]
        for child, (_, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err
            assert "Traceback" not in err
        cells = 3 * 2 * 3
        creates = [action for _, action, _ in sim.request_log if action == "create_voice"]
        assert len(creates) == cells, "every cell designed exactly once"
        voices = {v["voice_id"] for v in sim.voices()}
    with ExperimentLog(pg_log_url) as log:
        df = log.df
        assert len(df) == cells and df["take_id"].is_unique and df["cell"].is_unique
        assert (df["status"] == "ok").all() and df["audio_sha256"].notna().all()
        assert set(df["voice_id"]) == voices, "every voice in the account is in the log"
        writers = log.db.query("SELECT count(DISTINCT writer_pid) FROM takes")[0][0]
        assert writers >= 2, "the processes designed side by side"
        expected = dict(zip(df["take_id"], df["audio_sha256"], strict=True))
    # a fourth process, which wrote nothing, plays every take's preview from the database
    read = run_python(READ_EVERY_PREVIEW, pg_log_url, COSYVOICE_LAB_HOME=str(tmp_path / "reader"))
    assert json.loads(read.stdout) == expected
    assert not [p for user in ("ana", "ben", "eve") for p in (tmp_path / user).glob("**/audio/*")], "none on disk"


RATE_AND_ANNOTATE = """
    import sys, time
    from pathlib import Path
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    url, score, user, barrier = sys.argv[1:]
    with ExperimentLog(url) as log:
        takes = log.takes()
        (Path(barrier) / user).touch()
        while not (Path(barrier) / "go").exists():  # both raters start together
            time.sleep(0.01)
        for k in range(3):
            for take in takes:
                log.ratings.add(take.take_id, int(score), session_id="round-1")
                log.tag(take.take_id, f"{user}{k}")  # read-modify-write of the take's tags, both at once
        log.note(takes[0].take_id, "heard by " + user)
"""


def test_two_raters_rate_the_same_takes_at_once_and_both_are_kept(any_log, tmp_path):
    with ExperimentLog(any_log) as log:
        ids = []
        for i in range(20):
            take = log.table.start(DESIGN, backend="offline", experiment="round")
            ids.append(log.table.finish(take.take_id, voice_id=voice(i), audio=tone(i % 3)).take_id)
    raters = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RATE_AND_ANNOTATE), any_log, score, user, str(tmp_path)],
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(COSYVOICE_LAB_USER=user, COSYVOICE_LAB_HOME=str(tmp_path / f"home-{user}")),
        )
        for user, score in (("ana", "5"), ("ben", "2"))
    ]
    for _ in range(6000):
        if (tmp_path / "ana").exists() and (tmp_path / "ben").exists():
            break
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for rater in raters:
        _, err = rater.communicate(timeout=300)
        assert rater.returncode == 0, err
    with ExperimentLog(any_log) as log:
        ratings = log.ratings.to_dataframe(session_id="round-1")
        assert Counter(zip(ratings["rater"], ratings["rating"], strict=True)) == {("ana", 5): 20, ("ben", 2): 20}
        assert log.db.query("SELECT count(*) FROM ratings")[0][0] == 2 * 3 * 20, "every rating kept as an event"
        history = log.annotations()
        assert set(history["author"]) == {"ana", "ben"}
        assert Counter(history["action"]) == {"tag": 2 * 3 * 20, "note": 2}
        for take_id in ids:  # neither rater's tag was lost to the other's write
            assert sorted(log.get(take_id).tags) == ["ana0", "ana1", "ana2", "ben0", "ben1", "ben2"]
        assert log.get(ids[0]).notes in ("heard by ana", "heard by ben")
