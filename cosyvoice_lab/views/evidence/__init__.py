"""The evidence a comparison answers its questions with, one concept in three modules:
``table.py`` (the table: one procedure per question, the multiplicity rule, verdicts, what to do
next, its view), ``questions.py`` (the questions a table asks and the test each is answered by)
and ``preferences.py`` (blind listening rounds read as choices).
"""

from __future__ import annotations

from cosyvoice_lab.views.evidence.table import COLUMNS, Evidence, evidence, result_cells

__all__ = ["COLUMNS", "Evidence", "evidence", "result_cells"]
