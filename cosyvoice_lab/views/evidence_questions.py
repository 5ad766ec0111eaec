"""The questions an evidence table asks, and the one row each answers (``views.evidence`` holds
the table, its adjustment and its view).

A question is one measure compared between two groups within blocks: models within prompts
(the comparison's question), or prompts within models (``evidence(prompts=True)``). Listening
ratings become one score per take first (:func:`rating_scores`: raters centred, averaged over
raters), so several raters' opinions of one voice count as one voice. Cost is not measured but
priced: its rows come from the catalog (:func:`cost_rows`), exact, with no interval and no p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cosyvoice_lab import catalog, html
from cosyvoice_lab.analysis import stats

# measurement column -> (question word, unit)
KNOWN_MEASURES: dict[str, tuple[str, str]] = {
    "m_median_f0_hz": ("pitch", "st"),
    "m_speaking_rate": ("speaking rate", ""),
    "m_loudness_lufs": ("loudness", "LU"),
    "m_predicted_mos": ("predicted quality", "MOS"),
    "m_dnsmos_ovrl": ("predicted quality (DNSMOS)", "MOS"),
}
SKIPPED_MEASURES = ("m_duration_s", "m_measures_version")  # set by the preview text / the code, not the model
ROUND_WORDS = {"preference": "blind preference rating", "adherence": "adherence rating"}
_PITCH_REFERENCE_HZ = 100.0  # semitones are counted from here (only differences are shown)


@dataclass(frozen=True)
class Question:
    """One measure to compare: its words, the frame holding it (one row per take, or per cell
    when ``per_cell``), the column, and whether it is a secondary measure (``extra``)."""

    word: str
    unit: str
    higher: str
    frame: Any
    column: str
    extra: bool = False
    per_cell: bool = False
    note: str = ""  # added to the question's label, e.g. "(3 raters)"

    def row(self, *, group: str, block: str, a, b, names: tuple[str, str], family: str, effect) -> dict | None:
        """The answer for ``b − a`` (values of ``group``) within ``block``; None when nothing
        was measured. ``names``: what the table calls a and b (model names, "prompt 1")."""
        frame = self.frame
        if not frame[self.column].notna().any():
            return None
        values = frame.assign(_v=frame[self.column].astype(float))
        d = stats.frame_difference(
            values, "_v", group=group, a=a, b=b, block=block, method="t" if self.per_cell else "rank"
        )
        if self.per_cell:  # more repeats do not shrink this noise: nothing to plan
            d = replace(d, sd=math.nan)
        short_a, short_b = (html.short_model(n) for n in names)
        question = f"{short_b} vs {short_a}: {self.word}{f' {self.note}' if self.note else ''}"
        return {
            "question": question,
            "family": family,
            "measure": self.word,
            "a": names[0],
            "b": names[1],
            "estimate": d.estimate,
            "unit": self.unit,
            "ci_low": d.ci_low,
            "ci_high": d.ci_high,
            "n": int(d.n),
            "prompts": int(d.blocks),
            "p_value": d.p_value,
            "p_adjusted": math.nan,
            "verdict": "",
            "repeats_needed": None,
            "x_higher": self.higher,
            "x_sd": d.sd,
            "x_blocks": int(d.blocks),
            "x_effect": effect,
        }


def ask(ok, group: str, *, cells=None, ratings=None, main_measures=()) -> list[Question]:
    """Every question the takes ``ok`` (status ok) can answer, in the table's order: the
    measurements (pitch in semitones), variation between repeats (``cells``), design latency,
    the log's own ratings, and each listening round kind of ``ratings``."""
    asked = []
    for column in measure_columns(ok):
        word, unit = KNOWN_MEASURES.get(column, (column.removeprefix("m_").replace("_", " "), ""))
        frame = ok
        if column == "m_median_f0_hz":
            hz = ok[column].astype(float)
            frame = ok.assign(m_median_f0_hz=12 * np.log2(hz.where(hz > 0) / _PITCH_REFERENCE_HZ))
        asked.append(Question(word, unit, "higher", frame, column, extra=column not in main_measures))
    if cells is not None and len(cells) and "variability" in cells:
        asked.append(Question("variation between repeats", "", "more varied", cells, "variability", per_cell=True))
    if "latency_s" in ok:
        asked.append(Question("design latency", "s", "slower", ok, "latency_s"))
    if "rating" in ok and ok["rating"].notna().any():
        asked.append(Question("rating", "", "rated higher", ok, "rating"))
    if ratings is not None and len(ratings):
        for kind in dict.fromkeys(ratings["kind"]) if "kind" in ratings else ["preference"]:
            of_kind = ratings[ratings["kind"] == kind] if "kind" in ratings else ratings
            of_kind = of_kind[of_kind["take_id"].isin(ok["take_id"]) & of_kind["rating"].notna()]
            if of_kind.empty:  # raters are centred on this comparison's takes only
                continue
            scores = rating_scores(of_kind).merge(ok[["take_id", "prompt_index", group]], on="take_id")
            raters = of_kind["rater"].nunique() if "rater" in of_kind else 1
            note = f"({raters} raters, centred per rater)" if raters > 1 else ""
            word = ROUND_WORDS.get(kind, f"{kind} rating")
            asked.append(Question(word, "", "rated higher", scores, "rating", note=note))
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
    """The numeric ``m_*`` columns holding a value: the known ones first, the rest by name."""
    import pandas as pd

    known = [c for c in KNOWN_MEASURES if c in df]
    others = sorted(
        c for c in df.columns if c.startswith("m_") and c not in KNOWN_MEASURES and c not in SKIPPED_MEASURES
    )
    numeric = [
        c for c in [*known, *others] if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    return [c for c in numeric if df[c].notna().any()]


def cost_rows(ok, group: str, a: str, b: str) -> list[dict]:
    """What the two models cost, from the catalog's prices (not measured: exact, no interval,
    no p): a design (free on both: only synthesis is billed, contract §3.5) and speaking
    10,000 billed characters with a designed voice. None for a model the catalog does not price,
    nor for a comparison without takes of both models."""
    if a not in catalog.MODELS or b not in catalog.MODELS or not ({a, b} <= set(ok[group].astype(str))):
        return []
    designs = int(ok[group].isin([a, b]).sum())
    price_a, price_b = (catalog.MODELS[m].price_cny_per_10k_chars for m in (a, b))
    short_a, short_b = html.short_model(a), html.short_model(b)
    priced = [
        ("cost per design", catalog.DESIGN_PRICE_CNY, catalog.DESIGN_PRICE_CNY, "CNY", designs),
        ("speaking cost per 10,000 characters", price_a, price_b, "CNY", designs),
    ]
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
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n": n,
                "prompts": 0,
                "p_value": math.nan,
                "p_adjusted": math.nan,
                "verdict": said,
                "repeats_needed": None,
                "x_higher": "",
                "x_sd": math.nan,
                "x_blocks": 0,
                "x_effect": None,
            }
        )
    return rows
