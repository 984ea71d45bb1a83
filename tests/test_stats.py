"""Tests for zpd_curriculum.study._stats: values against scipy and known tables, plus properties."""

from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from zpd_curriculum.study._stats import (
    MDE,
    Comparison,
    StudyAnalysis,
    adjust_pvalues,
    analyze,
    compare,
    describe,
    interaction_test,
    minimum_detectable_effect,
    power,
)

Z975 = stats.norm.ppf(0.975)
FAST = {"n_resamples": 199}  # bootstrap resamples in tests: enough for BCa, fast

# Hypothesis strategies. Scores are whole points (e.g. correct answers out of 100): that is what
# exact-match accuracy produces, and it keeps sums exact, so "shift both groups" is exact too.
scores = st.integers(min_value=0, max_value=100).map(float)
PROPS = settings(max_examples=60, deadline=None)


@st.composite
def samples(draw, *, paired: bool | None = None):
    """(treatment, control, paired): 2 to 8 scores per group, same length when paired."""
    if paired is None:
        paired = draw(st.booleans())
    n = draw(st.integers(min_value=2, max_value=8))
    treatment = draw(st.lists(scores, min_size=n, max_size=n))
    m = n if paired else draw(st.integers(min_value=2, max_value=8))
    control = draw(st.lists(scores, min_size=m, max_size=m))
    return treatment, control, paired


def _neg(interval):
    return (-interval[1], -interval[0])


