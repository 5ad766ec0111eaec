"""The questions an evidence table asks, and the test each is answered by (``table.py``
holds the table, its multiplicity rule, its verdicts and its view).

A question is one measure compared between two groups within blocks: models within prompts
(the comparison's question), or prompts within models (``evidence(prompts=True)``). Every
measured question is answered by ``analysis.inference.shift``: the stratified permutation test of
the difference of means within blocks (exact enumeration of the relabellings when there are at
most 20,000, else 9,999 seeded random ones), its interval by inverting the same test. Listening
ratings become one score per take first (:func:`rating_scores`: raters centred, averaged over
raters), so several raters' opinions of one voice count as one voice. Names come from
``analysis.names`` (the same everywhere). Cost is not measured but priced: its rows come from the
catalog (:func:`cost_rows`), exact, with no interval and no p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosyvoice_lab import catalog, html
from cosyvoice_lab.analysis import inference, names, stats

ROUND_WORDS = {"preference": "blind preference rating", "adherence": "adherence rating"}
PRIMARY_QUESTIONS = ("pitch", "speaking rate", "loudness", "predicted quality", "design latency")  # + ratings


@dataclass(frozen=True)
class Question:
    """One measure to compare: its plain name, unit, the word for "more of it", the frame holding
    it (one row per take, or per cell when ``per_cell``), the column, and whether it is primary."""

    word: str
    unit: str
    higher: str
    frame: Any
    column: str
    primary: bool = True
    per_cell: bool = False
    note: str = ""  # added to the question's label, e.g. "(3 raters)"

    def row(self, *, group: str, block: str, a, b, names: tuple[str, str], family: str) -> dict | None:
        """The test of ``b − a`` (values of ``group``) within ``block``, as a table row whose
        numbers the table's multiplicity rule fills in (``x_test``); None when nothing was
        measured. ``names``: what the table calls a and b (model names, "prompt 1")."""
        frame = self.frame
        if not frame[self.column].notna().any():
            return None
        values = frame.assign(_v=frame[self.column].astype(float))
        xa, xb = stats.frame_arrays(values, "_v", group=group, a=a, b=b, block=block)
        test = inference.shift(xa, xb)
        spread = stats.block_difference(xa, xb)
        short_a, short_b = (html.short_model(n) for n in names)
        return {
            "question": f"{short_b} vs {short_a}: {self.word}{f' {self.note}' if self.note else ''}",
            "family": family,
            "measure": self.word,
            "a": names[0],
            "b": names[1],
            "unit": self.unit,
            "n": int(test.n),
            "prompts": int(test.blocks),
            "x_test": test,
            "x_higher": self.higher,
            "x_sd": math.nan if self.per_cell else float(spread.sd),  # more repeats do not shrink per-cell noise
            "x_sd_df": float(spread.df),
            "x_level_a": float(np.nanmean(xa)) if np.isfinite(xa).any() else math.nan,
            "x_sizes": test.sizes,
        }


def ask(ok, group: str, *, cells=None, ratings=None, primary_measures=names.PRIMARY) -> list[Question]:
    """Every question the takes ``ok`` (status ok) can answer, primary first: the measurements
    (pitch in semitones; one predicted quality primary, the first the log holds), design latency,
    the log's own ratings and each listening round kind of ``ratings``; then the exploratory
    ones: every other measurement and the variation between repeats (``cells``)."""
    asked, quality = [], False
    for column in measure_columns(ok):
        word = names.name(column)
        primary = column in primary_measures and not (word == "predicted quality" and quality)
        quality |= primary and word == "predicted quality"
        frame = ok.assign(**{column: names.compared(ok, column)})
        asked.append(Question(word, names.unit(column), "higher", frame, column, primary=primary))
    if "latency_s" in ok:
        asked.append(Question("design latency", "s", "slower", ok, "latency_s"))
    if "rating" in ok and ok["rating"].notna().any():
        asked.append(Question("listener rating", "stars", "rated higher", ok, "rating"))
    asked.extend(_round_questions(ok, group, ratings))
    if cells is not None and len(cells) and "variability" in cells:
        asked.append(
            Question("variation between repeats", "", "more varied", cells, "variability", primary=False, per_cell=True)
        )
    return sorted(asked, key=lambda q: not q.primary)  # stable: primary first, each in its order


def _round_questions(ok, group: str, ratings) -> list[Question]:
    if ratings is None or not len(ratings):
        return []
    asked = []
    for kind in dict.fromkeys(ratings["kind"]) if "kind" in ratings else ["preference"]:
        of_kind = ratings[ratings["kind"] == kind] if "kind" in ratings else ratings
        of_kind = of_kind[of_kind["take_id"].isin(ok["take_id"]) & of_kind["rating"].notna()]
        if of_kind.empty:  # raters are centred on this comparison's takes only
            continue
        scores = rating_scores(of_kind).merge(ok[["take_id", "prompt_index", group]], on="take_id")
        raters = of_kind["rater"].nunique() if "rater" in of_kind else 1
        note = f"({raters} raters, centred per rater)" if raters > 1 else ""
        word = ROUND_WORDS.get(kind, f"{kind} rating")
        asked.append(Question(word, "stars", "rated higher", scores, "rating", note=note))
    return asked


def rating_scores(ratings):
    """One score per take from a ratings frame (``take_id``, ``rating``, optional ``rater``):
    :func:`analysis.stats.take_scores` over the take × rater table (a rater's ratings of one
    take in several rounds are averaged first). Returns a frame ``take_id``, ``rating``."""
    import pandas as pd

    rows = ratings[ratings["rating"].notna()]
    rater = rows["rater"].fillna("") if "rater" in rows else pd.Series("", index=rows.index)
    table = rows.assign(_rater=rater, rating=rows["rating"].astype(float)).pivot_table(
        index="take_id", columns="_rater", values="rating", aggfunc="mean"
    )
    scores = stats.take_scores(table.to_numpy(dtype=float)) if len(table) else np.array([])
    return pd.DataFrame({"take_id": table.index.astype(str), "rating": scores})


def measure_columns(df) -> list[str]:
    """The numeric ``m_*`` columns holding a value: the named ones first (``analysis.names``
    order), the rest by name."""
    import pandas as pd

    known = [c for c in names.MEASURES if c in df]
    others = sorted(c for c in df.columns if c.startswith("m_") and c not in names.MEASURES and c not in names.SKIPPED)
    numeric = [
        c for c in [*known, *others] if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    return [c for c in numeric if df[c].notna().any()]


def cost_rows(ok, group: str, a: str, b: str) -> list[dict]:
    """What the two models cost, from the catalog's prices (not measured: exact, no interval,
    no p): a design (free for CosyVoice, contract §3.5; 0.2 CNY a voice for the Qwen family,
    §12) and, when the catalog prices both models' synthesis, speaking 10,000 billed characters
    with a designed voice. None for a model of no design family, nor for a comparison without
    takes of both models."""
    fam_a, fam_b = catalog.family_of_model(a), catalog.family_of_model(b)
    if fam_a is None or fam_b is None or not ({a, b} <= set(ok[group].astype(str))):
        return []
    designs = int(ok[group].isin([a, b]).sum())
    design_a, design_b = (f.design_price.get("CNY", catalog.DESIGN_PRICE_CNY) for f in (fam_a, fam_b))
    short_a, short_b = html.short_model(a), html.short_model(b)
    priced = [("cost per design", design_a, design_b, "CNY", designs)]
    if a in catalog.MODELS and b in catalog.MODELS:  # the Qwen family's synthesis is not priced here
        price_a, price_b = (catalog.MODELS[m].price_cny_per_10k_chars for m in (a, b))
        priced.append(("speaking cost per 10,000 characters", price_a, price_b, "CNY", designs))
    rows = []
    for word, cost_a, cost_b, unit, n in priced:
        diff = cost_b - cost_a
        exact = "catalog prices: exact, no interval needed"
        if diff == 0:
            said = f"the same on both: {'free' if cost_a == 0 else f'{cost_a:.2f} {unit}'} ({exact})"
        else:
            cheaper = short_b if diff < 0 else short_a
            each = f"{cost_a:.2f} on {short_a}, {cost_b:.2f} on {short_b}"
            said = f"{cheaper} cheaper: {abs(diff):.2f} {unit} less ({each}; {exact})"
        rows.append(
            {
                "question": f"{short_b} vs {short_a}: {word}",
                "family": "cost",
                "measure": word,
                "a": a,
                "b": b,
                "estimate": diff,
                "unit": unit,
                "n": n,
                "prompts": 0,
                "verdict": said,
                "x_test": None,
            }
        )
    return rows
