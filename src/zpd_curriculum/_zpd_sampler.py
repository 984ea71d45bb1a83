"""The ZPD-adaptive sampler: a per-example loss table and blockwise weighted draws."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sized
from typing import Any

import numpy as np
import numpy.typing as npt

from ._samplers import _TAG_BLOCK, CurriculumSampler, _check_difficulty, _rng
from ._zpd import relative_difficulty, zpd_probabilities, zpd_weights

__all__ = ["ZPDAdaptiveSampler"]

_COUNT_MAX = np.iinfo(np.uint16).max


class ZPDAdaptiveSampler(CurriculumSampler):
    """Favour the zone of proximal development: examples neither mastered nor out of reach.

    The sampler keeps a per-example loss table fed by :meth:`update` (the Trainer callback feeds
    it from the training forward; custom loops call it themselves): an exponential moving average
    of each example's token-mean loss (the first observation initialises it), an observation count
    and the step of the last observation. Competence is an exponential moving average of the
    batch-mean loss. Every ``refresh_every`` draws it recomputes probabilities from the
    staleness-corrected table (see :func:`zpd_curriculum.zpd_probabilities`) and draws the next
    block without repeats. Until ``warmup`` of the examples have been observed it samples uniformly.

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
        self._history: list[float] = []  # competence after each update
        self._competence = math.nan
        self._num_observed = 0
        self._num_nonfinite = 0

    # ------------------------------------------------------------- the loss table
    def update(self, indices: npt.ArrayLike, losses: npt.ArrayLike) -> None:
        """Record one step's observed per-example losses.

        Each call is one step: it moves the competence and stamps the examples with the step.
        Non-finite losses are skipped and counted (:attr:`num_nonfinite`), never stored. An index
        that appears several times is applied in order.

        Args:
            indices: Dataset indices, shape ``(k,)``.
            losses: Token-mean loss of each, shape ``(k,)``.

        Raises:
            ValueError: If the shapes differ or an index is outside ``[0, N)``.
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
        with np.errstate(over="ignore"):  # a loss beyond float32's range counts as non-finite
            loss = loss.astype(np.float32)
        finite = np.isfinite(loss)
        self._num_nonfinite += int(idx.size - finite.sum())
        idx, loss = idx[finite], loss[finite]
        if loss.size:
            mean = float(loss.mean(dtype=np.float64))
            c = self._competence
            m = self.competence_momentum
            self._competence = mean if math.isnan(c) else m * c + (1.0 - m) * mean
        step = len(self._history)
        self._history.append(self._competence)
        # apply repeated indices in order: round k takes each index's k-th occurrence
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        first = np.r_[True, sorted_idx[1:] != sorted_idx[:-1]] if idx.size else np.empty(0, bool)
        group_start = np.maximum.accumulate(np.where(first, np.arange(idx.size), 0))
        occurrence = np.empty(idx.size, dtype=np.int64)
        occurrence[order] = np.arange(idx.size) - group_start
        beta = np.float32(self.loss_momentum)
        for k in range(int(occurrence.max()) + 1 if idx.size else 0):
            sel = occurrence == k
            i, v = idx[sel], loss[sel]
            old = self._ema[i]
            self._ema[i] = np.where(np.isnan(old), v, beta * old + (1 - beta) * v)
            self._num_observed += int((self._count[i] == 0).sum())
            self._count[i] = np.minimum(self._count[i].astype(np.int64) + 1, _COUNT_MAX)
            self._last[i] = step

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
        return len(self._history)

    @property
    def in_warmup(self) -> bool:
        """Whether sampling is still uniform (too few examples observed)."""
        return math.isnan(self._competence) or (
            self._num_observed < self.warmup * self.num_examples
        )

    def relative_difficulty(self) -> np.ndarray:
        """Staleness-corrected ``log(estimated loss / competence)`` per example (float32)."""
        history = np.asarray(self._history, dtype=np.float32)
        then = history[self._last] if history.size else self._ema  # unseen rows are NaN anyway
        return relative_difficulty(self._ema, then, prior_percentile=self._prior)

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
        weights = zpd_weights(self.relative_difficulty(), center=self.center, width=self.width)
        cumulative = np.cumsum(weights, dtype=np.float64)
        total = cumulative[-1]
        floor = self.floor if total > 0 else 1.0  # every weight underflowed: uniform
        # Successive sampling without replacement (each draw from the renormalised remaining
        # probabilities) is exactly: draw with replacement from p, keep first occurrences.
        # p = (1 - floor) w / sum(w) + floor / N is a mixture: a uniform draw with probability
        # `floor`, else a draw proportional to w by inverse CDF.
        drawn = np.empty(0, dtype=np.int64)
        for _ in range(4):
            m = 2 * length + 64
            uniform = rng.integers(0, n, size=m)
            targets = rng.random(m) * total
            order = np.argsort(targets)  # sorted needles make the binary searches cache-friendly
            by_weight = np.empty(m, dtype=np.int64)
            by_weight[order] = np.searchsorted(cumulative, targets[order], side="right")
            draws = np.where(rng.random(m) < floor, uniform, np.minimum(by_weight, n - 1))
            drawn = np.concatenate([drawn, draws])
            _, first = np.unique(drawn, return_index=True)
            drawn = drawn[np.sort(first)]
            if drawn.size >= length:
                return drawn[:length]
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
            "history": np.asarray(self._history, dtype=np.float64),
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
        self._history = [float(x) for x in np.asarray(state["history"], dtype=np.float64)]
        self._competence = float(state["competence"])
        self._num_observed = int(state["num_observed"])
        self._num_nonfinite = int(state["num_nonfinite"])
