"""Evidence: what a comparison found, one question per row, each with its uncertainty.

``Comparison.evidence()`` builds it; :func:`evidence` builds it from any DataFrame of takes
(``Comparison.df``'s columns). Every question compares two models within prompts (prompts are
blocks, see ``analysis.stats``): pitch (semitones), speaking rate, loudness, every other
measurement the log holds (``m_*`` columns, predicted quality among them), variation between
repeats, design latency, and ratings (per listening round kind when given, several raters
accounted for). With ``prompts=True`` the same questions compare the prompts with each other,
within models. The p-values are adjusted together (Holm, within each family of questions)
because the questions are asked at once; a verdict names a model (or prompt) only when its
adjusted p is below 5 %. Cost comes from the catalog's prices: exact, no interval. For a
question still open, ``repeats_needed`` says how many repeats per prompt and model would find a
difference of the size asked about (``effect``) or, by default, of the size observed, at 80 %
power; ``Evidence.next_steps()`` says how to draw them (``lab.compare(..., new_repeats=True)``).
The questions and their rows are built in ``views.evidence_questions``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import html
from cosyvoice_lab.analysis import stats
from cosyvoice_lab.views import evidence_questions as questions

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
# the measurements a comparison is run for: the prompt's words (pitch, pace, loudness) and
# predicted quality (whichever predictor the log holds)
MAIN_MEASURES = (
    "m_median_f0_hz",
    "m_speaking_rate",
    "m_loudness_lufs",
    "m_predicted_mos",
    "m_dnsmos_ovrl",
)
KNOWN_MEASURES = questions.KNOWN_MEASURES
SKIPPED_MEASURES = questions.SKIPPED_MEASURES
_PLANNING = ("x_higher", "x_sd", "x_blocks", "x_effect")  # working columns, dropped


@dataclass
class Evidence:
    """The answers of one comparison.

    Attributes:
        table: one row per question (see :data:`COLUMNS`): ``estimate`` is ``b − a`` in
            ``unit``, ``ci_low``/``ci_high`` its 95 % interval, ``n`` the takes (or cells, or
            choices) it rests on, ``prompts`` the blocks holding both (prompts; models for the
            prompt questions), ``p_adjusted`` Holm-adjusted within its ``family`` ("main",
            "more measures", "cost" (priced: no p), "prompts", "prompts: more measures"),
            ``verdict`` the plain sentence,
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
        rows = [{"question": r.question, **result_cells(r)} for r in self.table.itertuples()]
        return html.evidence_table(self.experiment, rows, self.next_steps())


def result_cells(r: Any) -> dict[str, Any]:
    """The cells an HTML table shows for one judged difference (a row of :data:`COLUMNS`, or of a
    sweep's table): estimate with its unit, interval, n, adjusted p, verdict, and whether it counts."""
    return {
        "estimate": _fmt(r.estimate, r.unit),
        "interval": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
        "n": r.n,
        "p": _fmt_p(r.p_adjusted),
        "verdict": r.verdict,
        "found": bool(r.p_adjusted < stats.ALPHA),
    }


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
    prompts: bool = False,
) -> Evidence:
    """The evidence table from one row per take.

    Args:
        df: takes with ``prompt_index``, the model (``target_model`` or ``model``), ``status``
            and the measured columns (``m_*``, ``latency_s``, ``rating``).
        models: the models compared, the first against each other (default: in order of
            appearance). Estimates are ``other − first``.
        cells: optional per-cell values (one row per prompt × model, columns ``prompt_index``,
            the model column and ``variability``): variation between repeats.
        ratings: optional listening-round ratings (``log.ratings()``): ``take_id``, ``rating``,
            ``kind`` ("preference" / "adherence") and ``rater``; one question per kind. Each
            take gets one score (every rater's ratings centred on that rater's mean, then
            averaged over the raters: ``analysis.stats.take_scores``), so a harsh rater does
            not pass for a worse model and three raters of one take count as one take.
        effect: measure → the difference size to plan repeats for (default: the one observed).
        main_measures: the measurement columns asked about first (default
            :data:`MAIN_MEASURES`; family ``"main"``, with latency, variation and ratings);
            every other ``m_*`` column is a question of the family ``"more measures"``. Holm
            adjusts within each family, so that twenty secondary measures do not drown the few
            questions a comparison is run for.
        prompts: also compare the prompts with each other (every pair, ``later − earlier``),
            within models (models are the blocks), on the same questions: families
            ``"prompts"`` and ``"prompts: more measures"``, Holm-adjusted apart from the models'.

    The family ``"cost"`` prices each model pair from the catalog (a design, and speaking
    10,000 characters): exact, so no interval and no p.
    """
    import pandas as pd

    group = "target_model" if "target_model" in df else "model"
    main_measures = MAIN_MEASURES if main_measures is None else tuple(main_measures)
    models = list(models) if models is not None else list(dict.fromkeys(df[group]))
    ok = df[df["status"].astype(str) == "ok"].copy() if "status" in df else df.copy()
    asked = questions.ask(ok, group, cells=cells, ratings=ratings, main_measures=main_measures)
    effect = dict(effect or {})
    rows: list[dict | None] = []
    first = models[0] if models else ""
    for other in models[1:]:
        for q in asked:
            family = "more measures" if q.extra else "main"
            rows.append(
                q.row(group=group, block="prompt_index", a=first, b=other, names=(first, other), family=family,
                      effect=effect.get(q.word))
            )  # fmt: skip
        rows.extend(questions.cost_rows(ok, group, first, other))
    if prompts:
        indices = sorted(int(i) for i in ok["prompt_index"].dropna().unique()) if "prompt_index" in ok else []
        for i, j in itertools.combinations(indices, 2):
            for q in asked:
                family = "prompts: more measures" if q.extra else "prompts"
                rows.append(
                    q.row(group="prompt_index", block=group, a=i, b=j, names=(f"prompt {i}", f"prompt {j}"),
                          family=family, effect=effect.get(q.word))
                )  # fmt: skip
    table = pd.DataFrame([r for r in rows if r is not None], columns=[*COLUMNS, *_PLANNING])
    if len(table):
        _adjust(table)
    table = table.drop(columns=[*_PLANNING])
    return Evidence(table, experiment, effect)


def _adjust(table) -> None:
    """Holm within each family, then the verdicts and the repeats each open question needs."""
    import pandas as pd

    for family in dict.fromkeys(table["family"]):
        mask = table["family"] == family
        table.loc[mask, "p_adjusted"] = stats.holm(table.loc[mask, "p_value"].to_numpy(dtype=float))
    priced = table["family"] == "cost"  # its verdicts are written with its rows
    table.loc[~priced, "verdict"] = [
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
        for r in table[~priced].itertuples()
    ]
    table["repeats_needed"] = pd.array(
        [
            None
            if r.family == "cost" or r.p_adjusted < stats.ALPHA
            else _plan(r.x_effect if r.x_effect else r.estimate, r.x_sd, r.x_blocks)
            for r in table.itertuples()
        ],
        dtype="Int64",
    )


def _plan(effect: float, sd: float, blocks: int) -> int | None:
    if effect is None or sd is None or any(math.isnan(x) for x in (effect, sd)):
        return None
    return stats.repeats_needed(effect, sd, blocks)
