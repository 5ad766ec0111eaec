"""lab.sweep: one PromptSpec across one dimension's values, and which measures each value moves.

The statistics (Welch per value, Holm among the primary questions) are validated on planted effects with
simulated sweeps; end to end, the simulator's pitch words move the measured pitch and words it
does not render (emotions outside its energy words) are reported as no evidence."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab import Lab, PromptSpec
from cosyvoice_lab.analysis import inference
from cosyvoice_lab.lab.stage import MeasuringOptions
from cosyvoice_lab.lab.sweep import known_values, plan_sweep
from cosyvoice_lab.offline import serve
from cosyvoice_lab.views.sweep import COLUMNS, sweep_table

PREVIEW = "Hello, how are you today?"
SPEC = PromptSpec(gender="male", age="middle-aged", scenario="audiobook")
EXPERIMENTS = 4000
# the Monte-Carlo margin of an observed rate of 5 % over EXPERIMENTS runs (3 standard errors)
MC = 3 * math.sqrt(0.05 * 0.95 / EXPERIMENTS)


# --- the statistics, on planted effects -------------------------------------------------------------
@pytest.mark.parametrize("sd_b", [1.0, 3.0])  # equal spreads, and one value varying three times as much
def test_with_no_difference_welch_names_a_move_at_most_at_the_stated_rate(sd_b):
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (EXPERIMENTS, 3))
    b = rng.normal(0, sd_b, (EXPERIMENTS, 3))
    said = inference.welch(a, b).judge(0.05)
    assert np.mean(said.side != 0) <= 0.05 + MC
    assert np.mean((said.ci_low <= 0) & (said.ci_high >= 0)) >= 0.95 - MC


def test_a_null_sweep_whose_baseline_varies_three_times_more_claims_no_pitch_move():
    """The case the pooled test got wrong (68 % false claims): the "(unspecified)" baseline varies
    3x more than two values; Welch per value and Holm's step-down over the two primary rows
    claim a move in at most 5 %. The table itself is checked against the same arrays."""
    rng = np.random.default_rng(4)
    base = rng.normal(0, 3, (EXPERIMENTS, 1, 3))
    values = rng.normal(0, 1, (EXPERIMENTS, 2, 3))
    tests = inference.welch(np.broadcast_to(base, values.shape), values)
    p = tests.p_value
    first = np.argmin(p, axis=1)
    at_first = tests.judge(0.05 / 2).side[np.arange(EXPERIMENTS), first] != 0
    claimed = at_first  # Holm: any move is claimed exactly when the smaller p's row is found
    assert np.mean(claimed) <= 0.05 + MC
    hz = 120 * 2 ** (np.concatenate([base[0, 0], values[0].ravel()]) / 12)
    df = pd.DataFrame({"value": ["(unspecified)"] * 3 + ["low"] * 3 + ["high"] * 3, "m_median_f0_hz": hz})
    table = sweep_table(df, ["(unspecified)", "low", "high"], "(unspecified)", primary=["m_median_f0_hz"])
    assert table["estimate"].to_numpy() == pytest.approx(tests.estimate[0])
    assert bool(table["found"].any()) == bool(claimed[0])


def test_a_planted_difference_is_found_and_covered():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, (EXPERIMENTS, 5))
    b = rng.normal(3, 1, (EXPERIMENTS, 5))  # 3 standard deviations, 5 repeats per value
    said = inference.welch(a, b).judge(0.05 / 2)  # the first of two primary questions
    assert np.mean(said.side == 1) >= 0.8
    full = inference.welch(a, b).judge(0.05)
    assert np.mean((full.ci_low <= 3) & (full.ci_high >= 3)) >= 0.95 - MC
    assert abs(np.mean(said.estimate) - 3) < 0.05


def test_too_few_values_or_no_spread():
    assert math.isnan(inference.welch([1.0], [2.0, 3.0]).estimate)
    same = inference.welch([2.0, 2.0, 2.0], [2.0, 2.0]).judge(0.05)
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0 and same.side == 0
    moved = inference.welch([2.0, 2.0], [5.0, 5.0, np.nan])
    said = moved.judge(0.05)
    assert said.p_value == 0.0 and said.ci_low == said.ci_high == 3.0 and moved.n == 4 and said.side == 1


def synthetic(shift_st: float, *, repeats=4, seed=0) -> pd.DataFrame:
    """Takes of a sweep over three values: "high" raises pitch by ``shift_st`` semitones."""
    rng = np.random.default_rng(seed)
    rows = []
    for value, shift in (("low", 0.0), ("mid", 0.0), ("high", shift_st)):
        for r in range(repeats):
            rows.append(
                {
                    "take_id": f"{value}{r}",
                    "status": "ok",
                    "value": value,
                    "m_median_f0_hz": 120 * 2 ** ((shift + rng.normal(0, 0.5)) / 12),
                    "m_speaking_rate": rng.normal(14, 1),
                    "m_loudness_lufs": rng.normal(-20, 1),
                    "m_duration_s": 2.0,
                }
            )
    rows.append({"take_id": "x", "status": "failed", "value": "high"})
    return pd.DataFrame(rows)


def test_the_table_names_the_planted_move_and_nothing_else():
    table = sweep_table(synthetic(4.0), ["low", "mid", "high"], "low", primary=["m_median_f0_hz"])
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 2 * 3  # (mid, high) × (pitch, speaking rate, loudness); duration is no measure
    assert list(table["family"][:2]) == ["primary", "primary"] and list(table["measure"][:2]) == ["pitch", "pitch"]
    pitch = table[(table["value"] == "high") & (table["measure"] == "pitch")].iloc[0]
    assert 3 < pitch["estimate"] < 5 and pitch["ci_low"] > 0 and pitch["found"] and pitch["level"] == 0.05 / 2
    assert pitch["verdict"].startswith("high raises pitch vs low: +") and " st [" in pitch["verdict"]
    assert pitch["n"] == 8  # the failed take is left out
    rest = table.drop(index=pitch.name)
    assert all(v.startswith("no evidence either way") for v in rest["verdict"]) and not rest["found"].any()
    assert set(table.loc[table["family"] == "exploratory", "measure"]) == {"speaking rate", "loudness"}
    # the verdict is read from the interval at the row's level: they cannot disagree
    named = table["verdict"].str.contains(" raises | lowers ")
    assert (named == ((table["ci_low"] > 0) | (table["ci_high"] < 0))).all()


# --- validating the input -----------------------------------------------------------------------
def test_unknown_dimension_or_value_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown dimension 'colour'.*pitch.*timbre"):
        plan_sweep(SPEC, "colour")
    with pytest.raises(ValueError, match=r"unknown pitch value\(s\) 'medium'; valid values: low, high"):
        plan_sweep(SPEC, "pitch", ["low", "medium"])
    with pytest.raises(ValueError, match="at least two values"):
        plan_sweep(SPEC, "pitch", ["low"])
    with pytest.raises(ValueError, match="more than once"):
        plan_sweep(SPEC, "pitch", ["low", "low", "high"])
    with pytest.raises(ValueError, match="baseline 'loud' is not among"):
        plan_sweep(SPEC, "pitch", ["low", "high"], baseline="loud")
    with pytest.raises(ValueError, match="not one string"):
        plan_sweep(SPEC, "pitch", "high")
    with pytest.raises(ValueError, match="free_text has no fixed values"):
        plan_sweep(SPEC, "free_text")
    with pytest.raises(TypeError, match="PromptSpec"):
        plan_sweep("a deep voice", "pitch")


def test_default_values_start_with_the_specs_own():
    plan = plan_sweep(SPEC.replace(pace="slow"), "pace")
    assert plan.labels == ["slow", "fast"] and plan.baseline == "slow"
    plan = plan_sweep(SPEC, "pitch")  # the spec names no pitch: "unspecified" is the baseline
    assert plan.labels == ["(unspecified)", "low", "high"] and plan.baseline == "(unspecified)"
    assert [s.pitch for s in plan.specs] == [None, "low", "high"]
    assert plan_sweep(SPEC, "pitch", [None, "high"], baseline="high").baseline == "high"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["low", "high", "soft"]), st.text(max_size=8)), max_size=4))
def test_plan_accepts_exactly_the_known_values(values):
    valid = all(v is None or v in known_values("pitch") for v in values)
    distinct = len({str(v) for v in values}) == len(values)
    try:
        plan = plan_sweep(SPEC, "pitch", values)
    except ValueError as err:
        assert not (valid and distinct and len(values) >= 2), err
        if not valid:
            assert "valid values: low, high" in str(err)
    else:
        assert valid and distinct and len(values) >= 2
        assert [s.pitch for s in plan.specs] == values


# --- end to end, against the simulator ----------------------------------------------------------------
@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(model_profiles={"*": {"design_latency": 0}}, enrollment_rps=None, seed=1) as sim:
        # one request at a time: the seeded simulator gives every value the same voices on every run
        # a sweep reads pitch and the other cheap measures, never the quality model (0.2 s a preview)
        quiet = MeasuringOptions(predicted_quality=False)
        lab = Lab(
            tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False, concurrency=1, measuring=quiet
        )
        yield lab, sim


def test_sweeping_pitch_words_moves_the_measured_pitch(lab):
    lab, sim = lab
    sweep = lab.sweep(SPEC, "pitch", ["low", "high"], repeats=3, preview_text=PREVIEW)
    assert sweep.values == ["low", "high"] and sweep.baseline == "low"
    row = sweep.table[(sweep.table["value"] == "high") & (sweep.table["measure"] == "pitch")].iloc[0]
    assert row["ci_low"] > 0 and row["found"]  # "high-pitched" is higher than "deep"
    assert row["family"] == "primary" and set(sweep.found["measure"]) == {"pitch"}  # a pitch sweep asks about pitch
    assert row["estimate"] > 6  # semitones: the simulator's words move the voice by about an octave
    assert row["verdict"].startswith("high raises pitch vs low")
    assert "pitch" in sweep.moved("high")
    # logged as an experiment, one prompt per value, on the lab's model
    logged = lab.log.to_dataframe(experiment=sweep.experiment)
    assert len(logged) == 6 and set(logged["target_model"].astype(str)) == {lab.target_model}
    assert sweep.experiment.startswith("sweep-pitch-")
    assert sweep.levels.loc["high", "pitch"] > sweep.levels.loc["low", "pitch"]
    # resumable: the same call again sends nothing new
    designs = sum(action == "create_voice" for _, action, _ in sim.request_log)
    again = lab.sweep(SPEC, "pitch", ["low", "high"], repeats=3, preview_text=PREVIEW)
    assert sum(action == "create_voice" for _, action, _ in sim.request_log) == designs
    pd.testing.assert_frame_equal(again.table, sweep.table)
    fig = sweep.plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["pitch (st)"]  # its plot is pitch
    assert "high raises pitch" in sweep._repr_html_() and "high raises pitch" in str(sweep)


def test_words_the_simulator_does_not_voice_are_no_evidence(lab):
    """The simulator renders emotion words only through its energy words (calm, lively ...):
    friendly, serious and confident leave the voice as it is, so nothing may be claimed."""
    lab, _ = lab
    sweep = lab.sweep(SPEC, "emotion", ["friendly", "serious", "confident"], repeats=3, preview_text=PREVIEW)
    pitch = sweep.table[sweep.table["measure"] == "pitch"]
    assert len(pitch) == 2
    assert all(v.startswith("no evidence either way") for v in pitch["verdict"])
    assert (pitch["ci_low"] <= 0).all() and (pitch["ci_high"] >= 0).all()
    assert sweep.found.empty


def test_the_html_escapes_what_the_prompts_say_and_unmeasured_takes_are_measured(lab):
    lab, _ = lab
    hostile = "<script>alert(1)</script>"
    lab.measure = False  # the previews arrive unmeasured: the sweep measures them
    sweep = lab.sweep(SPEC, "free_text", [None, hostile], repeats=2, preview_text=PREVIEW)
    assert "pitch" in set(sweep.table["measure"]) and sweep.table["estimate"].notna().all()
    page = sweep._repr_html_()
    assert hostile not in page and "&lt;script&gt;" in page
    assert "(unspecified)" in page
