"""The ZPD-adaptive sampler: a per-example loss table and blockwise weighted draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

import numpy as np
import numpy.typing as npt

from ._samplers import _TAG_BLOCK, CurriculumSampler, _check_difficulty, _rng
from ._zpd import (
    _log_ratio,
    _prior_quantiles,
    _prior_relative,
    relative_difficulty,
    zpd_probabilities,
    zpd_weights,
)

__all__ = ["ZPDAdaptiveSampler"]

_COUNT_MAX = np.iinfo(np.uint16).max
# The float64 magnitude from which a value rounds to inf in float32: float32's max plus half an ulp.
_FLOAT32_LIMIT = float(np.finfo(np.float32).max) + 2.0**103
# Draw by rejection (no pass over the table) when N is at least this many times the block length.
_REJECTION_MIN_RATIO = 16
# Rounds of with-replacement draws before the exact exponential-key finish (mass concentrated on
# fewer examples than a block needs).
_ROUNDS = 4


class ZPDAdaptiveSampler(CurriculumSampler):
    """Favour the zone of proximal development: examples neither mastered nor out of reach.

    The sampler keeps a per-example loss table fed by :meth:`update` (the Trainer callback feeds
    it from the training forward; custom loops call it themselves): an exponential moving average
    of each example's token-mean loss (the first observation initialises it), an observation count
    and the step of the last observation. Competence is an exponential moving average of the
    batch-mean loss. Every ``refresh_every`` draws it recomputes probabilities from the
    staleness-corrected table (see :func:`zpd_curriculum.zpd_probabilities`) and draws the next
    block without repeats. Until ``warmup`` of the examples have been observed it samples uniformly.

    A block is successive sampling from ``p``: i.i.d. draws from ``p``, first occurrences kept.
    For large ``N`` the draws proportional to the band are made by rejection (propose a uniform
    example, accept it with probability ``w_i <= 1``), which touches a few thousand rows of the
    table instead of all ``N``; when the band holds too little mass for that to pay off, the
    block is drawn by inverse CDF over the whole table instead. Either way the block is a pure
    function of the seed, the epoch, the block number and the table.

    Args:
        data_source: A sized dataset, or the number of examples ``N``.
        difficulty: Optional prior difficulty per example (higher = harder), used to place
            unseen examples: they get the observed relative loss at their difficulty percentile.
        center: Band centre on the log loss-ratio axis (``log(loss / competence)``).
        width: Band width (standard deviation) on that axis.
        floor: Exploration floor: every example keeps probability at least ``floor / N``.
        warmup: Fraction of examples that must have been observed before the band is used.
        loss_momentum: EMA momentum of an example's stored loss (0 keeps only the latest).
        competence_momentum: EMA momentum of the competence per update.
        seed: Seed of the sampler's private generators.
        num_samples: Stream length per epoch (default ``N``).
        refresh_every: Block size: probabilities are recomputed every this many draws.
        num_replicas: Number of processes sharing the stream.
        rank: This process's rank.
        drop_last: Drop the stream's tail instead of padding it.

    Examples:
        >>> sampler = ZPDAdaptiveSampler(4, warmup=0.5, floor=0.0, refresh_every=4)
        >>> sampler.update([0, 1, 2, 3], [0.1, 1.0, 1.3, 9.0])
        >>> round(sampler.competence, 2)  # the first update's mean loss
        2.85
        >>> int(np.argmax(sampler.probabilities()))  # loss 9.0 sits nearest the band centre
        3
        >>> sorted(sampler)
        [0, 1, 2, 3]
    """

    def __init__(
        self,
        data_source: Sized | int,
        *,
        difficulty: npt.ArrayLike | None = None,
        center: float = 0.25,
        width: float = 0.5,
        floor: float = 0.1,
        warmup: float = 0.05,
        loss_momentum: float = 0.5,
        competence_momentum: float = 0.9,
        seed: int = 0,
        num_samples: int | None = None,
        refresh_every: int = 1024,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            data_source,
            seed=seed,
            num_samples=num_samples,
            refresh_every=refresh_every,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
        )
        n = self.num_examples
        for name, value, low_open in (
            ("width", width, True),
            ("floor", floor, False),
            ("warmup", warmup, False),
            ("loss_momentum", loss_momentum, False),
            ("competence_momentum", competence_momentum, False),
        ):
            ok = (value > 0 if low_open else value >= 0) and (name == "width" or value <= 1)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                bound = "> 0" if name == "width" else "in [0, 1]"
                raise ValueError(f"`{name}` must be a finite number {bound}, got {value!r}.")
        if not (isinstance(center, (int, float)) and math.isfinite(center)):
            raise ValueError(f"`center` must be a finite number, got {center!r}.")
        self.center, self.width, self.floor = float(center), float(width), float(floor)
        self.warmup, self.loss_momentum = float(warmup), float(loss_momentum)
        self.competence_momentum = float(competence_momentum)
        self.refresh_every = min(self.refresh_every, n)  # a block never repeats an index
        self._prior: np.ndarray | None = None
        if difficulty is not None:
            d = _check_difficulty(difficulty, n)
            ranks = np.empty(n, dtype=np.float64)
            ranks[np.argsort(d, kind="stable")] = np.arange(n)
            self._prior = (ranks / max(n - 1, 1)).astype(np.float16)
        self._ema = np.full(n, np.nan, dtype=np.float32)
        self._count = np.zeros(n, dtype=np.uint16)
        self._last = np.full(n, -1, dtype=np.int32)
        self._history = np.empty(64, dtype=np.float64)  # competence after each update
        self._history32 = np.empty(64, dtype=np.float32)  # the same, as the table reads it
        self._num_updates = 0
        self._competence = math.nan
        self._num_observed = 0
        self._num_nonfinite = 0

    # ------------------------------------------------------------- the loss table
    def update(
        self,
        indices: npt.ArrayLike,
        losses: npt.ArrayLike,
        *,
        step_sizes: Sequence[int] | None = None,
    ) -> None:
        """Record observed per-example losses: one training step, or several in order.

        Each step moves the competence and stamps its examples with the step. Non-finite losses
        are skipped and counted (:attr:`num_nonfinite`), never stored. An index that appears
        several times is applied in order. Several steps in one call (``step_sizes``) leave the
        sampler exactly as one call per step would, at a fraction of the cost.

        Args:
            indices: Dataset indices, shape ``(k,)``.
            losses: Token-mean loss of each, shape ``(k,)``.
            step_sizes: How many of the rows each consecutive step holds (they sum to ``k``);
                ``None`` means the rows are one step.

        Raises:
            ValueError: If the shapes differ, an index is outside ``[0, N)``, or the step sizes
                are negative or do not add up to ``k``.

        Examples:
            >>> sampler = ZPDAdaptiveSampler(4, seed=0)
            >>> sampler.update([0, 1, 2], [1.0, 3.0, 2.0], step_sizes=[2, 1])
            >>> sampler.num_updates, sampler.last_observed.tolist()
            (2, [0, 0, 1, -1])
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        loss = np.asarray(losses, dtype=np.float64).reshape(-1)
        if idx.shape != loss.shape:
            raise ValueError(
                f"`indices` and `losses` must have the same length, got {idx.size} and "
                f"{loss.size}."
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_examples):
            raise ValueError(
                f"`indices` must be in [0, {self.num_examples}); got values from {idx.min()} "
                f"to {idx.max()}. Indices refer to positions in the sampler's dataset."
            )
        sizes = [idx.size] if step_sizes is None else [int(k) for k in step_sizes]
        if min(sizes, default=0) < 0 or sum(sizes) != idx.size:
            raise ValueError(
                f"`step_sizes` must be non-negative and add up to the {idx.size} rows, got "
                f"{list(step_sizes)}."
            )
        # non-finite losses, and finite ones that round beyond float32's range, are skipped
        finite = np.abs(loss) < _FLOAT32_LIMIT
        kept = int(np.count_nonzero(finite))
        self._num_nonfinite += idx.size - kept
        if kept < idx.size:
            loss = np.where(finite, loss, np.nan)  # nothing to overflow in the cast below
        loss = loss.astype(np.float32)
        first_step = self._num_updates
        start = 0
        for size in sizes:  # the competence moves step by step
            step = loss[start : start + size]
            if kept < idx.size:
                step = step[finite[start : start + size]]
            if step.size:
                mean = float(np.add.reduce(step, dtype=np.float64)) / step.size
                c, m = self._competence, self.competence_momentum
                self._competence = mean if math.isnan(c) else m * c + (1.0 - m) * mean
            self._append_history(self._competence)
            start += size
        steps = np.repeat(np.arange(first_step, self._num_updates, dtype=np.int32), sizes)
        if kept < idx.size:
            idx, loss, steps = idx[finite], loss[finite], steps[finite]
        if not idx.size:
            return
        beta = np.float32(self.loss_momentum)
        for rows in _occurrence_rounds(idx):
            i, v = idx[rows], loss[rows]
            old = self._ema[i]
            unseen = np.isnan(old)  # exactly the rows never observed (count 0)
            self._ema[i] = np.where(unseen, v, beta * old + (1 - beta) * v)
            self._num_observed += int(np.count_nonzero(unseen))
            self._count[i] = np.minimum(self._count[i], _COUNT_MAX - 1) + 1  # saturates
            self._last[i] = steps[rows]

    def _append_history(self, competence: float) -> None:
        if self._num_updates == self._history.size:  # grow geometrically: amortised O(1)
            self._history = np.resize(self._history, 2 * self._history.size)
            self._history32 = np.resize(self._history32, 2 * self._history32.size)
        self._history[self._num_updates] = competence
        self._history32[self._num_updates] = competence
        self._num_updates += 1

    @property
    def example_losses(self) -> np.ndarray:
        """Stored (EMA) loss per example, float32, NaN where never observed (a copy)."""
        return self._ema.copy()

    def example_losses_at(self, indices: npt.ArrayLike) -> np.ndarray:
        """Stored losses of some examples (NaN where never observed), without copying the table.

        Args:
            indices: Dataset indices.

        Returns:
            A float32 array, one value per index.
        """
        return self._ema[np.asarray(indices, dtype=np.int64)]

    @property
    def observation_counts(self) -> np.ndarray:
        """Observations per example (saturating at 65535), a copy."""
        return self._count.copy()

    @property
    def last_observed(self) -> np.ndarray:
        """Step of each example's last observation (``-1`` if never), a copy."""
        return self._last.copy()

    @property
    def competence(self) -> float:
        """Running estimate of the loss the model currently achieves (NaN before any update)."""
        return self._competence

    @property
    def num_observed(self) -> int:
        """Number of distinct examples observed at least once."""
        return self._num_observed

    @property
    def num_nonfinite(self) -> int:
        """Number of non-finite losses skipped by :meth:`update`."""
        return self._num_nonfinite

    @property
    def num_updates(self) -> int:
        """Number of :meth:`update` calls (steps) so far."""
        return self._num_updates

    @property
    def in_warmup(self) -> bool:
        """Whether sampling is still uniform (too few examples observed)."""
        return math.isnan(self._competence) or (
            self._num_observed < self.warmup * self.num_examples
        )

    def relative_difficulty(self) -> np.ndarray:
        """Staleness-corrected ``log(estimated loss / competence)`` per example (float32)."""
        then = self._competence_then(self._last) if self._num_updates else self._ema
        return relative_difficulty(self._ema, then, prior_percentile=self._prior)

    def _competence_then(self, last: np.ndarray) -> np.ndarray:
        # competence (float32) at each example's last observation; unseen rows (-1) read the
        # newest entry, which the NaN loss of an unseen row ignores
        return self._history32[: self._num_updates][last]

    def probabilities(self) -> np.ndarray:
        """Sampling probabilities the next block would be drawn from (sums to 1).

        Returns:
            Uniform during warm-up, else the ZPD band with the exploration floor.
        """
        if self.in_warmup:
            return np.full(self.num_examples, 1.0 / self.num_examples)
        return zpd_probabilities(
            self.relative_difficulty(), center=self.center, width=self.width, floor=self.floor
        )

    # ------------------------------------------------------------- planning
    def _plan_block(self, block: int, start: int, length: int) -> np.ndarray:
        rng = _rng(self.seed, _TAG_BLOCK, self._epoch, block)
        n = self.num_examples
        if self.in_warmup:
            return rng.choice(n, size=length, replace=False)
        if n >= _REJECTION_MIN_RATIO * length:
            plan = self._plan_by_rejection(rng, length)
            if plan is not None:
                return plan
        # the band holds too little mass for rejection to pay off (or N is small): draw by inverse
        # CDF over the whole table, with fresh randomness (what rejection drew is discarded)
        return self._plan_by_inverse_cdf(rng, length)

    def _draw_distinct(
        self,
        rng: np.random.Generator,
        length: int,
        floor: float,
        band: Callable[[int], np.ndarray | None],
    ) -> np.ndarray | None:
        """First ``length`` distinct values of an i.i.d. stream from ``p`` (fewer if exhausted).

        Successive sampling without replacement (each draw from the renormalised remaining
        probabilities) is exactly: draw with replacement from ``p``, keep first occurrences.
        ``p = (1 - floor) w / sum(w) + floor / N`` is a mixture: a uniform draw with probability
        ``floor``, else a draw proportional to ``w``, which ``band(k)`` makes ``k`` of (``None``
        if it gives up).
        """
        n = self.num_examples
        drawn = np.empty(0, dtype=np.int64)
        fresh = 1.0 / (1.0 + 2.0 * length / n)  # guess of the fraction of draws that are new
        for _ in range(_ROUNDS):
            m = min(int((length - drawn.size) / fresh * 1.1) + 16, 2 * length + 64)
            from_floor = rng.random(m) < floor
            num_uniform = int(np.count_nonzero(from_floor))
            by_weight = band(m - num_uniform)
            if by_weight is None:
                return None
            draws = np.empty(m, dtype=np.int64)
            draws[from_floor] = rng.integers(0, n, size=num_uniform)
            draws[~from_floor] = by_weight
            before = drawn.size
            drawn = np.concatenate([drawn, draws])
            _, first = np.unique(drawn, return_index=True)
            drawn = drawn[np.sort(first)]
            if drawn.size >= length:
                return drawn[:length]
            fresh = max((drawn.size - before) / m, 1e-3)
        return drawn

    def _plan_by_rejection(self, rng: np.random.Generator, length: int) -> np.ndarray | None:
        # Propose uniform examples, accept each with probability w_i <= 1: accepted proposals are
        # i.i.d. proportional to w, and sum(w) is never needed. Gives up (None) when the projected
        # number of proposals exceeds the budget, i.e. when a pass over the table is cheaper.
        n = self.num_examples
        quantiles = self._observed_quantiles()
        budget = max(n // 4, 64 * length + 1024)
        proposed, accepted = 0, 0

        def band(k: int) -> np.ndarray | None:
            nonlocal proposed, accepted
            parts, got = [np.empty(0, dtype=np.int64)], 0
            while got < k:
                rate = accepted / proposed if proposed else 1.0
                size = min(int((k - got) / max(rate, 1e-3) * 1.1) + 64, budget - proposed + 64)
                candidates = rng.integers(0, n, size=size)
                keep = candidates[rng.random(size) < self._weights_at(candidates, quantiles)]
                proposed += size
                accepted += keep.size
                parts.append(keep)
                got += keep.size
                if got < k and (k - got) * proposed > (budget - proposed) * max(accepted, 1):
                    return None
            return np.concatenate(parts)[:k]

        plan = self._draw_distinct(rng, length, self.floor, band)
        return plan if plan is not None and plan.size == length else None

    def _observed_quantiles(self) -> np.ndarray | None:
        """Quantiles of the observed ``r`` that place unseen examples (``None`` if unused)."""
        if self._prior is None or self._num_observed in (0, self.num_examples):
            return None
        seen = ~np.isnan(self._ema)  # np.compress: far faster than a random boolean index
        ema, last = np.compress(seen, self._ema), np.compress(seen, self._last)
        return _prior_quantiles(_log_ratio(ema, self._competence_then(last)))

    def _weights_at(self, indices: np.ndarray, quantiles: np.ndarray | None) -> np.ndarray:
        """ZPD weights of some examples, equal to those :meth:`probabilities` computes."""
        r = _log_ratio(self._ema[indices], self._competence_then(self._last[indices]))
        unseen = np.flatnonzero(np.isnan(r))
        if quantiles is None:
            r[unseen] = 0.0
        else:
            r[unseen] = _prior_relative(self._prior[indices[unseen]], quantiles)
        return zpd_weights(r, center=self.center, width=self.width)

    def _plan_by_inverse_cdf(self, rng: np.random.Generator, length: int) -> np.ndarray:
        n = self.num_examples
        weights = zpd_weights(self.relative_difficulty(), center=self.center, width=self.width)
        cumulative = np.cumsum(weights, dtype=np.float64)
        total = cumulative[-1]
        floor = self.floor if total > 0 else 1.0  # every weight underflowed: uniform

        def band(k: int) -> np.ndarray:
            targets = rng.random(k) * total
            order = np.argsort(targets)  # sorted needles make the binary searches cache-friendly
            found = np.empty(k, dtype=np.int64)
            found[order] = np.searchsorted(cumulative, targets[order], side="right")
            return np.minimum(found, n - 1)

        drawn = self._draw_distinct(rng, length, floor, band)
        if drawn.size == length:
            return drawn
        # Mass concentrated on fewer examples than the block needs: finish the draw over the
        # examples not yet drawn with exponential keys E_i / p_i (Efraimidis & Spirakis 2006),
        # which continues the same successive sampling exactly.
        need = length - drawn.size
        p = weights.astype(np.float64) * ((1.0 - floor) / total if total > 0 else 0.0) + floor / n
        with np.errstate(divide="ignore"):
            keys = rng.standard_exponential(n) / p
        keys[drawn] = np.inf
        rest = np.argpartition(keys, need - 1)[:need]
        rest = rest[np.argsort(keys[rest], kind="stable")]
        return np.concatenate([drawn, rest])

    def _extra_state(self) -> dict[str, Any]:
        return {
            "ema": self._ema.copy(),
            "count": self._count.copy(),
            "last": self._last.copy(),
            "history": self._history[: self._num_updates].copy(),
            "competence": self._competence,
            "num_observed": self._num_observed,
            "num_nonfinite": self._num_nonfinite,
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        keys = ("ema", "count", "last", "history", "competence", "num_observed", "num_nonfinite")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"Not a ZPDAdaptiveSampler state dict: missing key(s) {missing}.")
        n = self.num_examples
        ema = np.asarray(state["ema"], dtype=np.float32)
        if ema.shape != (n,):
            raise ValueError(f"State table has {ema.shape[0]} rows, the sampler has {n}.")
        self._ema = ema.copy()
        self._count = np.asarray(state["count"], dtype=np.uint16).copy()
        self._last = np.asarray(state["last"], dtype=np.int32).copy()
        history = np.asarray(state["history"], dtype=np.float64).reshape(-1)
        self._history = np.resize(history, max(64, 2 * history.size))
        self._history32 = self._history.astype(np.float32)
        self._num_updates = history.size
        self._competence = float(state["competence"])
        self._num_observed = int(state["num_observed"])
        self._num_nonfinite = int(state["num_nonfinite"])


def _occurrence_rounds(indices: np.ndarray) -> list[Any]:
    """Split rows into rounds without repeated indices: round k holds the k-th occurrences.

    Each round selects rows (a slice or an array of row numbers). Applying the rounds in order
    applies repeated indices in order. Without repeats (the usual update) there
    is one round; a small update is checked with a set, cheaper than a sort.
    """
    if indices.size <= 1024:
        if len(set(indices.tolist())) == indices.size:
            return [slice(None)]
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
    else:
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        if not (sorted_idx[1:] == sorted_idx[:-1]).any():
            return [order]  # sorted rows are cache-friendly
    first = np.r_[True, sorted_idx[1:] != sorted_idx[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(indices.size), 0))
    occurrence = np.empty(indices.size, dtype=np.int64)
    occurrence[order] = np.arange(indices.size) - group_start
    return [np.flatnonzero(occurrence == k) for k in range(int(occurrence.max()) + 1)]
