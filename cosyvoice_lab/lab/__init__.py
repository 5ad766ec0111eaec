"""The workbench a notebook holds: :class:`Lab` (a facade over the log, the client, the runner,
the account and the speaker), with the runner and the planning of comparisons beside it.
"""

from __future__ import annotations

from cosyvoice_lab.lab.lab import Lab

__all__ = ["Lab"]
