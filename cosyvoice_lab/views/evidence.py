"""Evidence: what a comparison found, one question per row, each with its uncertainty.

``Comparison.evidence()`` builds it; :func:`evidence` builds it from any DataFrame of takes
(``Comparison.df``'s columns). Every question compares two models within prompts (prompts are
blocks, see ``analysis.stats``): pitch (semitones), speaking rate, loudness, every other
measurement the log holds (``m_*`` columns, predicted quality among them), variation between
repeats, design latency, and ratings (per listening round kind when given). The p-values are
adjusted together (Holm) because the questions are asked at once; a verdict names a model only
when its adjusted p is below 5 %. For a question still open, ``repeats_needed`` says how many
repeats per prompt and model would find a difference of the size asked about (``effect``) or,
by default, of the size observed, at 80 % power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cosyvoice_lab import html
from cosyvoice_lab.analysis import stats

COLUMNS = (
    "question",
    "family",
    "measure",
    "a",
    "b",
    "estimate",
    "unit",
    "ci_low",
    "ci_high",
    "n",
    "prompts",
    "p_value",
    "p_adjusted",
    "verdict",
    "repeats_needed",
)
# measurement column -> (question word, unit, how to turn a value into the compared scale)
KNOWN_MEASURES: dict[str, tuple[str, str]] = {
    "m_median_f0_hz": ("pitch", "st"),
    "m_speaking_rate": ("speaking rate", ""),
    "m_loudness_lufs": ("loudness", "LU"),
    "m_predicted_mos": ("predicted quality", "MOS"),
    "m_dnsmos_ovrl": ("predicted quality (DNSMOS)", "MOS"),
}
# the measurements a comparison is run for: the prompt's words (pitch, pace, loudness) and
# predicted quality (whichever predictor the log holds)
MAIN_MEASURES = (
    "m_median_f0_hz",
    "m_speaking_rate",
    "m_loudness_lufs",
    "m_predicted_mos",
    "m_dnsmos_ovrl",
)
SKIPPED_MEASURES = ("m_duration_s", "m_measures_version")  # set by the preview text / the code, not the model
_PLANNING = ("x_higher", "x_sd", "x_blocks", "x_effect")  # working columns, dropped
_PITCH_REFERENCE_HZ = 100.0  # semitones are counted from here (only differences are shown)


@dataclass
class Evidence:
    """The answers of one comparison.

    Attributes:
        table: one row per question (see :data:`COLUMNS`): ``estimate`` is ``b − a`` in
            ``unit``, ``ci_low``/``ci_high`` its 95 % interval, ``n`` the takes (or cells, or
            choices) it rests on, ``prompts`` the prompts holding both models, ``p_adjusted``
            Holm-adjusted within its ``family`` of questions, ``verdict`` the plain sentence,
            ``repeats_needed`` per prompt and model for an open question.
        experiment: the experiment it came from.
    """

    table: Any
    experiment: str = ""
    effect: Mapping[str, float] = field(default_factory=dict)

    @property
    def found(self):
        """The rows whose verdict names a model (adjusted p below 5 %)."""
        return self.table[self.table["p_adjusted"] < stats.ALPHA]

    def next_steps(self) -> list[str]:
        """For each open question: how many repeats per cell would settle it."""
        import pandas as pd

        lines = []
        for row in self.table.itertuples():
            if row.p_adjusted < stats.ALPHA or pd.isna(row.repeats_needed):
                continue
            size = self.effect.get(row.measure, abs(row.estimate))
            have = row.n // (2 * row.prompts) if row.prompts else 0  # repeats per cell so far (about)
            more = int(row.repeats_needed) - have
            difference = f"a difference of {size:.3g}{' ' + row.unit if row.unit else ''}"
            if more <= 0:  # already enough for the size asked about: it is unlikely to be there
                lines.append(
                    f"{row.question}: the {have} repeats per prompt and model so far would have found "
                    f"{difference} (80 % power): a difference that large is unlikely"
                )
                continue
            draw = f": lab.compare(..., experiment={self.experiment!r}, repeats={more}, new_repeats=True)"
            lines.append(
                f"{row.question}: {int(row.repeats_needed)} repeats per prompt and model would find "
                f"{difference} (80 % power){draw if self.experiment else ''}"
            )
        return lines

    def __repr__(self) -> str:
        found = len(self.found)
        return f"<Evidence {self.experiment}: {len(self.table)} question(s), {found} with evidence>"

    def to_text(self) -> str:
        """One line per question (what ``print`` shows)."""
        return "\n".join(
            [repr(self), *(f"  {q}: {v}" for q, v in zip(self.table["question"], self.table["verdict"], strict=True))]
        )

    __str__ = to_text

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The table of questions with estimate, interval, n, adjusted p and verdict."""
        rows = [
            {
                "question": r.question,
                "estimate": _fmt(r.estimate, r.unit),
                "interval": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                "n": r.n,
                "p": _fmt_p(r.p_adjusted),
                "verdict": r.verdict,
                "found": bool(r.p_adjusted < stats.ALPHA),
            }
            for r in self.table.itertuples()
        ]
        return html.evidence_table(self.experiment, rows, self.next_steps())


def _fmt(x: float, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.3g}{' ' + unit if unit else ''}"


