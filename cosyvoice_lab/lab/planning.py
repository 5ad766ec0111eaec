"""Planning, before anything is sent: the design for a prompt with the lab's defaults, and the
plan of a compare (its cells, their keys, the experiment's name, what is still to do).

Pure functions: they read their arguments and return values; the Lab sends what they plan.
A compare is resumable because everything here is a function of the prompts and models: the
same call names the same experiment and the same cells, and the log says which are done.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign, detect_language
from cosyvoice_lab.errors import Problem, ValidationError

DEFAULT_REPEATS = 3  # designs per prompt and model in a compare: enough to hear the variation
# What a preview reads when no preview text is given, by language (a design's language follows it).
DEFAULT_PREVIEW_TEXT = {
    "en": "Hello! This is a preview of a newly designed voice. How does it sound to you?",
    "zh": "大家好，这是新设计的声音的试听。你觉得听起来怎么样？",
}

# statuses of a cell's take that count as done (or possibly done: never sent twice)
DONE_STATUSES = ("ok", "pending", "unknown", "interrupted")


class RenderablePrompt(Protocol):
    """A structured prompt (e.g. a PromptSpec): renders to text and serialises for the log."""

    def render(self, language: str) -> str: ...

    def to_dict(self) -> dict: ...


class Cell(NamedTuple):
    """One prompt × model of a compare: the design, its spec JSON (or None), and its key
    ``"<hash of prompt and preview>|<model>"``; each repeat's cell is ``key|r<n>``."""

    design: VoiceDesign
    spec: dict | None
    key: str


class Job(NamedTuple):
    """One take to send: a cell's design, its spec, the repeat's cell name and number."""

    design: VoiceDesign
    spec: dict | None
    cell: str
    repeat: int


def prompt_text(prompt: str | RenderablePrompt, language: str) -> tuple[str, dict | None]:
    """A voice prompt string and, for a PromptSpec, its JSON for the log.

    Raises:
        TypeError: ``prompt`` is neither a str nor something that renders.
    """
    if isinstance(prompt, str):
        return prompt, None
    if hasattr(prompt, "render") and hasattr(prompt, "to_dict"):
        return prompt.render(language), prompt.to_dict()
    raise TypeError(f"a prompt must be a str or a PromptSpec, got {type(prompt).__name__}")


def make_design(
    prompt: str | RenderablePrompt,
    *,
    target_model: str,
    prefix: str,
    preview_text: str | None = None,
    language: str | None = None,
    sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE,
    response_format: str = catalog.DEFAULT_PREVIEW_FORMAT,
    region: str = catalog.DEFAULT_REGION,
) -> tuple[VoiceDesign, dict | None]:
    """The VoiceDesign (not validated) for ``prompt``, plus the spec JSON (None for a str).

    The language is ``language``, else that of the preview text, else that of a str prompt,
    else English; a PromptSpec renders in it, and without ``preview_text`` the preview reads
    ``DEFAULT_PREVIEW_TEXT`` in it. The design's own ``language`` is only the one given.
    """
    lang = language or (detect_language(preview_text) if preview_text else None)
    if lang is None and isinstance(prompt, str):
        lang = detect_language(prompt)
    lang = lang or "en"
    text, spec = prompt_text(prompt, lang)
    design = VoiceDesign(
        voice_prompt=text,
        preview_text=preview_text or DEFAULT_PREVIEW_TEXT[lang],
        target_model=target_model,
        prefix=prefix,
        language=language,
        sample_rate=sample_rate,
        response_format=response_format,
        region=region,
    )
    return design, spec


def cell_key(design: VoiceDesign) -> str:
    """``"<hash>|<model>"``: the same prompt and preview text on the same model, whatever the run."""
    digest = hashlib.sha1(json.dumps([design.voice_prompt, design.preview_text]).encode()).hexdigest()[:10]
    return f"{digest}|{design.target_model}"


def plan_cells(
    prompts: Sequence, models: Sequence[str], make: Callable[[object, str], tuple[VoiceDesign, dict | None]]
) -> list[Cell]:
    """Every prompt × model (prompt-major), designed by ``make(prompt, model)``.

    Raises:
        ValidationError: any cell is invalid; every problem of every cell, each naming its
            prompt and model ("prompt 1 × cosyvoice-v3.5-flash: voice_prompt").
    """
    cells: list[Cell] = []
    found: dict[tuple, list[str]] = {}  # one problem of one prompt -> the models it concerns
    for i, prompt in enumerate(prompts):
        for model in models:
            design, spec = make(prompt, model)
            for p in design.problems():
                found.setdefault((i, type(p), p.field, p.rule, p.message), []).append(model)
            cells.append(Cell(design, spec, cell_key(design)))
    if found:
        problems = [
            kind(f"prompt {i} × {_which(concerned, models)}: {field}", rule, message)
            for (i, kind, field, rule, message), concerned in found.items()
        ]
        raise ValidationError(problems, context="compare: nothing was sent")
    return cells


