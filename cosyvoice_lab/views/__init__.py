"""Pure view objects with ``_repr_html_`` (no ipywidgets): a comparison's grid and summaries,
an audition of voices on one script, blind listening sessions.
"""

from __future__ import annotations

from cosyvoice_lab.views.audition import Audition
from cosyvoice_lab.views.comparison import Comparison
from cosyvoice_lab.views.listening import BlindSession, RevealSummary

__all__ = ["Audition", "BlindSession", "Comparison", "RevealSummary"]