def _fmt_p(p: float) -> str:
    return "—" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def evidence(
    df,
    models: Sequence[str] | None = None,
    *,
    experiment: str = "",
    cells: Any = None,
    ratings: Any = None,
    effect: Mapping[str, float] | None = None,
    main_measures: Sequence[str] | None = None,
) -> Evidence:
    """The evidence table from one row per take.

    Args:
        df: takes with ``prompt_index``, the model (``target_model`` or ``model``), ``status``
            and the measured columns (``m_*``, ``latency_s``, ``rating``).
        models: the models compared, the first against each other (default: in order of
            appearance). Estimates are ``other − first``.
        cells: optional per-cell values (one row per prompt × model, columns ``prompt_index``,
            the model column and ``variability``): variation between repeats.
        ratings: optional listening-round ratings: ``take_id``, ``rating`` and ``kind``
            ("preference" / "adherence"); one question per kind.
        effect: measure → the difference size to plan repeats for (default: the one observed).
        main_measures: the measurement columns asked about first (default
            :data:`MAIN_MEASURES`; family ``"main"``, with latency, variation and ratings);
            every other ``m_*`` column is a question of the family ``"more measures"``. Holm
            adjusts within each family, so that twenty secondary measures do not drown the few
            questions a comparison is run for.
    """
    import pandas as pd

    group = "target_model" if "target_model" in df else "model"
    main_measures = MAIN_MEASURES if main_measures is None else tuple(main_measures)
    models = list(models) if models is not None else list(dict.fromkeys(df[group]))
    ok = df[df["status"].astype(str) == "ok"].copy() if "status" in df else df.copy()
    questions: list[tuple[str, str, str, Any, str]] = []  # (measure, unit, higher word, frame, column)
    measured = _measure_columns(ok)
    extra = set(measured) - set(main_measures)
    for column in measured:
        word, unit = KNOWN_MEASURES.get(column, (column.removeprefix("m_").replace("_", " "), ""))
        frame = ok
        if column == "m_median_f0_hz":
            frame = ok.assign(
                m_median_f0_hz=12 * np.log2(ok[column].astype(float).where(ok[column] > 0) / _PITCH_REFERENCE_HZ)
            )
        questions.append((word, unit, "higher", frame, column))
    if cells is not None and len(cells) and "variability" in cells:
        questions.append(("variation between repeats", "", "more varied", cells, "variability"))
    if "latency_s" in ok:
        questions.append(("design latency", "s", "slower", ok, "latency_s"))
    if "rating" in ok and ok["rating"].notna().any():
        questions.append(("rating", "", "rated higher", ok, "rating"))
    if ratings is not None and len(ratings):
        joined = ratings.merge(ok[["take_id", "prompt_index", group]], on="take_id")
        for kind in dict.fromkeys(joined["kind"]):
            word = {"preference": "blind preference rating", "adherence": "adherence rating"}.get(
                kind, f"{kind} rating"
            )
            questions.append((word, "", "rated higher", joined[joined["kind"] == kind], "rating"))
    rows = []
    first = models[0] if models else ""
    for other in models[1:]:
        for word, unit, higher, frame, column in questions:
            if not frame[column].notna().any():  # nothing measured: no question
                continue
            per_cell = frame is cells  # one value per cell: a paired t over prompts
            method = "t" if per_cell else "rank"
            d = stats.frame_difference(
                frame.assign(_v=frame[column].astype(float)), "_v", group=group, a=first, b=other, method=method
            )
            if per_cell:  # more repeats do not shrink this noise: nothing to plan
                d = replace(d, sd=math.nan)
            family = "more measures" if column in extra else "main"
            rows.append(_row(word, unit, higher, first, other, d, (effect or {}).get(word), family))
    table = pd.DataFrame(rows, columns=[*COLUMNS, *_PLANNING])
    if len(table):
        for family in dict.fromkeys(table["family"]):  # Holm within each family of questions
            mask = table["family"] == family
            table.loc[mask, "p_adjusted"] = stats.holm(table.loc[mask, "p_value"].to_numpy(dtype=float))
        table["verdict"] = [
            stats.verdict(
                r.estimate,
                r.ci_low,
                r.ci_high,
                r.p_adjusted,
                a=html.short_model(r.a),
                b=html.short_model(r.b),
                measure=r.measure,
                unit=r.unit,
                higher=r.x_higher,
                questions=int((table["family"] == r.family).sum()),
            )
            for r in table.itertuples()
        ]
        table["repeats_needed"] = pd.array(
            [
                None
                if r.p_adjusted < stats.ALPHA
                else _plan(r.x_effect if r.x_effect else r.estimate, r.x_sd, r.x_blocks)
                for r in table.itertuples()
            ],
            dtype="Int64",
        )
    table = table.drop(columns=[*_PLANNING])
    return Evidence(table, experiment, dict(effect or {}))


def _measure_columns(df) -> list[str]:
    known = [c for c in KNOWN_MEASURES if c in df]
    others = sorted(
        c for c in df.columns if c.startswith("m_") and c not in KNOWN_MEASURES and c not in SKIPPED_MEASURES
    )
    numeric = [c for c in [*known, *others] if _numeric(df[c])]
    return [c for c in numeric if df[c].notna().any()]


def _numeric(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def _row(
    word: str, unit: str, higher: str, a: str, b: str, d: stats.Difference, effect: float | None, family: str
) -> dict:
    question = f"{html.short_model(b)} vs {html.short_model(a)}: {word}"
    return {
        "question": question,
        "family": family,
        "measure": word,
        "a": a,
        "b": b,
        "estimate": d.estimate,
        "unit": unit,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "n": int(d.n),
        "prompts": int(d.blocks),
        "p_value": d.p_value,
        "p_adjusted": math.nan,
        "verdict": "",
        "repeats_needed": None,
        "x_higher": higher,
        "x_sd": d.sd,
        "x_blocks": int(d.blocks),
        "x_effect": effect,
    }


def _plan(effect: float, sd: float, blocks: int) -> int | None:
    if effect is None or sd is None or any(math.isnan(x) for x in (effect, sd)):
        return None
    return stats.repeats_needed(effect, sd, blocks)
