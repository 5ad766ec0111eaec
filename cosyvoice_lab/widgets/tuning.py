"""TuningPanel: ``lab.tune`` in a notebook — target sliders, a run and a stop button, the path
toward the target drawn after every round, and the best candidates' players.

A thin shell: the search is ``lab.tune`` (``lab/tune.py``), run in one background thread so the
notebook stays responsive; its ``on_round`` hook redraws the live view and asks the stop button.
The result is the :class:`~cosyvoice_lab.views.tuning.Tuning` in ``panel.tuning``.
"""

from __future__ import annotations

import threading

import ipywidgets as widgets

from cosyvoice_lab.widgets.cards import ErrorBox, guarded


class TuningPanel(widgets.VBox):
    """Tune a description toward a pitch and speaking-rate change.

    Args:
        lab: the Lab that designs.
        start: a PromptSpec or a description.
        preview_text: what the previews read (default: the lab's).
        budget: the budget slider's start value.

    Attributes:
        pitch, rate, budget: the sliders (semitones and percent from the start; designs).
        run_button, stop_button: the controls; ``live``: the verdict, plot and players, redrawn
        after each round; ``tuning``: the last Tuning (None before a run); ``errors``: an ErrorBox.
    """

    def __init__(self, lab, start, *, preview_text: str | None = None, budget: int = 24):
        self.lab, self.start, self.preview_text = lab, start, preview_text
        self.tuning = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = ErrorBox()
        self.pitch = widgets.FloatSlider(value=-3, min=-8, max=8, step=0.5, description="pitch (st)")
        self.rate = widgets.IntSlider(value=0, min=-40, max=40, step=5, description="rate (%)")
        self.budget = widgets.IntSlider(value=budget, min=6, max=96, step=3, description="budget")
        self.run_button = widgets.Button(description="tune", icon="play", button_style="primary")
        self.stop_button = widgets.Button(description="stop", icon="stop", disabled=True)
        self.run_button.on_click(guarded(self.errors, lambda _: self.run(), "tune"))
        self.stop_button.on_click(lambda _: self._stop.set())
        self.live = widgets.Output()
        controls = widgets.HBox([self.run_button, self.stop_button])
        super().__init__([self.pitch, self.rate, self.budget, controls, self.errors, self.live])

    def target(self) -> dict:
        """The target the sliders say (a measure at 0 is left out)."""
        out = {}
        if self.pitch.value:
            out["pitch"] = f"{self.pitch.value:+g} st"
        if self.rate.value:
            out["speaking_rate"] = f"{self.rate.value:+d} %"
        return out

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> bool:
        """What the tune button does: start the search in a background thread. False when one runs."""
        if self.running:
            return False
        self._stop.clear()
        target = self.target() or {"pitch": "+0 st"}
        self.run_button.disabled, self.stop_button.disabled = True, False
        self._thread = threading.Thread(target=self._work, args=(target,), name="cosyvoice-lab-tune", daemon=True)
        self._thread.start()
        return True

    def _work(self, target: dict) -> None:
        try:
            self.tuning = self.lab.tune(
                self.start,
                target=target,
                budget=self.budget.value,
                preview_text=self.preview_text,
                on_round=self._show,
            )
            self._show(self.tuning)
        except Exception as exc:  # a thread's traceback would be lost otherwise
            self.errors.report(exc, "tune")
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _show(self, tuning) -> bool:
        """Redraw the live view with ``tuning``; True when the stop button was pressed."""
        from IPython.display import HTML, display

        self.tuning = tuning
        self.live.clear_output(wait=True)
        with self.live:
            display(HTML(tuning.html()))
            display(tuning.plot())
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the search finishes (or ``timeout`` seconds pass); True when none runs."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running
