"""The ``cosyvoice-lab`` command, a shell over ``Lab``, the log and the panel.

``main.py`` parses the command line and runs design, compare, voices and offline; ``log.py``
the ``log`` command (show, export, import, copy); ``panel.py`` the ``panel`` command (a
listening round as a web page); ``tune.py`` the ``tune`` command (``lab.tune``); ``opening.py``
the Lab a command works in. ``exits.py`` holds the exit codes scripts can trust.
"""

from __future__ import annotations

from cosyvoice_lab.cli.exits import EXIT_AUTH, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_SERVICE
from cosyvoice_lab.cli.main import main

__all__ = ["EXIT_AUTH", "EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SERVICE", "main"]
