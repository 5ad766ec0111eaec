"""The result card (one take: player, ids, measurements, rating, keep/unkeep) and error boxes.

Shared by the PromptBuilder, the ComparisonBoard and the LogBrowser. A card writes every action
to the experiment log at once and re-reads its take from the log, so what it shows is what the
log holds.

"Played" is recorded honestly: a card marks its take played when its preview is played to the
end (the player's ``onended`` reaches the kernel through the card's hidden ``heard`` Text widget,
see ``html.HEARD_SINK``), when the listener says so ("▶ listened"), or when they judge it (a
rating, keep or unkeep: nobody judges a voice unheard).

"unkeep" only clears *chosen* (the voice stays in the account until ``lab.cleanup()`` deletes
the unchosen ones), so that is its name. "keep" refuses a voice the account no longer holds.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

import ipywidgets as widgets

from cosyvoice_lab import catalog, html
from cosyvoice_lab.take import Take
from cosyvoice_lab.widgets import snippets

CARD_CLASS = "cosyvoice-take-card"
MODEL_COLUMN_CLASS = "cosyvoice-model-column"
RATINGS = tuple((f"{n}", n) for n in range(1, 6))


# --- errors: shown in the widget, never lost in a thread ------------------------------------
class ErrorBox(widgets.HTML):
    """An HTML area that shows errors raised in callbacks and background threads."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()  # worker threads may report at the same time
        self.add_class("cosyvoice-errors")

    def report(self, exc: BaseException, context: str = "") -> None:
        """Show ``exc`` (message first, the traceback folded underneath)."""
        shown = error_report(exc, context)
        with self._lock:
            self.errors.append(exc)
            self.value += shown

    def clear(self) -> None:
        with self._lock:
            self.errors.clear()
            self.value = ""


