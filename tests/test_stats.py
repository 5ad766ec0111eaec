"""The evidence statistics, validated on planted effects: thousands of simulated experiments at once.

With no difference planted, "evidence" must come up at most at the stated 5 % (plus Monte-Carlo
error: 6.5 % over 2000 runs); with a difference planted, it must be found in at least 80 % of
experiments run at the number of repeats the tool recommends. Fixed seeds throughout. Ratings
from several raters are scored once per take (raters centred) and held to the same standard;
the rank test's error rate is also checked exactly, over every assignment of small designs.
"""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from cosyvoice_lab.analysis import stats

RUNS = 2000
MAX_FALSE = 0.065


def simulate(rng, *, runs=RUNS, blocks=3, repeats=3, effect=0.0, sd=1.0, prompt_sd=5.0):
    """Two models on ``blocks`` prompts; every prompt moves both models alike (block effect)."""
    prompt = rng.normal(0, prompt_sd, (runs, blocks, 1))
    a = prompt + rng.normal(0, sd, (runs, blocks, repeats))
    b = prompt + effect + rng.normal(0, sd, (runs, blocks, repeats))
    return a, b


def test_no_difference_gives_evidence_at_most_at_the_stated_rate():
    rng = np.random.default_rng(1)
    a, b = simulate(rng)
    out = stats.block_difference(a, b)
    assert out.p_value.shape == (RUNS,)
    false = np.mean(out.p_value < stats.ALPHA)
    assert false <= MAX_FALSE
    # and the interval covers the true (zero) difference as often as it claims
    assert np.mean((out.ci_low <= 0) & (out.ci_high >= 0)) >= 1 - MAX_FALSE


def test_prompt_effects_do_not_pass_for_model_differences_when_takes_are_missing():
    """A loud prompt effect plus failed takes (unbalanced cells) still gives no false evidence."""
    rng = np.random.default_rng(2)
    a, b = simulate(rng, blocks=4, repeats=4, prompt_sd=50.0)
    a[:, 0, 1:] = np.nan  # prompt 0 kept one take on model a
    b[:, 3, 2:] = np.nan
    out = stats.block_difference(a, b)
    assert abs(np.mean(out.estimate)) < 0.05
    assert np.mean(out.p_value < stats.ALPHA) <= MAX_FALSE
    assert set(np.unique(out.n)) == {4 * 4 * 2 - 3 - 2}


def test_ratings_on_a_five_point_scale_keep_the_error_rate():
    rng = np.random.default_rng(3)
    levels = rng.integers(1, 4, (RUNS, 4, 1))  # each prompt its own typical rating
    a = np.clip(levels + rng.integers(-1, 2, (RUNS, 4, 3)), 1, 5).astype(float)
    b = np.clip(levels + rng.integers(-1, 2, (RUNS, 4, 3)), 1, 5).astype(float)
    out = stats.block_difference(a, b)
    assert np.mean(out.p_value < stats.ALPHA) <= MAX_FALSE


def test_one_value_per_cell_falls_back_to_a_paired_test_over_prompts():
    rng = np.random.default_rng(4)
    a, b = simulate(rng, blocks=6, repeats=1)
    out = stats.block_difference(a, b)
    assert np.all(out.df == 5)
    assert np.mean(out.p_value < stats.ALPHA) <= MAX_FALSE


@pytest.mark.parametrize(("effect", "sd", "blocks"), [(0.8, 1.0, 3), (3.0, 2.5, 3), (0.5, 1.0, 5)])
def test_a_planted_difference_is_found_at_the_recommended_repeats(effect, sd, blocks):
    repeats = stats.repeats_needed(effect, sd, blocks, method="t")
    assert repeats is not None and repeats >= 2
    assert stats.power(effect, sd, blocks, repeats, method="t") >= stats.POWER
    assert stats.power(effect, sd, blocks, repeats - 1, method="t") < stats.POWER
    rng = np.random.default_rng(5)
    a, b = simulate(rng, blocks=blocks, repeats=repeats, effect=effect, sd=sd)
    out = stats.block_difference(a, b)
    found = np.mean((out.p_value < stats.ALPHA) & (out.estimate > 0))
    assert found >= stats.POWER
    # the analytic power agrees with the simulation (Monte-Carlo error ~1 %)
    assert abs(found - stats.power(effect, sd, blocks, repeats, method="t")) < 0.03
    assert np.mean((out.ci_low <= effect) & (out.ci_high >= effect)) >= 1 - MAX_FALSE


