"""The contract every sampler honours, run over the whole registry."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from helpers import assert_resumes_exactly, run
from strategies import SAMPLERS, sampler_setups, sizes

NAMES = sorted(SAMPLERS)


def make(name: str, setup: dict):
    options = {k: v for k, v in setup.items() if k != "n"}
    return SAMPLERS[name](setup["n"], **options)


@pytest.mark.parametrize("name", NAMES)
@given(setup=sampler_setups())
def test_length_is_fixed_and_indices_in_range(name, setup):
    total = setup["num_samples"] or setup["n"]
    r = setup["num_replicas"]
    if setup["drop_last"] and total < r:
        return  # refused at construction: see test_drop_last_with_too_few_samples_is_refused
    sampler = make(name, setup)
    expected = total // r if setup["drop_last"] else math.ceil(total / r)
    assert len(sampler) == expected
    for epoch in range(2):
        sampler.set_epoch(epoch)
        out = run(sampler)
        assert len(out) == expected
        assert all(isinstance(i, int) and 0 <= i < setup["n"] for i in out)
        assert len(sampler) == expected


@pytest.mark.parametrize("name", NAMES)
def test_drop_last_with_too_few_samples_is_refused(name):
    with pytest.raises(ValueError, match="drop_last"):
        SAMPLERS[name](10, num_samples=2, num_replicas=4, rank=0, drop_last=True)


@pytest.mark.parametrize("name", NAMES)
@given(setup=sampler_setups(), epoch=st.integers(0, 5))
def test_same_construction_and_epoch_give_same_order(name, setup, epoch):
    setup = {**setup, "drop_last": False}
    a, b = make(name, setup), make(name, setup)
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    assert run(a) == run(b)


@pytest.mark.parametrize("name", NAMES)
def test_global_rngs_are_untouched(name):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    sampler = SAMPLERS[name](50, seed=3, refresh_every=7)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        run(sampler)
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])


@pytest.mark.parametrize("name", NAMES)
@given(setup=sampler_setups(), midpoint=st.floats(0.0, 1.0), epochs=st.integers(1, 3))
def test_state_round_trip_continues_exactly(name, setup, midpoint, epochs):
    setup = {**setup, "drop_last": False}
    probe = make(name, setup)
    k = int(midpoint * len(probe))
    assert_resumes_exactly(lambda: make(name, setup), k, epochs=epochs)


@pytest.mark.parametrize("name", NAMES)
@given(setup=sampler_setups())
def test_shards_partition_the_global_stream(name, setup):
    """Ranks interleave one global stream: rank r holds positions r, r+R, ...; padding wraps."""
    world = setup["num_replicas"]
    base = {**setup, "num_replicas": 1, "rank": 0, "drop_last": False}
    stream = run(make(name, base), feed_every=10**9)  # no losses: a ZPD plan stays uniform
    total = len(stream)
    drop_last = setup["drop_last"] and total >= world
    shards = [
        run(make(name, {**setup, "rank": r, "drop_last": drop_last}), feed_every=10**9)
        for r in range(world)
    ]
    per_rank = total // world if drop_last else math.ceil(total / world)
    assert all(len(s) == per_rank for s in shards)
    for r, shard in enumerate(shards):
        for j, index in enumerate(shard):
            assert index == stream[(r + j * world) % total]
    if drop_last or total % world == 0:  # no padding: disjoint positions covering the stream
        positions = sorted(r + j * world for r in range(world) for j in range(per_rank))
        assert positions == list(range(per_rank * world))


@pytest.mark.parametrize("name", NAMES)
def test_state_from_another_size_or_class_is_refused(name):
    state = SAMPLERS[name](30).state_dict()
    with pytest.raises(ValueError, match="num_examples=30.*num_examples=31"):
        SAMPLERS[name](31).load_state_dict(state)
    other = next(n for n in NAMES if n != name)
    with pytest.raises(ValueError, match=f"sampler={type(SAMPLERS[name](30)).__name__!r}"):
        SAMPLERS[other](30).load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_state_with_other_version_or_missing_keys_is_refused(name):
    sampler = SAMPLERS[name](10)
    state = sampler.state_dict()
    with pytest.raises(ValueError, match="version"):
        sampler.load_state_dict({**state, "version": 99})
    del state["planned"]
    with pytest.raises(ValueError, match="missing key"):
        sampler.load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_works_in_a_plain_dataloader(name):
    data = torch.arange(40).float()
    sampler = SAMPLERS[name](data, seed=0, refresh_every=8)
    loader = DataLoader(data, batch_size=6, sampler=sampler)
    batches = [b.long().tolist() for b in loader]
    assert sum(len(b) for b in batches) == 40
    expected = run(SAMPLERS[name](data, seed=0, refresh_every=8), feed_every=10**9)
    assert [i for b in batches for i in b] == expected


@pytest.mark.parametrize("name", NAMES)
@given(n=sizes)
def test_rewind_replays_the_planned_epoch(name, n):
    sampler = SAMPLERS[name](n, seed=1, refresh_every=5)
    first = run(sampler)
    sampler.rewind()
    assert run(sampler) == first


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed"),
        ({"num_samples": 0}, "num_samples"),
        ({"refresh_every": 0}, "refresh_every"),
        ({"num_replicas": 0}, "num_replicas"),
        ({"num_replicas": 2, "rank": 2}, "rank"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_options_name_the_argument(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAMPLERS[name](10, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_data_source_must_be_sized_or_positive_int(name):
    with pytest.raises(ValueError, match="data_source"):
        SAMPLERS[name](0)
    with pytest.raises(TypeError, match="sized dataset"):
        SAMPLERS[name].__call__(iter(range(3)))
