"""Pacing functions: how much of the difficulty-sorted data a curriculum may use.

A pacing function maps training progress ``p`` (the fraction of the planned total samples drawn,
in ``[0, 1]``) to a competence ``c(p)`` in ``(0, 1]``: the fraction of the data, easiest first,
that is eligible at that point. Every function here is pure, non-decreasing, starts at ``start``
and reaches ``1`` at ``p = full_at``.

Sources:
    * linear and root: Platanios et al., "Competence-based Curriculum Learning for Neural Machine
      Translation", NAACL 2019.
    * geometric: the exponential pacing of Hacohen & Weinshall, "On the Power of Curriculum
      Learning in Training Deep Networks", ICML 2019.
    * step ("baby steps"): Spitkovsky et al., "From Baby Steps to Leapfrog", NAACL 2010;
      Bengio et al., "Curriculum Learning", ICML 2009.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["PACINGS", "competence", "resolve_pacing"]

PACINGS = ("linear", "root", "geometric", "step", "sorted")
"""Names accepted by ``pacing=``; ``"sorted"`` is a strict single pass in difficulty order."""

PacingFn = Callable[[float], float]
Pacing = str | PacingFn


def _check_unit(name: str, value: float, *, open_low: bool) -> float:
    value = float(value)
    low_ok = value > 0 if open_low else value >= 0
    if not (math.isfinite(value) and low_ok and value <= 1):
        bound = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"`{name}` must be a number in {bound}, got {value!r}.")
    return value


def competence(
    progress: float,
    pacing: str = "linear",
    *,
    start: float = 0.2,
    full_at: float = 0.8,
    power: float = 2.0,
    num_steps: int = 4,
) -> float:
    """Competence ``c(progress)``: the eligible fraction of the easiest-first data.

    With ``s = start``, ``t = min(progress / full_at, 1)``:

    * ``linear``: ``s + (1 - s) t``
    * ``root``: ``(s^power + (1 - s^power) t)^(1/power)`` (Platanios et al. 2019 use power 2)
    * ``geometric``: ``s^(1 - t)``, i.e. the pool grows by a constant factor per unit of progress
    * ``step``: ``s + (1 - s) floor(num_steps t) / num_steps`` ("baby steps")

    Args:
        progress: Fraction of the planned training drawn so far; values above 1 are treated as 1.
        pacing: One of ``"linear"``, ``"root"``, ``"geometric"``, ``"step"``.
        start: Competence at progress 0, in ``(0, 1]``.
        full_at: Progress at which competence reaches 1, in ``(0, 1]``.
        power: Root degree for ``"root"`` (at least 1).
        num_steps: Number of increments for ``"step"`` (at least 1).

    Returns:
        The competence, a float in ``[start, 1]``.

    Raises:
        ValueError: If an argument is out of range or ``pacing`` is unknown.

    Examples:
        >>> competence(0.0, "linear", start=0.2, full_at=0.8)
        0.2
        >>> round(competence(0.4, "linear", start=0.2, full_at=0.8), 6)
        0.6
        >>> competence(0.9, "root")
        1.0
        >>> competence(0.3, "step", start=0.25, full_at=1.0, num_steps=3)
        0.25
    """
    progress = float(progress)
    if not math.isfinite(progress) or progress < 0:
        raise ValueError(f"`progress` must be a finite number >= 0, got {progress!r}.")
    start = _check_unit("start", start, open_low=True)
    full_at = _check_unit("full_at", full_at, open_low=True)
    t = min(progress / full_at, 1.0)
    if pacing == "linear":
        value = start + (1.0 - start) * t
    elif pacing == "root":
        if not power >= 1:
            raise ValueError(f"`power` must be >= 1 for root pacing, got {power!r}.")
        s_p = start**power
        value = (s_p + (1.0 - s_p) * t) ** (1.0 / power)
    elif pacing == "geometric":
        value = start ** (1.0 - t)
    elif pacing == "step":
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"`num_steps` must be an int >= 1 for step pacing, got {num_steps!r}.")
        value = start + (1.0 - start) * math.floor(num_steps * t) / num_steps
    else:
        raise ValueError(
            f"Unknown pacing {pacing!r}: use one of {PACINGS[:-1]} (or 'sorted' in a sampler), "
            "or pass a callable progress -> competence."
        )
    return min(1.0, max(start, value)) if t < 1.0 else 1.0


def resolve_pacing(
    pacing: Pacing,
    *,
    start: float = 0.2,
    full_at: float = 0.8,
    power: float = 2.0,
    num_steps: int = 4,
) -> PacingFn | None:
    """Turn a ``pacing=`` argument into a checked ``progress -> competence`` callable.

    Args:
        pacing: A name from :data:`PACINGS` or a callable ``progress -> competence``.
        start: See :func:`competence`.
        full_at: See :func:`competence`.
        power: See :func:`competence`.
        num_steps: See :func:`competence`.

    Returns:
        The callable, or ``None`` for ``"sorted"`` (a strict single pass needs no competence).

    Raises:
        ValueError: If the name is unknown or an option is out of range.
        TypeError: If ``pacing`` is neither a string nor a callable.

    Examples:
        >>> fn = resolve_pacing("geometric", start=0.25, full_at=0.5)
        >>> fn(0.0), fn(0.25), fn(0.5)
        (0.25, 0.5, 1.0)
        >>> resolve_pacing("sorted") is None
        True
    """
    if isinstance(pacing, str):
        if pacing == "sorted":
            return None
        options = {"start": start, "full_at": full_at, "power": power, "num_steps": num_steps}
        competence(0.0, pacing, **options)  # validates name and options once, up front

        def named(progress: float) -> float:
            return competence(progress, pacing, **options)

        named.__name__ = f"{pacing}_pacing"
        return named
    if callable(pacing):
        return _checked(pacing)
    raise TypeError(
        f"`pacing` must be one of {PACINGS} or a callable progress -> competence, "
        f"got {type(pacing).__name__}."
    )


def _checked(fn: PacingFn) -> PacingFn:
    def checked(progress: float) -> float:
        value = fn(progress)
        try:
            return _check_unit("pacing(progress)", value, open_low=True)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"The pacing callable {getattr(fn, '__name__', fn)!r} returned {value!r} at "
                f"progress {progress:.6g}; it must return a competence in (0, 1]."
            ) from err

    checked.__name__ = getattr(fn, "__name__", "pacing")
    return checked