def test_the_recommendation_from_a_pilot_settles_the_observed_size():
    """Sized from a pilot's observed sd: most follow-ups at that many repeats find the effect."""
    rng = np.random.default_rng(6)
    a, b = simulate(rng, runs=1, blocks=3, repeats=3, effect=1.0)
    pilot = stats.block_difference(a[0], b[0])
    repeats = stats.repeats_needed(1.0, float(pilot.sd), 3, method="t")
    assert repeats is not None
    a, b = simulate(rng, blocks=3, repeats=repeats, effect=1.0)
    found = np.mean(stats.block_difference(a, b).p_value < stats.ALPHA)
    assert found >= stats.power(1.0, 1.0, 3, repeats, method="t") - 0.03


def two_clusters(rng, shape, spread=12.0):
    """Per take, one of two voices an octave apart (a prompt naming no gender), plus noise."""
    return np.where(rng.random(shape) < 0.5, 0.0, spread) + rng.normal(0, 0.7, shape)


def test_the_rank_method_keeps_the_error_rate_on_voices_in_two_clusters():
    rng = np.random.default_rng(10)
    prompt = rng.normal(0, 5, (RUNS, 3, 1))
    a, b = prompt + two_clusters(rng, (RUNS, 3, 4)), prompt + two_clusters(rng, (RUNS, 3, 4))
    a[:, 1, 3] = np.nan  # a failed take
    out = stats.block_rank_difference(a, b)
    assert np.mean(out.p_value < stats.ALPHA) <= MAX_FALSE
    assert np.mean((out.ci_low <= 0) & (out.ci_high >= 0)) >= 1 - MAX_FALSE
    # the interval excludes 0 exactly when the test finds a difference
    assert np.array_equal((out.ci_low > 0) | (out.ci_high < 0), out.p_value < stats.ALPHA)
    # and on five-point ratings (many ties)
    levels = rng.integers(1, 4, (RUNS, 4, 1))
    ra = np.clip(levels + rng.integers(-1, 2, (RUNS, 4, 3)), 1, 5).astype(float)
    rb = np.clip(levels + rng.integers(-1, 2, (RUNS, 4, 3)), 1, 5).astype(float)
    assert np.mean(stats.block_rank_difference(ra, rb).p_value < stats.ALPHA) <= MAX_FALSE


@pytest.mark.parametrize(("effect", "sd", "blocks"), [(0.8, 1.0, 3), (3.0, 2.5, 3), (2.0, 1.0, 3), (0.5, 1.0, 5)])
def test_the_rank_method_finds_a_planted_shift_at_the_repeats_it_recommends(effect, sd, blocks):
    repeats = stats.repeats_needed(effect, sd, blocks)  # the rank method is the default
    assert repeats is not None
    rng = np.random.default_rng(11)
    a, b = simulate(rng, blocks=blocks, repeats=repeats, effect=effect, sd=sd)
    out = stats.block_rank_difference(a, b)
    assert np.mean((out.p_value < stats.ALPHA) & (out.estimate > 0)) >= stats.POWER
    assert np.mean((out.ci_low <= effect) & (out.ci_high >= effect)) >= 1 - MAX_FALSE
    assert abs(np.median(out.estimate) - effect) < 0.1 * sd


def test_the_rank_method_sees_through_clusters_that_drown_the_mean():
    """Planted +3 semitones on voices that come out in two clusters an octave apart."""
    rng = np.random.default_rng(12)
    a = two_clusters(rng, (RUNS, 3, 4))
    b = two_clusters(rng, (RUNS, 3, 4)) + 3.0
    rank = np.mean(stats.block_rank_difference(a, b).p_value < stats.ALPHA)
    mean = np.mean(stats.block_difference(a, b).p_value < stats.ALPHA)
    assert rank > mean + 0.1


def test_nothing_to_settle():
    assert stats.repeats_needed(0.0, 1.0, 3) is None
    assert stats.repeats_needed(0.001, 10.0, 3) is None  # beyond MAX_REPEATS
    assert stats.repeats_needed(1.0, 0.0, 3) == 2


