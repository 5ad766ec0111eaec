"""ComparisonBoard: prompts × models × repeats side by side, rated and chosen, with a blind mode.

A thin shell over the log (every rating, keep and listen is written at once) and over
``listening.BlindSession`` (the shuffled order, its seed, the labels and the reveal summary).

Blind mode runs a listening round of one of two kinds: *preference* (model and prompt hidden)
or *adherence* (the description shown above each voice, the model hidden: how well does the
voice match it, 1-5), for the rater named in the rater field. Each round draws a fresh seed and
records itself in the log as ``listening`` describes (a tag and a note line without the seed;
the seed in the round's record, out of every log view, and in the notes at the reveal). Ratings
given blind go to the log's listening ratings (``log.ratings.to_dataframe()``, with rater, kind and session),
not to the take's own rating. A blind card shows the label, the player, the round's rating and,
in an adherence round, the description: no kept / heard / DELETED mark, no earlier rating.
"""

from __future__ import annotations

import ipywidgets as widgets

from cosyvoice_lab import catalog
from cosyvoice_lab.log.ratings import check_kind, who
from cosyvoice_lab.views.comparison import TakeGrid, group_takes
from cosyvoice_lab.views.listening import BlindSession, RevealSummary
from cosyvoice_lab.widgets import snippets
from cosyvoice_lab.widgets.cards import ErrorBox, TakeCard, guarded, short_model

BLIND_COLUMNS = 3


