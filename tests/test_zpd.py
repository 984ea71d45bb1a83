"""ZPD weighting (pure functions) and the ZPDAdaptiveSampler's loss table and draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from helpers import run
from strategies import losses_arrays, seeds
from zpd_curriculum import (
    ZPDAdaptiveSampler,
    effective_sample_size,
    relative_difficulty,
    zpd_probabilities,
    zpd_weights,
)

rel = arrays(np.float32, st.integers(1, 300), elements=st.floats(-6, 6, width=32))
floors = st.floats(0.0, 1.0)
centers = st.floats(-2.0, 2.0)
widths = st.floats(0.05, 3.0)


@given(r=rel, floor=floors, center=centers, width=widths)
def test_probabilities_sum_to_one_and_respect_the_floor(r, floor, center, width):
    p = zpd_probabilities(r, center=center, width=width, floor=floor)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(p >= floor / r.size * (1 - 1e-9))


@given(value=st.floats(-6, 6), n=st.integers(1, 300), floor=floors)
def test_equal_losses_give_uniform_probabilities(value, n, floor):
    p = zpd_probabilities(np.full(n, value, dtype=np.float32), floor=floor)
    np.testing.assert_allclose(p, 1.0 / n, rtol=1e-9)


@given(r=rel, center=centers, width=widths, floor=st.floats(0.0, 0.99))
def test_probability_is_monotone_in_distance_from_the_band_centre(r, center, width, floor):
    p = zpd_probabilities(r, center=center, width=width, floor=floor)
    distance = np.abs(r.astype(np.float64) - center)
    order = np.argsort(distance, kind="stable")
    assert np.all(np.diff(p[order]) <= 1e-12)


def test_band_shape():
    w = zpd_weights(np.array([0.25, 0.75, -0.25, 10.0]), center=0.25, width=0.5)
    np.testing.assert_allclose(w[:3], [1.0, math.exp(-0.5), math.exp(-0.5)], rtol=1e-6)
    assert w[3] < 1e-30


def test_relative_difficulty_corrects_for_staleness():
    # loss 2.0 seen when competence was 4.0 is "half as hard as average", now as then
    r = relative_difficulty([2.0, 2.0], [4.0, 1.0])
    np.testing.assert_allclose(r, [math.log(0.5), math.log(2.0)], rtol=1e-6)


def test_unseen_examples_take_the_prior_quantile():
    ema = np.array([1.0, 2.0, 4.0, np.nan, np.nan], dtype=np.float32)
    r = relative_difficulty(ema, np.ones(5), prior_percentile=[0.0, 0.5, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(r[3:], [0.0, math.log(4.0)], rtol=1e-6)
    r = relative_difficulty(ema, np.ones(5))
    np.testing.assert_array_equal(r[3:], [0.0, 0.0])


def test_effective_sample_size_bounds():
    assert effective_sample_size(np.full(8, 1 / 8)) == pytest.approx(8)
    assert effective_sample_size([0.5, 0.5, 0.0]) == pytest.approx(2)


# ------------------------------------------------------------------------ the sampler's table
@given(losses=losses_arrays, momentum=st.floats(0.0, 1.0))
def test_table_is_an_ema_initialised_by_the_first_observation(losses, momentum):
    sampler = ZPDAdaptiveSampler(3, loss_momentum=momentum)
    expected = None
    for step, loss in enumerate(losses):
        sampler.update([1], [loss])
        expected = loss if expected is None else momentum * expected + (1 - momentum) * loss
        assert sampler.example_losses[1] == pytest.approx(expected, rel=1e-4)
        assert sampler.observation_counts[1] == step + 1
        assert sampler.last_observed[1] == step
    assert sampler.example_losses.dtype == np.float32
    assert np.isnan(sampler.example_losses[[0, 2]]).all()
    assert sampler.num_observed == 1
    assert sampler.num_updates == len(losses)


@given(
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 10)),
        min_size=1,
        max_size=40,
    )
)
def test_nan_never_enters_the_table(values):
    sampler = ZPDAdaptiveSampler(5)
    idx = np.arange(len(values)) % 5
    sampler.update(idx, values)
    with np.errstate(over="ignore"):  # the table is float32: beyond its range is non-finite
        bad = int(np.sum(~np.isfinite(np.asarray(values).astype(np.float32))))
    assert sampler.num_nonfinite == bad
    table = sampler.example_losses
    seen = sampler.observation_counts > 0
    assert np.isfinite(table[seen]).all()
    assert np.isnan(table[~seen]).all()
    assert math.isnan(sampler.competence) or math.isfinite(sampler.competence)


def test_repeated_indices_in_one_update_apply_in_order():
    sampler = ZPDAdaptiveSampler(2, loss_momentum=0.5)
    sampler.update([0, 0, 0], [4.0, 2.0, 1.0])
    assert sampler.example_losses[0] == pytest.approx(((4 * 0.5 + 2 * 0.5) * 0.5) + 0.5)
    assert sampler.observation_counts[0] == 3


def test_competence_is_a_running_mean_of_batch_losses():
    sampler = ZPDAdaptiveSampler(4, competence_momentum=0.5)
    assert math.isnan(sampler.competence)
    sampler.update([0, 1], [2.0, 4.0])
    assert sampler.competence == pytest.approx(3.0)
    sampler.update([2], [1.0])
    assert sampler.competence == pytest.approx(2.0)


def test_update_validates_shapes_and_indices():
    sampler = ZPDAdaptiveSampler(4)
    with pytest.raises(ValueError, match="same length"):
        sampler.update([0, 1], [1.0])
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        sampler.update([4], [1.0])
    with pytest.raises(ValueError, match="add up to the 2 rows"):
        sampler.update([0, 1], [1.0, 2.0], step_sizes=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        sampler.update([0, 1], [1.0, 2.0], step_sizes=[3, -1])


@given(
    steps=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 7),
                st.one_of(st.floats(0, 10, width=32), st.sampled_from([np.nan, np.inf, 1e300])),
            ),
            max_size=6,
        ),
        min_size=1,
        max_size=8,
    ),
    momentum=st.floats(0.0, 1.0),
)
def test_several_steps_in_one_update_equal_one_update_per_step(steps, momentum):
    one_call = ZPDAdaptiveSampler(8, loss_momentum=momentum, competence_momentum=momentum)
    per_step = ZPDAdaptiveSampler(8, loss_momentum=momentum, competence_momentum=momentum)
    rows = [row for step in steps for row in step]
    one_call.update(
        [i for i, _ in rows], [v for _, v in rows], step_sizes=[len(step) for step in steps]
    )
    for step in steps:
        per_step.update([i for i, _ in step], [v for _, v in step])
    state, expected = one_call.state_dict(), per_step.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0.0}, "width"),
        ({"floor": 1.5}, "floor"),
        ({"warmup": -0.1}, "warmup"),
        ({"loss_momentum": 2.0}, "loss_momentum"),
        ({"center": float("nan")}, "center"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZPDAdaptiveSampler(10, **kwargs)


# ------------------------------------------------------------------------ draws
def test_warmup_is_uniform_until_enough_examples_are_observed():
    sampler = ZPDAdaptiveSampler(100, warmup=0.5)
    sampler.update(range(49), np.linspace(0.1, 10, 49))
    assert sampler.in_warmup
    np.testing.assert_allclose(sampler.probabilities(), 0.01)
    sampler.update([49], [1.0])
    assert not sampler.in_warmup
    assert sampler.probabilities().std() > 0


@given(seed=seeds, n=st.integers(2, 120), block=st.integers(1, 120), floor=st.floats(0, 1))
def test_no_index_repeats_within_a_block(seed, n, block, floor):
    sampler = ZPDAdaptiveSampler(n, seed=seed, refresh_every=block, floor=floor, warmup=0.0,
                                 num_samples=3 * n)
    rng = np.random.default_rng(seed)
    sampler.update(np.arange(n), rng.gamma(1.0, 2.0, n) ** 3)  # heavy-tailed: a narrow band
    out = run(sampler, feed_every=10**9)
    size = sampler.refresh_every
    for start in range(0, len(out), size):
        chunk = out[start : start + size]
        assert len(set(chunk)) == len(chunk)


def test_draws_follow_the_probabilities():
    """First draws of many blocks are distributed as p (chi-square goodness of fit)."""
    from scipy import stats

    n = 12
    sampler = ZPDAdaptiveSampler(n, warmup=0.0, floor=0.2, refresh_every=1, num_samples=20_000)
    sampler.update(np.arange(n), np.geomspace(0.2, 20.0, n))
    p = sampler.probabilities()
    counts = np.bincount(run(sampler, feed_every=10**9), minlength=n)
    result = stats.chisquare(counts, p * counts.sum())
    assert result.pvalue > 1e-3
    assert np.argmax(counts) == np.argmax(p)


def test_the_band_prefers_examples_just_above_competence():
    n = 400
    sampler = ZPDAdaptiveSampler(n, warmup=0.0, floor=0.05, refresh_every=50, num_samples=4000)
    losses = np.geomspace(0.05, 50.0, n)  # competence ends near the mean
    sampler.update(np.arange(n), losses)
    out = np.asarray(run(sampler, feed_every=10**9))
    r = np.log(losses[out] / sampler.competence)
    assert abs(np.median(r) - sampler.center) < 0.35
    assert np.mean(np.abs(r - sampler.center) < 2 * sampler.width) > 0.8


def test_plan_is_fixed_at_the_block_start():
    sampler = ZPDAdaptiveSampler(50, warmup=0.0, refresh_every=10)
    sampler.update(np.arange(50), np.linspace(0.1, 5, 50))
    sampler.plan_until(20)
    planned = sampler.state_dict()["planned"].copy()
    sampler.update(np.arange(50), np.linspace(5, 0.1, 50))  # a very different table
    assert run(sampler, feed_every=10**9)[:20] == planned.tolist()


def test_strict_planning_refuses_to_plan_when_the_loader_asks():
    sampler = ZPDAdaptiveSampler(50, refresh_every=10)
    sampler.plan_until(10)
    sampler.strict_planning = True
    with pytest.raises(RuntimeError, match="plan_ahead"):
        run(sampler, feed_every=10**9)


def test_state_is_at_most_16_bytes_per_example():
    n = 100_000
    sampler = ZPDAdaptiveSampler(n, difficulty=np.arange(n), refresh_every=4096)
    sampler.update(np.arange(n), np.ones(n))
    sampler.plan_until(n)  # a whole epoch planned
    in_memory = (
        sampler._ema.nbytes + sampler._count.nbytes + sampler._last.nbytes
        + sampler._prior.nbytes + sum(b.nbytes for b in sampler._blocks)
    )  # fmt: skip
    assert in_memory / n <= 16
    state = sampler.state_dict()
    on_disk = sum(v.nbytes for v in state.values() if isinstance(v, np.ndarray))
    assert (on_disk - state["history"].nbytes) / n <= 16