def test_blind_preferences_keep_the_error_rate_and_find_a_planted_preference():
    rng = np.random.default_rng(7)
    n = 30
    null = stats.preference(rng.binomial(n, 0.5, RUNS), n)
    assert np.mean(null.p_value < stats.ALPHA) <= MAX_FALSE
    assert np.mean((null.ci_low <= 0.5) & (null.ci_high >= 0.5)) >= 1 - MAX_FALSE
    planted = stats.preference(rng.binomial(n, 0.8, RUNS), n)
    assert np.mean((planted.p_value < stats.ALPHA) & (planted.share > 0.5)) >= 0.8
    one = stats.preference(15, 20)
    assert one.ci_low < 0.75 < one.ci_high and 0.0 < one.p_value < 0.05


def test_holm_keeps_the_family_wise_error_across_questions():
    rng = np.random.default_rng(8)
    a, b = simulate(rng, runs=RUNS * 5)
    p = stats.block_difference(a, b).p_value.reshape(RUNS, 5)  # five questions asked at once
    adjusted = np.array([stats.holm(row) for row in p])
    assert np.mean((adjusted < stats.ALPHA).any(axis=1)) <= MAX_FALSE
    assert np.mean((p < stats.ALPHA).any(axis=1)) > 0.15  # without it, far more often
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)


def test_a_dataframe_column_gives_the_same_answer_as_the_arrays():
    rng = np.random.default_rng(9)
    a, b = simulate(rng, runs=1, blocks=3, repeats=4, effect=2.0)
    rows = [
        {"prompt_index": j, "target_model": model, "value": values[0, j, r]}
        for model, values in (("plus", a), ("flash", b))
        for j in range(3)
        for r in range(4)
    ]
    df = pd.DataFrame([*rows, {"prompt_index": 0, "target_model": "plus", "value": math.nan}])
    got = stats.frame_difference(df, "value", group="target_model", a="plus", b="flash")
    want = stats.block_difference(a[0], b[0])
    assert got.estimate == pytest.approx(float(want.estimate))
    assert (got.ci_low, got.ci_high, got.n) == pytest.approx((float(want.ci_low), float(want.ci_high), 24))


def test_verdicts_name_a_winner_only_with_evidence():
    v = stats.verdict(2.83, 1.9, 3.7, 0.001, a="plus", b="flash", measure="pitch", unit="st")
    assert v == "flash higher pitch: +2.8 st [1.9, 3.7]"
    v = stats.verdict(-2.83, -3.7, -1.9, 0.001, a="plus", b="flash", measure="pitch", unit="st")
    assert v == "plus higher pitch: +2.8 st [1.9, 3.7]"
    v = stats.verdict(0.3, -0.8, 1.4, 0.6, a="plus", b="flash", measure="pitch", unit="st")
    assert v.startswith("no evidence either way") and "plus" not in v and "flash" not in v
    v = stats.verdict(0.5, 0.1, 0.9, 0.08, a="plus", b="flash", measure="rate", questions=5)
    assert v == "no evidence either way once 5 questions are counted: +0.50 [0.10, 0.90]"
    assert stats.verdict(math.nan, math.nan, math.nan, math.nan, a="x", b="y", measure="m") == "not enough data"


def rated(rng, *, runs=RUNS, blocks=3, repeats=3, raters=4, effect=0.0, seen=0.75):
    """Several raters rate the takes of two models 1-5: each prompt its typical rating, each take
    its own quality (shared by every rater who hears it), each rater a harshness of their own; a
    rater hears a take with chance ``seen``. Returns the ratings ``(runs, 2 models, blocks,
    repeats, raters)`` (NaN: not rated)."""
    prompt = rng.normal(3, 0.7, (runs, 1, blocks, 1, 1))
    harsh = rng.normal(0, 0.8, (runs, 1, 1, 1, raters))
    take = rng.normal(0, 0.7, (runs, 2, blocks, repeats, 1)) + np.array([0.0, effect])[None, :, None, None, None]
    x = np.clip(np.round(prompt + take + harsh + rng.normal(0, 0.5, (runs, 2, blocks, repeats, raters))), 1, 5)
    return np.where(rng.random(x.shape) < seen, x, np.nan)