class ComparisonBoard(widgets.VBox):
    """A grid of players for a comparison (or any list of takes), with blind listening.

    Args:
        source: a ``Comparison`` (from ``lab.compare``) or a list of Takes.
        log: the ExperimentLog holding the takes; default the comparison's log (required for
            a list of takes).
        blind: start in blind mode.
        seed: the first blind round's shuffle seed (default, and for every later round: a
            fresh random one, recorded in the log).
        kind: the blind round's kind, "preference" or "adherence" (the kind control's start value).
        rater: the listener's name (default: ``$COSYVOICE_LAB_USER``, else the login name).

    Attributes:
        blind_toggle, reveal_button, refresh_button: the controls.
        kind_choice, rater_field: the next blind round's kind and rater.
        cards: take id → TakeCard of the grid shown.
        session: the current BlindSession (None outside blind mode).
        summary: the RevealSummary once revealed.
        errors: an ErrorBox.

    Raises:
        ValueError: a list of takes without ``log``.
    """

    def __init__(
        self,
        source,
        log=None,
        *,
        blind: bool = False,
        seed: int | None = None,
        kind: str = "preference",
        rater: str | None = None,
    ):
        self.source = source
        experiment_log = log if log is not None else getattr(source, "log", None)
        if experiment_log is None:
            raise ValueError("ComparisonBoard needs log= when given a list of takes (pass lab.log)")
        self.experiment_log = experiment_log
        self._ids = [t.take_id for t in self._source_takes()]
        self.session: BlindSession | None = None
        self.summary: RevealSummary | None = None
        self.cards: dict[str, TakeCard] = {}
        self._seed = seed
        self.errors = ErrorBox()
        self.blind_toggle = widgets.ToggleButton(
            value=False,
            description="blind mode",
            icon="eye-slash",
            tooltip="hide models and prompts, shuffle, then reveal",
        )
        self.reveal_button = widgets.Button(
            description="Reveal", icon="eye", button_style="warning", layout=widgets.Layout(display="none")
        )
        self.refresh_button = widgets.Button(description="refresh", icon="refresh")
        self.kind_choice = widgets.ToggleButtons(
            options=list(catalog.RATING_KINDS),
            value=kind,
            tooltips=["which voice do you like? (model and prompt hidden)", "how well does it match its description?"],
            style={"button_width": "7em"},
        )
        self.rater_field = widgets.Text(
            value=rater or who() or "",
            description="rater",
            placeholder="your name",
            layout=widgets.Layout(width="14em"),
        )
        self.status = widgets.HTML()
        self.grid = widgets.VBox()
        self.summary_box = widgets.HTML()
        self.blind_toggle.observe(guarded(self.errors, self._blind_changed, "blind mode"), "value")
        self.warning = widgets.HTML()
        self.reveal_button.on_click(guarded(self.errors, lambda _: self._reveal_clicked(), "reveal"))
        self.refresh_button.on_click(guarded(self.errors, lambda _: self.refresh(), "refresh"))
        super().__init__(
            [
                widgets.HBox([self.blind_toggle, self.kind_choice, self.rater_field, self.reveal_button]),
                widgets.HBox([self.refresh_button, self.status]),
                self.warning,
                self.errors,
                self.summary_box,
                self.grid,
            ]
        )
        self.add_class("cosyvoice-comparison-board")
        if blind:
            self.blind_toggle.value = True
        else:
            self._draw_grid()

    # --- the takes -----------------------------------------------------------------------------
    def _source_takes(self) -> list:
        if hasattr(self.source, "takes") and hasattr(self.source, "experiment"):
            return list(self.source.takes)
        return [self.experiment_log.get(t.take_id) for t in self.source]  # fresh from the log

    @property
    def takes(self) -> list:
        """The board's takes as the log holds them now."""
        return self._source_takes()

    @property
    def prompts(self) -> list[str]:
        """The rows: the comparison's prompts, else the takes' in order of first appearance."""
        return list(self._arranged(self.takes).prompts)

    @property
    def models(self) -> list[str]:
        """The columns: the comparison's models, else the takes', in ``catalog.model_order``."""
        return list(self._arranged(self.takes).models)

    def _arranged(self, takes: list) -> TakeGrid:
        """``takes`` prompts × models, grouped as the Comparison groups them."""
        return group_takes(
            takes, getattr(self.source, "prompts", None) or None, getattr(self.source, "models", None) or None
        )

    def refresh(self) -> None:
        """Redraw from the log (new takes of the comparison appear)."""
        if self.session is None:
            self._draw_grid()
        else:
            for card in self.cards.values():
                card.refresh()

    # --- the normal grid -------------------------------------------------------------------------
    def _card(self, take, **kwargs) -> TakeCard:
        card = TakeCard(take, self.experiment_log, **kwargs)
        self.cards[take.take_id] = card
        return card

    def _draw_grid(self) -> None:
        takes = self.takes
        arranged = self._arranged(takes)
        prompts, models = arranged.prompts, arranged.models
        self.cards = {}
        cells: list[widgets.Widget] = [widgets.HTML(snippets.bold("prompt"))]
        cells += [widgets.HTML(snippets.bold(m)) for m in models]
        for i, prompt in enumerate(prompts):
            cells.append(widgets.HTML(snippets.numbered_prompt(i, prompt)))
            for model in models:
                cards = [
                    self._card(t, label=f"r{t.repeat}" if t.repeat is not None else None)
                    for t in arranged.cell(prompt, model)
                ]
                cells.append(widgets.VBox(cards or [widgets.HTML(snippets.EMPTY_CELL)]))
        columns = f"minmax(12em, 22em) repeat({len(models)}, minmax(20em, 1fr))"
        self.grid.children = [widgets.GridBox(cells, layout=widgets.Layout(grid_template_columns=columns))]
        ok = sum(t.ok for t in takes)
        self.status.value = f"{len(prompts)} prompt(s) × {len(models)} model(s): {ok}/{len(takes)} takes ok"

    # --- blind mode ------------------------------------------------------------------------------
    def _blind_changed(self, change) -> None:
        if change.new:
            if self.session is None:  # not when start_blind() itself set the toggle
                self.start_blind(self._seed)
        else:
            self.session, self.summary = None, None
            self.summary_box.value = ""
            self.reveal_button.layout.display = "none"
            self.kind_choice.disabled = self.rater_field.disabled = False
            self._draw_grid()

    def start_blind(
        self, seed: int | None = None, *, kind: str | None = None, rater: str | None = None
    ) -> BlindSession:
        """Start a blind round over the playable takes: shuffled under a fresh seed (or ``seed``),
        recorded in the log before anything is heard, models (and in a preference round the
        prompts) hidden.

        Args:
            kind: "preference" or "adherence" (default: the kind control's value).
            rater: the listener's name (default: the rater field's value).

        Returns:
            the new BlindSession (its ratings go to the log as they are given).

        Raises:
            ValueError: an unknown kind, a bad rater name or seed, no playable take.
        """
        self._seed = None  # the seed given to the board serves its first round only
        if kind is not None:
            self.kind_choice.value = check_kind(kind)
        if rater is not None:
            self.rater_field.value = rater
        playable = [t for t in self.takes if t.ok and not t.preview_missing]
        session = BlindSession.start(
            [t.take_id for t in playable],
            seed=seed,
            kind=self.kind_choice.value,
            rater=self.rater_field.value.strip() or None,
        )
        session.record(self.experiment_log)
        return self._show_blind(session)

    def resume_blind(self, session_id: str) -> BlindSession:
        """Go on with a recorded round (after the notebook was closed): the same labels, with
        the ratings given so far on its cards.

        Raises:
            ValueError: the log records no such round.
        """
        session = self._show_blind(BlindSession.from_log(self.experiment_log, session_id))
        if session.revealed:
            self.reveal()
        return session

    def _show_blind(self, session: BlindSession) -> BlindSession:
        self.session, self.summary = session, None
        self.kind_choice.value, self.rater_field.value = session.kind, session.rater
        self.kind_choice.disabled = self.rater_field.disabled = True
        self.cards = {}
        cards = [self._blind_card(session, t) for t in session.order]
        columns = f"repeat({min(BLIND_COLUMNS, len(cards))}, minmax(20em, 1fr))"
        self.grid.children = [widgets.GridBox(cards, layout=widgets.Layout(grid_template_columns=columns))]
        self.summary_box.value = self.warning.value = ""
        self.reveal_button.layout.display = None
        self.reveal_button.disabled = False
        self.reveal_button.description = "Reveal"
        self._blind_status()
        if not self.blind_toggle.value:  # started from code: keep the toggle truthful
            self.blind_toggle.value = True
        return session

    def _blind_card(self, session: BlindSession, take_id: str) -> widgets.Widget:
        card = self._card(
            self.experiment_log.get(take_id),
            label=session.label(take_id),
            blind=True,
            on_rate=self._blind_rated,
            round_rating=session.ratings.get(take_id),
        )
        if session.kind != "adherence":
            return card
        return widgets.VBox([widgets.HTML(snippets.blind_description(card.take.prompt)), card])

    def _blind_rated(self, take, rating) -> None:
        assert self.session is not None  # blind cards exist only inside a session
        self.session.rate(take.take_id, rating)
        self._blind_status()

    def _blind_status(self) -> None:
        s = self.session
        assert s is not None
        left = s.unrated
        self.status.value = snippets.blind_status(
            s.session_id,
            s.seed if s.revealed else None,  # the seed and the take ids uncover the labels
            len(s.order) - len(left),
            len(s.order),
            left if not s.revealed else (),
        )

    def _reveal_clicked(self) -> None:
        """The Reveal button: with unrated items, the first click only warns (what is unrated, and
        that a reveal ends the blind round); the second click reveals."""
        session = self.session
        if session is not None and session.unrated and self.reveal_button.description == "Reveal":
            left = session.unrated
            self.warning.value = snippets.reveal_warning(len(session.order) - len(left), len(session.order), left)
            self.reveal_button.description = f"Reveal anyway ({len(left)} unrated)"
            return
        self.reveal()

    def reveal(self) -> RevealSummary:
        """Uncover the labels and show the mean rating per model and per prompt; each card then
        shows its model, prompt and the rating it was given blind (the Reveal button warns first
        when items are unrated; a reveal from code says how many were, above the summary).

        Raises:
            RuntimeError: not in blind mode.
        """
        if self.session is None:
            raise RuntimeError("reveal needs a blind session: switch blind mode on first")
        session = self.session
        takes = [self.experiment_log.get(t) for t in session.order]
        self.summary = session.reveal(takes, self.prompts)
        models = {r.take_id: r for r in self.summary.rows}
        for take_id, card in self.cards.items():
            row = models[take_id]
            given = session.ratings.get(take_id)
            blind = f"rated {given}/5 blind" if given is not None else "not rated blind"
            card.label = f"{row.label} = {short_model(row.model)}, prompt {row.prompt_index} · {blind}"
            card.reveal()
        left = session.unrated
        self.warning.value = (
            snippets.reveal_warning(len(session.order) - len(left), len(session.order), left, revealed=True)
            if left
            else ""
        )
        self.summary_box.value = self.summary.html()
        self.reveal_button.disabled = True
        self._blind_status()
        return self.summary
