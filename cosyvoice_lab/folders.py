"""Where the lab folder and the log are when none is given: the one rule for ``Lab()``, the
notebooks and the CLI. The environment is read when a function is called, never at import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LAB_HOME_ENV = "COSYVOICE_LAB_HOME"  # the one default lab folder (see default_lab_folder)
LOG_ENV = "COSYVOICE_LAB_LOG"  # the default log: a folder, or a team's postgresql:// URL (see default_log)
CHECKOUT_LAB_FOLDER = "lab-data"  # in a checkout of this repository; git-ignored
USER_LAB_FOLDER = ("cosyvoice-lab",)  # under $XDG_DATA_HOME (default ~/.local/share) elsewhere


def default_lab_folder(cwd: str | os.PathLike | None = None) -> Path:
    """The lab folder used when none is given, the same for ``Lab()``, the notebooks and the CLI.

    In order: ``$COSYVOICE_LAB_HOME``; else ``lab-data/`` at the root of this repository when
    ``cwd`` (default: the current directory) is inside a checkout of it (the notebooks run in
    ``notebooks/``, the CLI from the root: one log); else ``$XDG_DATA_HOME/cosyvoice-lab``
    (``~/.local/share/cosyvoice-lab``).
    """
    if os.environ.get(LAB_HOME_ENV):
        return Path(os.environ[LAB_HOME_ENV]).expanduser()
    here = Path(cwd if cwd is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_checkout(folder):
            return folder / CHECKOUT_LAB_FOLDER
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data, *USER_LAB_FOLDER)


def default_log() -> str | Path:
    """The log used when no folder or log is given (``Lab()``, the CLI): ``$COSYVOICE_LAB_LOG``
    (a folder, or a ``postgresql://`` URL a team shares), else ``default_lab_folder()``."""
    given = os.environ.get(LOG_ENV, "").strip()
    return given if given else default_lab_folder()


def log_location(folder: str | os.PathLike | None = None, log: str | os.PathLike | None = None) -> str | os.PathLike:
    """Where the log is, the one rule for ``Lab`` and the CLI: ``log`` if given (a folder or a
    ``postgresql://`` URL), else ``folder``, else ``default_log()``."""
    if log is not None:
        return log
    return folder if folder is not None else default_log()


def _is_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not (pyproject.is_file() and (folder / "cosyvoice_lab").is_dir()):
        return False
    return re.search(r'(?m)^name\s*=\s*"cosyvoice-lab"', pyproject.read_text(encoding="utf-8")) is not None
