"""ComparisonBoard: prompts × models × repeats side by side, rated and chosen, with a blind mode.

A thin shell over the log (every rating, keep and listen is written at once) and over
``listening.BlindSession`` (the shuffled order, its seed, the labels and the reveal summary).

Blind mode records, for every take it shows (see ``listening``): the tag ``blind:<session>``
and a line appended to the take's notes, ``blind <session>: seed <seed>, label C, position
3/8``. Ratings given blind are ordinary log ratings (the annotation history timestamps them).
"""

from __future__ import annotations

import ipywidgets as widgets

from cosyvoice_lab import html
from cosyvoice_lab.views.comparison import TakeGrid, group_takes
from cosyvoice_lab.views.listening import BlindSession, RevealSummary
from cosyvoice_lab.widgets.cards import ErrorBox, TakeCard, guarded, short_model

BLIND_COLUMNS = 3


class ComparisonBoard(widgets.VBox):
    """A grid of players for a comparison (or any list of takes), with blind listening.

    Args:
        source: a ``Comparison`` (from ``lab.compare``) or a list of Takes.
        log: the ExperimentLog holding the takes; default the comparison's log (required for
            a list of takes).
        blind: start in blind mode.
        seed: the blind shuffle seed (default: a fresh random one, recorded in the log).

    Attributes:
        blind_toggle, reveal_button, refresh_button: the controls.
        cards: take id → TakeCard of the grid shown.
        session: the current BlindSession (None outside blind mode).
        summary: the RevealSummary once revealed.
        errors: an ErrorBox.

    Raises:
        ValueError: a list of takes without ``log``.
    """

    def __init__(self, source, log=None, *, blind: bool = False, seed: int | None = None):
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
        self.status = widgets.HTML()
        self.grid = widgets.VBox()
        self.summary_box = widgets.HTML()
        self.blind_toggle.observe(guarded(self.errors, self._blind_changed, "blind mode"), "value")
        self.reveal_button.on_click(guarded(self.errors, lambda _: self.reveal(), "reveal"))
        self.refresh_button.on_click(guarded(self.errors, lambda _: self.refresh(), "refresh"))
        super().__init__(
            [
                widgets.HBox([self.blind_toggle, self.reveal_button, self.refresh_button, self.status]),
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
        cells: list[widgets.Widget] = [widgets.HTML(html.bold("prompt"))]
        cells += [widgets.HTML(html.bold(m)) for m in models]
        for i, prompt in enumerate(prompts):
            cells.append(widgets.HTML(html.numbered_prompt(i, prompt)))
            for model in models:
                cards = [
                    self._card(t, label=f"r{t.repeat}" if t.repeat is not None else None)
                    for t in arranged.cell(prompt, model)
                ]
                cells.append(widgets.VBox(cards or [widgets.HTML(html.EMPTY_CELL)]))
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
            self._draw_grid()

    def start_blind(self, seed: int | None = None) -> BlindSession:
        """Hide models and prompts, shuffle the playable takes under ``seed`` and record it.

        Returns:
            the new BlindSession (its seed and session id are also in the log).
        """
        playable = [t for t in self.takes if t.ok and not t.preview_missing]
        session = BlindSession.start([t.take_id for t in playable], seed=seed)
        session.record(self.experiment_log)
        self.session, self.summary = session, None
        self.cards = {}
        cards = [
            self._card(self.experiment_log.get(t), label=session.label(t), blind=True, on_rate=self._blind_rated)
            for t in session.order
        ]
        columns = f"repeat({min(BLIND_COLUMNS, len(cards))}, minmax(20em, 1fr))"
        self.grid.children = [widgets.GridBox(cards, layout=widgets.Layout(grid_template_columns=columns))]
        self.summary_box.value = ""
        self.reveal_button.layout.display = None
        self.reveal_button.disabled = False
        self._blind_status()
        if not self.blind_toggle.value:  # started from code: keep the toggle truthful
            self.blind_toggle.value = True
        return session

    def _blind_rated(self, take, rating) -> None:
        assert self.session is not None  # blind cards exist only inside a session
        self.session.rate(take.take_id, rating)
        self._blind_status()

    def _blind_status(self) -> None:
        s = self.session
        assert s is not None
        left = s.unrated
        self.status.value = html.blind_status(
            s.session_id, s.seed, len(s.order) - len(left), len(s.order), left if not s.revealed else ()
        )

    def reveal(self) -> RevealSummary:
        """Uncover the labels and show the mean rating per model and per prompt.

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
            card.label = f"{row.label} = {short_model(row.model)}, prompt {row.prompt_index}"
            card.reveal()
        self.summary_box.value = self.summary.html()
        self.reveal_button.disabled = True
        self._blind_status()
        return self.summary