def scored(ratings):
    """stats.take_scores over every take of both models at once (as the evidence table does)."""
    runs, models, blocks, repeats, raters = ratings.shape
    scores = stats.take_scores(ratings.reshape(runs, -1, raters))
    return scores.reshape(runs, models, blocks, repeats)


def test_several_raters_keep_the_error_rate_when_each_take_counts_once():
    """Three raters hearing one take are three opinions of one voice: counting every rating as
    a take finds "evidence" far too often; one rater-centred score per take keeps 5 %."""
    rng = np.random.default_rng(13)
    ratings = rated(rng)
    scores = scored(ratings)
    out = stats.block_rank_difference(scores[:, 0], scores[:, 1])
    assert np.mean(out.p_value < stats.ALPHA) <= MAX_FALSE
    assert np.mean((out.ci_low <= 0) & (out.ci_high >= 0)) >= 1 - MAX_FALSE
    every_rating = ratings.reshape(RUNS, 2, 3, -1)  # the mistake: each rating a take
    assert np.mean(stats.block_rank_difference(every_rating[:, 0], every_rating[:, 1]).p_value < stats.ALPHA) > 0.09


def test_a_harsh_rater_does_not_pass_for_a_worse_model():
    """One rater hears only model a's takes and rates low, another only model b's and rates high:
    centred per rater, that is no difference (the raw ratings would say b is much better)."""
    a = np.array([[1.0, np.nan], [2.0, np.nan], [1.0, np.nan]])  # takes × raters
    b = np.array([[np.nan, 5.0], [np.nan, 4.0], [np.nan, 5.0]])
    scores = stats.take_scores(np.concatenate([a, b]))
    assert scores[:3].mean() == pytest.approx(scores[3:].mean())
    assert stats.take_scores(np.array([[4.0], [np.nan], [2.0]])) == pytest.approx([4.0, np.nan, 2.0], nan_ok=True)


def test_a_planted_rating_difference_is_found_at_the_repeats_recommended_from_a_pilot():
    rng = np.random.default_rng(14)
    pilot = scored(rated(rng, effect=0.7))  # many pilots: the size and noise a user would see
    size = float(np.nanmean(stats.block_difference(pilot[:, 0], pilot[:, 1]).estimate))
    sd = float(np.nanmean(stats.block_rank_difference(pilot[:, 0], pilot[:, 1]).sd))
    repeats = stats.repeats_needed(size, sd, 3)
    assert repeats is not None and 3 < repeats < 20
    scores = scored(rated(rng, repeats=repeats, effect=0.7))
    out = stats.block_rank_difference(scores[:, 0], scores[:, 1])
    assert np.mean((out.p_value < stats.ALPHA) & (out.estimate > 0)) >= stats.POWER


def every_assignment(blocks, repeats):
    """Every way to split 2·repeats distinct values per prompt between the two models: the
    exact null distribution (each split equally likely when the models are the same)."""
    values = np.arange(2 * repeats, dtype=float)
    splits = list(itertools.combinations(range(2 * repeats), repeats))
    b = np.array([values[list(c)] for c in splits])
    a = np.array([np.delete(values, list(c)) for c in splits])
    pick = np.stack(np.meshgrid(*[np.arange(len(splits))] * blocks, indexing="ij"), -1).reshape(-1, blocks)
    return a[pick], b[pick]  # (assignments, blocks, repeats)


@pytest.mark.parametrize(("blocks", "repeats"), [(2, 2), (2, 4), (3, 3), (3, 4), (4, 3), (2, 5)])
def test_the_rank_test_says_evidence_at_most_five_percent_of_the_time_exactly(blocks, repeats):
    """Not simulated: every assignment of the takes to the models, so no Monte-Carlo error. The
    normal approximation alone would say "evidence" 5.4 % of the time at 3 prompts × 4 repeats
    and 6.2 % at 4 × 3; the continuity correction keeps it at or under 5 %."""
    a, b = every_assignment(blocks, repeats)
    out = stats.block_rank_difference(a, b)
    assert np.mean(out.p_value < stats.ALPHA) <= stats.ALPHA
    assert np.mean((out.ci_low <= 0) & (out.ci_high >= 0)) >= 1 - stats.ALPHA
