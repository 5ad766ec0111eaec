"""JupyterLab's configuration for ``make lab`` (found through ``JUPYTER_CONFIG_PATH``).

The tutorials (``notebooks/NN_*.ipynb``) are tracked files: running them would autosave
megabytes of outputs (embedded audio) into them, dirty the checkout, and fail the suite's
"committed without outputs" check. So they are saved without outputs (the outputs stay on
screen while the notebook is open), and with the notebook and cell metadata they have on disk:
JupyterLab rewrites the kernel's display name and adds ``language_info`` on every save, which
would show as a change in ``git status`` although nobody edited anything. A tutorial is
therefore saved byte for byte as it was unless a cell's text changed. Other notebooks are saved
as they are.
"""

import json
import re
import warnings
from pathlib import Path, PurePosixPath

TUTORIAL = re.compile(r"^\d\d_.*\.ipynb$")


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source or ""


def strip_tutorial_outputs(model, path, contents_manager=None, **kwargs):
    """A ContentsManager ``pre_save_hook``: clear a tutorial's outputs and execution counts, and
    keep the metadata it has on disk (the notebook's, and each unchanged cell's)."""
    if model.get("type") != "notebook" or not TUTORIAL.match(PurePosixPath(path).name):
        return
    content = model["content"]
    for cell in content.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    root = getattr(contents_manager, "root_dir", None)
    try:
        on_disk = json.loads((Path(root) / path).read_text(encoding="utf-8")) if root else None
    except (OSError, ValueError):
        on_disk = None  # a new tutorial, or one that is not JSON yet: nothing to keep
    if not isinstance(on_disk, dict):
        return
    content["metadata"] = on_disk.get("metadata", {})
    content["nbformat"], content["nbformat_minor"] = on_disk.get("nbformat", 4), on_disk.get("nbformat_minor", 5)
    before = {c.get("id"): c for c in on_disk.get("cells", []) if isinstance(c, dict)}
    for cell in content.get("cells", []):
        old = before.get(cell.get("id"))
        if old is not None and _text(old.get("source")) == _text(cell.get("source")):
            cell["metadata"] = old.get("metadata", {})


# The server applies its configuration twice, and traitlets then warns that the hook replaces
# itself: not something a user should read at every start.
warnings.filterwarnings("ignore", message=r"Overriding existing pre_save_hook \(strip_tutorial_outputs\)")

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file
c.ContentsManager.pre_save_hook = strip_tutorial_outputs
