"""Sweeps: one PromptSpec designed across the values of one dimension, to see which measures
each word moves ("does 'breathy' lower the HNR? does 'fast' speed it up, and by how much?").

``Lab.sweep`` delegates here. The plan (:func:`plan_sweep`) validates the dimension and the
values before anything is sent; the takes go through ``Lab.compare`` (one prompt per value, on
one model), so a sweep is logged as an experiment, shows its progress, and resumes when run
again with the same arguments; :class:`~cosyvoice_lab.views.sweep.Sweep` reports the moves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from cosyvoice_lab.prompts.spec import DIMENSIONS, PromptSpec, options
from cosyvoice_lab.views.sweep import Sweep, label, primary_measures, sweep_table

SWEEPABLE = (*DIMENSIONS, "free_text")


class SweepPlan(NamedTuple):
    """What a sweep designs: one spec per value (in order), the value labels and the baseline's."""

    specs: list[PromptSpec]
    labels: list[str]
    baseline: str


def known_values(dimension: str) -> list[str]:
    """The values a dimension offers (what ``values=None`` sweeps, besides the spec's own)."""
    return [value for _, value in options(dimension)]


def plan_sweep(spec: PromptSpec, dimension: str, values: Sequence | None = None, baseline: Any = None) -> SweepPlan:
    """The specs of a sweep, checked before anything is sent.

    Args:
        spec: the PromptSpec held fixed but for ``dimension``.
        dimension: one of :data:`~cosyvoice_lab.prompts.spec.DIMENSIONS` (or ``free_text``,
            with ``values``).
        values: the values to try (None in the list: the dimension left out). Default: the
            spec's own value (None if it has none) first, then every other value the dimension
            offers.
        baseline: the value the others are compared with (default: the spec's own value when
            swept, else the first value).
    Raises:
        TypeError: ``spec`` is not a PromptSpec.
        ValueError: an unknown dimension or value, a value given twice, fewer than two values,
            or a baseline that is not among the values (each message lists the valid ones).
    """
    if not isinstance(spec, PromptSpec):
        raise TypeError(f"a sweep needs a PromptSpec (e.g. PromptSpec.preset(...)), got {type(spec).__name__}")
    if dimension not in SWEEPABLE:
        raise ValueError(f"unknown dimension {dimension!r}; valid dimensions: {', '.join(SWEEPABLE)}")
    own = getattr(spec, dimension)
    if values is None:
        if dimension == "free_text":
            raise ValueError("free_text has no fixed values; pass values=[...]")
        values = [own, *(v for v in known_values(dimension) if v != own)]
    if isinstance(values, str):
        raise ValueError(f"values must be a list of {dimension} values, e.g. [{values!r}, ...], not one string")
    values = list(values)
    if dimension != "free_text":
        allowed = known_values(dimension)
        bad = [v for v in values if v is not None and v not in allowed]
        if bad:
            raise ValueError(
                f"unknown {dimension} value(s) {', '.join(map(repr, bad))}; valid values: "
                f"{', '.join(allowed)} (or None: unspecified)"
            )
    elif any(v is not None and not isinstance(v, str) for v in values):
        raise ValueError("free_text values must be strings (or None)")
    labels = [label(v) for v in values]
    if len(set(labels)) < len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"each value once, please: {', '.join(twice)} given more than once")
    if len(values) < 2:
        raise ValueError(f"a sweep needs at least two values of {dimension}, got {labels}")
    if baseline is None:
        baseline = own if own in values else values[0]
    if baseline not in values and baseline not in labels:  # "(unspecified)" names None
        raise ValueError(f"baseline {baseline!r} is not among the values swept: {', '.join(labels)}")
    return SweepPlan(spec.variants(dimension, values), labels, label(baseline))


def sweep_name(dimension: str, designs: Sequence) -> str:
    """A stable experiment name for a sweep of these designs, so that running it again resumes it."""
    key = [[d.voice_prompt, d.preview_text, d.target_model] for d in designs]
    return f"sweep-{dimension}-{hashlib.sha1(json.dumps(key).encode()).hexdigest()[:8]}"


def run(
    lab,
    spec: PromptSpec,
    dimension: str,
    values: Sequence | None,
    repeats: int,
    target_model: str | None,
    experiment: str | None,
    *,
    baseline: Any,
    preview_text: str | None,
    measures: Sequence[str] | None,
) -> Sweep:
    """The work of ``Lab.sweep`` (whose docstring says what a sweep is): plan the values, design
    them through ``lab.compare``, measure every preview, judge each value against the baseline."""
    if not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"a sweep needs repeats >= 2 per value (to see how voices vary), got {repeats!r}")
    plan = plan_sweep(spec, dimension, values, baseline)
    model = target_model or lab.target_model
    designs = [lab.make_design(s, preview_text=preview_text, target_model=model)[0] for s in plan.specs]
    prompts = [d.voice_prompt for d in designs]
    if len(set(prompts)) < len(prompts):
        same = [name for name, p in zip(plan.labels, prompts, strict=True) if prompts.count(p) > 1]
        raise ValueError(f"values {', '.join(same)} render the same prompt: nothing to compare")
    experiment = experiment or sweep_name(dimension, designs)
    comparison = lab.compare(
        plan.specs, target_models=[model], repeats=repeats, preview_text=preview_text, experiment=experiment
    )
    df = _measured(lab, comparison)
    order = {p: i for i, p in enumerate(comparison.prompts)}
    df["value"] = df["voice_prompt"].map(lambda p: plan.labels[order[p]])
    return Sweep(
        sweep_table(df, plan.labels, plan.baseline, measures=measures, primary=primary_measures(dimension)),
        df,
        dimension,
        plan.labels,
        plan.baseline,
        dict(zip(plan.labels, prompts, strict=True)),
        experiment,
        model,
        tuple(measures) if measures is not None else None,
    )


def _measured(lab, comparison):
    """The comparison's takes, every ok preview measured (a lab with ``measure=False`` did not)."""
    from cosyvoice_lab.lab.measuring import remeasure

    df = comparison.measured().df
    version = df.get("m_measures_version")
    missing = (df["status"].astype(str) == "ok") & df["audio_path"].notna()
    if version is not None:
        missing &= version.isna()
    if missing.any():
        remeasure(lab.log, list(df.loc[missing, "take_id"]))
        df = comparison.df
    return df
