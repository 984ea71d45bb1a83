"""Pacing functions: monotone, start at `start`, reach 1 at `full_at`."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import pacings, unit_open
from zpd_curriculum import competence
from zpd_curriculum._pacing import resolve_pacing

progress = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)


@given(pacing=pacings, start=unit_open, full_at=unit_open, a=progress, b=progress)
def test_competence_is_monotone(pacing, start, full_at, a, b):
    lo, hi = sorted((a, b))
    assert competence(lo, pacing, start=start, full_at=full_at) <= competence(
        hi, pacing, start=start, full_at=full_at
    )


@given(pacing=pacings, start=unit_open, full_at=unit_open, p=progress)
def test_competence_endpoints_and_range(pacing, start, full_at, p):
    assert competence(0.0, pacing, start=start, full_at=full_at) == pytest.approx(start)
    assert competence(full_at, pacing, start=start, full_at=full_at) == 1.0
    assert competence(full_at + p, pacing, start=start, full_at=full_at) == 1.0
    assert start - 1e-12 <= competence(p, pacing, start=start, full_at=full_at) <= 1.0


def test_known_values():
    assert competence(0.4, "linear", start=0.2, full_at=0.8) == pytest.approx(0.6)
    # root (Platanios et al. 2019), p = 2: sqrt(s^2 + (1 - s^2) t)
    root = (0.04 + 0.96 * 0.5) ** 0.5
    assert competence(0.5, "root", start=0.2, full_at=1.0) == pytest.approx(root)
    assert competence(0.5, "geometric", start=0.25, full_at=1.0) == pytest.approx(0.5)
    assert competence(0.49, "step", start=0.2, full_at=1.0, num_steps=2) == pytest.approx(0.2)
    assert competence(0.5, "step", start=0.2, full_at=1.0, num_steps=2) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0.0}, "start"),
        ({"start": 1.5}, "start"),
        ({"full_at": 0.0}, "full_at"),
        ({"pacing": "cosine"}, "Unknown pacing 'cosine'"),
        ({"pacing": "root", "power": 0.5}, "power"),
        ({"pacing": "step", "num_steps": 0}, "num_steps"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, match):
    kwargs = {"pacing": "linear", **kwargs}
    with pytest.raises(ValueError, match=match):
        competence(0.1, **kwargs)


def test_negative_progress_is_refused():
    with pytest.raises(ValueError, match="progress"):
        competence(-0.1)


@given(value=st.floats(allow_nan=True))
def test_callable_pacing_is_checked(value):
    assume(not (0 < value <= 1))
    fn = resolve_pacing(lambda p: value)
    with pytest.raises(ValueError, match=r"must return a competence in \(0, 1\]"):
        fn(0.5)


def test_callable_pacing_passes_through():
    fn = resolve_pacing(lambda p: 0.5 + p / 2)
    assert fn(0.5) == 0.75


def test_non_callable_pacing_is_a_type_error():
    with pytest.raises(TypeError, match="pacing"):
        resolve_pacing(3)
