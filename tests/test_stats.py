"""The evidence's procedure, validated on planted effects: many simulated experiments at once.

Properties, not numbers: with no difference, a side is named at most at the stated 5 % (plus
Monte-Carlo error); the 95 % interval covers the planted difference within Monte-Carlo error of
95 %; the interval excludes 0 exactly when the verdict names a side (hypothesis, on tied and
continuous data); the issue's cases (stars from one or two raters, a planted 3 semitones in a
3x3 design, identical models); planning delivers the power it promises. Fixed seeds throughout.
The full table over designs and kinds of data is ``benchmarks/evidence_validation.py``.
"""

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab.analysis import inference, names, planning, preferences, stats

RUNS = 1000
ALPHA = stats.ALPHA


def mc_error(p: float = ALPHA, runs: int = RUNS) -> float:
    """Three Monte-Carlo standard errors of a rate ``p`` over ``runs`` experiments."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def simulate(rng, *, runs=RUNS, blocks=3, repeats=3, effect=0.0, sd=1.0, prompt_sd=5.0):
    """Two models on ``blocks`` prompts; every prompt moves both models alike (block effect)."""
    prompt = rng.normal(0, prompt_sd, (runs, blocks, 1))
    a = prompt + rng.normal(0, sd, (runs, blocks, repeats))
    b = prompt + effect + rng.normal(0, sd, (runs, blocks, repeats))
    return a, b


def rated(rng, *, runs=RUNS, blocks=4, repeats=5, raters=2, effect=0.0):
    """1-5 stars from ``raters`` raters of different harshness, scored once per take; ``effect``
    moves model a's takes up (stars on the latent scale)."""
    prompt = rng.normal(0, 0.7, (runs, blocks, 1))
    latent = np.stack(
        [
            prompt + effect + rng.normal(0, 1, (runs, blocks, repeats)),
            prompt + rng.normal(0, 1, (runs, blocks, repeats)),
        ]
    )
    harsh = rng.normal(0, 0.7, (runs, 1, 1, raters))
    given_ = np.clip(np.rint(3 + latent[..., None] + harsh + rng.normal(0, 0.5, (*latent.shape, raters))), 1, 5)
    both = np.concatenate([given_[0], given_[1]], axis=2).reshape(runs, -1, raters)
    scores = stats.take_scores(both).reshape(runs, blocks, 2 * repeats)
    return scores[..., :repeats], scores[..., repeats:]


@pytest.mark.parametrize("blocks, repeats", [(3, 3), (4, 3)])  # exact enumeration; seeded Monte Carlo
def test_no_difference_names_a_side_at_most_at_the_stated_rate(blocks, repeats):
    a, b = simulate(np.random.default_rng(blocks), blocks=blocks, repeats=repeats)
    test = inference.shift(a, b)
    assert test.exact == (blocks == 3)
    said = test.judge(ALPHA)
    assert np.mean(said.side != 0) <= ALPHA + mc_error()
    assert np.mean(test.p_value <= ALPHA) == np.mean(said.side != 0)


@pytest.mark.parametrize("blocks, repeats", [(3, 3), (4, 3)])
def test_the_95_interval_covers_the_planted_difference(blocks, repeats):
    a, b = simulate(np.random.default_rng(10 + blocks), blocks=blocks, repeats=repeats, effect=1.5, sd=2.0)
    said = inference.shift(a, b).judge(ALPHA)
    covered = np.mean((said.ci_low <= 1.5) & (said.ci_high >= 1.5))
    assert abs(covered - (1 - ALPHA)) <= mc_error()


def test_stars_keep_the_error_rate_and_ties_never_favour_a_side():
    rng = np.random.default_rng(3)
    a, b = rated(rng, raters=1)
    said = inference.shift(a, b).judge(ALPHA)
    assert np.mean(said.side != 0) <= ALPHA + mc_error()
    named = said.side != 0
    assert abs(np.mean(said.side[named] == 1) - 0.5) < 0.3  # both sides, not always the second model
    same = inference.shift(np.full((3, 3), 4.0), np.full((3, 3), 4.0)).judge(ALPHA)
    assert same.estimate == 0 and same.side == 0 and same.ci_low == 0 == same.ci_high


