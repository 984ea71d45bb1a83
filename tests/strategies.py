"""Hypothesis strategies and the sampler registry shared by every test module."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

from zpd_curriculum import (
    CurriculumSampler,
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
    ZPDAdaptiveSampler,
)


def difficulty_for(data) -> np.ndarray:
    """A fixed difficulty vector with ties (lengths bucketed), independent of global RNGs."""
    n = data if isinstance(data, int) else len(data) if hasattr(data, "__len__") else 0
    if n < 1:  # invalid data: the sampler must reject it before looking at difficulty
        return np.zeros(0)
    return np.random.default_rng(n).integers(0, max(2, n // 3), size=n).astype(float)


#: name -> factory(n, **options); every contract test runs over all of them.
SAMPLERS: dict[str, Callable[..., CurriculumSampler]] = {
    "random": lambda n, **kw: RandomSampler(n, **kw),
    "easy_to_hard": lambda n, **kw: EasyToHardSampler(n, difficulty=difficulty_for(n), **kw),
    "hard_to_easy": lambda n, **kw: HardToEasySampler(n, difficulty=difficulty_for(n), **kw),
    "zpd_adaptive": lambda n, **kw: ZPDAdaptiveSampler(
        n, difficulty=difficulty_for(n), warmup=0.2, **kw
    ),
}

sizes = st.integers(min_value=1, max_value=200)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
refresh = st.integers(min_value=1, max_value=64)
pacings = st.sampled_from(["linear", "root", "geometric", "step"])
unit_open = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)


@st.composite
def sampler_setups(draw: st.DrawFn) -> dict:
    """Construction arguments for a sampler: size, stream length, world, block size, seed."""
    n = draw(sizes)
    num_replicas = draw(st.integers(min_value=1, max_value=5))
    return {
        "n": n,
        "seed": draw(seeds),
        "num_samples": draw(st.one_of(st.none(), st.integers(1, 3 * n))),
        "refresh_every": draw(refresh),
        "num_replicas": num_replicas,
        "rank": draw(st.integers(min_value=0, max_value=num_replicas - 1)),
        "drop_last": draw(st.booleans()),
    }


losses_arrays = st.lists(
    st.floats(min_value=1e-3, max_value=20.0, allow_nan=False), min_size=1, max_size=50
)
