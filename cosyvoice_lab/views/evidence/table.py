"""Evidence: what a comparison found, one question per row, each with its uncertainty.

``Comparison.evidence()`` builds it; :func:`evidence` builds it from any DataFrame of takes
(``Comparison.df``'s columns). Every question compares two models within prompts (prompts are
blocks) and is answered by one procedure, ``analysis.inference.shift``: a stratified permutation
test of the difference of means within prompts (exact over every relabelling in small designs,
9,999 seeded random ones in larger: the same table every time), its interval by inverting that
same test. The estimate, interval, p-value and verdict therefore cannot disagree, on continuous
data or on tied 1-5 star ratings.

The questions come in families, each adjusted on its own (Holm): **primary**, declared up front
and shown first (pitch, speaking rate, loudness, predicted quality, design latency and the
listener ratings); **exploratory** (every other measurement, the variation between repeats), shown
folded and never counted in :attr:`Evidence.found`; ``prompts`` when asked (the same questions
between prompts, within models); and ``cost`` (catalog prices: exact, no interval, no p). Each
row's interval is read at the level Holm's step-down rule gives it (``level``: 0.05/6 for the
first of six primary questions, ...), and its verdict names a side exactly when that interval
excludes 0: the side comes from the data, and a tie names none. A design too small to ever reach
its level says so in words, with the repeats it needs.

For an open primary question, ``repeats_needed`` is planned for the smallest difference that
matters (``analysis.planning.Matters``: 1 st of pitch, 10 % of speaking rate, 1 LU, 0.2 MOS, 0.5
stars, 0.5 s; ``effect`` overrides any) at the row's level, with the pilot's spread taken as
uncertain; ``Evidence.next_steps()`` says it in words and how to draw them. Blind preference
rounds are also read as preferences (:attr:`Evidence.preferences`, ``preferences.py`` beside this one).
The questions and their tests are built in ``questions.py`` beside this one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosyvoice_lab import html
from cosyvoice_lab.analysis import inference, names, planning, stats
from cosyvoice_lab.views.evidence import questions
from cosyvoice_lab.views.evidence.preferences import Preferences, preferences

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
    "level",
    "n",
    "prompts",
    "p_value",
    "p_adjusted",
    "verdict",
    "found",
    "repeats_needed",
)
PRIMARY = "primary"
EXPLORATORY = "exploratory"
MAIN_MEASURES = names.PRIMARY  # the measurement columns a comparison is run for


@dataclass
class Evidence:
    """The answers of one comparison.

    Attributes:
        table: one row per question (see :data:`COLUMNS`), primary first: ``estimate`` is
            ``b − a`` in ``unit``; ``ci_low``/``ci_high`` its interval at ``level`` (the level
            Holm's rule gives the row within its ``family``: a 1 − level interval); ``n`` the
            takes (or cells) it rests on; ``prompts`` the blocks holding both; ``p_value`` the
            permutation test's, ``p_adjusted`` Holm-adjusted within the family; ``verdict`` the
            plain sentence; ``found`` whether a primary question names a side; ``repeats_needed``
            per prompt and model for an open primary question (the smallest difference that matters).
        experiment: the experiment it came from.
        matters: the smallest differences that matter, the planning used.
        steps: what :meth:`next_steps` says.
        preferences: the blind preference rounds read as choices (None without any).
        raters: a listening panel's raters with their consistency and whether they were
            included (``panel.quality.progress``; None outside a panel).
    """

    table: Any
    experiment: str = ""
    matters: planning.Matters = field(default_factory=planning.Matters)
    steps: list[str] = field(default_factory=list)
    preferences: Preferences | None = None
    raters: Any = None

    @property
    def found(self):
        """The primary questions whose verdict names a side."""
        return self.table[self.table["found"].astype(bool)]

    @property
    def primary(self):
        """The primary questions (and the priced cost rows)."""
        return self.table[self.table["family"].isin([PRIMARY, "cost"])]

    @property
    def exploratory(self):
        """Every other question: looked at, not counted."""
        return self.table[~self.table["family"].isin([PRIMARY, "cost"])]

    def next_steps(self) -> list[str]:
        """For each open primary question, in plain words: whether a difference that matters is
        already ruled out, or how many repeats per prompt and model would find one (and how)."""
        return list(self.steps)

    def __repr__(self) -> str:
        primary = int((self.table["family"] == PRIMARY).sum())
        return (
            f"<Evidence {self.experiment}: {primary} primary question(s), {len(self.found)} with evidence; "
            f"{len(self.exploratory)} exploratory>"
        )

    def to_text(self) -> str:
        """One line per question (what ``print`` shows), primary first."""
        lines = [repr(self)]
        for title, part in (("", self.primary), ("exploratory (not counted): ", self.exploratory)):
            lines += [f"  {title}{q}: {v}" for q, v in zip(part["question"], part["verdict"], strict=True)]
        return "\n".join(lines)

    __str__ = to_text

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The primary questions, then the exploratory ones folded, then what to do next."""
        primary = [{"question": r.question, **result_cells(r)} for r in self.primary.itertuples()]
        rest = [{"question": r.question, **result_cells(r)} for r in self.exploratory.itertuples()]
        prefs = self.preferences.rows() if self.preferences is not None else []
        return html.render(
            "evidence.html.j2",
            experiment=self.experiment,
            rows=primary,
            exploratory=rest,
            preferences=prefs,
            raters=self.rater_rows(),
            next_steps=self.next_steps(),
        )

    def rater_rows(self) -> list[dict[str, str]]:
        """The panel's raters as the HTML shows them (each left out one says so)."""
        if self.raters is None:
            return []
        return [
            {
                "rater": r.rater,
                "consistency": "not measured" if math.isnan(r.consistency) else f"{r.consistency:.2f}",
                "repeats": str(r.repeats),
                "method": r.method,
                "included": "included" if r.included else "left out: below the consistency threshold",
            }
            for r in self.raters.itertuples()
        ]


def result_cells(r: Any) -> dict[str, Any]:
    """The cells an HTML table shows for one judged difference (a row of :data:`COLUMNS`, or of a
    sweep's table): estimate with its unit, interval with its confidence, n, adjusted p, verdict,
    and whether it names a side."""
    level = getattr(r, "level", math.nan)
    sure = "" if level is None or math.isnan(level) else f" ({confidence(level)})"
    return {
        "estimate": _fmt(r.estimate, r.unit),
        "interval": "—" if math.isnan(r.ci_low) else f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]{sure}",
        "n": r.n,
        "p": _fmt_p(r.p_adjusted),
        "verdict": r.verdict,
        "found": bool(r.found),
    }


