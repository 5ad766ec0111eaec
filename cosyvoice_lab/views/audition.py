"""Audition: one script read by several voices, shown side by side."""

from __future__ import annotations

from dataclasses import dataclass

from cosyvoice_lab import html


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
        return f"<Audition of {len(self.takes)} voice(s): {len(self.ok)} spoken, ¥{self.total_cost_cny:.4f} estimated>"

    def _repr_html_(self) -> str:
        """Voices side by side on one script: each take's model, prompt and its SpeechResult or error."""
        cells = [
            {
                "model": getattr(take, "model", ""),
                "prompt": getattr(take, "prompt", None) or str(getattr(take, "voice_id", take)),
                "result": result,
                "ok": hasattr(result, "audio"),
            }
            for take, result in zip(self.takes, self.results, strict=False)
        ]
        return html.render("audition.html.j2", script=self.script[:200], cells=cells)
