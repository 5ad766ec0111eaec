"""Notebook widgets (ipywidgets 8), thin shells over the pure core.

- :class:`PromptBuilder` — assemble a prompt from its dimensions, check it as you type, design
  candidates in the background and judge them on result cards.
- :class:`ComparisonBoard` — prompts × models × repeats side by side, with a blind mode.
- :class:`LogBrowser` — filter, page, hear, annotate and re-run any take in the log.
- :class:`TuningPanel` — ``lab.tune`` with target sliders, a live path plot and a stop button.
"""

from __future__ import annotations

from cosyvoice_lab.widgets.board import ComparisonBoard
from cosyvoice_lab.widgets.browser import LogBrowser
from cosyvoice_lab.widgets.builder import PromptBuilder
from cosyvoice_lab.widgets.cards import TakeCard
from cosyvoice_lab.widgets.tuning import TuningPanel

__all__ = ["ComparisonBoard", "LogBrowser", "PromptBuilder", "TakeCard", "TuningPanel"]
