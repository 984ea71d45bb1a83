"""The curriculum samplers' shared machinery, and the Random / EasyToHard / HardToEasy orders.

Every sampler produces, per epoch, one *global stream* of ``num_samples`` dataset indices that does
not depend on the rank. The stream is planned in blocks of ``refresh_every`` positions; a block's
plan is a pure function of the seed, the epoch, the block number and the sampler's state at the
moment the block is planned, and planned blocks are kept for the rest of the epoch. Rank ``r`` of
``R`` yields stream positions ``r, r + R, r + 2R, ...`` (``torch.utils.data.DistributedSampler``
semantics, padded by wrapping around to the start of the stream unless ``drop_last``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sized
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from torch.utils.data import Sampler

from ._pacing import Pacing, resolve_pacing

__all__ = [
    "CurriculumSampler",
    "EasyToHardSampler",
    "HardToEasySampler",
    "RandomSampler",
]

logger = logging.getLogger(__name__)

STATE_VERSION = 1

# Stream tags keep the random streams of different purposes independent for one seed.
_TAG_ORDER, _TAG_TIES, _TAG_BLOCK = 0, 1, 2


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"`{name}` must be an int >= {low}, got {value!r}.")
    return int(value)


def _num_examples(data_source: Sized | int) -> int:
    if isinstance(data_source, (int, np.integer)) and not isinstance(data_source, bool):
        return _positive_int("data_source", data_source)
    if not hasattr(data_source, "__len__"):
        raise TypeError(
            "`data_source` must be a sized dataset or an int (the number of examples), got "
            f"{type(data_source).__name__}. For an IterableDataset, curriculum ordering is not "
            "possible: use a map-style dataset."
        )
    n = len(data_source)
    if n < 1:
        raise ValueError("`data_source` is empty: a sampler needs at least one example.")
    return n


def _index_dtype(n: int) -> type[np.integer]:
    """The narrowest of int32 and int64 that holds every index of ``n`` examples."""
    return np.int32 if n <= 2**31 - 1 else np.int64


def _check_difficulty(difficulty: npt.ArrayLike, n: int, *, name: str = "difficulty") -> np.ndarray:
    values = np.asarray(difficulty, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(
            f"`{name}` must hold one number per example: expected shape ({n},), got "
            f"{values.shape}. Pass an array aligned with the dataset's indices."
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"`{name}` has {bad.size} non-finite value(s) (NaN or inf) at position(s) {shown}. "
            "Replace them with finite scores (e.g. the maximum for unscorable examples)."
        )
    return values


class CurriculumSampler(Sampler[int]):
    """Base class: the global stream, its blocks, sharding, epochs and state.

    Subclasses implement :meth:`_plan_block` and, if they carry state between blocks,
    :meth:`_extra_state` / :meth:`_load_extra_state`.

    Args:
        data_source: A sized dataset, or the number of examples ``N``.
        seed: Seed of the sampler's private random generators.
        num_samples: Stream length per epoch (default ``N``).
        refresh_every: Block size: the stream is planned this many positions at a time.
        num_replicas: Number of processes sharing the stream (``DistributedSampler`` semantics).
        rank: This process's rank in ``[0, num_replicas)``.
        drop_last: Drop the tail of the stream instead of padding it to a multiple of
            ``num_replicas``.

    Examples:
        >>> from zpd_curriculum import RandomSampler
        >>> ranks = [RandomSampler(5, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
        >>> [len(s) for s in ranks]  # 5 positions padded to 6 by wrapping around
        [3, 3]
        >>> stream = list(RandomSampler(5, seed=1))
        >>> list(ranks[0]) == stream[0::2] and list(ranks[1]) == (stream + stream[:1])[1::2]
        True
    """

    #: Keys every state dict carries (subclasses add their own).
    _STATE_KEYS: ClassVar[tuple[str, ...]] = (
        "version", "sampler", "num_examples", "num_samples", "num_replicas", "seed", "epoch",
        "position", "planned",
    )  # fmt: skip

    def __init__(
        self,
        data_source: Sized | int,
        *,
        seed: int = 0,
        num_samples: int | None = None,
        refresh_every: int = 1024,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.num_examples = _num_examples(data_source)
        self.seed = _positive_int("seed", seed, allow_zero=True)
        self.num_samples = _positive_int(
            "num_samples", self.num_examples if num_samples is None else num_samples
        )
        self.refresh_every = min(_positive_int("refresh_every", refresh_every), self.num_samples)
        self.num_replicas = _positive_int("num_replicas", num_replicas)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise ValueError(f"`rank` must be an int, got {rank!r}.")
        if not 0 <= rank < self.num_replicas:
            raise ValueError(
                f"`rank` must be in [0, num_replicas={self.num_replicas}), got {rank}."
            )
        self.rank = int(rank)
        self.drop_last = bool(drop_last)
        if self.drop_last:
            self._per_rank = self.num_samples // self.num_replicas
        else:
            self._per_rank = math.ceil(self.num_samples / self.num_replicas)
        if self._per_rank == 0:
            raise ValueError(
                f"With drop_last=True, num_samples={self.num_samples} < num_replicas="
                f"{self.num_replicas} leaves every rank empty: set drop_last=False or raise "
                "num_samples."
            )
        self._epoch = 0
        self._position = 0  # this rank's yielded count within the epoch
        self._resume_from = 0
        self._blocks: list[np.ndarray] = []
        self.strict_planning = False

    # ----------------------------------------------------------------- the Sampler protocol
    def __len__(self) -> int:
        return self._per_rank

    def __iter__(self) -> Iterator[int]:
        start, self._resume_from = self._resume_from, 0
        self._position = start
        stride, total, size = self.num_replicas, self.num_samples, self.refresh_every
        j = start
        while j < self._per_rank:
            pos = (self.rank + j * stride) % total
            block, offset = divmod(pos, size)
            plan = self._block(block)
            # yield this rank's positions that fall into the block, in one go
            count = min(self._per_rank - j, (len(plan) - offset + stride - 1) // stride)
            for index in plan[offset : offset + count * stride : stride].tolist():
                self._position += 1
                yield index
            j += count

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a new epoch starts a new stream (same epoch: nothing changes).

        Args:
            epoch: Epoch number (``>= 0``).
        """
        epoch = _positive_int("epoch", epoch, allow_zero=True)
        if epoch != self._epoch:
            self._epoch = epoch
            self._position = self._resume_from = 0
            self._blocks = []
            self._on_new_epoch()

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch

    # ----------------------------------------------------------------- planning
    @property
    def num_blocks(self) -> int:
        """Number of blocks in one epoch's stream."""
        return math.ceil(self.num_samples / self.refresh_every)

    @property
    def planned_until(self) -> int:
        """Stream positions ``[0, planned_until)`` of this epoch are planned and fixed."""
        return min(len(self._blocks) * self.refresh_every, self.num_samples)

    def plan_until(self, position: int) -> None:
        """Plan every block that starts before stream ``position`` in this epoch, now.

        Callers that feed losses (the Trainer callbacks) plan at fixed points of training so the
        plans do not depend on when a data loader happens to ask.

        Args:
            position: A global stream position (clipped to the epoch's length).
        """
        last = min(math.ceil(max(position, 0) / self.refresh_every), self.num_blocks)
        while len(self._blocks) < last:
            self._plan_next()

    def indices_at(self, start: int, stop: int, *, rank: int | None = None) -> np.ndarray:
        """Dataset indices a rank yields (or yielded) at its positions ``[start, stop)``.

        The positions count the rank's yields within the current epoch; they must already be
        planned (a data loader that asked for them made sure of that). Every rank holds the same
        global plan, so any rank can tell what any other rank trains on.

        Args:
            start: First per-rank position.
            stop: One past the last per-rank position (clipped to ``len(self)``).
            rank: Whose positions (default: this sampler's rank).

        Returns:
            An int64 array of dataset indices.
        """
        rank = self.rank if rank is None else rank
        j = np.arange(max(start, 0), min(stop, self._per_rank), dtype=np.int64)
        if not j.size:
            return j
        pos = (rank + j * self.num_replicas) % self.num_samples
        first, last = int(pos.min()) // self.refresh_every, int(pos.max()) // self.refresh_every
        if last >= len(self._blocks):
            raise RuntimeError(
                f"Positions [{start}, {stop}) of epoch {self._epoch} were never planned: the "
                "sampler did not yield them in this epoch."
            )
        # every block but an epoch's last is full, so consecutive blocks concatenate into the
        # stream (usually a step lies inside one block and nothing is copied)
        blocks = self._blocks[first : last + 1]
        span = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return span[pos - first * self.refresh_every].astype(np.int64)

    def _block(self, block: int) -> np.ndarray:
        if block >= len(self._blocks) and self.strict_planning:
            raise RuntimeError(
                f"The data loader asked for stream position {block * self.refresh_every} of "
                f"epoch {self._epoch} before training reached the point where it is planned "
                f"(planned up to {self.planned_until}). The loader runs further ahead than the "
                "callback's look-ahead: raise the callback's `plan_ahead` (or lower "
                "dataloader_prefetch_factor / dataloader_num_workers)."
            )
        while len(self._blocks) <= block:
            self._plan_next()
        return self._blocks[block]

    def _plan_next(self) -> None:
        block = len(self._blocks)
        start = block * self.refresh_every
        length = min(self.refresh_every, self.num_samples - start)
        plan = self._plan_block(block, start, length)
        self._blocks.append(plan.astype(_index_dtype(self.num_examples)))

    def _plan_block(self, block: int, start: int, length: int) -> np.ndarray:
        raise NotImplementedError

    def _on_new_epoch(self) -> None:
        """Hook for subclasses that reset per-epoch state."""

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The sampler's full state, enough to continue the stream exactly.

        Loading it into a sampler built with the same arguments continues where this one stopped.

        Returns:
            A dict of plain values and numpy arrays (see ``_STATE_KEYS``).
        """
        planned = (
            np.concatenate(self._blocks) if self._blocks else np.empty(0, dtype=np.int32)
        )
        state = {
            "version": STATE_VERSION,
            "sampler": type(self).__name__,
            "num_examples": self.num_examples,
            "num_samples": self.num_samples,
            "num_replicas": self.num_replicas,
            "seed": self.seed,
            "epoch": self._epoch,
            "position": self._position,
            "planned": planned,
        }
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; the next iteration continues from it.

        Args:
            state: A state dict from a sampler of the same class built on the same data.

        Raises:
            ValueError: If the state is from another class, data size, stream length, world size
                or version, or is missing keys.
        """
        self._validate_state(state)
        self._epoch = int(state["epoch"])
        self._position = self._resume_from = int(state["position"])
        planned = np.asarray(state["planned"])
        size = self.refresh_every
        self._blocks = [planned[i : i + size].copy() for i in range(0, planned.size, size)]
        self._load_extra_state(state)

    def rewind(self) -> None:
        """Make the next iteration start from the beginning of the current epoch's stream.

        The stream already planned is kept, so the replay is identical: this is what a Trainer
        resuming mid-epoch needs (it replays the epoch and skips the batches already trained).
        """
        self._position = self._resume_from = 0

    def _validate_state(self, state: Mapping[str, Any]) -> None:
        missing = [k for k in self._STATE_KEYS if k not in state]
        if missing:
            raise ValueError(
                f"Not a {type(self).__name__} state dict: missing key(s) {missing}. Pass the "
                "dict returned by state_dict()."
            )
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"Sampler state version {state['version']!r} is not supported (this version of "
                f"zpd-curriculum reads version {STATE_VERSION})."
            )
        mine = {
            "sampler": type(self).__name__,
            "num_examples": self.num_examples,
            "num_samples": self.num_samples,
            "num_replicas": self.num_replicas,
        }
        for key, value in mine.items():
            if state[key] != value:
                raise ValueError(
                    f"Cannot load a state saved with {key}={state[key]!r} into a sampler with "
                    f"{key}={value!r}. Build the sampler with the same class, dataset, "
                    "num_samples and num_replicas as the one that saved the state."
                )
        if state["seed"] != self.seed:
            logger.warning(
                "Loading sampler state saved with seed=%s into a sampler with seed=%s: the "
                "continuation follows the saved seed's plan only for blocks already planned.",
                state["seed"],
                self.seed,
            )

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore subclass state (the base keys are already validated and loaded)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_examples={self.num_examples}, num_samples="
            f"{self.num_samples}, seed={self.seed}, epoch={self._epoch}, rank={self.rank}/"
            f"{self.num_replicas})"
        )