@pytest.mark.parametrize("raters", [1, 2])
def test_plus_rated_higher_never_names_flash_and_named_winners_exclude_0(raters):
    """The issue's case: plus (a) truly 0.4 stars higher, 4 prompts x 5 repeats."""
    a, b = rated(np.random.default_rng(raters), runs=600, raters=raters, effect=0.4)
    for level in (ALPHA, ALPHA / 6):
        said = inference.shift(a, b).judge(level)
        assert not np.any(said.side == 1)  # flash (b) is never named
        named = said.side != 0
        assert named.any()
        assert np.all((said.ci_high[named] < 0) | (said.ci_low[named] > 0))


def test_a_planted_3_semitones_in_a_3x3_design_is_found_in_99_percent():
    """In a table of six primary questions the first is read at 0.05/6: even there."""
    a, b = simulate(np.random.default_rng(4), blocks=3, repeats=3, effect=3.0, sd=1.0)
    said = inference.shift(a, b).judge(ALPHA / 6)
    assert np.mean(said.side == 1) >= 0.99


def test_identical_models_pitch_interval_includes_0_in_95_percent():
    a, b = simulate(np.random.default_rng(5), blocks=3, repeats=3, sd=0.8)
    said = inference.shift(a, b).judge(ALPHA)
    inside = np.mean((said.ci_low <= 0) & (said.ci_high >= 0))
    assert abs(inside - (1 - ALPHA)) <= mc_error()


