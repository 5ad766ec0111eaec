"""The tutorials saved from JupyterLab stay byte for byte as committed unless a cell was edited
(issue 26, item 1): the save hook of ``make lab`` (etc/jupyter/jupyter_server_config.py), run
by the contents manager JupyterLab uses, on a copy of each tutorial."""

import asyncio
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parent.parent
SERVER_CONFIG = REPO / "etc" / "jupyter" / "jupyter_server_config.py"
TUTORIALS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def save_as_jupyterlab_does(folder: Path, name: str, change) -> bytes:
    """Open the copy as JupyterLab does, apply what a run and JupyterLab change, save it."""
    config = PyFileConfigLoader(SERVER_CONFIG.name, path=str(SERVER_CONFIG.parent)).load_config()
    manager = AsyncLargeFileManager(config=config, root_dir=str(folder))
    model = asyncio.run(manager.get(name, content=True, type="notebook"))
    content = json.loads(json.dumps(model["content"], default=str))
    change(content)
    asyncio.run(manager.save({"type": "notebook", "format": "json", "content": content}, name))
    return (folder / name).read_bytes()


def as_jupyterlab_after_a_run(content: dict) -> None:
    content["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    content["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"}
    for n, cell in enumerate(c for c in content["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = n + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "MBs of audio\n"}]
        cell["metadata"]["execution"] = {"iopub.execute_input": "2026-12-05T10:00:00Z"}


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_a_tutorial_run_and_saved_in_jupyterlab_is_byte_identical(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    assert save_as_jupyterlab_does(tmp_path, path.name, as_jupyterlab_after_a_run) == path.read_bytes()


def test_an_edited_cell_is_saved_and_nothing_else_changes(tmp_path):
    path = TUTORIALS[0]
    shutil.copy(path, tmp_path / path.name)

    def edit_one(content):
        as_jupyterlab_after_a_run(content)
        code = [c for c in content["cells"] if c["cell_type"] == "code"]
        code[0]["source"] = "print('my own line')"

    saved = nbformat.reads(save_as_jupyterlab_does(tmp_path, path.name, edit_one).decode(), as_version=4)
    original = nbformat.read(path, as_version=4)
    changed = [i for i, (a, b) in enumerate(zip(saved.cells, original.cells, strict=True)) if a != b]
    assert len(changed) == 1 and saved.cells[changed[0]].source == "print('my own line')"
    assert saved.metadata == original.metadata
