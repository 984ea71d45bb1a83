"""The one resume check every sampler's tests use."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from zpd_curriculum import CurriculumSampler, ZPDAdaptiveSampler


def synthetic_loss(index: int, seen: int) -> float:
    """A deterministic loss that depends on the example and on how far training has got."""
    return 0.5 + (index * 7919 % 101) / 25.0 / (1.0 + 0.05 * seen)


def run(sampler: CurriculumSampler, *, feed_every: int = 4, limit: int | None = None,
        seen_before: int = 0) -> list[int]:
    """Iterate a sampler as a training loop would, feeding losses to a ZPD sampler.

    Every ``feed_every`` yielded indices form a "step": a ZPD sampler gets their losses.
    """
    out: list[int] = []
    pending: list[int] = []
    for index in sampler:
        out.append(index)
        pending.append(index)
        if len(pending) == feed_every:
            _feed(sampler, pending, seen_before + len(out))
            pending = []
        if limit is not None and len(out) == limit:
            break
    return out


def _feed(sampler: CurriculumSampler, indices: list[int], seen: int) -> None:
    if isinstance(sampler, ZPDAdaptiveSampler):
        sampler.update(indices, [synthetic_loss(i, seen) for i in indices])


def assert_resumes_exactly(make: Callable[[], CurriculumSampler], k: int, *, epochs: int = 2,
                           feed_every: int = 4) -> None:
    """State taken after ``k`` indices of an epoch, loaded into a fresh sampler, continues exactly.

    The original runs epoch 0 (and more epochs) feeding losses; at index ``k`` of the last epoch
    its state is copied; a fresh sampler loads that state and must yield the identical remainder
    and then identical later epochs, and end with an identical state.
    """
    original = make()
    k = min(k, len(original))
    for epoch in range(epochs - 1):
        original.set_epoch(epoch)
        run(original, feed_every=feed_every)
    last = epochs - 1
    original.set_epoch(last)
    # The state is taken at a feed boundary so that the losses of the k indices are in it.
    k -= k % feed_every
    it = iter(original)
    prefix = []
    pending = []
    for _ in range(k):
        index = next(it)
        prefix.append(index)
        pending.append(index)
        if len(pending) == feed_every:
            _feed(original, pending, len(prefix))
            pending = []
    state = copy.deepcopy(original.state_dict())
    rest_original = _continue(original, it, seen=len(prefix), feed_every=feed_every)
    original.set_epoch(last + 1)
    next_original = run(original, feed_every=feed_every)

    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(last)  # a training loop calls this again on resume: it must not reset
    rest_resumed = run(resumed, feed_every=feed_every, seen_before=len(prefix))
    resumed.set_epoch(last + 1)
    next_resumed = run(resumed, feed_every=feed_every)

    assert rest_resumed == rest_original
    assert next_resumed == next_original
    assert_states_equal(resumed.state_dict(), original.state_dict())


def _continue(sampler, it, *, seen, feed_every):
    out, pending = [], []
    for index in it:
        out.append(index)
        pending.append(index)
        if len(pending) == feed_every:
            _feed(sampler, pending, seen + len(out))
            pending = []
    return out


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=key)
        elif isinstance(va, float) and np.isnan(va):
            assert np.isnan(vb), key
        else:
            assert va == vb, key
