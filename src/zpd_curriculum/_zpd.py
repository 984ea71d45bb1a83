"""The zone-of-proximal-development (ZPD) weighting, as pure functions of arrays.

Vygotsky's zone of proximal development is the band of tasks a learner cannot yet do alone but can
learn next. Here a task is a training example and "can do" is measured by loss: with ``c`` the
model's current competence (a running estimate of the loss it achieves now) and ``l_i`` the
estimated current loss of example ``i``, the example's position relative to the model is the log
ratio ``r_i = log(l_i / c)``. Mastered examples have ``r_i`` well below 0, out-of-reach ones well
above. The ZPD weight is a Gaussian band on that axis,

    w_i = exp(-(r_i - center)^2 / (2 width^2)),

highest for examples moderately above the current competence (``center > 0``). Probabilities mix
the normalised weights with an exploration floor so that every example keeps probability at least
``floor / N``:

    p_i = (1 - floor) w_i / sum_j w_j + floor / N.

Staleness: an example last seen when competence was ``c_then`` with loss ``l_then`` is assumed to
have kept its relative difficulty, so its estimated current loss is ``l_then * c / c_then`` and
``r_i = log(l_then / c_then)``. Unseen examples use a prior: the quantile of the observed ``r``
at the example's difficulty percentile when a difficulty is given, else ``r = 0`` (the competence
itself).

Every function is pure and vectorised (no Python loop over examples); float32 throughout.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "effective_sample_size",
    "relative_difficulty",
    "zpd_probabilities",
    "zpd_weights",
]

_EPS = np.float32(1e-6)
_GRID = np.linspace(0.0, 1.0, 101)  # percentiles at which the prior reads the observed r
# Every float16 in [0, 1] (bit patterns 0 to 0x3C00, in order), as float32.
_FLOAT16_UNIT = np.arange(0x3C01, dtype=np.uint16).view(np.float16).astype(np.float32)


def relative_difficulty(
    ema: npt.ArrayLike,
    competence_then: npt.ArrayLike,
    *,
    prior_percentile: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Staleness-corrected log ratio ``r_i = log(l_i / c)`` of each example to the model.

    Args:
        ema: Stored loss per example (NaN where never observed).
        competence_then: Competence at each example's last observation (ignored where unseen).
        prior_percentile: Optional difficulty percentile in ``[0, 1]`` per example, used for unseen
            examples: they get the observed ``r`` quantile at that percentile. Without it unseen
            examples get ``r = 0``.

    Returns:
        A float32 array of ``r``; finite everywhere.

    Examples:
        >>> r = relative_difficulty([2.0, np.nan, 1.0], [1.0, 1.0, 2.0])
        >>> [round(float(x), 3) for x in r]
        [0.693, 0.0, -0.693]
        >>> r = relative_difficulty([2.0, 1.0, np.nan], [1.0, 1.0, 1.0],
        ...                         prior_percentile=[0.0, 0.0, 1.0])
        >>> [round(float(x), 3) for x in r]  # unseen, hardest: the top observed quantile
        [0.693, 0.0, 0.693]
    """
    r = _log_ratio(ema, competence_then)
    unseen = np.flatnonzero(np.isnan(r))
    if prior_percentile is not None and 0 < unseen.size < r.size:
        quantiles = _prior_quantiles(r)
        r[unseen] = _prior_relative(np.asarray(prior_percentile)[unseen], quantiles)
    else:
        r[unseen] = 0.0
    return r


def _log_ratio(ema: npt.ArrayLike, competence_then: npt.ArrayLike) -> np.ndarray:
    """``log(max(ema, eps) / max(competence_then, eps))`` in float32; NaN where ``ema`` is NaN.

    The observed part of :func:`relative_difficulty`, elementwise, so that a sampler can evaluate
    it on any subset of examples and get the same values as on the whole table.
    """
    r = np.maximum(np.asarray(ema, dtype=np.float32), _EPS)  # NaN (unseen) propagates
    r /= np.maximum(np.asarray(competence_then, dtype=np.float32), _EPS)
    return np.log(r, out=r)


def _prior_quantiles(relative: np.ndarray) -> np.ndarray:
    """``np.quantile`` (linear) of the non-NaN entries of ``relative`` at ``linspace(0, 1, 101)``.

    Bit for bit the values of ``np.quantile(relative[~np.isnan(relative)], grid)``: the same
    virtual indices ``q (n - 1)`` and the same two-sided linear interpolation, but the order
    statistics come from one ``np.sort`` (NaN sorts last), several times faster than a boolean
    selection followed by ``np.quantile``'s partition around 200 pivots.

    Args:
        relative: ``r`` per example, NaN where unseen (at least one non-NaN entry).

    Returns:
        A float64 array of 101 quantiles.

    Examples:
        >>> x = np.random.default_rng(0).standard_normal(1001).astype(np.float32)
        >>> x[::3] = np.nan
        >>> expected = np.quantile(x[~np.isnan(x)], _GRID)
        >>> bool(np.array_equal(_prior_quantiles(x), expected))
        True
    """
    relative = np.asarray(relative).reshape(-1)
    count = relative.size - int(np.count_nonzero(np.isnan(relative)))
    ordered = np.sort(relative)[:count]
    virtual = (count - 1) * _GRID
    below = np.floor(virtual)
    above = below + 1
    top = virtual >= count - 1
    below[top] = above[top] = -1
    a, b = ordered[below.astype(np.intp)], ordered[above.astype(np.intp)]
    t = virtual - below
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5, casting="unsafe")
    return out


