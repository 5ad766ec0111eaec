"""Every tutorial notebook runs top to bottom against the offline simulator, and is committed
without outputs."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 180


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"


def run_copy(path, tmp_path) -> str:
    """Run a copy of the notebook top to bottom in ``tmp_path/notebooks``; its outputs as JSON text."""
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    return json.dumps([c.get("outputs", []) for c in nb.cells])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_top_to_bottom_offline(path, tmp_path, monkeypatch):
    for var in ("DASHSCOPE_API_KEY", "ALIBABA_CLOUD_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.alibabacloud/credentials: offline for sure
    texts = run_copy(path, tmp_path)
    assert "OFFLINE" in texts or "offline" in texts, "a notebook run without a key says it is offline"
    assert "Traceback" not in texts


KEY = "sk-notebookkey-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_service():
    """A stand-in for the real service: a simulator that accepts only KEY (not the offline one)."""
    from cosyvoice_lab.offline import serve

    with serve(api_key=KEY) as sim:
        yield sim


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_with_a_key_and_never_shows_it(path, tmp_path, monkeypatch, keyed_service):
    """With a key the same notebooks take the real-service path (no in-process simulator, the
    key from the environment, the endpoint from DASHSCOPE_HTTP_BASE_URL as the SDK reads it),
    and no output shows the key."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", keyed_service.base_url)
    monkeypatch.setenv("HOME", str(tmp_path))
    texts = run_copy(path, tmp_path)
    assert "Traceback" not in texts
    assert "0123456789abcdef" not in texts
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"0123456789abcdef" in p.read_bytes()]
    assert any(action == "create_voice" for _, action, _ in keyed_service.request_log)
