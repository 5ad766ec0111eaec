"""Every tutorial notebook runs top to bottom against the offline simulator, is committed
without outputs, and is saved without outputs by the JupyterLab that ``make lab`` starts; the
notebooks and the CLI share one default lab folder, which git ignores."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cosyvoice_lab import folders

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SERVER_CONFIG = REPO / "etc" / "jupyter" / "jupyter_server_config.py"
CELL_TIMEOUT_S = 180


def _git_status() -> str | None:
    try:
        done = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(scope="module", autouse=True)
def leaves_the_checkout_as_it_found_it():
    """Running the notebooks (and saving them) changes nothing git sees: in a clean clone
    ``git status --porcelain`` stays empty."""
    before = _git_status()
    yield
    if before is None:
        return
    # Others may edit the checkout meanwhile: what counts is anything new under notebooks/ or at the
    # root (a lab folder, a report), where the notebooks and their lab folder would write.
    new = set(_git_status().splitlines()) - set(before.splitlines())
    where = [line[3:] for line in new if line[3:].startswith("notebooks/") or "/" not in line[3:].rstrip("/")]
    assert not where, f"running the notebooks changed the checkout: {where}"


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


def _execute_copy(path, tmp_path):
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    return nb


def save_as_make_lab_does(nb, folder: Path, name: str) -> dict:
    """Save ``nb`` through the contents manager JupyterLab uses, configured by the file
    ``make lab`` points JUPYTER_CONFIG_PATH to; the saved file as JSON."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(SERVER_CONFIG.name, path=str(SERVER_CONFIG.parent)).load_config()
    manager = AsyncLargeFileManager(config=config, root_dir=str(folder))
    model = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}
    import asyncio

    asyncio.run(manager.save(model, name))
    return json.loads((folder / name).read_text(encoding="utf-8"))


# Each notebook runs ONCE per test run, either offline (no key: the in-process simulator) or with a
# key against a keyed stand-in of the service (the real-service path: the key from the environment,
# the endpoint from DASHSCOPE_HTTP_BASE_URL as the SDK reads it). Between them the five cover both
# paths: a newcomer's first design and the comparison (with its blind round) offline, as they are met
# without a key; the records (reports and bundles written to disk, searched for the key), synthesis
# over the WebSocket and the tuning loop with the key. A notebook not named here runs offline.
# Checks about one notebook's content run on that same execution (AFTER_RUN).
KEYED = ("03_experiment_records.ipynb", "04_speak_with_your_voice.ipynb", "05_tune_a_prompt.ipynb")
KEY = "sk-notebookkey-0123456789abcdef"


def test_the_keyed_notebooks_exist_and_both_paths_are_run():
    names = {p.name for p in NOTEBOOKS}
    assert set(KEYED) <= names, f"rename in KEYED too: {sorted(set(KEYED) - names)}"
    assert names - set(KEYED), "at least one notebook runs offline"


