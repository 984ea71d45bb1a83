"""EasyToHard / HardToEasy: pools, no repeats, the sorted pass, and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import run
from strategies import pacings, seeds, unit_open
from zpd_curriculum import EasyToHardSampler, HardToEasySampler, competence

difficulties = st.integers(2, 150).flatmap(
    lambda n: st.lists(st.integers(0, 20), min_size=n, max_size=n).map(np.asarray)
)


@given(d=difficulties, seed=seeds, pacing=pacings, start=unit_open, block=st.integers(1, 40))
def test_each_block_draws_from_the_easiest_pool(d, seed, pacing, start, block):
    n = len(d)
    sampler = EasyToHardSampler(
        n, difficulty=d, pacing=pacing, start=start, full_at=0.7, seed=seed, refresh_every=block
    )
    out = np.asarray(run(sampler))
    rank = np.empty(n, dtype=int)
    rank[sampler.order] = np.arange(n)
    for b in range(math.ceil(n / sampler.refresh_every)):
        lo = b * sampler.refresh_every
        c = competence(lo / n, pacing, start=start, full_at=0.7)
        pool = min(n, max(1, math.ceil(c * n)))
        assert rank[out[lo : lo + sampler.refresh_every]].max() < pool
    # the order is easiest-first: a difficulty tie never puts a harder example before an easier
    assert np.all(np.diff(d[sampler.order]) >= 0)


@given(d=difficulties, seed=seeds, block=st.integers(1, 40), start=unit_open)
def test_no_repeat_until_the_pool_is_exhausted(d, seed, block, start):
    n = len(d)
    sampler = EasyToHardSampler(
        n, difficulty=d, start=start, seed=seed, refresh_every=block, num_samples=2 * n
    )
    out = run(sampler)
    rank = np.empty(n, dtype=int)
    rank[sampler.order] = np.arange(n)
    drawn_since_reset: set[int] = set()
    for pos, index in enumerate(out):
        b = pos // sampler.refresh_every
        pool = min(n, max(1, math.ceil(sampler.competence_at(b * sampler.refresh_every) * n)))
        if drawn_since_reset >= {int(i) for i in sampler.order[:pool]}:
            drawn_since_reset = set()  # the pool was exhausted: a repeat is now allowed
        assert index not in drawn_since_reset
        drawn_since_reset.add(index)


@given(d=difficulties, seed=seeds)
def test_sorted_pass_is_non_decreasing_in_difficulty(d, seed):
    out = run(EasyToHardSampler(len(d), difficulty=d, pacing="sorted", seed=seed))
    assert sorted(out) == list(range(len(d)))
    assert np.all(np.diff(d[out]) >= 0)
    out = run(HardToEasySampler(len(d), difficulty=d, pacing="sorted", seed=seed))
    assert np.all(np.diff(d[out]) <= 0)


@given(
    d=difficulties, seed=seeds, pacing=pacings, block=st.integers(1, 40), epochs=st.integers(1, 3)
)
def test_hard_to_easy_is_easy_to_hard_on_reversed_difficulty(d, seed, pacing, block, epochs):
    kw = {"pacing": pacing, "seed": seed, "refresh_every": block, "total_samples": 2 * len(d)}
    h2e = HardToEasySampler(len(d), difficulty=d, **kw)
    e2h = EasyToHardSampler(len(d), difficulty=-d, **kw)
    for epoch in range(epochs):
        h2e.set_epoch(epoch)
        e2h.set_epoch(epoch)
        assert run(h2e) == run(e2h)
    np.testing.assert_array_equal(h2e.difficulty, d)


def test_pool_is_full_after_full_at():
    d = np.arange(100)
    sampler = EasyToHardSampler(100, difficulty=d, start=0.1, full_at=0.5, refresh_every=10)
    out = run(sampler)
    assert max(out[:10]) < 10
    assert max(out[60:]) > 50  # after progress 0.5 the hardest half is eligible


def test_total_samples_spreads_the_curriculum_over_epochs():
    sampler = EasyToHardSampler(
        50, difficulty=np.arange(50), start=0.1, full_at=1.0, total_samples=200, refresh_every=5
    )
    sampler.set_epoch(1)
    assert sampler.competence_at(0) == pytest.approx(competence(0.25, start=0.1, full_at=1.0))


@pytest.mark.parametrize("cls", [EasyToHardSampler, HardToEasySampler])
def test_difficulty_errors_name_positions_and_shape(cls):
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).*position\(s\) 1, 3"):
        cls(4, difficulty=[0.0, np.nan, 1.0, np.inf])
    with pytest.raises(ValueError, match=r"expected shape \(4,\), got \(3,\)"):
        cls(4, difficulty=[0.0, 1.0, 2.0])


def test_difficulty_is_required():
    with pytest.raises(TypeError, match="difficulty"):
        EasyToHardSampler(4)  # type: ignore[call-arg]


def test_draws_are_uniform_over_the_pool():
    """The first draw of a block is uniform over the eligible pool (chi-square over seeds)."""
    from scipy import stats

    n, pool = 40, 10  # competence 0.25 throughout: the easiest 10 are eligible
    firsts = [
        run(EasyToHardSampler(n, difficulty=np.arange(n), start=0.25, full_at=1.0,
                              total_samples=10**9, refresh_every=5, seed=seed), limit=1)[0]
        for seed in range(3000)
    ]  # fmt: skip
    counts = np.bincount(firsts, minlength=n)
    assert counts[pool:].sum() == 0
    assert stats.chisquare(counts[:pool]).pvalue > 1e-3
