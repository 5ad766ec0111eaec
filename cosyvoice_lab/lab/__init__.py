"""The workbench a notebook holds: :class:`Lab` (a facade over the log, the client, the runner,
the account and the speaker), with the runner and the planning of comparisons beside it.

Lazy, as the front door is: ``cosyvoice_lab.lab.planning`` (the CLI's defaults) loads without
the Lab and everything it composes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosyvoice_lab.lab.lab import Lab

__all__ = ["Lab"]


def __getattr__(name: str):
    if name == "Lab":
        from cosyvoice_lab.lab.lab import Lab

        return Lab
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