@pytest.fixture(scope="module")
def keyed_service():
    """A stand-in for the real service: a simulator that accepts only KEY (not the offline one).
    It speaks at the pace of a Lab's own simulator (the fast end of the documented ranges), as the
    offline runs do: what these runs check is the key's path, and the whole ranges, drawn per
    reading, would only hold a worker (04's readings: 33 s instead of 15)."""
    from cosyvoice_lab.offline import serve
    from cosyvoice_lab.offline.state import IN_PROCESS

    pace = {"first_audio_seconds": IN_PROCESS.first_audio_seconds, "realtime_factor": IN_PROCESS.realtime_factor}
    with serve(api_key=KEY, **pace) as sim:
        yield sim


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize(
    "path", NOTEBOOKS, ids=[f"{p.name}-{'keyed' if p.name in KEYED else 'offline'}" for p in NOTEBOOKS]
)
def test_runs_top_to_bottom_and_is_saved_without_outputs(path, tmp_path, monkeypatch, request):
    """The notebook runs top to bottom (offline, or with a key; see KEYED), and the JupyterLab of
    ``make lab`` saves it without outputs; its lab folder is the default one."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.alibabacloud/credentials: only the key we give
    monkeypatch.setenv(folders.LAB_HOME_ENV, str(tmp_path / "lab"))
    keyed = path.name in KEYED
    if keyed:
        service = request.getfixturevalue("keyed_service")
        sent_before = len(service.request_log)
        monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", service.base_url)
    else:
        for var in ("DASHSCOPE_API_KEY", "ALIBABA_CLOUD_PROFILE"):
            monkeypatch.delenv(var, raising=False)
    nb = _execute_copy(path, tmp_path)
    texts = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Traceback" not in texts
    assert "<audio" in texts or "audio/" in texts  # real outputs, MBs of them: what the hook must strip
    if keyed:  # the real-service path: requests reached the keyed service, and the key shows nowhere
        assert "0123456789abcdef" not in texts
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"0123456789abcdef" in p.read_bytes()]
        assert any(action == "create_voice" for _, action, _ in service.request_log[sent_before:])
    else:
        assert "OFFLINE" in texts or "offline" in texts, "a notebook run without a key says it is offline"
    if path.name in AFTER_RUN:
        AFTER_RUN[path.name](nb, tmp_path / "lab")
    saved = save_as_make_lab_does(nb, tmp_path / "notebooks", path.name)
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert code and not [c for c in code if c["outputs"] or c["execution_count"]]
    assert ["".join(c["source"]) for c in code] == [c.source for c in nb.cells if c.cell_type == "code"]
    # the notebook's lab folder is the default one; nothing was written beside the notebook
    assert (tmp_path / "lab" / "log.sqlite").exists() or any((tmp_path / "lab").iterdir())
    assert [p.name for p in (tmp_path / "notebooks").iterdir() if not p.name.startswith(".")] == [path.name]


def test_the_save_hook_keeps_outputs_of_other_notebooks(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=1)])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    assert save_as_make_lab_does(nb, tmp_path, "scratch.ipynb")["cells"][0]["outputs"]
    assert not save_as_make_lab_does(nb, tmp_path, "05_mine.ipynb")["cells"][0]["outputs"]


def test_make_lab_uses_the_save_hook():
    makefile = (REPO / "Makefile").read_text()
    lab_target = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter" in lab_target and SERVER_CONFIG.exists()


def _fake_checkout(root: Path) -> Path:
    (root / "cosyvoice_lab").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "cosyvoice-lab"\n')
    return root


def test_one_default_lab_folder_for_the_notebooks_and_the_cli(tmp_path, monkeypatch):
    """From a checkout, the notebooks (run in notebooks/) and the CLI (run from the root) use the
    same git-ignored lab-data/; elsewhere ~/.local/share/cosyvoice-lab; COSYVOICE_LAB_HOME wins."""
    monkeypatch.delenv(folders.LAB_HOME_ENV, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = _fake_checkout(tmp_path / "clone")
    assert folders.default_lab_folder(root / "notebooks") == folders.default_lab_folder(root) == root / "lab-data"
    assert folders.default_lab_folder(tmp_path) == tmp_path / "home" / ".local" / "share" / "cosyvoice-lab"
    monkeypatch.setenv(folders.LAB_HOME_ENV, str(tmp_path / "mine"))
    assert folders.default_lab_folder(root) == tmp_path / "mine"
    assert folders.default_lab_folder(REPO / "notebooks") == tmp_path / "mine"
    monkeypatch.delenv(folders.LAB_HOME_ENV)
    assert folders.default_lab_folder(REPO / "notebooks") == REPO / "lab-data"
    ignored = subprocess.run(["git", "check-ignore", "-q", "lab-data/log.sqlite"], cwd=REPO, check=False)
    assert ignored.returncode in (0, 128)  # 0: ignored (128: not a git checkout, nothing to dirty)


def test_the_cli_lists_the_voices_a_notebook_designed(tmp_path, monkeypatch):
    """A notebook's Lab() in notebooks/ and `cosyvoice-lab voices list` at the root: one log, one
    account (the offline simulator's voices live in the lab folder)."""
    from cosyvoice_lab import Lab

    for var in ("DASHSCOPE_API_KEY", "ALIBABA_CLOUD_PROFILE", folders.LAB_HOME_ENV, "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = _fake_checkout(tmp_path / "clone")
    monkeypatch.chdir(root / "notebooks")
    lab = Lab(backend="offline", progress=False)
    assert lab.log.folder.resolve() == (root / "lab-data").resolve()
    take = lab.design("a calm, deep male narrator", preview_text="Good evening, and welcome.")
    assert take.ok
    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", folders.LAB_HOME_ENV)}
    cli = Path(sys.executable).parent / "cosyvoice-lab"
    done = subprocess.run(
        [str(cli), "voices", "list", "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert take.voice_id in done.stdout


def blind_round_stays_hidden_until_the_reveal(nb, lab_folder: Path) -> None:
    """Notebook 02: nothing before the reveal uncovers the blind round (no model, prompt, take or voice
    id of a blind take, and no seed, in any output between the round's start and its reveal)."""
    import re

    from cosyvoice_lab.log.experiment_log import ExperimentLog

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "seed=" not in "".join(c.source for c in nb.cells), "a fixed seed makes every round the same shuffle"
    start = next(i for i, c in enumerate(code) if "blind_toggle.value = True" in c.source)
    reveal = next(i for i, c in enumerate(code) if ".reveal(" in c.source)
    outputs = [json.dumps(c.get("outputs", [])) for c in code]
    with ExperimentLog(lab_folder) as log:
        [tag] = {t for take in log.takes() for t in take.tags if t.startswith("blind:")}
        session = tag.removeprefix("blind:")
        seed = str(log.rounds.round_record(session)["seed"])
        blind = log.takes(tag=tag)
        rated = log.ratings.to_dataframe(session_id=session)
    assert len(rated) == len(blind) and set(rated["rater"]) == {"stand-in listener"}
    secrets = [seed, *(t.take_id[:8] for t in blind), *(t.voice_id for t in blind)]
    secrets += [json.dumps(t.prompt)[1:-1] for t in blind]  # as JSON text holds it
    for i, text in enumerate(outputs[:reveal]):
        assert seed not in text, f"cell {i} shows the seed before the reveal"
    for i in range(start, reveal):
        shown = re.sub(r"base64,[A-Za-z0-9+/=]+", "", outputs[i])  # the audio itself names nothing
        for secret in secrets:
            assert secret not in shown, f"cell {i} shows {secret!r} before the reveal"
        assert not re.search(r"v3\.5|plus|flash", shown), f"cell {i} names a model before the reveal"
    assert seed in outputs[reveal], "the reveal shows the seed"


AFTER_RUN = {"02_compare_plus_vs_flash.ipynb": blind_round_stays_hidden_until_the_reveal}