def guarded(box: ErrorBox, fn: Callable, context: str = "") -> Callable:
    """``fn`` wrapped so that an exception goes into ``box`` instead of the kernel's log."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            box.report(exc, context)
            return None

    return run


# --- pure text helpers (kept importable from here; html.py owns the formats) ---------------------
measurements_text = html.measurements_text
short_model = html.short_model


# --- the card ------------------------------------------------------------------------------------
class TakeCard(widgets.VBox):
    """One take: player, voice id, key measurements, rating 1-5, keep/unkeep, listened.

    Args:
        take: the Take to show.
        log: the ExperimentLog that holds it (every action is written there).
        label: a heading (e.g. "A" in blind mode, "r0" in a grid).
        blind: hide the model, prompt, voice id and measurements (until :meth:`reveal`).
        annotate: add tag and note controls.
        on_change: called with the updated Take after every annotation.
        on_rate: called with (take, rating) when the rating changes. On a blind card it alone
            records the rating (a blind round writes its own, with rater, kind and session).
        round_rating: a blind card's rating given earlier in its round (a rebuilt session).
        width: the card's CSS width (default: as wide as its container).

    Attributes:
        take: the take as the log last returned it.
        rating, keep_button, unkeep_button, listened_button: the controls.
        heard: a hidden Text the player types "ended" into when played to the end.
        message: an ErrorBox for failures of this card's actions.
    """

    def __init__(
        self,
        take,
        log,
        *,
        label: str | None = None,
        blind: bool = False,
        annotate: bool = False,
        on_change: Callable | None = None,
        on_rate: Callable | None = None,
        width: str | None = None,
        round_rating: int | None = None,
    ):
        self.take, self.experiment_log, self.label, self.blind = take, log, label, blind
        log.table.watch_voices(self._voices_changed)  # a clean-up elsewhere in the notebook redraws the card
        self._on_change, self._on_rate, self._syncing = on_change, on_rate, False
        self.round_rating = round_rating  # what a blind card shows: its round's rating, never the take's
        self.header = widgets.HTML()
        self.player = widgets.HTML(_player(take, "" if blind else (take.voice_id or "")))
        self.heard = widgets.Text(layout=widgets.Layout(display="none"))
        self.heard.add_class(html.HEARD_SINK)
        self.details = widgets.HTML()
        self.message = ErrorBox()
        self.rating = widgets.ToggleButtons(
            options=list(RATINGS),
            value=take.rating,
            description="rating",
            tooltips=[f"{'★' * n}" for n in range(1, 6)],
            style={"button_width": "2.2em", "description_width": "3.5em"},
        )
        self.keep_button = widgets.Button(
            description="keep", icon="check", tooltip="mark chosen", layout=widgets.Layout(width="6em")
        )
        self.unkeep_button = widgets.Button(
            description="unkeep",
            tooltip="no longer chosen (the voice stays in the account until lab.cleanup() deletes it)",
            layout=widgets.Layout(width="6.5em"),
        )
        self.listened_button = widgets.Button(
            description="▶ listened", tooltip="record that you played it", layout=widgets.Layout(width="8em")
        )
        self.rating.observe(guarded(self.message, self._rated, "rating"), "value")
        self.keep_button.on_click(guarded(self.message, lambda _: self._keep(), "keep"))
        self.unkeep_button.on_click(guarded(self.message, lambda _: self._act(self.experiment_log.unchoose), "unkeep"))
        self.heard.observe(guarded(self.message, self._heard, "played"), "value")
        self.listened_button.on_click(guarded(self.message, lambda _: self._mark_played(), "listened"))
        # keep / unkeep / listened show marks from outside a blind round: hidden on a blind card
        self.marks = widgets.HBox([self.keep_button, self.unkeep_button, self.listened_button])
        controls = [self.rating, self.marks]
        if annotate:
            controls.append(self._annotation_controls())
        self.controls = widgets.VBox(controls)
        super().__init__(
            [self.header, self.player, self.heard, self.details, self.controls, self.message],
            layout=widgets.Layout(border="1px solid #d4d4d8", padding="6px", margin="4px", width=width),
        )
        self.add_class(CARD_CLASS)
        self._show()

    def _annotation_controls(self) -> widgets.Widget:
        self.tag_text = widgets.Text(placeholder="tag", layout=widgets.Layout(width="12em"))
        self.add_tag_button = widgets.Button(description="add tag", layout=widgets.Layout(width="7em"))
        self.note_text = widgets.Textarea(
            value=self.take.notes, placeholder="notes", layout=widgets.Layout(width="100%", height="4em")
        )
        self.save_note_button = widgets.Button(description="save note", layout=widgets.Layout(width="7em"))
        self.add_tag_button.on_click(guarded(self.message, lambda _: self._add_tag(), "tag"))
        self.save_note_button.on_click(
            guarded(
                self.message,
                lambda _: self._act(lambda tid: self.experiment_log.note(tid, self.note_text.value)),
                "note",
            )
        )
        return widgets.VBox(
            [widgets.HBox([self.tag_text, self.add_tag_button]), widgets.HBox([self.note_text, self.save_note_button])]
        )

    # --- actions: each writes the log, then shows what the log holds --------------------------
    def _rated(self, change) -> None:
        if self._syncing or (change.new == self.take.rating and not self.blind):
            return
        if self.blind and self._on_rate:
            self._on_rate(self.take, change.new)
            self.round_rating = change.new
            self._mark_played()
            return
        self._act(lambda tid: self.experiment_log.rate(tid, change.new))
        if self._on_rate:
            self._on_rate(self.take, change.new)

    def _act(self, action: Callable) -> None:
        self.message.clear()
        self.take = action(self.take.take_id)
        self._mark_played()  # judging a take means it was heard

    def _keep(self) -> None:
        self.take = self.experiment_log.get(self.take.take_id)  # a clean-up may have run since
        if self.take.voice_status == "DELETED":  # a clean-up deleted it: choosing it would promise a voice
            self.message.clear()
            self.message.value = snippets.warning(
                "this voice was deleted from the account (a clean-up); it cannot be kept — "
                "re-run the take to design a new one"
            )
            self._show()
            return
        self._act(self.experiment_log.choose)

    def _heard(self, change) -> None:
        if change.new == html.HEARD:
            self._mark_played()

    def _add_tag(self) -> None:
        tag = self.tag_text.value.strip()
        if tag:
            self._act(lambda tid: self.experiment_log.tag(tid, tag))
            self.tag_text.value = ""

    def _mark_played(self) -> None:
        if not self.take.played:
            self.experiment_log.mark_played(self.take.take_id)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the take from the log and redraw."""
        self.take = self.experiment_log.get(self.take.take_id)
        self._show()
        if self._on_change:
            self._on_change(self.take)

    def _voices_changed(self, voice_ids: set[str]) -> None:
        if self.take.voice_id in voice_ids:
            self.refresh()

    def reveal(self) -> None:
        """Show what blind mode hid (model, prompt, voice id, measurements)."""
        self.blind = False
        self.player.value = _player(self.take, self.take.voice_id or "")
        self._show()

    # --- drawing ---------------------------------------------------------------------------------
    def _show(self) -> None:
        t = self.take
        self._syncing = True
        try:
            self.rating.value = self.round_rating if self.blind else t.rating  # a blind listener starts unprimed
        finally:
            self._syncing = False
        self.header.value = card_header(t, label=self.label, blind=self.blind)
        self.details.value = "" if self.blind else html.render("card_details.html.j2", take=t)
        self.controls.layout.display = None if t.ok else "none"
        self.marks.layout.display = "none" if self.blind else None
        self.keep_button.button_style = "success" if t.chosen else ""
        deleted = t.voice_status == "DELETED"  # nothing to keep: the card says so before anyone clicks
        self.keep_button.disabled = deleted and not t.chosen
        self.keep_button.tooltip = "this voice was deleted from the account" if deleted else "mark chosen"
        self.unkeep_button.disabled = not t.chosen
        self.listened_button.description = "✓ listened" if t.played else "▶ listened"
        self.listened_button.disabled = t.played


def by_model(cards: list[TakeCard]) -> list[widgets.Widget]:
    """Cards as they should sit: as they are for one model; for several, one column per model
    (in ``catalog.model_order``), headed by its name, so the models' candidates sit side by side."""
    models = catalog.model_order(card.take.target_model for card in cards)
    if len(models) < 2:
        return list(cards)
    return [
        widgets.VBox(
            [widgets.HTML(snippets.bold(short_model(m))), *[c for c in cards if c.take.target_model == m]],
            layout=widgets.Layout(align_items="flex-start"),
        ).add_class(MODEL_COLUMN_CLASS)
        for m in models
    ]


def _player(take, label: str) -> str:
    return html.card_player(take, label=label, empty="no preview")


def card_header(take: Take, *, label: str | None = None, blind: bool = False) -> str:
    """A result card's heading: label, model, voice id, kept/heard state and the prompt.

    Blind: only the label; no state either (kept, heard, DELETED would tell voices apart).
    """
    return html.render("card_header.html.j2", take=take, label=label, blind=blind)


def error_report(exc: BaseException, context: str = "") -> str:
    """An exception shown in a widget: message first, the traceback folded underneath."""
    head = f"{context + ': ' if context else ''}{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return html.render("error.html.j2", head=head, trace=trace)