def confidence(level: float) -> str:
    """A level as the interval's confidence: 0.05 -> "95 %", 0.05/6 -> "99.2 %"."""
    return f"{100 * (1 - level):.3g} %"


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
    matters: planning.Matters | None = None,
    main_measures: Sequence[str] | None = None,
    prompts: bool = False,
) -> Evidence:
    """The evidence table from one row per take.

    Args:
        df: takes with ``prompt_index``, ``target_model``, ``status``
            and the measured columns (``m_*``, ``latency_s``, ``rating``).
        models: the models compared, the first against each other (default: in order of
            appearance). Estimates are ``other − first``.
        cells: optional per-cell values (one row per prompt × model, columns ``prompt_index``,
            the model column and ``variability``): variation between repeats (exploratory).
        ratings: optional listening-round ratings (``log.ratings.to_dataframe()``): ``take_id``, ``rating``,
            ``kind`` ("preference" / "adherence") and ``rater``; one primary question per kind.
            Each take gets one score (every rater's ratings centred on that rater's mean, then
            averaged over the raters: ``analysis.stats.take_scores``), so a harsh rater does not
            pass for a worse model and three raters of one take count as one take. Preference
            rounds are also read as choices (:attr:`Evidence.preferences`).
        effect: plain measure name → the smallest difference that matters for planning (e.g.
            ``{"pitch": 0.5}``); every other measure keeps its default (``planning.Matters``).
        matters: all the smallest differences at once (default ``planning.Matters()``).
        main_measures: the measurement columns that are primary (default :data:`MAIN_MEASURES`);
            every other ``m_*`` column is exploratory.
        prompts: also compare the prompts with each other (every pair, ``later − earlier``),
            within models (models are the blocks): families ``"prompts"`` and
            ``"prompts: exploratory"``, adjusted apart from the models' and not counted as found.
    """
    group = "target_model"
    models = list(models) if models is not None else list(dict.fromkeys(df[group]))
    ok = df[df["status"].astype(str) == "ok"].copy() if "status" in df else df.copy()
    primary = names.PRIMARY if main_measures is None else tuple(main_measures)
    asked = questions.ask(ok, group, cells=cells, ratings=ratings, primary_measures=primary)
    matters = (matters or planning.Matters()).updated(dict(effect or {}))
    rows: list[dict | None] = []
    first = models[0] if models else ""
    for other in models[1:]:
        for q in asked:
            family = PRIMARY if q.primary else EXPLORATORY
            rows.append(q.row(group=group, block="prompt_index", a=first, b=other, names=(first, other), family=family))
        rows.extend(questions.cost_rows(ok, group, first, other))
    if prompts and "prompt_index" in ok:
        indices = sorted(int(i) for i in ok["prompt_index"].dropna().unique())
        for i, j in itertools.combinations(indices, 2):
            for q in asked:
                family = "prompts" if q.primary else "prompts: exploratory"
                pair = (f"prompt {i}", f"prompt {j}")
                rows.append(q.row(group="prompt_index", block=group, a=i, b=j, names=pair, family=family))
    kept = sorted((r for r in rows if r is not None), key=lambda r: r["family"] != PRIMARY)
    steps = _judge(kept, matters, experiment)
    table = _frame(kept)
    return Evidence(table, experiment, matters, steps, preferences(ok, ratings, models, group))