def _close(a, b, tol=1e-9):
    """Equal as floats, NaN equal to NaN."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


# --------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------


def test_describe_matches_numpy_and_scipy():
    x = [61.0, 64.5, 59.0, 66.0, 62.5]
    s = describe(x, confidence=0.9)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(x))
    assert s.sd == pytest.approx(np.std(x, ddof=1))
    assert s.sem == pytest.approx(np.std(x, ddof=1) / math.sqrt(5))
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=0.9)
    assert s.ci == pytest.approx((ci.low, ci.high))
    assert s.confidence == 0.9


def test_describe_single_value_has_nan_spread():
    s = describe([0.7])
    assert (s.n, s.mean) == (1, 0.7)
    assert math.isnan(s.sd) and math.isnan(s.sem) and all(math.isnan(v) for v in s.ci)


def test_describe_constant_sample_has_zero_width_interval():
    s = describe([0.25, 0.25, 0.25])
    assert (s.sd, s.sem, s.ci) == (0.0, 0.0, (0.25, 0.25))


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ([], ValueError, "at least 1"),
        ([1.0, float("nan")], ValueError, "NaN or infinite"),
        ([[1.0, 2.0], [3.0, 4.0]], ValueError, "one-dimensional"),
        (["a", "b"], TypeError, "sequence of numbers"),
    ],
)
def test_describe_rejects_bad_input(values, error, match):
    with pytest.raises(error, match=match):
        describe(values)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95, -0.5])
def test_describe_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        describe([1.0, 2.0], confidence=confidence)


# --------------------------------------------------------------------------------------------
# compare: values
# --------------------------------------------------------------------------------------------


def test_cohens_d_and_hedges_g_of_hand_made_data():
    # means 4 and 2, SDs 2 and 1: pooled SD = sqrt((4 + 1) / 2), d = 2 / sqrt(2.5).
    c = compare([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], paired=False, **FAST)
    assert c.diff == 2.0
    assert c.rel_diff_pct == pytest.approx(100.0)
    assert c.sd_pooled == pytest.approx(math.sqrt(2.5))
    assert c.cohens_d == pytest.approx(2 / math.sqrt(2.5))
    # J(4) = Γ(2) / (sqrt(2) Γ(3/2)) = sqrt(2/π)  (Hedges 1981)
    assert c.hedges_g == pytest.approx(math.sqrt(2 / math.pi) * 2 / math.sqrt(2.5))
    assert math.isnan(c.cohens_dz) and math.isnan(c.pvalue_paired) and math.isnan(c.sd_diff)


def test_cohens_dz_of_hand_made_pairs():
    # differences 1, 2, 3: mean 2, SD 1.
    c = compare([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], paired=True, **FAST)
    assert c.cohens_dz == pytest.approx(2.0)
    assert c.sd_diff == pytest.approx(1.0)
    assert c.statistic == pytest.approx(2.0 * math.sqrt(3))  # t = d_z sqrt(n)


def test_hedges_correction_matches_the_usual_approximation_for_large_df():
    t = np.linspace(0, 1, 21)
    c = compare(t + 0.3, t, paired=False, **FAST)  # df = 40
    j_approx = 1 - 3 / (4 * 40 - 1)  # Hedges (1981), eq. 6e's approximation
    assert c.hedges_g / c.cohens_d == pytest.approx(j_approx, abs=1e-4)


def test_tests_and_intervals_are_scipys():
    t = [71.0, 74.0, 73.0, 76.0, 72.0]
    c = [70.0, 71.5, 72.5, 73.0, 72.0]
    paired = compare(t, c, paired=True, confidence=0.9, **FAST)
    rel = stats.ttest_rel(t, c)
    welch = stats.ttest_ind(t, c, equal_var=False)
    assert paired.pvalue == pytest.approx(rel.pvalue)
    assert paired.pvalue_paired == pytest.approx(rel.pvalue)
    assert paired.pvalue_welch == pytest.approx(welch.pvalue)
    assert paired.statistic == pytest.approx(rel.statistic)
    assert paired.df == 4
    ci = rel.confidence_interval(confidence_level=0.9)
    assert paired.ci == pytest.approx((ci.low, ci.high))

    unpaired = compare(t, c, paired=False, **FAST)
    assert unpaired.pvalue == pytest.approx(welch.pvalue)
    assert unpaired.df == pytest.approx(welch.df)
    ci = welch.confidence_interval()
    assert unpaired.ci == pytest.approx((ci.low, ci.high))


def test_bootstrap_is_scipys_and_resamples_pairs():
    rng = np.random.default_rng(3)
    base = rng.normal(60, 5, size=8)  # large seed-to-seed variation shared by both conditions
    t, c = base + 1.0 + rng.normal(0, 0.3, 8), base + rng.normal(0, 0.3, 8)
    got = compare(t, c, paired=True, n_resamples=499, seed=7)
    # Drawing a per-seed difference draws its pair.
    ref = stats.bootstrap(
        (t - c,), np.mean, n_resamples=499, rng=np.random.default_rng(7)
    ).confidence_interval
    assert got.bootstrap_method == "BCa"
    assert got.bootstrap_ci == pytest.approx((ref.low, ref.high))
    # Resampling pairs removes the shared seed variation: far narrower than resampling groups.
    unpaired = compare(t, c, paired=False, n_resamples=499, seed=7)
    ref = stats.bootstrap(
        (t, c),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        vectorized=True,
        n_resamples=499,
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert unpaired.bootstrap_ci == pytest.approx((ref.low, ref.high))
    width = got.bootstrap_ci[1] - got.bootstrap_ci[0]
    assert width < 0.25 * (unpaired.bootstrap_ci[1] - unpaired.bootstrap_ci[0])
    assert got.bootstrap_ci[0] > 0


def test_noncentral_t_interval_at_zero_effect_is_exactly_normal():
    # With t = 0, P(T <= 0; ncp) = Φ(-ncp) whatever the df, so the ncp bounds are ±z_{.975}.
    t, c = [1.0, 2.0, 3.0, 4.0], [0.0, 2.5, 2.5, 5.0]
    unpaired = compare(t, c, paired=False, **FAST)
    assert unpaired.cohens_d == 0.0
    half = Z975 * math.sqrt((4 + 4) / (4 * 4))
    assert unpaired.cohens_d_ci == pytest.approx((-half, half), abs=1e-8)
    j = unpaired.hedges_g_ci[1] / unpaired.cohens_d_ci[1]
    assert j == pytest.approx(math.exp(special.gammaln(3) - special.gammaln(2.5)) / math.sqrt(3))

    paired = compare([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0], paired=True, **FAST)
    assert paired.cohens_dz == 0.0
    assert paired.cohens_dz_ci == pytest.approx((-Z975 / 2, Z975 / 2), abs=1e-8)


def test_noncentral_t_interval_agrees_with_large_sample_formula():
    # For large n the exact interval approaches d ± z sqrt((n1+n2)/(n1 n2) + d²/(2(n1+n2)))
    # (Hedges & Olkin 1985, eq. 5.14).
    rng = np.random.default_rng(0)
    t, c = rng.normal(0.5, 1, 1500), rng.normal(0, 1, 1200)
    got = compare(t, c, paired=False, **FAST)
    d = got.cohens_d
    se = math.sqrt((1500 + 1200) / (1500 * 1200) + d**2 / (2 * 2700))
    assert got.cohens_d_ci == pytest.approx((d - Z975 * se, d + Z975 * se), abs=2e-3)


def test_noncentral_t_interval_inverts_the_noncentral_cdf():
    t, c = [3.0, 5.0, 4.0, 6.0, 5.5], [2.0, 3.0, 2.5, 3.5, 4.0]
    got = compare(t, c, paired=False, confidence=0.9, **FAST)
    factor = math.sqrt(5 * 5 / 10)
    t_obs = got.cohens_d * factor
    assert stats.nct.cdf(t_obs, 8, got.cohens_d_ci[0] * factor) == pytest.approx(0.95)
    assert stats.nct.cdf(t_obs, 8, got.cohens_d_ci[1] * factor) == pytest.approx(0.05)


def test_paired_d_interval_uses_the_matched_groups_variance():
    t = np.array([71.0, 74.0, 73.0, 76.0, 72.0, 75.0])
    c = np.array([70.0, 71.5, 72.5, 73.0, 72.0, 72.0])
    got = compare(t, c, paired=True, **FAST)
    r = stats.pearsonr(t, c).statistic
    d, n = got.cohens_d, 6
    half = Z975 * math.sqrt((1 / n + d**2 / (2 * n)) * 2 * (1 - r))  # Borenstein 2009, 4.28
    assert got.cohens_d_ci == pytest.approx((d - half, d + half))
    assert "Borenstein" in got.effect_ci_method


# --------------------------------------------------------------------------------------------
# compare: degenerate inputs
# --------------------------------------------------------------------------------------------


def test_constant_differences_give_nan_inference_not_a_crash():
    c = compare([0.7, 0.8, 0.9], [0.6, 0.7, 0.8], paired=True, **FAST)
    assert c.diff == pytest.approx(0.1)
    assert c.sd_diff == 0.0
    assert math.isnan(c.pvalue) and math.isnan(c.statistic) and math.isnan(c.cohens_dz)
    assert all(math.isnan(v) for v in c.ci + c.bootstrap_ci + c.cohens_dz_ci)
    assert c.bootstrap_method == "none"
    assert 0 < c.pvalue_welch < 1  # the groups themselves do vary
    assert math.isfinite(c.cohens_d)


def test_both_groups_constant_gives_nan_everything_but_the_difference():
    c = compare([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], paired=False, **FAST)
    assert (c.diff, c.rel_diff_pct, c.sd_pooled) == (0.5, 100.0, 0.0)
    for value in (c.pvalue, c.pvalue_welch, c.cohens_d, c.hedges_g, *c.cohens_d_ci, *c.ci):
        assert math.isnan(value)


def test_zero_control_mean_gives_nan_relative_difference():
    c = compare([0.1, 0.2], [-0.1, 0.1], paired=False, **FAST)
    assert math.isnan(c.rel_diff_pct)


def test_two_pairs_give_no_hedges_g():
    c = compare([1.0, 2.0], [0.0, 0.5], paired=True, **FAST)  # df = 1: J undefined
    assert math.isfinite(c.cohens_d) and math.isnan(c.hedges_g)


@pytest.mark.parametrize(
    ("treatment", "control", "kwargs", "error", "match"),
    [
        ([1.0], [1.0, 2.0], {"paired": False}, ValueError, "at least 2"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], {"paired": True}, ValueError, "paired=False"),
        ([1.0, 2.0], [1.0, float("inf")], {"paired": False}, ValueError, "NaN or infinite"),
        ([1.0, 2.0], [1.0, 2.0], {"paired": 1}, TypeError, "True or False"),
        ([1.0, 2.0], [1.0, 2.0], {"paired": True, "n_resamples": 0}, ValueError, ">= 1"),
        ([1.0, 2.0], [1.0, 2.0], {"paired": True, "seed": -1}, ValueError, "seed"),
        ([1.0, 2.0], [1.0, 2.0], {"paired": True, "confidence": 1.5}, ValueError, "(0, 1)"),
    ],
)
def test_compare_rejects_bad_input(treatment, control, kwargs, error, match):
    with pytest.raises(error, match=match):
        compare(treatment, control, **kwargs)


# --------------------------------------------------------------------------------------------
# compare: properties
# --------------------------------------------------------------------------------------------


@PROPS
@given(samples())
def test_swapping_groups_negates_every_effect(data):
    t, c, paired = data
    ab = compare(t, c, paired=paired, **FAST)
    ba = compare(c, t, paired=paired, **FAST)
    assert _close(ab.diff, -ba.diff)
    assert _close(ab.cohens_d, -ba.cohens_d)
    assert _close(ab.hedges_g, -ba.hedges_g)
    assert _close(ab.cohens_dz, -ba.cohens_dz)
    assert _close(ab.cohens_d_ci, _neg(ba.cohens_d_ci), tol=1e-7)
    assert _close(ab.cohens_dz_ci, _neg(ba.cohens_dz_ci), tol=1e-7)
    assert _close(ab.ci, _neg(ba.ci))
    if paired:  # unpaired, swapping the groups swaps which one gets the generator's first draws
        assert _close(ab.bootstrap_ci, _neg(ba.bootstrap_ci), tol=1e-7)
    assert _close(ab.pvalue, ba.pvalue) and _close(ab.pvalue_welch, ba.pvalue_welch)


@PROPS
@given(samples(), st.integers(min_value=-1000, max_value=1000).map(float))
def test_shifting_both_groups_changes_nothing(data, shift):
    t, c, paired = data
    before = compare(t, c, paired=paired, **FAST)
    after = compare([v + shift for v in t], [v + shift for v in c], paired=paired, **FAST)
    assert before.bootstrap_method == after.bootstrap_method
    for name in (
        "diff",
        "ci",
        "statistic",
        "df",
        "pvalue",
        "pvalue_welch",
        "sd_pooled",
        "sd_diff",
        "cohens_d",
        "cohens_d_ci",
        "cohens_dz",
        "cohens_dz_ci",
        "hedges_g",
        "hedges_g_ci",
        "bootstrap_ci",  # whole-number scores keep BCa's count of ties with the estimate exact
    ):
        assert _close(getattr(before, name), getattr(after, name), tol=1e-7), name


@PROPS
@given(samples())
def test_intervals_contain_their_point_estimates(data):
    t, c, paired = data
    r = compare(t, c, paired=paired, **FAST)
    for estimate, (low, high) in [
        (r.diff, r.ci),
        (r.diff, r.bootstrap_ci),
        (r.cohens_d, r.cohens_d_ci),
        (r.cohens_dz, r.cohens_dz_ci),
        (r.hedges_g, r.hedges_g_ci),
    ]:
        if math.isnan(low):
            continue
        assert low <= estimate + 1e-9 and estimate - 1e-9 <= high


@PROPS
@given(samples())
def test_primary_pvalue_is_the_designs_scipy_test(data):
    t, c, paired = data
    r = compare(t, c, paired=paired, **FAST)
    if math.isnan(r.pvalue):
        return
    with warnings.catch_warnings():  # scipy warns about the one constant group; we do not
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        ref = stats.ttest_rel(t, c) if paired else stats.ttest_ind(t, c, equal_var=False)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------------------------
# adjust_pvalues
# --------------------------------------------------------------------------------------------


def test_holm_and_bh_known_values():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") / "BH"
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues(p, "bh") == pytest.approx(stats.false_discovery_control(p))


def test_adjust_keeps_nan_out_of_the_family():
    got = adjust_pvalues([0.01, float("nan"), 0.04], "holm")
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1]) and got[2] == pytest.approx(0.04)
    assert np.isnan(adjust_pvalues([float("nan")], "bh")).all()
    assert adjust_pvalues([], "holm").size == 0


@pytest.mark.parametrize(
    ("pvalues", "method", "match"),
    [
        ([0.1], "bonferroni", '"holm" or "bh"'),
        ([0.1, 1.2], "holm", r"\[0, 1\]"),
        ([[0.1, 0.2]], "holm", "one-dimensional"),
    ],
)
def test_adjust_rejects_bad_input(pvalues, method, match):
    with pytest.raises(ValueError, match=match):
        adjust_pvalues(pvalues, method)


pvalue_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=20)


@PROPS
@given(pvalue_lists, st.sampled_from(["holm", "bh"]))
def test_adjusted_pvalues_are_bounded_and_monotone(p, method):
    raw = np.array(p)
    adj = adjust_pvalues(raw, method)
    assert np.all(adj >= raw - 1e-15) and np.all(adj <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)


@PROPS
@given(pvalue_lists, st.floats(min_value=0.001, max_value=0.2))
def test_holm_rejects_exactly_what_the_step_down_procedure_rejects(p, alpha):
    # Holm (1979): reject p_(1) if <= alpha/m, then p_(2) if <= alpha/(m-1), ...; stop at the
    # first failure. The adjusted p-values must reproduce that decision at every alpha.
    m = len(p)
    rejected = set()
    for step, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] > alpha / (m - step):
            break
        rejected.add(i)
    adj = adjust_pvalues(p, "holm")
    # Points where (m-j+1) p_(j) lands exactly on alpha are decided by rounding: skip them.
    assume(all(abs(v - alpha) > 1e-12 for v in adj))
    assert {i for i in range(m) if adj[i] <= alpha} == rejected


@PROPS
@given(pvalue_lists)
def test_holm_is_never_less_conservative_than_bh(p):
    assert np.all(adjust_pvalues(p, "holm") >= adjust_pvalues(p, "bh") - 1e-12)


# --------------------------------------------------------------------------------------------
# power and minimum detectable effect
# --------------------------------------------------------------------------------------------


def _power_by_integration(d, n, alpha, paired):
    """Two-sided t-test power from the definition T = (Z + ncp) / sqrt(V / df), V ~ chi2(df)."""
    df = n - 1 if paired else 2 * n - 2
    ncp = d * (math.sqrt(n) if paired else math.sqrt(n / 2))
    crit = stats.t.isf(alpha / 2, df)

    def integrand(v):
        scale = crit * math.sqrt(v / df)
        return (stats.norm.sf(scale - ncp) + stats.norm.cdf(-scale - ncp)) * stats.chi2.pdf(v, df)

    return integrate.quad(integrand, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize(
    ("d", "n", "expected", "source"),
    [
        (0.5, 64, 0.8015, "Cohen 1988 Table 2.4.1: n = 64 for d = .5; pwr.t.test 0.8014596"),
        (0.8, 26, 0.8075, "Cohen 1988 Table 2.4.1: n = 26 for d = .8; pwr.t.test 0.8074866"),
        (1.0, 20, 0.8690, "R help example power.t.test(n = 20, delta = 1): 0.8689528"),
    ],
)
def test_power_matches_published_values(d, n, expected, source):
    assert power(d, n) == pytest.approx(expected, abs=1e-4), source


def test_minimum_detectable_effect_of_five_seeds():
    # The study's sanity value: 5 runs per condition, two groups, alpha .05, power .8.
    assert minimum_detectable_effect(5) == pytest.approx(2.02, abs=0.005)
    assert power(minimum_detectable_effect(5), 5) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("d", "n", "target", "source"),
    [
        (0.5, 64, 0.8, "Cohen 1988 Table 2.4.1"),
        (0.8, 26, 0.8, "Cohen 1988 Table 2.4.1"),
        (2 / 3, 49, 0.9, "pwr.t.test(d = 2/3, power = .9): n = 48.26"),
        (1.0, 23, 0.9, "R help example power.t.test(power = .90, delta = 1): n = 22.02"),
    ],
)
def test_minimum_detectable_effect_agrees_with_sample_size_tables(d, n, target, source):
    # Tables give the smallest n per group with power >= target for effect d, so d is
    # detectable with n but not with n - 1.
    assert minimum_detectable_effect(n, power=target) <= d, source
    assert minimum_detectable_effect(n - 1, power=target) > d, source


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize(("d", "n", "alpha"), [(2.0, 5, 0.05), (0.7, 12, 0.01), (6.0, 3, 0.05)])
def test_power_matches_numerical_integration(d, n, alpha, paired):
    expected = _power_by_integration(d, n, alpha, paired)
    assert power(d, n, alpha=alpha, paired=paired) == pytest.approx(expected, abs=1e-7)


def test_power_handles_the_far_tail_where_scipy_nct_returns_nan():
    # stats.nct.cdf(-t_crit, 3, 8) is NaN in scipy 1.17; power(2 * 8 / sqrt(8)) hits it.
    d = 8 / math.sqrt(4)
    assert power(d, 4, paired=True) == pytest.approx(_power_by_integration(d, 4, 0.05, True))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=2, max_value=200),
    st.sampled_from([0.01, 0.05, 0.1]),
    st.floats(min_value=0.2, max_value=0.99),
    st.booleans(),
)
def test_mde_has_the_requested_power(n, alpha, target, paired):
    assume(target > alpha + 0.01)
    d = minimum_detectable_effect(n, alpha=alpha, power=target, paired=paired)
    assert d > 0
    assert power(d, n, alpha=alpha, paired=paired) == pytest.approx(target, abs=1e-8)
    assert minimum_detectable_effect(n + 1, alpha=alpha, power=target, paired=paired) < d


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=-4, max_value=4), st.integers(min_value=2, max_value=50))
def test_power_is_symmetric_and_alpha_at_zero(d, n):
    assert power(d, n) == pytest.approx(power(-d, n), abs=1e-12)
    assert power(0.0, n, alpha=0.05) == pytest.approx(0.05)
    assert power(abs(d) + 0.1, n) >= power(abs(d), n)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_per_group": 1}, ValueError, ">= 2"),
        ({"n_per_group": 5.0}, TypeError, "integer"),
        ({"n_per_group": 5, "power": 0.04}, ValueError, "must exceed `alpha`"),
        ({"n_per_group": 5, "alpha": 0.0}, ValueError, "alpha"),
    ],
)
def test_mde_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        minimum_detectable_effect(**kwargs)


# --------------------------------------------------------------------------------------------
# records: interaction_test and analyze
# --------------------------------------------------------------------------------------------

SEEDS = range(5)
CONDITIONS = ("random", "easy_to_hard", "hard_to_easy", "zpd_adaptive")


def make_records(gains=None, *, seed=0):
    """Two models × four conditions × five seeds × two metrics, seed-level noise shared."""
    gains = gains or {"solar": 3.0, "qwen": 0.5}
    rng = np.random.default_rng(seed)
    records = []
    for model, gain in gains.items():
        for s in SEEDS:
            base = rng.normal(60, 3)  # the seed's initial model: shared by every condition
            for condition in CONDITIONS:
                effect = gain if condition == "zpd_adaptive" else 0.0
                records.append(
                    {
                        "model": model,
                        "condition": condition,
                        "seed": s,
                        "metrics": {
                            "kobest": base + effect + rng.normal(0, 0.5),
                            "mmlu": base / 2 + rng.normal(0, 0.5),
                        },
                    }
                )
    return records


def _values(records, model, condition, metric):
    by_seed = {
        r["seed"]: r["metrics"][metric]
        for r in records
        if r["model"] == model and r["condition"] == condition
    }
    return np.array([by_seed[s] for s in sorted(by_seed)])


def test_interaction_is_a_welch_test_on_per_seed_differences():
    records = make_records()
    got = interaction_test(
        records,
        model_a="solar",
        model_b="qwen",
        condition="zpd_adaptive",
        control="random",
        metric="kobest",
        n_resamples=499,
    )
    ea = _values(records, "solar", "zpd_adaptive", "kobest") - _values(
        records, "solar", "random", "kobest"
    )
    eb = _values(records, "qwen", "zpd_adaptive", "kobest") - _values(
        records, "qwen", "random", "kobest"
    )
    welch = stats.ttest_ind(ea, eb, equal_var=False)
    assert got.did == pytest.approx(ea.mean() - eb.mean())
    assert (got.effect_a, got.effect_b) == pytest.approx((ea.mean(), eb.mean()))
    assert got.pvalue == pytest.approx(welch.pvalue)
    assert got.df == pytest.approx(welch.df)
    assert got.pvalue_greater == pytest.approx(welch.pvalue / 2)  # t > 0 here
    ci = welch.confidence_interval()
    assert got.ci == pytest.approx((ci.low, ci.high))
    assert got.bootstrap_ci[0] <= got.did <= got.bootstrap_ci[1]
    direct = compare(
        _values(records, "solar", "zpd_adaptive", "kobest"),
        _values(records, "solar", "random", "kobest"),
        paired=True,
        n_resamples=499,
    )
    assert got.cohens_d_a == pytest.approx(direct.cohens_d)
    assert got.comparison_a == direct
    assert got.did > 0 and got.pvalue < 0.05  # a 3-point vs 0.5-point gain with SD 0.7


def test_interaction_swapping_models_negates_it():
    records = make_records()
    kw = {"condition": "zpd_adaptive", "control": "random", "metric": "kobest", **FAST}
    ab = interaction_test(records, model_a="solar", model_b="qwen", **kw)
    ba = interaction_test(records, model_a="qwen", model_b="solar", **kw)
    assert ab.did == pytest.approx(-ba.did)
    assert ab.statistic == pytest.approx(-ba.statistic)
    assert ab.pvalue == pytest.approx(ba.pvalue)
    assert ab.pvalue_greater == pytest.approx(1 - ba.pvalue_greater)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": None}, "several metrics"),
        ({"metric": "gsm8k"}, "not in the records"),
        ({"model_b": "llama"}, "not in the records"),
        ({"model_b": "solar"}, "two models"),
        ({"control": "curriculum"}, "control condition"),
    ],
)
def test_interaction_rejects_bad_arguments(kwargs, match):
    base = {
        "model_a": "solar",
        "model_b": "qwen",
        "condition": "zpd_adaptive",
        "control": "random",
        "metric": "kobest",
    }
    with pytest.raises(ValueError, match=match):
        interaction_test(make_records(), **{**base, **kwargs}, **FAST)


def test_analyze_matches_compare_on_seed_aligned_values():
    records = make_records()
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)  # pairing must follow seeds, not record order
    result = analyze(shuffled, **FAST)
    assert isinstance(result, StudyAnalysis)
    assert result.models == ("solar", "qwen")
    assert result.conditions[0] == "random" and set(result.conditions) == set(CONDITIONS)
    assert set(result.metrics) == {"kobest", "mmlu"}
    for model in result.models:
        for metric in result.metrics:
            control = _values(records, model, "random", metric)
            assert result.summaries[model, metric, "random"] == describe(control)
            for condition in CONDITIONS[1:]:
                expected = compare(
                    _values(records, model, condition, metric), control, paired=True, **FAST
                )
                assert result.comparisons[model, metric, condition] == expected
        family = [k for k in result.comparisons if k[0] == model]
        assert len(family) == 6  # 2 metrics × 3 conditions: one family per model
        adjusted = adjust_pvalues([result.comparisons[k].pvalue for k in family], "holm")
        assert [result.pvalues_adjusted[k] for k in family] == pytest.approx(adjusted.tolist())
        assert result.mde[model] == MDE(
            n=5,
            paired=True,
            alpha=0.05,
            power=0.8,
            d=minimum_detectable_effect(5, paired=True),
            n_tests=6,
            d_corrected=minimum_detectable_effect(5, alpha=0.05 / 6, paired=True),
        )
    assert result.comparisons["solar", "kobest", "zpd_adaptive"].diff == pytest.approx(3.0, abs=1)


def test_analyze_families_are_per_model():
    records = make_records()
    both = analyze(records, **FAST)
    solar_only = analyze([r for r in records if r["model"] == "solar"], **FAST)
    for key, p in solar_only.pvalues_adjusted.items():
        assert both.pvalues_adjusted[key] == pytest.approx(p)


def test_analyze_bh_and_unpaired_options():
    records = make_records()
    result = analyze(records, correction="bh", paired=False, metrics=["kobest"], **FAST)
    assert result.metrics == ("kobest",)
    key = ("qwen", "kobest", "zpd_adaptive")
    c = result.comparisons[key]
    assert not c.paired
    welch = stats.ttest_ind(
        _values(records, "qwen", "zpd_adaptive", "kobest"),
        _values(records, "qwen", "random", "kobest"),
        equal_var=False,
    )
    assert c.pvalue == pytest.approx(welch.pvalue)
    family = [k for k in result.comparisons if k[0] == "qwen"]
    expected = stats.false_discovery_control([result.comparisons[k].pvalue for k in family])
    assert [result.pvalues_adjusted[k] for k in family] == pytest.approx(expected.tolist())
    assert result.mde["qwen"].d == pytest.approx(minimum_detectable_effect(5))


def test_analyze_to_dict_is_strict_json():
    records = [
        {"model": "m", "condition": c, "seed": s, "metrics": {"acc": v}}
        for s in range(3)
        for c, v in [("random", 0.5 + 0.1 * s), ("zpd", 0.6 + 0.1 * s)]  # constant difference
    ]
    result = analyze(records, **FAST)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    (comparison,) = data["comparisons"]
    assert comparison["condition"] == "zpd" and comparison["control"] == "random"
    assert comparison["diff"] == pytest.approx(0.1)
    assert comparison["pvalue"] is None and comparison["pvalue_adjusted"] is None
    assert comparison["ci"] == [None, None]
    assert len(data["values"]) == 6 and data["values"][0] == {
        "model": "m",
        "metric": "acc",
        "condition": "random",
        "seed": 0,
        "value": 0.5,
    }
    assert data["mde"]["m"]["n"] == 3
    assert {s["condition"] for s in data["summaries"]} == {"random", "zpd"}


def _run(model="m", condition="random", seed=0, metrics=None):
    return {"model": model, "condition": condition, "seed": seed, "metrics": metrics or {"a": 1.0}}


@pytest.mark.parametrize(
    ("records", "kwargs", "error", "match"),
    [
        ([_run(), _run()], {}, ValueError, "repeats"),
        ([_run(condition="zpd")], {}, ValueError, "conditions found"),
        ([{"model": "m", "seed": 0, "metrics": {}}], {}, ValueError, "lacks the key"),
        ([_run(seed=True)], {}, TypeError, "seed"),
        ([_run(metrics={"a": float("nan")})], {}, ValueError, "finite number"),
        ([_run(metrics={"a": "0.5"})], {}, ValueError, "finite number"),
        ([_run()], {"metrics": ["b"]}, ValueError, "has no metric 'b'"),
        ([_run()], {"metrics": "a"}, TypeError, "list of names"),
        ([_run()], {"correction": "bonferroni"}, ValueError, "correction"),
        ({"model": "m"}, {}, TypeError, "list of dicts"),
        (["m"], {}, TypeError, "must be a dict"),
        ([], {}, ValueError, "no metric values"),
    ],
)
def test_analyze_rejects_bad_records(records, kwargs, error, match):
    with pytest.raises(error, match=match):
        analyze(records, **kwargs)


def test_analyze_paired_needs_matching_seeds_and_says_how_to_proceed():
    records = [
        r for r in make_records() if not (r["condition"] == "zpd_adaptive" and r["seed"] == 4)
    ]
    with pytest.raises(ValueError, match=r"only in 'random': \[4\].*paired=False"):
        analyze(records, **FAST)
    result = analyze(records, paired=False, **FAST)
    assert result.comparisons["solar", "kobest", "zpd_adaptive"].n_treatment == 4


def test_comparison_is_frozen():
    c = compare([1.0, 2.0, 3.0], [1.0, 1.5, 2.0], paired=True, **FAST)
    assert isinstance(c, Comparison)
    with pytest.raises(AttributeError):
        c.diff = 0.0  # type: ignore[misc]