def test_a_design_too_small_says_how_many_repeats_reach_the_level():
    a, b = simulate(np.random.default_rng(6), runs=5, blocks=2, repeats=2, effect=10.0)
    said = inference.shift(a, b).judge(ALPHA)
    assert not said.reachable.any() and np.all(said.side == 0) and np.isnan(said.ci_low).all()
    assert inference.repeats_to_reach(2, ALPHA) == 3
    assert inference.repeats_to_reach(3, ALPHA / 6) == 3


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.integers(1, 4),
    repeats=st.integers(1, 4),
    tied=st.booleans(),
    shift=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    level=st.sampled_from([0.05, 0.025, 0.0125, 0.0083, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_the_interval_excludes_0_exactly_when_the_verdict_names_a_side(blocks, repeats, tied, shift, level, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (blocks, repeats + 1))
    b = rng.normal(shift, 1, (blocks, repeats))
    if tied:
        a, b = np.clip(np.rint(a + 3), 1, 5), np.clip(np.rint(b + 3), 1, 5)
    b = np.concatenate([b, np.full((blocks, 1), np.nan)], axis=1)  # unbalanced cells too
    test = inference.shift(a, b)
    said = test.judge(level)
    if not said.reachable:
        assert said.side == 0
        return
    excludes = said.ci_low > 0 or said.ci_high < 0
    assert excludes == (said.side != 0) == (test.p_value <= level * (1 + 1e-12))
    assert said.side == (1 if said.ci_low > 0 else -1 if said.ci_high < 0 else 0)
    assert said.ci_low <= said.estimate <= said.ci_high or math.isclose(said.ci_low, said.ci_high)
    if said.estimate == 0:
        assert said.side == 0


def test_holm_levels_step_down_and_stop_at_the_first_open_question():
    strong = inference.shift(*(x[0] for x in simulate(np.random.default_rng(7), runs=1, blocks=4, repeats=4, effect=5)))
    weak = inference.shift(*(x[0] for x in simulate(np.random.default_rng(8), runs=1, blocks=4, repeats=4)))
    tests = [weak, strong, weak]
    levels = inference.holm_levels(tests, ALPHA)
    assert levels[1] == ALPHA / 3 and levels[0] == levels[2] == ALPHA / 2
    assert [int(t.judge(lv).side) for t, lv in zip(tests, levels, strict=True)] == [0, 1, 0]
    assert list(inference.holm_adjusted([0.01, 0.04, np.nan])) == pytest.approx([0.02, 0.04, np.nan], nan_ok=True)


def test_holm_keeps_the_familywise_rate_over_six_null_questions():
    rng = np.random.default_rng(9)
    runs = 200
    tests = [inference.shift(*simulate(rng, runs=runs, blocks=4, repeats=3)) for _ in range(6)]
    named = 0
    for e in range(runs):
        one = [_one(t, e) for t in tests]
        levels = inference.holm_levels(one, ALPHA)
        named += any(int(t.judge(lv).side) for t, lv in zip(one, levels, strict=True))
    assert named / runs <= ALPHA + mc_error(runs=runs)


def _one(test, e):
    """Experiment ``e`` of a vectorised permutation test, as one question."""
    return dataclasses.replace(test, estimate=test.estimate[e], thresholds=test.thresholds[e])


def test_planning_delivers_the_power_it_promises_from_a_pilot():
    """A pilot at 3x3, repeats_needed for 1 SD at 0.05/6 with the spread uncertain, the advice
    followed on the same prompts: the difference is found at least 80 % of the time."""
    rng = np.random.default_rng(11)
    runs, blocks, level = 250, 3, ALPHA / 6
    a, b = simulate(rng, runs=runs, blocks=blocks, repeats=30, effect=1.0)
    spread = stats.block_difference(a[..., :3], b[..., :3])
    need = np.array(
        [
            planning.repeats_needed(1.0, s, blocks, level=level, sd_df=d) or 99
            for s, d in zip(spread.sd, spread.df, strict=True)
        ]
    )
    need = np.maximum(need, 4)
    assert np.mean(need <= 30) > 0.95
    found = []
    for n in np.unique(need[need <= 30]):
        pick = need == n
        found.append(inference.shift(a[pick][..., :n], b[pick][..., :n]).judge(level).side == 1)
    assert np.mean(np.concatenate(found)) >= planning.POWER - mc_error(0.8, runs)


def test_the_smallest_differences_that_matter_are_perceptual_and_overridable():
    m = planning.Matters()
    assert (m.of("pitch"), m.of("loudness"), m.of("predicted quality"), m.of("blind preference rating")) == (
        1.0,
        1.0,
        0.2,
        0.5,
    )
    assert m.of("speaking rate", 12.0) == pytest.approx(1.2)
    assert math.isnan(m.of("brightness (spectral tilt)"))
    assert m.updated({"pitch": 0.5}).of("pitch") == 0.5 and m.updated({"pitch": 0.5}).of("loudness") == 1.0
    assert planning.repeats_needed(0.0, 1.0, 3, level=ALPHA) is None


def test_blind_choices_binomial_and_its_interval_agree():
    pref = stats.preference(np.arange(0, 21), np.full(21, 20))
    excludes = (pref.ci_low > 0.5) | (pref.ci_high < 0.5)
    assert np.array_equal(excludes, pref.p_value <= ALPHA)
    rng = np.random.default_rng(12)
    null = stats.preference(rng.binomial(30, 0.5, RUNS), np.full(RUNS, 30))
    assert np.mean(null.p_value <= ALPHA) <= ALPHA + mc_error()


def test_bradley_terry_orders_three_models_by_their_planted_strengths():
    rng = np.random.default_rng(13)
    strength = np.array([0.0, 1.0, -1.0])
    wins = np.zeros((3, 3))
    for i in range(3):
        for j in range(i + 1, 3):
            p = 1 / (1 + np.exp(strength[j] - strength[i]))
            k = rng.binomial(200, p)
            wins[i, j], wins[j, i] = k, 200 - k
    fit = preferences.bradley_terry(wins, ["a", "b", "c"])
    assert fit.log_odds[1] > 0 > fit.log_odds[2]
    assert np.all(np.abs(fit.log_odds - strength) < 3 * fit.se + 1e-9)
    assert np.all(fit.ci_low[1:] < fit.log_odds[1:]) and np.all(fit.log_odds[1:] < fit.ci_high[1:])


def test_choices_are_read_per_rater_and_prompt():
    ratings = pd.DataFrame(
        {
            "rater": ["x"] * 4 + ["y"] * 4,
            "prompt_index": [0, 0, 1, 1] * 2,
            "target_model": ["p", "f"] * 4,
            "rating": [3, 5, 4, 4, 2, 3, 1, 2],
        }
    )
    wins = preferences.choices(ratings, ["p", "f"])
    assert wins.tolist() == [[0, 0], [3, 0]]  # x on prompt 1 tied: no choice


def test_take_scores_centre_each_rater():
    ratings = np.array([[1.0, 4.0], [2.0, 5.0], [np.nan, 3.0]])
    scores = stats.take_scores(ratings)
    assert scores[1] - scores[0] == pytest.approx(1.0)


def test_a_dataframe_column_becomes_the_arrays_of_two_groups():
    df = pd.DataFrame(
        {"prompt_index": [0, 0, 0, 1, 1], "m": ["a", "b", "b", "a", "b"], "v": [1.0, 2.0, 3.0, 4.0, np.nan]}
    )
    a, b = stats.frame_arrays(df, "v", group="m", a="a", b="b")
    assert a.shape == b.shape == (2, 2)
    assert list(b[0]) == [2.0, 3.0] and np.isnan(b[1]).all()


def test_names_are_plain_and_pitch_is_compared_in_semitones():
    assert names.name("m_cpp_db") == "clearness (cepstral peak)" and names.unit("m_median_f0_hz") == "st"
    frame = pd.DataFrame({"m_median_f0_hz": [100.0, 200.0]})
    assert list(names.compared(frame, "m_median_f0_hz")) == pytest.approx([0.0, 12.0])


# --- the distribution functions, from scipy.special: scipy.stats's, to rounding -------------------
DFS = st.one_of(st.floats(0.5, 1e4), st.sampled_from([1.0, 2.0, 30.0, math.inf]))
PROBABILITIES = st.floats(1e-9, 1 - 1e-9)


def close(ours, theirs, tol=1e-9) -> bool:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return bool(np.all((np.isnan(ours) & np.isnan(theirs)) | np.isclose(ours, theirs, rtol=tol, atol=tol)))


@given(st.floats(-50, 50), DFS, PROBABILITIES)
@settings(max_examples=300, deadline=None)
def test_the_t_normal_and_chi2_functions_are_scipy_stats(x, df, q):
    from scipy import stats as scipy_stats

    from cosyvoice_lab.analysis import distributions as dist

    assert close(dist.t_sf(x, df), scipy_stats.t.sf(x, df))
    assert close(dist.t_ppf(q, df), scipy_stats.t.ppf(q, df), 1e-8)
    assert close(dist.norm_ppf(q), scipy_stats.norm.ppf(q))
    if math.isfinite(df):
        assert close(dist.chi2_ppf(q, df), scipy_stats.chi2.ppf(q, df), 1e-8)


@given(st.integers(-3, 60), st.integers(0, 60), st.floats(1e-6, 1 - 1e-6), st.floats(0.05, 80), st.floats(0.05, 80))
@settings(max_examples=300, deadline=None)
def test_the_binomial_and_beta_functions_are_scipy_stats_at_every_edge(k, n, q, a, b):
    """Counts below 0, at n and beyond n (the exact test asks for k - 1 and for k = n), n = 0; the beta's
    quantiles as far out as an interval's levels go (scipy 1.11's two kernels part by 4e-8 at 1 - 1.5e-8)."""
    from scipy import stats as scipy_stats

    from cosyvoice_lab.analysis import distributions as dist

    assert close(dist.binom_cdf(k, n, 0.5), scipy_stats.binom.cdf(k, n, 0.5))
    assert close(dist.binom_sf(k, n, 0.5), scipy_stats.binom.sf(k, n, 0.5))
    assert close(dist.beta_ppf(q, a, b), scipy_stats.beta.ppf(q, a, b), 1e-8)


@given(st.floats(-8, 8), st.floats(1, 200), st.floats(0, 8))
@settings(max_examples=200, deadline=None)
def test_the_noncentral_t_is_scipy_stats_where_power_reads_it(x, df, nc):
    """The power of a design (planning.power) sums both tails: they agree to rounding from scipy 1.12 on,
    within 1e-3 before (scipy.stats then used another kernel than scipy.special's: 8e-4 apart at most)."""
    from scipy import stats as scipy_stats

    from cosyvoice_lab.analysis import distributions as dist

    # Boost's series does not converge for some x within ~1e-120 of 0 (hypothesis finds x = 5.3e-126,
    # df = nc = 1): both give NaN, which this allows, and scipy.stats warns where scipy.special (ours)
    # says nothing. Power reads the tails at its critical values, never there.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = (scipy_stats.nct.sf(x, df, nc), scipy_stats.nct.cdf(x, df, nc))
    ours = (dist.nct_sf(x, df, nc), dist.nct_cdf(x, df, nc))
    for o, t in zip(ours, theirs, strict=True):
        assert np.isnan(t) or abs(o - t) < 1e-3


def test_showing_evidence_loads_no_scipy_stats():
    """A fresh process computes a difference, a binomial test and a design's power without importing
    scipy.stats (0.9 s of CPU: the cost of every kernel or report export that shows evidence)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from cosyvoice_lab.analysis import inference, planning, stats\n"
        "stats.block_difference(np.random.default_rng(0).normal(size=(3, 4)), np.zeros((3, 4)))\n"
        "inference.Binomial(7, 10).judge(0.05)\n"
        "planning.power(1.0, 1.0, 3, 4, level=0.05, sd_df=6)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