class RandomSampler(CurriculumSampler):
    """Uniform random order: each epoch a fresh permutation of the data (the control condition).

    When ``num_samples > N`` the stream continues with further independent permutations, so no
    example repeats before every example has been drawn.

    Args:
        data_source: A sized dataset, or the number of examples ``N``.
        seed: Seed of the sampler's private generator.
        num_samples: Stream length per epoch (default ``N``).
        refresh_every: Block size (affects only how the stream is computed, not its content).
        num_replicas: Number of processes sharing the stream.
        rank: This process's rank.
        drop_last: Drop the stream's tail instead of padding it.

    Examples:
        >>> sampler = RandomSampler(6, seed=0)
        >>> sorted(sampler)
        [0, 1, 2, 3, 4, 5]
        >>> list(sampler) == list(RandomSampler(6, seed=0))
        True
    """

    def __init__(
        self,
        data_source: Sized | int,
        *,
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
        self._cycle: tuple[int, np.ndarray] | None = None

    def _permutation(self, cycle: int) -> np.ndarray:
        if self._cycle is None or self._cycle[0] != cycle:
            perm = _rng(self.seed, _TAG_ORDER, self._epoch, cycle).permutation(self.num_examples)
            self._cycle = (cycle, perm.astype(_index_dtype(self.num_examples)))
        return self._cycle[1]

    def _on_new_epoch(self) -> None:
        self._cycle = None

    def _plan_block(self, block: int, start: int, length: int) -> np.ndarray:
        n = self.num_examples
        parts = []
        pos, end = start, start + length
        while pos < end:
            cycle, offset = divmod(pos, n)
            take = min(end - pos, n - offset)
            parts.append(self._permutation(cycle)[offset : offset + take])
            pos += take
        return np.concatenate(parts)


class EasyToHardSampler(CurriculumSampler):
    """Easiest examples first, admitting harder ones as training progresses (competence pacing).

    At progress ``p`` (fraction of ``total_samples`` drawn) the eligible pool is the easiest
    ``ceil(c(p) N)`` examples, where ``c`` is the pacing function. Draws are uniform over the pool
    and avoid repeats until every pool member has been drawn (or the epoch ends); the pool is
    re-read at the start of every block of ``refresh_every`` draws. ``pacing="sorted"`` is a strict
    single pass in difficulty order instead. Ties in difficulty are broken by a seeded random
    permutation.

    Args:
        data_source: A sized dataset, or the number of examples ``N``.
        difficulty: One finite number per example; higher means harder.
        pacing: ``"linear"``, ``"root"``, ``"geometric"``, ``"step"``, ``"sorted"`` or a callable
            ``progress -> competence`` (non-decreasing, values in ``(0, 1]``).
        start: Competence at progress 0 (fraction of the data eligible at first).
        full_at: Progress at which the whole dataset is eligible.
        total_samples: Planned number of draws over all of training, across epochs and ranks
            (default: one epoch, ``num_samples``). The Trainer callbacks set it from
            ``max_steps``.
        power: Root degree for ``pacing="root"``.
        num_steps: Number of increments for ``pacing="step"``.
        seed: Seed of the sampler's private generators.
        num_samples: Stream length per epoch (default ``N``).
        refresh_every: Block size: the pool is re-read every this many draws.
        num_replicas: Number of processes sharing the stream.
        rank: This process's rank.
        drop_last: Drop the stream's tail instead of padding it.

    Examples:
        >>> sampler = EasyToHardSampler(8, difficulty=[7, 6, 5, 4, 3, 2, 1, 0], pacing="sorted")
        >>> list(sampler)
        [7, 6, 5, 4, 3, 2, 1, 0]
        >>> sampler = EasyToHardSampler(100, difficulty=range(100), start=0.1, refresh_every=10)
        >>> max(list(sampler)[:10]) < 10  # the first block comes from the easiest 10%
        True
    """

    def __init__(
        self,
        data_source: Sized | int,
        *,
        difficulty: npt.ArrayLike,
        pacing: Pacing = "linear",
        start: float = 0.2,
        full_at: float = 0.8,
        total_samples: int | None = None,
        power: float = 2.0,
        num_steps: int = 4,
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
        #: The difficulty as float64: the caller's array itself when it already is one.
        self.difficulty = _check_difficulty(difficulty, self.num_examples)
        self.pacing = pacing
        self._pacing_fn = resolve_pacing(
            pacing, start=start, full_at=full_at, power=power, num_steps=num_steps
        )
        self.total_samples = _positive_int(
            "total_samples", self.num_samples if total_samples is None else total_samples
        )
        ties = _rng(self.seed, _TAG_TIES).permutation(self.num_examples)
        #: Dataset indices from easiest to hardest (int32 below 2**31 examples).
        self.order = ties[np.argsort(self.difficulty[ties], kind="stable")].astype(
            _index_dtype(self.num_examples)
        )
        self._used = np.zeros(self.num_examples, dtype=bool)  # by difficulty rank

    def competence_at(self, position: int) -> float:
        """Competence at stream ``position`` of the current epoch (1 for ``pacing="sorted"``).

        Args:
            position: A global stream position within the epoch.

        Returns:
            The eligible fraction of the data at that point.
        """
        if self._pacing_fn is None:
            return 1.0
        drawn = self._epoch * self.num_samples + position
        return self._pacing_fn(min(drawn / self.total_samples, 1.0))

    def _on_new_epoch(self) -> None:
        self._used[:] = False

    def _plan_block(self, block: int, start: int, length: int) -> np.ndarray:
        n = self.num_examples
        if self._pacing_fn is None:  # strict sorted pass, cycling if num_samples > N
            return self.order[np.arange(start, start + length) % n]
        pool = min(n, max(1, math.ceil(self.competence_at(start) * n)))
        rng = _rng(self.seed, _TAG_BLOCK, self._epoch, block)
        picks, need = [], length
        while need:
            free = np.flatnonzero(~self._used[:pool])
            if free.size == 0:  # the whole pool has been drawn: start a new cycle over it
                self._used[:pool] = False
                continue
            take = min(need, free.size)
            chosen = free[rng.choice(free.size, size=take, replace=False)]
            self._used[chosen] = True
            picks.append(chosen)
            need -= take
        return self.order[np.concatenate(picks)]

    def _extra_state(self) -> dict[str, Any]:
        return {"used": np.packbits(self._used)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "used" not in state:
            raise ValueError(f"Not a {type(self).__name__} state dict: missing key 'used'.")
        self._used = np.unpackbits(np.asarray(state["used"]), count=self.num_examples).astype(bool)


class HardToEasySampler(EasyToHardSampler):
    """Hardest examples first: exactly :class:`EasyToHardSampler` on negated difficulty.

    Args:
        data_source: A sized dataset, or the number of examples ``N``.
        difficulty: One finite number per example; higher means harder.
        **kwargs: Every other option of :class:`EasyToHardSampler`.

    Examples:
        >>> list(HardToEasySampler(4, difficulty=[0, 1, 2, 3], pacing="sorted"))
        [3, 2, 1, 0]
    """

    def __init__(
        self, data_source: Sized | int, *, difficulty: npt.ArrayLike, **kwargs: Any
    ) -> None:
        given = _check_difficulty(difficulty, _num_examples(data_source))
        super().__init__(data_source, difficulty=-given, **kwargs)
        self.difficulty = given  # as given (higher = harder), not a copy of a float64 array