def _prior_relative(percentile: npt.ArrayLike, quantiles: np.ndarray) -> np.ndarray:
    """The prior ``r`` of unseen examples: the observed quantile at their difficulty percentile.

    ``np.interp(percentile, grid, quantiles)``. Percentiles stored as float16 in ``[0, 1]`` (as
    the sampler stores them) take at most 15,361 distinct values, so for many of them the
    interpolation is evaluated once per distinct value and looked up: the same values, without a
    binary search per example.

    Args:
        percentile: Difficulty percentile in ``[0, 1]`` of each unseen example.
        quantiles: From :func:`_prior_quantiles`.

    Returns:
        A float64 array, one ``r`` per percentile.

    Examples:
        >>> pct = np.random.default_rng(0).random(70_000).astype(np.float16)
        >>> q = np.sort(np.random.default_rng(1).standard_normal(101))
        >>> expected = np.interp(pct.astype(np.float32), _GRID, q)
        >>> bool(np.array_equal(_prior_relative(pct, q), expected))
        True
    """
    pct = np.asarray(percentile)
    if pct.dtype == np.float16 and pct.size > _FLOAT16_UNIT.size:
        bits = pct.view(np.uint16)
        if bits.max() < _FLOAT16_UNIT.size:  # every value in [0, 1]
            return np.interp(_FLOAT16_UNIT, _GRID, quantiles)[bits]
    return np.interp(pct.astype(np.float32), _GRID, quantiles)


def zpd_weights(
    relative: npt.ArrayLike, *, center: float = 0.25, width: float = 0.5
) -> np.ndarray:
    """Gaussian ZPD band ``exp(-(r - center)^2 / (2 width^2))`` on the log-ratio axis.

    Args:
        relative: ``r_i = log(l_i / c)`` per example (see :func:`relative_difficulty`).
        center: Band centre on the log-ratio axis; ``0.25`` favours examples whose loss is about
            28% above the current competence.
        width: Band standard deviation on the log-ratio axis (``> 0``).

    Returns:
        A float32 array of weights in ``(0, 1]``.

    Examples:
        >>> [round(float(w), 4) for w in zpd_weights([0.25, 0.75, -0.25], center=0.25, width=0.5)]
        [1.0, 0.6065, 0.6065]
    """
    if not width > 0:
        raise ValueError(f"`width` must be > 0, got {width!r}.")
    z = np.asarray(relative, dtype=np.float32) - np.float32(center)
    z *= z
    z *= np.float32(-0.5 / width**2)
    return np.exp(z, out=z)


def zpd_probabilities(
    relative: npt.ArrayLike, *, center: float = 0.25, width: float = 0.5, floor: float = 0.1
) -> np.ndarray:
    """Sampling probabilities: the ZPD band mixed with an exploration floor.

    ``p_i = (1 - floor) w_i / sum(w) + floor / N``, so ``p_i >= floor / N`` and ``sum(p) = 1``.

    Args:
        relative: ``r_i`` per example (see :func:`relative_difficulty`).
        center: See :func:`zpd_weights`.
        width: See :func:`zpd_weights`.
        floor: Exploration mass spread uniformly, in ``[0, 1]``.

    Returns:
        A float64 array of probabilities summing to 1.

    Examples:
        >>> p = zpd_probabilities([0.0, 0.0, 0.0, 0.0])
        >>> p.tolist()
        [0.25, 0.25, 0.25, 0.25]
        >>> p = zpd_probabilities([0.25, 5.0], floor=0.2)
        >>> bool(p[1] >= 0.2 / 2), round(float(p.sum()), 12)
        (True, 1.0)
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"`floor` must be in [0, 1], got {floor!r}.")
    w = zpd_weights(relative, center=center, width=width).astype(np.float64)
    n = w.size
    total = w.sum()
    if total <= 0.0 or not np.isfinite(total):  # every weight underflowed: nothing in the band
        return np.full(n, 1.0 / n)
    p = w * ((1.0 - floor) / total)
    p += floor / n
    return p / p.sum()


def effective_sample_size(probabilities: npt.ArrayLike) -> float:
    """Kish's effective sample size ``1 / sum(p_i^2)`` of a probability vector.

    Equals ``N`` for uniform probabilities and ``1`` when one example takes all the mass.

    Args:
        probabilities: Non-negative values summing to 1.

    Returns:
        The effective number of examples being sampled.

    Examples:
        >>> effective_sample_size([0.25, 0.25, 0.25, 0.25])
        4.0
        >>> effective_sample_size([1.0, 0.0])
        1.0
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return float(1.0 / np.dot(p, p))
