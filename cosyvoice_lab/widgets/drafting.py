"""The PromptBuilder's pure pieces (no ipywidgets): the prompt box's "edited by hand" state,
the counters, the designs one click would send with their problems, and the tally of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosyvoice_lab import catalog
from cosyvoice_lab.prompts.spec import PromptSpec


class PromptDraft:
    """The prompt box: the latest rendering of the choices, and the text the box holds.

    The text follows the rendering until someone edits it by hand; from then on new renderings
    are remembered but not shown, until :meth:`rerender`.
    """

    def __init__(self, rendered: str = ""):
        self.rendered = rendered
        self.text = rendered

    @property
    def edited(self) -> bool:
        """True when the text differs from the latest rendering (edited by hand)."""
        return self.text != self.rendered

    def render(self, rendered: str) -> str:
        """A new rendering arrived; returns the text the box should hold."""
        follow = not self.edited
        self.rendered = rendered
        if follow:
            self.text = rendered
        return self.text

    def type(self, text: str) -> None:
        """The user typed ``text``."""
        self.text = text

    def rerender(self) -> str:
        """Drop the hand edits; returns the rendering."""
        self.text = self.rendered
        return self.text


def render_spec(spec: PromptSpec, language: str) -> str:
    """The spec's prompt; an empty spec renders to "" (a blank box to type in)."""
    return spec.render(language) if any(spec.to_dict().values()) else ""


def counters_text(prompt: str, preview: str) -> str:
    """ "prompt n/500 · preview n/200" (limits from the catalog)."""
    return f"prompt {len(prompt)}/{catalog.VOICE_PROMPT_MAX} · preview {len(preview)}/{catalog.PREVIEW_TEXT_MAX}"


def check_designs(lab, prompt: str, *, preview_text: str, models, prefix: str):
    """The designs one click would send, with every problem and warning.

    Returns:
        (designs, problems, warnings): one VoiceDesign per model; problem and warning texts
        (deduplicated, each naming its field).
    """
    designs, problems, warnings = [], [], []
    for model in models:
        design, _ = lab.make_design(prompt, preview_text=preview_text or None, model=model, prefix=prefix)
        designs.append(design)
        problems += [str(p) for p in design.problems()]
        warnings += design.warnings()
    return designs, list(dict.fromkeys(problems)), list(dict.fromkeys(warnings))


@dataclass
class Tally:
    """The takes of one Design click: how many there are, are done, and are ok."""

    total: int
    done: int = 0
    ok: int = 0

    def running(self) -> str:
        """The status line while designing: "designing… 1/4 done"."""
        return f"designing… {self.done}/{self.total} done"

    def finished(self) -> str:
        """The status line at the end: "4/4 done: 3 ok, 1 failed"."""
        failed = self.done - self.ok
        return f"{self.done}/{self.total} done: {self.ok} ok" + (f", {failed} failed" if failed else "")


def preset_label(name: str) -> str:
    return name.replace("_", " ")
