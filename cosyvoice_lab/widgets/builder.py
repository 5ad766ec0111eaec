"""PromptBuilder: assemble a voice prompt from choices, check it as you type, design in the background.

A thin shell: rendering is ``PromptSpec.render``, validation is ``VoiceDesign.problems()`` /
``warnings()`` (through ``Lab.make_design``), designing is ``Lab.run_designs`` (the lab's runner,
called from one background thread), and the prompt box's "edited by hand" state is the pure
:class:`PromptDraft` (``drafting.py``). The widget only wires events.
"""

from __future__ import annotations

import threading

import ipywidgets as widgets
from traitlets import validate

from cosyvoice_lab import catalog
from cosyvoice_lab.lab.planning import DEFAULT_PREVIEW_TEXT
from cosyvoice_lab.prompts.spec import DIMENSIONS, PRESETS, PromptSpec, options
from cosyvoice_lab.widgets import snippets
from cosyvoice_lab.widgets.cards import ErrorBox, TakeCard, by_model, guarded
from cosyvoice_lab.widgets.drafting import (
    PromptDraft,
    Tally,
    check_designs,
    counters_text,
    over_limits,
    preset_label,
    prompt_limit,
    render_choices,
)

BOTH = "both"
MAX_CANDIDATES = 8  # a UI bound for one click (each candidate is one stored voice), not a service limit
LANGUAGE_OPTIONS = (("English (en)", "en"), ("中文 (zh)", "zh"))


# --- the preset chooser ---------------------------------------------------------------------------
class PresetDropdown(widgets.Dropdown):
    """The preset chooser; accepts a preset's label ("audiobook narrator") or its key."""

    @validate("value")
    def _validate_value(self, proposal):
        if isinstance(proposal.value, str):
            proposal["value"] = proposal.value.strip().replace(" ", "_")
        return super()._validate_value(proposal)


