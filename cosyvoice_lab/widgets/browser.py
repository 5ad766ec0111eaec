"""LogBrowser: filter the experiment log, page through it, hear a take, annotate it, re-run it.

A thin shell: filtering is ``ExperimentLog.to_dataframe`` plus the pure :func:`search` and
:func:`page_of`; the table is :func:`table_html`; annotating is the shared ``TakeCard``;
re-running is ``Lab.rerun`` in a background thread.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import ipywidgets as widgets

from cosyvoice_lab import catalog, html
from cosyvoice_lab.take import STATUSES, Take
from cosyvoice_lab.widgets.cards import ErrorBox, TakeCard, guarded, short_model

ALL = ""
PAGE_SIZE = 20
SEARCH_COLUMNS = ("voice_prompt", "notes", "voice_id", "take_id", "preview_text")


# --- pure pieces ----------------------------------------------------------------------------------
def search(df, text: str):
    """Rows whose prompt, notes, voice id, take id or preview text contain ``text`` (any case)."""
    text = (text or "").strip().lower()
    if not text or df.empty:
        return df
    hit = None
    for column in SEARCH_COLUMNS:
        if column in df:
            found = df[column].fillna("").astype(str).str.lower().str.contains(text, regex=False)
            hit = found if hit is None else hit | found
    return df[hit] if hit is not None else df


def page_of(df, page: int, size: int = PAGE_SIZE):
    """``(rows, page, pages)``: the rows of a page (newest first), the page clamped to 0…pages-1."""
    pages = max(1, math.ceil(len(df) / size))
    page = min(max(0, page), pages - 1)
    newest_first = df.iloc[::-1]
    return newest_first.iloc[page * size : (page + 1) * size], page, pages


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def table_html(rows, selected: str | None = None) -> str:
    """An HTML table of take rows (a DataFrame from ``to_dataframe``)."""
    rows = [_display_row(r) for r in rows.to_dict("records")]  # display texts per take; ``selected`` highlighted
    return html.render("log_table.html.j2", rows=rows, selected=selected)


def _display_row(r: dict) -> dict:
    """One DataFrame record as the texts the table shows (missing values blank)."""
    model = r.get("target_model")
    started = r.get("started_at")
    return {
        "take_id": r["take_id"],
        "started": html.utc_text(started) if _cell(started) else "",
        "experiment": _cell(r.get("experiment")),
        "model": short_model(_cell(model)),
        "status": _cell(r.get("status")),
        "rating": _cell(r.get("rating")),
        "chosen": bool(r.get("chosen")),
        "played": bool(r.get("played")),
        "tags": list(r.get("tags") or ()),
        "prompt": _cell(r.get("voice_prompt")),
    }


def take_label(r: dict) -> str:
    """A take's line in the selector: id, model, status, rating and the start of its prompt."""
    model = r.get("target_model") or ""
    stars = f" ★{r['rating']}" if _cell(r.get("rating")) else ""
    prompt = _cell(r.get("voice_prompt"))
    return f"{r['take_id'][:8]} · {short_model(str(model))} · {r.get('status')}{stars} · {prompt[:40]}"


