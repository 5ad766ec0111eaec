"""History: the versions a prompt went through — original, reruns, edits — with the ratings and
measures of each, as a table and a small plot. ``Lab.history`` builds it (``lab/history.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cosyvoice_lab import html

MEASURES = html.CARD_METRICS  # the measures shown per version: pitch, rate, loudness, HNR, DNSMOS
COLUMNS = (
    "version",
    "take_id",
    "parent_take_id",
    "kind",
    "change",
    "started_at",
    "experiment",
    "target_model",
    "status",
    "voice_prompt",
    "rating",
    "ratings_n",
    "ratings_mean",
    "chosen",
    *MEASURES,
)


@dataclass
class History:
    """The lineage of one take.

    Attributes:
        table: one row per version, oldest first (see :data:`COLUMNS`): ``kind`` is "original",
            "rerun" (the same design sent again) or "edit" (something changed; ``change`` says
            what), or, for a lineage derived without links, "first", "same prompt" or "variant";
            ``rating`` is the take's own, ``ratings_n``/``ratings_mean`` those of listening
            rounds; the measures are the preview's.
        take_id: the take asked about (marked in the HTML).
        linked: True when the versions come from recorded parent links (reruns, designs with
            ``parent=``); False when derived from the take's experiment or prompt family.
        note: how the versions were found, when not by links.
    """

    table: Any
    take_id: str
    linked: bool = True
    note: str = ""

    def plot(self, measure: str = "median_f0_hz"):
        """The measure (top) and the rating (bottom) per version: a matplotlib Figure."""
        from cosyvoice_lab.analysis.plots import plot_history

        label = next((f"{name} ({fmt.split()[-1]})" for key, name, fmt in html.METRICS if key == measure), measure)
        return plot_history(self.table, measure, label=label)

    def __repr__(self) -> str:
        how = "parent links" if self.linked else "no parent links: derived"
        return f"<History of take {self.take_id[:8]}: {len(self.table)} version(s) ({how})>"

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The versions as a table, the take asked about in bold."""
        shown = [(key, name, fmt) for key, name, fmt in html.METRICS if key in MEASURES]
        rows = [
            {
                "version": r["version"],
                "take": str(r["take_id"])[:8],
                "kind": r["kind"],
                "change": r["change"],
                "model": str(r["target_model"]),
                "status": str(r["status"]),
                "rating": _text(r["rating"], "{:.0f}"),
                "ratings": f"{_text(r['ratings_mean'], '{:.1f}')} ({r['ratings_n']})" if r["ratings_n"] else "—",
                "measures": [_text(r[key], fmt) for key, _, fmt in shown],
                "prompt": str(r["voice_prompt"]),
                "current": r["take_id"] == self.take_id,
            }
            for r in self.table.to_dict("records")
        ]
        return html.render(
            "history.html.j2",
            take_id=self.take_id[:8],
            note=self.note,
            measures=[name for _, name, _ in shown],
            rows=rows,
        )


def _text(value: Any, fmt: str) -> str:
    if value is None or isinstance(value, bool):
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(number) else fmt.format(number)
