"""Comparison: the takes of one compare run, as a DataFrame, a pivot and a grid of players.

A view over the log (never a second copy): every property re-reads the experiment's takes, so
ratings given in a widget show up here at once.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Comparison:
    """Prompts × models × repeats of one experiment.

    Attributes:
        log: the ExperimentLog holding the takes.
        experiment: the experiment name (pass it to ``lab.compare`` to resume or extend).
        prompts: the voice prompts, in the order given.
        models: the models compared.
    """

    log: object = field(repr=False)
    experiment: str
    prompts: list[str]
    models: tuple[str, ...]
    interrupted: bool = False

    @property
    def takes(self) -> list:
        """The experiment's takes, ordered by prompt, model and repeat."""
        order = {p: i for i, p in enumerate(self.prompts)}
        models = {m: i for i, m in enumerate(self.models)}
        takes = [t for t in self.log.takes(experiment=self.experiment)
                 if t.prompt in order and t.model in models]
        return sorted(takes, key=lambda t: (order[t.prompt], models[t.model], t.repeat or 0, t.started_at))

    @property
    def df(self):
        """One row per take, with ``prompt_index`` (0-based, in the order given)."""
        df = self.log.to_dataframe(experiment=self.experiment)
        order = {p: i for i, p in enumerate(self.prompts)}
        df = df[df["voice_prompt"].isin(order) & df["model"].isin(self.models)].copy()
        df.insert(0, "prompt_index", df["voice_prompt"].map(order).astype("Int64"))
        return df.sort_values(["prompt_index", "model", "repeat"]).reset_index(drop=True)

    def pivot(self, values: str | None = None, aggfunc: str = "mean"):
        """Prompts × models. Without ``values``: takes ok / total per cell; else ``aggfunc`` of
        a column (e.g. ``"rating"`` or ``"m_median_f0_hz"``)."""
        import pandas as pd

        df = self.df
        if df.empty:
            return pd.DataFrame(index=pd.Index([], name="prompt_index"), columns=list(self.models))
        if values is None:
            df["ok"] = (df["status"] == "ok").astype(int)
            counts = df.pivot_table(index="prompt_index", columns="model", values="ok",
                                    aggfunc=["sum", "count"], observed=True)
            table = counts["sum"].astype(int).astype(str) + "/" + counts["count"].astype(int).astype(str) + " ok"
        else:
            table = df.pivot_table(index="prompt_index", columns="model", values=values,
                                   aggfunc=aggfunc, observed=True)
        table.columns.name = None
        return table

    def summary(self, *, variability: bool = True):
        """Per prompt and model: takes ok, mean rating, median pitch, speaking rate and loudness
        (if measured), and ``variability``: how different the repeats of the cell are (about 1
        = one clearly audible step; see ``analysis.variability``)."""
        df = self.df
        agg = {"take_id": "count", "rating": "mean"}
        for col in ("m_median_f0_hz", "m_speaking_rate", "m_loudness_lufs"):
            if col in df:
                agg[col] = "median"
        ok = df[df["status"] == "ok"]
        table = ok.groupby(["prompt_index", "model"], observed=True).agg(agg).rename(columns={"take_id": "takes_ok"})
        if variability and "m_median_f0_hz" in ok and ok["audio_path"].notna().any():
            table["variability"] = self._variability(ok)
        return table

    def _variability(self, ok):
        """variability of each prompt × model cell, aligned with the summary's index."""
        import pandas as pd

        from cosyvoice_lab.analysis.variability import speaker_embedding, variation

        ok = ok[ok["audio_path"].notna()]
        keys = [f"{p}|{m}" for p, m in zip(ok["prompt_index"], ok["model"])]
        embeddings = [speaker_embedding(self.log.get(t).audio) for t in ok["take_id"]]
        var = variation(ok.assign(_cell=keys), prompt_column="_cell", embeddings=embeddings)
        by_key = dict(zip(var["voice_prompt"], var["variability"]))  # the group column keeps that name
        index = pd.MultiIndex.from_tuples(dict.fromkeys(zip(ok["prompt_index"], ok["model"])))
        return pd.Series([by_key.get(f"{p}|{m}") for p, m in index], index=index, dtype=float)

    def __repr__(self):
        takes = self.takes
        ok = sum(t.ok for t in takes)
        return (f"<Comparison {self.experiment}: {len(self.prompts)} prompt(s) × {len(self.models)} model(s), "
                f"{ok}/{len(takes)} takes ok{' (interrupted)' if self.interrupted else ''}>")

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The grid: rows = prompts, columns = models, each cell the players of its repeats."""
        by_cell: dict[tuple[str, str], list] = {}
        for t in self.takes:
            by_cell.setdefault((t.prompt, t.model), []).append(t)
        head = "".join(f"<th>{html.escape(m)}</th>" for m in self.models)
        rows = []
        for i, prompt in enumerate(self.prompts):
            cells = "".join(f"<td style='vertical-align:top'>{_cell_html(by_cell.get((prompt, m), []))}</td>"
                            for m in self.models)
            rows.append(f"<tr><th style='text-align:left;max-width:22em;font-weight:normal'>"
                        f"<b>{i}</b>. {html.escape(prompt)}</th>{cells}</tr>")
        return (f"<div class='cosyvoice-comparison'><p><b>{html.escape(self.experiment)}</b></p>"
                f"<table><tr><th>prompt</th>{head}</tr>{''.join(rows)}</table></div>")


def _cell_html(takes: list) -> str:
    parts = []
    for t in takes:
        label = f"r{t.repeat}" if t.repeat is not None else ""
        if t.ok and t.audio_path:
            player = t.audio.html(label=t.voice_id or "")
            extra = f" ★{t.rating}" if t.rating else ""
            extra += " ✔ chosen" if t.chosen else ""
            parts.append(f"<div>{label}{extra}<br>{player}</div>")
        elif t.ok:
            parts.append(f"<div>{label} {html.escape(t.voice_id or '')} (no preview)</div>")
        else:
            parts.append(f"<div style='color:#b91c1c'>{label} {html.escape(t.status)}: "
                         f"{html.escape(t.error_code or '')}</div>")
    return "".join(parts) or "<i>—</i>"


# Public classes report the module users import them from.
Comparison.__module__ = "cosyvoice_lab"