def _frame(rows: list[dict]):
    import pandas as pd

    table = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=list(COLUMNS))
    table["found"] = table["found"].fillna(False).astype(bool)
    table["repeats_needed"] = pd.array(table["repeats_needed"], dtype="Int64")
    for column in ("estimate", "ci_low", "ci_high", "level", "p_value", "p_adjusted"):
        table[column] = table[column].astype(float)
    return table


def _judge(rows: list[dict], matters: planning.Matters, experiment: str) -> list[str]:
    """Each family's Holm levels, then every row's numbers, verdict and plan (in place); returns
    what to do next."""
    steps = []
    for family in dict.fromkeys(r["family"] for r in rows):
        tested = [r for r in rows if r["family"] == family and r["x_test"] is not None]
        judged = inference.judge_family([r["x_test"] for r in tested], stats.ALPHA)
        for r, fields in zip(tested, judged, strict=True):
            said, side = fields.pop("said"), fields.pop("side")
            r.update(fields, verdict=sentence(r, said), found=family == PRIMARY and side != 0)
            if family == PRIMARY and int(said.side) == 0 and not math.isnan(r["estimate"]):
                need, step = plan(r, said, matters, experiment)
                r["repeats_needed"] = need
                steps += [step] if step else []
    return steps


def sentence(r: Mapping[str, Any], said: inference.Inference) -> str:
    """The plain sentence for one row, e.g. ``"v3.5-flash higher pitch: +2.8 st [1.9, 3.7]"``:
    the side the interval names, or "no evidence either way", or why nothing can be found yet."""
    if math.isnan(float(said.estimate)):
        return "not enough data"
    unit = r["unit"]
    if not bool(said.reachable):
        reach = _reach(r, float(said.level))
        return f"cannot be found with this design: {reach} (observed {_fmt(float(said.estimate), unit)})"
    low, high, est = float(said.ci_low), float(said.ci_high), float(said.estimate)
    if int(said.side) == 0:
        return f"{stats.NO_EVIDENCE}: {_numbers(est, low, high, unit)}"
    a, b = html.short_model(str(r["a"])), html.short_model(str(r["b"]))
    winner, shown = (b, (est, low, high)) if int(said.side) > 0 else (a, (-est, -high, -low))
    return f"{winner} {r['x_higher']} {r['measure']}: {_numbers(*shown, unit)}"


def _reach(r: Mapping[str, Any], level: float) -> str:
    sizes = r["x_sizes"]
    have = min(min(s) for s in sizes) if sizes else 0
    if have == 1 and r.get("x_sd") is not None and math.isnan(r["x_sd"]):  # one value per cell: prompts count
        return "more prompts are needed before anything can be found"
    need = inference.repeats_to_reach(len(sizes), level, start=have + 1)
    if need is None:
        return "more prompts are needed before anything can be found"
    return f"{need} repeats per prompt and model are needed before anything can be found"


def _numbers(estimate: float, low: float, high: float, unit: str) -> str:
    width = high - low
    n = 2 if not math.isfinite(width) or width <= 1e-9 else int(min(4, max(0, 1 - math.floor(math.log10(width)))))
    return f"{estimate:+.{n}f}{' ' + unit if unit else ''} [{low:.{n}f}, {high:.{n}f}]"


def plan(r: Mapping[str, Any], said: inference.Inference, matters: planning.Matters, experiment: str):
    """``(repeats per prompt and model, the sentence)`` for one open primary row."""
    size = matters.of(r["measure"], r.get("x_level_a", math.nan))
    sizes = r["x_sizes"]
    if not sizes or not math.isfinite(size) or size <= 0:
        return None, None
    have = min(min(s) for s in sizes)
    unit = f" {r['unit']}" if r["unit"] else ""
    what = f"{r['question']}: a difference of {size:.3g}{unit} (the smallest that matters)"
    low, high = float(said.ci_low), float(said.ci_high)
    if bool(said.reachable) and -size < low and high < size:
        return None, f"{what} is ruled out: the interval [{low:.3g}, {high:.3g}]{unit} lies within ±{size:.3g}"
    need = planning.repeats_needed(size, r["x_sd"], len(sizes), level=float(said.level), sd_df=r["x_sd_df"])
    if need is None:
        return None, f"{what} would need more than {planning.MAX_REPEATS} repeats per prompt and model"
    need = max(need, have + 1)  # not settled with what there is: more are needed either way
    draw = f": lab.compare(..., experiment={experiment!r}, repeats={need - have}, new_repeats=True)"
    return need, (
        f"{what} is found with {100 * planning.POWER:.0f} % chance with {need} repeats per prompt and model "
        f"({need - have} more){draw if experiment else ''}"
    )
