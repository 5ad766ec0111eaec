"""A big bundle imports without holding up the log's other writers (issue 23, item 7): its
checks and its audio run before the write lock, which it holds only for its inserts. Real
processes, a real SQLite folder and the real local PostgreSQL."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.log.experiment_log import ExperimentLog

DESIGN = VoiceDesign("A bright, cheerful young woman", "Hello there, welcome.")
PREVIEWS = 400

# Another process: once the import has begun unpacking (some of its previews are stored, not all),
# it writes to the log through the write lock (a note: a transaction) and says how many previews
# were stored before and after its write.
NEIGHBOUR = """
    import sys
    from pathlib import Path
    from cosyvoice_lab.design import VoiceDesign
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    location, ready, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    with ExperimentLog(location) as log:
        take = log.table.start(VoiceDesign("A warm radio host", "Good evening."), backend="offline")
        count = lambda: log.db.query("SELECT count(*) FROM audio")[0][0] if log.db.kind == "PostgreSQL" else len(
            list(Path(location, "audio").glob("*.wav")))
        ready.touch()
        while not 0 < count() < total:
            pass
        before = count()
        log.note(take.take_id, "written while a bundle imports")
        print(before, count())
"""


def tone(seed: int) -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(2400) / (4 + seed / 50)), 24000, "wav")


@pytest.fixture(params=["folder", "postgresql"])
def any_log(request, tmp_path) -> str:
    return str(tmp_path / "log") if request.param == "folder" else request.getfixturevalue("pg_log_url")


def test_another_process_writes_while_a_big_bundle_unpacks(tmp_path, any_log):
    with ExperimentLog(tmp_path / "source") as source:
        for i in range(PREVIEWS):
            take = source.table.start(DESIGN, backend="offline", experiment="big")
            source.table.finish(take.take_id, voice_id=f"cosyvoice-v3.5-plus-vd-lab-{i:032x}", audio=tone(i))
        bundle = source.bundles.export(tmp_path / "big.zip")
    ready = tmp_path / "ready"
    with ExperimentLog(any_log) as log:
        env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "COSYVOICE_LAB_LOG")}
        neighbour = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(NEIGHBOUR), any_log, str(ready), str(PREVIEWS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        while not ready.exists():  # the neighbour has opened the log
            assert neighbour.poll() is None, neighbour.communicate()
            time.sleep(0.01)
        counts = log.bundles.merge(bundle)
        out, err = neighbour.communicate(timeout=120)
        assert neighbour.returncode == 0, err
        before, after = map(int, out.split())
        assert 0 < before <= after < PREVIEWS, "the neighbour's write went through while the previews unpacked"
        assert counts["takes"] == PREVIEWS and counts["audio_files"] == PREVIEWS
        assert len(log.takes(experiment="big")) == PREVIEWS
        assert [t.notes for t in log.takes() if t.experiment is None] == ["written while a bundle imports"]
