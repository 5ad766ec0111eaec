"""Audition: one script read by several voices, shown side by side."""
from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass
class Audition:
    """The outcome of ``lab.audition``: for each take, a SpeechResult or the error it met."""

    script: str
    takes: list
    results: list

    @property
    def ok(self) -> list:
        """The SpeechResults that succeeded."""
        return [r for r in self.results if hasattr(r, "audio")]

    @property
    def total_cost_cny(self) -> float:
        return sum(r.cost_cny for r in self.ok)

    def __repr__(self):
        return (f"<Audition of {len(self.takes)} voice(s): {len(self.ok)} spoken, "
                f"¥{self.total_cost_cny:.4f} estimated>")

    def _repr_html_(self) -> str:
        cells = []
        for take, result in zip(self.takes, self.results):
            prompt = getattr(take, "prompt", None) or str(getattr(take, "voice_id", take))
            model = getattr(take, "model", "")
            if hasattr(result, "audio"):
                body = (f"{result.audio.html(label=result.voice_id)}<br><small>{result.characters} chars · "
                        f"¥{result.cost_cny:.4f} · {result.audio.duration:.1f} s</small>")
            else:
                body = f"<span style='color:#b91c1c'>{html.escape(str(result))}</span>"
            cells.append(f"<td style='vertical-align:top;max-width:20em'><b>{html.escape(model)}</b><br>"
                         f"<small>{html.escape(prompt)}</small><br>{body}</td>")
        return (f"<div class='cosyvoice-audition'><p><i>{html.escape(self.script[:200])}</i></p>"
                f"<table><tr>{''.join(cells)}</tr></table></div>")
