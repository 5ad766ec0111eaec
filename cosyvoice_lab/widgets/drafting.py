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


def render_choices(
    choices: dict, free_text: str | None, language: str, *, limit: int = catalog.VOICE_PROMPT_MAX
) -> tuple[str, str | None]:
    """The prompt the choices and free text render to in ``language`` (nothing chosen: "", a
    blank box to type in), and the problem of a prompt over ``limit`` (the models' smallest,
    ``prompt_limit``), in that language's words: the box and its count follow the language
    chosen, even past the limit."""
    if not any(choices.values()) and not (free_text or "").strip():
        return "", None
    text = PromptSpec.draft(language, free_text=free_text, **choices)
    n = len(text)
    if n <= limit:
        return text, None
    problem = f"free_text is too long: the {language} prompt is {n} characters (limit {limit})"
    return text, f"{problem}; shorten it by {n - limit}"


def _families(models) -> list[catalog.DesignFamily]:
    found = [catalog.family_of_model(m) for m in models]
    return list(dict.fromkeys(f for f in found if f is not None)) or [catalog.FAMILIES[catalog.COSYVOICE_FAMILY]]


def prompt_limit(models=catalog.COMPARE_MODELS) -> int:
    """The longest description every one of ``models`` takes (CosyVoice 500, the Qwen family 2048)."""
    return min(f.voice_prompt_max for f in _families(models))


def over_limits(prompt: str, preview: str, models=catalog.COMPARE_MODELS) -> bool:
    """Whether a text is longer than one of the ``models``' families takes."""
    return any(len(prompt) > f.voice_prompt_max or len(preview) > f.preview_text_max for f in _families(models))


def counters_text(prompt: str, preview: str, models=catalog.COMPARE_MODELS) -> str:
    """ "prompt n/500 · preview n/200": the limits of the ``models``' design family, each
    family's named when they differ ("prompt n/500 CosyVoice, 2048 Qwen3-TTS-VD · ...")."""
    families = _families(models)

    def limits(attr: str) -> str:
        if len(families) == 1:
            return str(getattr(families[0], attr))
        return ", ".join(f"{getattr(f, attr)} {f.label}" for f in families)

    return f"prompt {len(prompt)}/{limits('voice_prompt_max')} · preview {len(preview)}/{limits('preview_text_max')}"


def check_designs(lab, prompt: str, *, preview_text: str, models, prefix: str):
    """The designs one click would send, with every problem and warning.

    Returns:
        (designs, problems, warnings): one VoiceDesign per model; problem and warning texts
        (deduplicated, each naming its field).
    """
    designs, problems, warnings = [], [], []
    for model in models:
        design, _ = lab.make_design(prompt, preview_text=preview_text or None, target_model=model, prefix=prefix)
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