# --- the widget ---------------------------------------------------------------------------------
class PromptBuilder(widgets.VBox):
    """Build a voice prompt from its dimensions and design candidates without leaving the notebook.

    Args:
        lab: the Lab to design with (its defaults fill prefix, model and preview text).
        preset: a key of ``prompts.PRESETS`` to start from (default: nothing chosen).
        language: 'en' or 'zh', the language of the rendered prompt.
        experiment: the experiment the takes are logged under.

    Attributes (the controls, for code and tests): ``preset``, ``dimensions`` (dimension →
    Dropdown), ``free_text``, ``language``, ``prompt`` (editable Textarea), ``rerender_button``,
    ``counters``, ``messages``, ``model`` ('cosyvoice-v3.5-plus', 'cosyvoice-v3.5-flash' or
    'both'), ``candidates``, ``prefix``, ``preview_text``, ``experiment``, ``design_button``,
    ``progress``, ``status`` (a Label), ``errors`` (an ErrorBox), ``results`` (the cards' box),
    ``cards`` and ``takes`` (what this builder designed).
    """

    def __init__(self, lab, *, preset: str | None = None, language: str = "en", experiment: str = "prompt-builder"):
        self.lab = lab
        self.cards: list[TakeCard] = []
        self.takes: list = []
        self._draft = PromptDraft()
        self._syncing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors = ErrorBox()
        self._build_controls(language, experiment)
        super().__init__(self._layout())
        self.add_class("cosyvoice-prompt-builder")
        self._wire()
        if preset:
            self.preset.value = preset
        self._render()

    # --- construction ------------------------------------------------------------------------
    def _build_controls(self, language: str, experiment: str) -> None:
        wide = widgets.Layout(width="98%")
        self.preset = PresetDropdown(
            options=[("— custom —", "")] + [(preset_label(k), k) for k in PRESETS], value="", description="preset"
        )
        self.language = widgets.ToggleButtons(
            options=LANGUAGE_OPTIONS, value=language, description="language", style={"button_width": "7.5em"}
        )
        self.dimensions = {
            d: widgets.Dropdown(
                options=self._dimension_options(d, language),
                value="",
                description=d,
                layout=widgets.Layout(width="18em"),
                style={"description_width": "6.5em"},
            )
            for d in DIMENSIONS
        }
        self.free_text = widgets.Text(
            description="free text", placeholder="anything else, appended as written", layout=wide
        )
        self.prompt = widgets.Textarea(description="prompt", layout=widgets.Layout(width="98%", height="5em"))
        self.rerender_button = widgets.Button(
            description="re-render",
            icon="refresh",
            disabled=True,
            tooltip="replace your edits with the rendering of the choices",
        )
        self.edited_note = widgets.HTML()
        self.counters = widgets.HTML()
        self.messages = widgets.HTML()
        models = [(short, m) for m in catalog.COMPARE_MODELS for short in [m.rsplit("-", 1)[-1]]]
        models.append(("qwen", catalog.QWEN_VD))  # the Qwen design family (contract §12)
        self.model = widgets.ToggleButtons(
            options=[*models, (BOTH, BOTH)],
            description="model",
            value=self.lab.target_model
            if self.lab.target_model in catalog.COMPARE_MODELS
            else catalog.COMPARE_MODELS[0],
            style={"button_width": "5em"},
        )
        self.candidates = widgets.BoundedIntText(
            value=2,
            min=1,
            max=MAX_CANDIDATES,
            description="candidates",
            tooltip="candidates per model",
            layout=widgets.Layout(width="12em"),
        )
        self.prefix = widgets.Text(value=self.lab.prefix, description="prefix", layout=widgets.Layout(width="14em"))
        self.preview_text = widgets.Textarea(
            value=self.lab.preview_text or DEFAULT_PREVIEW_TEXT[language],
            description="preview",
            placeholder=DEFAULT_PREVIEW_TEXT[language],
            layout=widgets.Layout(width="98%", height="3.5em"),
        )
        self.experiment = widgets.Text(value=experiment, description="experiment", layout=widgets.Layout(width="20em"))
        self.design_button = widgets.Button(description="Design", button_style="primary", icon="magic")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="12em"))
        self.status = widgets.Label("")
        self.results = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))

    def _layout(self) -> list:
        dims = list(self.dimensions.values())
        grid = widgets.GridBox(dims, layout=widgets.Layout(grid_template_columns="repeat(auto-fill, 19em)"))
        return [
            _row(self.preset, self.language),
            grid,
            self.free_text,
            self.prompt,
            _row(self.rerender_button, self.edited_note),
            self.preview_text,
            self.counters,
            self.messages,
            _row(self.model, self.candidates),
            _row(self.prefix, self.experiment),
            _row(self.design_button, self.progress, self.status),
            self.errors,
            self.results,
        ]

    def _wire(self) -> None:
        g = lambda fn, what: guarded(self.errors, fn, what)  # noqa: E731
        self.preset.observe(g(self._preset_chosen, "preset"), "value")
        self.language.observe(g(self._language_changed, "language"), "value")
        for dropdown in self.dimensions.values():
            dropdown.observe(g(self._choice_changed, "choice"), "value")
        self.free_text.observe(g(self._choice_changed, "free text"), "value")
        self.prompt.observe(g(self._typed, "prompt"), "value")
        self.rerender_button.on_click(g(lambda _: self._set_prompt(self._draft.rerender()), "re-render"))
        for w in (self.preview_text, self.prefix, self.model):
            w.observe(g(lambda _: self._validate(), "validation"), "value")
        self.design_button.on_click(g(lambda _: self.design(), "design"))

    def _dimension_options(self, dimension: str, language: str) -> list:
        return [("—", ""), *options(dimension, language)]

    # --- the spec and the prompt box ---------------------------------------------------------
    @property
    def spec(self) -> PromptSpec:
        """The PromptSpec of the current choices.

        Raises:
            ValueError: the free text makes a prompt over the limit.
        """
        return PromptSpec(**self._choices(), free_text=self.free_text.value.strip() or None)

    @property
    def edited(self) -> bool:
        """True when the prompt was edited by hand (choices no longer change it)."""
        return self._draft.edited

    def _preset_chosen(self, change) -> None:
        if self._syncing or not change.new:
            return
        spec = PromptSpec.preset(change.new)
        self._syncing = True
        try:
            for d, w in self.dimensions.items():
                w.value = getattr(spec, d) or ""
            self.free_text.value = spec.free_text or ""
        finally:
            self._syncing = False
        self._render()

    def _choice_changed(self, change) -> None:
        if self._syncing:
            return
        if self.preset.value and not self._spec_problems() and self.spec != PRESETS.get(self.preset.value):
            self._syncing = True
            try:
                self.preset.value = ""  # the choices no longer match the preset: custom
            finally:
                self._syncing = False
        self._render()

    def _language_changed(self, change) -> None:
        self._syncing = True
        try:
            for d, w in self.dimensions.items():
                value = w.value
                w.options = self._dimension_options(d, change.new)
                w.value = value
        finally:
            self._syncing = False
        if self.preview_text.value.strip() in ("", DEFAULT_PREVIEW_TEXT[change.old]):
            self.preview_text.value = DEFAULT_PREVIEW_TEXT[change.new]  # the default follows the language
        self.preview_text.placeholder = DEFAULT_PREVIEW_TEXT[change.new]
        self._render()

    def _choices(self) -> dict:
        return {d: w.value or None for d, w in self.dimensions.items()}

    def _render(self) -> None:
        rendered, _ = render_choices(
            self._choices(), self.free_text.value, self.language.value, limit=prompt_limit(self.models)
        )
        self._set_prompt(self._draft.render(rendered))  # over the limit too: the count says by how much

    def _spec_problems(self) -> list[str]:
        if self.edited:
            return []
        _, problem = render_choices(
            self._choices(), self.free_text.value, self.language.value, limit=prompt_limit(self.models)
        )
        return [problem] if problem else []

    def _logged_spec(self) -> dict | None:
        """The spec logged with the takes: only when the prompt is its rendering, and when the
        spec holds in both languages (a free text that fits this language only is text)."""
        if self.edited or not self.prompt.value:
            return None
        try:
            return self.spec.to_dict()
        except ValueError:
            return None

    def _set_prompt(self, text: str) -> None:
        self._syncing = True
        try:
            self.prompt.value = text
        finally:
            self._syncing = False
        self._show_edited()
        self._validate()

    def _typed(self, change) -> None:
        if self._syncing:
            return
        self._draft.type(change.new)
        self._show_edited()
        self._validate()

    def _show_edited(self) -> None:
        edited = self._draft.edited
        self.rerender_button.disabled = not edited
        self.edited_note.value = snippets.edited_note() if edited else ""

    # --- validation ----------------------------------------------------------------------------
    @property
    def models(self) -> tuple[str, ...]:
        """The models one click designs for."""
        return catalog.COMPARE_MODELS if self.model.value == BOTH else (self.model.value,)

    def check(self):
        """``check_designs`` for the current state: (designs, problems, warnings)."""
        return check_designs(
            self.lab,
            self.prompt.value,
            preview_text=self.preview_text.value,
            models=self.models,
            prefix=self.prefix.value,
        )

    def _validate(self) -> list[str]:
        preview = self.preview_text.value or DEFAULT_PREVIEW_TEXT[self.language.value]
        self.counters.value = _counters_html(self.prompt.value, preview, self.models)
        _, problems, warnings = self.check()
        problems = [*self._spec_problems(), *problems]
        self.messages.value = snippets.check_messages(problems, warnings)
        self.design_button.disabled = self.running or bool(problems)
        return problems

    # --- designing -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a design runs in the background."""
        return self._thread is not None and self._thread.is_alive()

    def design(self) -> bool:
        """What the Design button does: start designing in a background thread.

        Returns:
            True if a run started; False if one is running or the input has problems (they
            are shown in ``messages`` and ``status``).
        """
        if self.running:
            self.status.value = "already designing — wait for it to finish"
            return False
        problems = self._validate()
        designs, _, _ = self.check()
        if problems:
            self.status.value = f"fix {len(problems)} problem(s) first"
            return False
        # the spec is logged with the takes only when the prompt is its rendering
        spec = self._logged_spec()
        jobs = [d for d in designs for _ in range(self.candidates.value)]
        self.errors.clear()
        self.progress.max, self.progress.value = len(jobs), 0
        tally = Tally(len(jobs))
        self.status.value = tally.running()
        self.design_button.disabled = True
        # one thread, so the notebook stays responsive; the lab's runner sends the designs
        self._thread = threading.Thread(
            target=self._work,
            args=(jobs, spec, self.experiment.value.strip() or None, tally),
            name="cosyvoice-lab-builder",
            daemon=True,
        )
        self._thread.start()
        return True

    def _work(self, jobs, spec, experiment, tally: Tally) -> None:
        """The background thread: ``Lab.run_designs`` sends the designs through the runner at the
        lab's concurrency and rate; a card is added as each take arrives."""
        try:
            self.lab.run_designs(
                jobs,
                experiment=experiment,
                prompt_spec=spec,
                progress=False,
                on_done=lambda _, take, error: self._arrived(take, error, tally),
            )
            self._settle()
        except Exception as exc:  # a thread's traceback would be lost otherwise
            self.errors.report(exc, "design")
        finally:
            self.status.value = tally.finished()
            self.design_button.disabled = bool(self._validate_quietly())

    def _arrived(self, take, error: Exception | None, tally: Tally) -> None:
        """One design is done (a take, or the exception its sending raised): show it."""
        tally.done += 1
        if error is not None:
            self.errors.report(error, "design")
        else:
            try:
                tally.ok += take.ok
                self._add(take)
            except Exception as exc:  # shown in the widget; a card that fails must not lose the takes after it
                self.errors.report(exc, "design")
        self.progress.value = tally.done
        self.status.value = tally.running()

    def _settle(self) -> None:
        """Show the measurements once the measuring stage has them; reconcile unknown outcomes, record
        voice statuses, redraw (``Lab.settle`` waits until none of the lab's requests is in flight)."""
        self.status.value = "measuring the previews…"
        self.lab.measured(list(self.takes))
        with self._lock:
            pending = [t for t in self.takes if t.status == "unknown" or (t.ok and not t.voice_status)]
        if pending:
            self.lab.settle(pending)
        with self._lock:
            for i, card in enumerate(self.cards):  # re-read: measures, outcomes, statuses
                card.refresh()
                self.takes[i] = card.take

    def _validate_quietly(self) -> list[str]:
        try:
            return self._validate()
        except Exception as exc:  # shown in the widget, not lost in the thread
            self.errors.report(exc, "validation")
            return []

    def _add(self, take) -> None:
        with self._lock:
            card = TakeCard(take, self.lab.log, label=f"#{len(self.takes) + 1}", width="30em")
            self.takes.append(take)
            self.cards.append(card)
            self.results.children = by_model(self.cards)  # with several models: a column each, side by side

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background design finishes (or ``timeout`` seconds pass).

        Returns:
            True when nothing is running any more.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running


def _row(*children) -> widgets.HBox:
    """A row of controls that wraps on a narrow screen (a phone) instead of running off its edge."""
    return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap"))


def _counters_html(prompt: str, preview: str, models) -> str:
    return snippets.counters(counters_text(prompt, preview, models), over=over_limits(prompt, preview, models))