# --- the widget ---------------------------------------------------------------------------------------
class LogBrowser(widgets.VBox):
    """Browse the lab's experiment log.

    Args:
        lab: the Lab whose log to browse (and which re-runs takes).
        page_size: rows per page.

    Attributes (the controls): ``experiment``, ``model``, ``tag``, ``min_rating``,
    ``status_filter``, ``search`` (Text), ``prev_button``, ``next_button``, ``page_label``,
    ``table`` (HTML), ``take_select`` (Dropdown of the page's take ids), ``detail`` (the
    selected take's HTML), ``card`` (its TakeCard, for rating/tags/notes/keep), ``rerun_button``,
    ``rerun_result``, ``errors``; ``frame`` is the filtered DataFrame, ``page`` the page shown.
    """

    def __init__(self, lab, *, page_size: int = PAGE_SIZE):
        self.lab, self.experiment_log, self.page_size = lab, lab.log, page_size
        self.page = 0
        self.frame: Any = None  # the filtered DataFrame, set by refresh()
        self._page_rows = None
        self.card: TakeCard | None = None
        self.rerun_take = None
        self._thread: threading.Thread | None = None
        self._syncing = False
        self.errors = ErrorBox()
        self._build()
        super().__init__(
            [
                widgets.HBox([self.experiment, self.model, self.status_filter]),
                widgets.HBox([self.tag, self.min_rating, self.search, self.refresh_button]),
                widgets.HBox([self.prev_button, self.next_button, self.page_label]),
                self.table,
                self.take_select,
                self.errors,
                widgets.HBox(
                    [
                        widgets.VBox([self.detail, self.card_box], layout=widgets.Layout(width="60%")),
                        widgets.VBox(
                            [self.rerun_button, self.rerun_status, self.rerun_result],
                            layout=widgets.Layout(width="40%"),
                        ),
                    ]
                ),
            ]
        )
        self.add_class("cosyvoice-log-browser")
        self.refresh()

    def _build(self) -> None:
        dd = {"layout": widgets.Layout(width="20em")}
        self.experiment = widgets.Dropdown(options=[("(all)", ALL)], value=ALL, description="experiment", **dd)
        self.model = widgets.Dropdown(
            options=[("(all)", ALL)] + [(m, m) for m in catalog.MODELS], value=ALL, description="model", **dd
        )
        self.status_filter = widgets.Dropdown(
            options=[("(all)", ALL)] + [(s, s) for s in STATUSES], value=ALL, description="status", **dd
        )
        self.tag = widgets.Dropdown(options=[("(all)", ALL)], value=ALL, description="tag", **dd)
        self.min_rating = widgets.Dropdown(
            options=[("(any)", 0)] + [(f"≥ {n}", n) for n in range(1, 6)],
            value=0,
            description="rating",
            layout=widgets.Layout(width="12em"),
        )
        self.search = widgets.Text(
            placeholder="search prompt, notes, ids",
            description="search",
            continuous_update=False,
            layout=widgets.Layout(width="22em"),
        )
        self.refresh_button = widgets.Button(description="refresh", icon="refresh", layout=widgets.Layout(width="8em"))
        self.prev_button = widgets.Button(description="◀ newer", layout=widgets.Layout(width="8em"))
        self.next_button = widgets.Button(description="older ▶", layout=widgets.Layout(width="8em"))
        self.page_label = widgets.Label()
        self.table = widgets.HTML()
        self.take_select = widgets.Dropdown(options=[], description="take", layout=widgets.Layout(width="60em"))
        self.detail = widgets.HTML()
        self.card_box = widgets.VBox()
        self.rerun_button = widgets.Button(
            description="Re-run", icon="repeat", disabled=True, tooltip="send this take's exact design again"
        )
        self.rerun_status = widgets.Label()
        self.rerun_result = widgets.VBox()
        g = lambda fn, what: guarded(self.errors, fn, what)  # noqa: E731
        for w in (self.experiment, self.model, self.status_filter, self.tag, self.min_rating, self.search):
            w.observe(g(lambda _: self._filter_changed(), "filter"), "value")
        self.refresh_button.on_click(g(lambda _: self.refresh(), "refresh"))
        self.prev_button.on_click(g(lambda _: self.show_page(self.page - 1), "page"))
        self.next_button.on_click(g(lambda _: self.show_page(self.page + 1), "page"))
        self.take_select.observe(g(self._selected, "select"), "value")
        self.rerun_button.on_click(g(lambda _: self.rerun(), "re-run"))

    # --- filtering and paging ---------------------------------------------------------------------
    def filters(self) -> dict:
        """The current filters, as ``to_dataframe`` keywords."""
        out = {
            "experiment": self.experiment.value,
            "target_model": self.model.value,
            "tag": self.tag.value,
            "status": self.status_filter.value,
            "min_rating": self.min_rating.value,
        }
        return {k: v for k, v in out.items() if v}

    def refresh(self) -> None:
        """Re-read the log: filter choices, table and the selected take."""
        self._refresh_choices()
        self._filter_changed(keep_page=True)

    def _refresh_choices(self) -> None:
        everything = self.experiment_log.to_dataframe()
        experiments = sorted(set(everything["experiment"].dropna())) if len(everything) else []
        tags = sorted({t for ts in everything["tags"] for t in ts}) if len(everything) else []
        self._syncing = True
        try:
            for dropdown, values in ((self.experiment, experiments), (self.tag, tags)):
                current = dropdown.value
                dropdown.options = [("(all)", ALL)] + [(v, v) for v in values]
                dropdown.value = current if current in values else ALL
        finally:
            self._syncing = False

    def _filtered(self):
        """The log's takes under the current filters and search text (a fresh query)."""
        return search(self.experiment_log.to_dataframe(**self.filters()), self.search.value)

    def _filter_changed(self, keep_page: bool = False) -> None:
        if self._syncing:
            return
        self.frame = self._filtered()
        self.show_page(self.page if keep_page else 0)

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0 = newest takes) of the filtered takes."""
        rows, self.page, pages = page_of(self.frame, page, self.page_size)
        self._page_rows = rows
        self.page_label.value = f"page {self.page + 1}/{pages} · {len(self.frame)} take(s)"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        records = rows.to_dict("records")
        current = self.take_select.value
        ids = [r["take_id"] for r in records]
        self._syncing = True
        try:
            self.take_select.options = [(take_label(r), r["take_id"]) for r in records]
            self.take_select.value = current if current in ids else None
        finally:
            self._syncing = False
        self.table.value = table_html(rows, self.take_select.value)
        self.select(self.take_select.value)

    # --- one take -------------------------------------------------------------------------------
    def _selected(self, change) -> None:
        if not self._syncing:
            self.select(change.new)

    def select(self, take_id: str | None) -> None:
        """Show a take: its details, player and annotation controls (None clears)."""
        if take_id is None:
            self.detail.value, self.card_box.children, self.card = "", (), None
            self.rerun_button.disabled = True
            return
        if self.take_select.value != take_id and take_id in (v for _, v in self.take_select.options):
            self._syncing = True
            try:
                self.take_select.value = take_id
            finally:
                self._syncing = False
        take = self.experiment_log.get(take_id)
        self.detail.value = take_detail(take)
        self.card = TakeCard(take, self.experiment_log, annotate=True, on_change=self._annotated)
        self.card_box.children = (self.card,)
        self.rerun_button.disabled = self.running
        if self._page_rows is not None:
            self.table.value = table_html(self._page_rows, take_id)

    def _annotated(self, take) -> None:
        self.detail.value = take_detail(take)
        self._refresh_choices()
        self.frame = self._filtered()
        rows, _, _ = page_of(self.frame, self.page, self.page_size)
        self._page_rows = rows
        self.table.value = table_html(rows, take.take_id)

    # --- re-run ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def rerun(self) -> bool:
        """Send the selected take's design again in the background; the new take appears beside it.

        Returns:
            True if a re-run started.
        """
        if self.card is None or self.running:
            return False
        parent = self.card.take
        self.rerun_button.disabled = True
        self.rerun_status.value = f"re-running {parent.take_id[:8]}…"
        self._thread = threading.Thread(
            target=self._rerun_work, args=(parent,), daemon=True, name="cosyvoice-lab-rerun"
        )
        self._thread.start()
        return True

    def _rerun_work(self, parent) -> None:
        try:
            take = self.lab.rerun(parent)
            self.rerun_take = take
            self.rerun_status.value = f"new take {take.take_id[:8]} ({take.status}), parent {parent.take_id[:8]}"
            self.rerun_result.children = (TakeCard(take, self.experiment_log, label="re-run"),)
            self.refresh()
        except Exception as exc:
            self.errors.report(exc, "re-run")
            self.rerun_status.value = "re-run failed"
        finally:
            self.rerun_button.disabled = self.card is None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a re-run finishes; True when nothing is running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


def take_detail(take: Take) -> str:
    """What was asked and what came back, every field of a take (the log browser's detail)."""
    metrics = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted((take.metrics or {}).items())
    )
    return html.render("take_detail.html.j2", take=take, metrics=metrics)