def _which(concerned: list[str], models: Sequence[str]) -> str:
    """A problem shared by every model is said once: "both models", "all 3 models"."""
    if len(concerned) == len(models) > 1:
        return "both models" if len(models) == 2 else f"all {len(models)} models"
    return ", ".join(concerned)


def experiment_name(cells: Iterable[Cell]) -> str:
    """A stable name for a compare of these cells, so that running it again resumes it."""
    digest = hashlib.sha1(json.dumps([c.key for c in cells]).encode()).hexdigest()[:8]
    return f"compare-{digest}"


def prompts_of(cells: Iterable[Cell]) -> list[str]:
    """The cells' voice prompts, each once, in order."""
    return list(dict.fromkeys(c.design.voice_prompt for c in cells))


def still_to_do(cells: Sequence[Cell], repeats: int, existing: Sequence, *, new_repeats: bool = False) -> list[Job]:
    """The takes a compare still has to send, given the experiment's ``existing`` takes.

    Repeats are numbered from 0 per cell. A repeat is done when a take of its cell is ok or
    may have stored a voice (pending, unknown, interrupted: reconcile settles those); a failed
    one is sent again. With ``new_repeats``, ``repeats`` more are numbered after the highest
    repeat the cell has so far.

    The jobs come in sending order: repeat by repeat, and within a repeat prompt by prompt with
    the models alternating, so that no model is sent systematically later than another (a late
    model would otherwise look slower, or be measured on a busier machine).
    """
    by_cell: dict[str | None, list] = {}
    for t in existing:
        by_cell.setdefault(t.cell, []).append(t)
    todo: list[tuple[int, int, Job]] = []
    for index, (design, spec, key) in enumerate(cells):
        taken = [t for t in existing if t.cell and t.cell.startswith(key + "|")]
        start = (max((t.repeat or 0 for t in taken), default=-1) + 1) if new_repeats else 0
        for n, r in enumerate(range(start, start + repeats)):
            cell = f"{key}|r{r}"
            if not any(t.status in DONE_STATUSES for t in by_cell.get(cell, [])):
                todo.append((n, index, Job(design, spec, cell, r)))
    return [job for *_, job in sorted(todo, key=lambda item: item[:2])]


def read_prompts(path: Path) -> list:
    """The prompts of a file: one per line (``#`` comments), or a YAML/JSON list of strings and
    PromptSpec dicts (``.yaml``, ``.yml``, ``.json``).

    Raises:
        OSError / UnicodeDecodeError: the file cannot be read. ValidationError: it holds no list.
    """
    from cosyvoice_lab.prompts.spec import PromptSpec

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml  # YAML is a superset of JSON

        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            items = exc
        if not isinstance(items, list):
            why = f": {items}" if isinstance(items, Exception) else ""
            raise ValidationError(
                [Problem("prompts_file", "type", f"{path} must hold a list of prompts{why}")], context="compare"
            )
        return [PromptSpec.from_dict(i) if isinstance(i, dict) else str(i) for i in items]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def warn_if_voices_gone(existing: Sequence, todo: Sequence[Job], *, stacklevel: int = 2) -> None:
    """Say up front when a compare reuses takes whose voices a clean-up deleted: their previews
    still play, but the voices are gone, and a re-run would otherwise look like a fresh one."""
    sending = {job.cell for job in todo}
    gone = [t for t in existing if t.ok and t.voice_status == "DELETED" and t.cell not in sending]
    if gone:
        warnings.warn(
            f"{len(gone)} of the takes this compare reuses have voices that were deleted (a clean-up): their "
            "previews still play, but the voices cannot be used; pass new_repeats=True for fresh ones",
            UserWarning,
            stacklevel=stacklevel,
        )


def warn_if_interrupted(result, *, stacklevel: int = 2) -> None:
    """Say how far an interrupted compare got (as its bar says) and how to finish it."""
    if result.interrupted:
        warnings.warn(
            f"interrupted: {result.reused + result.done}/{result.reused + result.done + result.skipped} "
            f"takes done ({result.reused} reused), {result.skipped} not started (as the bar says); "
            f"run the same compare again to finish",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
