"""Comparison: the takes of one compare run, as a DataFrame, a pivot and a grid of players.

A view over the log (never a second copy): every property re-reads the experiment's takes, so
ratings given in a widget show up here at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cosyvoice_lab import catalog, html
from cosyvoice_lab.take import TakeSource


class PendingMeasures(Protocol):
    """Measures still being computed (the Lab's measuring stage is one)."""

    def pending(self, take_ids: Iterable[str] | None = None, *, quality: bool = True) -> list[str]: ...

    def wait(
        self, take_ids: Iterable[str] | None = None, *, quality: bool = True, timeout: float | None = None
    ) -> list[str]: ...


@dataclass
class Comparison:
    """Prompts × models × repeats of one experiment.

    Attributes:
        log: the ExperimentLog holding the takes.
        experiment: the experiment name (pass it to ``lab.compare`` to resume or extend).
        prompts: the voice prompts, in the order given.
        models: the models compared.
        measures: the measures still being computed for its takes (a compare returns once its
            designs are in; the grid and players work at once, measures fill in). What reads
            measures (``summary``, ``evidence``, ``pivot`` of a measure, ``measured``) waits for
            this comparison's; ``pending`` says which.
    """

    log: TakeSource = field(repr=False)
    experiment: str
    prompts: list[str]
    models: tuple[str, ...]
    interrupted: bool = False
    measures: PendingMeasures | None = field(default=None, repr=False, compare=False)

    @property
    def takes(self) -> list:
        """The experiment's takes, ordered by prompt, model and repeat."""
        return self.grid.takes

    @property
    def pending(self) -> list[str]:
        """Ids of this comparison's takes whose measures are still being computed."""
        if self.measures is None:
            return []
        return self.measures.pending([t.take_id for t in self.log.takes(experiment=self.experiment)])

    def measured(self, *, quality: bool = True) -> Comparison:
        """Wait (with a progress bar) until every take of this comparison has its measures (with
        ``quality=False``: all but predicted quality, the last to come). Returns self."""
        if self.measures is not None:
            ids = [t.take_id for t in self.log.takes(experiment=self.experiment)]
            self.measures.wait(ids, quality=quality)
        return self

    @property
    def grid(self) -> TakeGrid:
        """The experiment's takes arranged prompts × models (see ``group_takes``)."""
        return group_takes(self.log.takes(experiment=self.experiment), self.prompts, self.models)

    @property
    def df(self):
        """One row per take, with ``prompt_index`` (0-based, in the order given) and
        ``design_family`` (from the target model, ``catalog.family_name``)."""
        df = self.log.to_dataframe(experiment=self.experiment)
        order = {p: i for i, p in enumerate(self.prompts)}
        df = df[df["voice_prompt"].isin(order) & df["target_model"].isin(self.models)].copy()
        df.insert(0, "prompt_index", df["voice_prompt"].map(order).astype("Int64"))
        # the design family, derived from the model as Take.design_family does (the log stores none)
        df["design_family"] = df["target_model"].astype(str).map(catalog.family_name).astype("category")
        rank = {m: i for i, m in enumerate(catalog.model_order(self.models))}
        by_model = lambda col: col.astype(str).map(rank) if col.name == "target_model" else col  # noqa: E731 - grid order
        return df.sort_values(["prompt_index", "target_model", "repeat"], key=by_model).reset_index(drop=True)

    def pivot(self, values: str | None = None, aggfunc: str = "mean"):
        """Prompts × models. Without ``values``: takes ok / total per cell; else ``aggfunc`` of
        a column (e.g. ``"rating"`` or ``"m_median_f0_hz"``)."""
        import pandas as pd

        if values is not None and values.startswith("m_"):
            self.measured(quality=values.startswith("m_dnsmos"))
        df = self.df
        if df.empty:
            return pd.DataFrame(index=pd.Index([], name="prompt_index"), columns=list(self.models))
        if values is None:
            df["ok"] = (df["status"] == "ok").astype(int)
            counts = df.pivot_table(
                index="prompt_index", columns="target_model", values="ok", aggfunc=["sum", "count"], observed=True
            )
            table = counts["sum"].astype(int).astype(str) + "/" + counts["count"].astype(int).astype(str) + " ok"
        else:
            table = df.pivot_table(
                index="prompt_index", columns="target_model", values=values, aggfunc=aggfunc, observed=True
            )
        table.columns.name = None
        return table[[m for m in catalog.model_order(self.models) if m in table.columns]]  # the grid's order

    def summary(self, *, variability: bool = True):
        """Per prompt and model: takes ok, mean rating, median pitch, speaking rate and loudness
        (if measured), and ``variability``: how different the repeats of the cell are (about 1
        = one clearly audible step; see ``analysis.variability``). Waits for pending measures."""
        df = self.measured(quality=False).df  # pitch, rate, loudness: not predicted quality
        agg = {"take_id": "count", "rating": "mean"}
        for col in ("m_median_f0_hz", "m_speaking_rate", "m_loudness_lufs"):
            if col in df:
                agg[col] = "median"
        ok = df[df["status"] == "ok"]
        table = (
            ok.groupby(["prompt_index", "target_model"], observed=True).agg(agg).rename(columns={"take_id": "takes_ok"})
        )
        if variability and "m_median_f0_hz" in ok and ok["audio_path"].notna().any():
            table["variability"] = self._variability(ok)
        return table

    def _variability(self, ok):
        """variability of each prompt × model cell, aligned with the summary's index."""
        import pandas as pd

        from cosyvoice_lab.analysis.variability import speaker_embedding, variation

        ok = ok[ok["audio_path"].notna()]
        keys = [f"{p}|{m}" for p, m in zip(ok["prompt_index"], ok["target_model"], strict=False)]
        embeddings = [speaker_embedding(self.log.get(t).audio) for t in ok["take_id"]]
        var = variation(ok.assign(_cell=keys), prompt_column="_cell", embeddings=embeddings)
        by_key = dict(zip(var["voice_prompt"], var["variability"], strict=False))  # the group column keeps that name
        index = pd.MultiIndex.from_tuples(dict.fromkeys(zip(ok["prompt_index"], ok["target_model"], strict=False)))
        return pd.Series([by_key.get(f"{p}|{m}") for p, m in index], index=index, dtype=float)

    def evidence(
        self, *, effect: dict[str, float] | None = None, variability: bool = True, ratings=None, prompts: bool = False
    ):
        """Is a difference between the models real? One question per measure, within prompts.

        Args:
            effect: plain measure name → the smallest difference that matters, to plan repeats for
                (e.g. ``{"pitch": 0.5}`` semitones); every other measure keeps its default
                (``analysis.planning.Matters``: 1 st, 10 % of speaking rate, 1 LU, 0.2 MOS, 0.5 stars, 0.5 s).
            variability: also compare the variation between repeats (needs the previews).
            ratings: listening-round ratings (``take_id``, ``rating``, ``kind``, ``rater``), e.g.
                ``log.ratings.to_dataframe(experiment)`` or ``BlindSession.ratings_frame()``; ``True`` reads
                the log's ratings of this experiment. Several raters are accounted for (each
                rater centred, one score per take).
            prompts: also compare the prompts with each other (models as blocks).
        Returns:
            an ``Evidence`` view (``.table``, a table in a notebook), once the measures it reads
            are in (pending ones are waited for, with a progress bar).
        """
        from cosyvoice_lab.views.evidence import evidence

        if ratings is True:
            ratings = self.log.ratings.to_dataframe(self.experiment)  # type: ignore[attr-defined]
        df = self.measured().df
        cells = None
        ok = df[df["status"] == "ok"]
        if variability and "m_median_f0_hz" in ok and ok["audio_path"].notna().any():
            series = self._variability(ok)
            cells = series.rename("variability").rename_axis(["prompt_index", "target_model"]).reset_index()
        return evidence(
            df, self.models, experiment=self.experiment, cells=cells, ratings=ratings, effect=effect, prompts=prompts
        )

    def start_blind(self, *, kind: str = "preference", rater: str | None = None, seed: int | None = None):
        """A blind listening round over this comparison's playable takes, recorded in the log
        (a fresh seed unless given, kept out of every log view until the reveal).

        Args:
            kind: "preference" (model and prompt hidden) or "adherence" (the description shown).
            rater: the listener's name (default: ``$COSYVOICE_LAB_USER``, else the login name).

        Returns:
            the ``BlindSession``: shows itself (labels and players), ``rate("A", 4)`` writes to
            the log at once, ``reveal(prompts=comparison.prompts)`` uncovers the labels.
        """
        from cosyvoice_lab.views.listening import BlindSession

        playable = [t.take_id for t in self.takes if t.ok and not t.preview_missing]
        session = BlindSession.start(playable, kind=kind, rater=rater, seed=seed)
        session.record(self.log)
        return session

    def __repr__(self):
        takes = self.takes
        ok = sum(t.ok for t in takes)
        pending = len(self.pending)
        return (
            f"<Comparison {self.experiment}: {len(self.prompts)} prompt(s) × {len(self.models)} model(s), "
            f"{ok}/{len(takes)} takes ok{' (interrupted)' if self.interrupted else ''}"
            f"{f'; measures pending for {pending}' if pending else ''}>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The grid: rows = prompts, columns = models, each cell the players of its repeats."""
        return comparison_grid(self.experiment, self.models, self.grid.rows(), pending=len(self.pending))


def comparison_grid(
    experiment: str, models: Sequence[str], rows: Sequence[tuple[str, Sequence]], *, pending: int = 0
) -> str:
    """Prompts × models: ``rows`` are ``(prompt, [takes of each model, in models' order])``;
    each cell shows the players of its repeats (or why a take has none). ``pending``: takes
    whose measures are still being computed (said under the title)."""
    return html.render("comparison.html.j2", experiment=experiment, models=models, rows=rows, pending=pending)


@dataclass(frozen=True)
class TakeGrid:
    """Takes arranged prompts × models: what a comparison's table and the ComparisonBoard show.

    Attributes:
        prompts: the rows, in order. models: the columns, in order.
        cells: (prompt, model) → the cell's takes, by repeat then start time.
    """

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    cells: dict[tuple[str, str], list]

    def cell(self, prompt: str, model: str) -> list:
        """The takes of one prompt on one model ([] if none)."""
        return self.cells.get((prompt, model), [])

    def rows(self) -> list[tuple[str, list[list]]]:
        """(prompt, [the cell's takes for each model]) for each prompt, in order."""
        return [(p, [self.cell(p, m) for m in self.models]) for p in self.prompts]

    @property
    def takes(self) -> list:
        """Every take of the grid: by prompt, then model, then repeat and start time."""
        return [t for _, cells in self.rows() for cell in cells for t in cell]


def group_takes(takes: Iterable, prompts: Iterable[str] | None = None, models: Iterable[str] | None = None) -> TakeGrid:
    """The one grouping of takes into prompt × model cells, shared by ``Comparison`` and the
    ComparisonBoard.

    Args:
        takes: Take-like objects (``prompt``, ``model``, ``repeat``, ``started_at``).
        prompts, models: the rows and columns; default: those of ``takes``. Prompts keep their
            order (default: first appearance); models are shown in ``catalog.model_order``.
            Takes of other prompts or models are left out.
    Returns:
        a TakeGrid whose cells hold their takes by repeat (none counts as 0), then start time.
    """
    takes = list(takes)
    prompts = tuple(dict.fromkeys(prompts if prompts is not None else (t.prompt for t in takes)))
    models = catalog.model_order(models if models is not None else (t.target_model for t in takes))
    cells: dict[tuple[str, str], list] = {}
    for t in sorted(takes, key=lambda t: (t.repeat or 0, t.started_at)):
        if t.prompt in prompts and t.target_model in models:
            cells.setdefault((t.prompt, t.target_model), []).append(t)
    return TakeGrid(prompts, models, cells)
