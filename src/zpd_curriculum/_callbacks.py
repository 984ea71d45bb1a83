"""Trainer callbacks: curriculum order and per-example losses on an unmodified ``Trainer``.

``Trainer(..., callbacks=[ZPDAdaptiveCallback()])`` is all a user writes. At ``on_train_begin``
the callback builds its sampler and puts it inside the Trainer's own data loader (the torch
``BatchSampler`` re-reads its ``sampler`` at every iteration), so the number of steps per epoch is
unchanged. A forward hook on the model reads each training micro-batch's per-example losses from
the training forward itself; they are credited to dataset indices by position: micro-batch ``m``
of an epoch holds the sampler's positions ``[m * batch_size, (m + 1) * batch_size)``, and the
micro-batch counter advances on the Trainer's ``on_substep_end`` / ``on_step_end`` events.

Losses stay on the device until they are needed, and are then committed to the sampler in one
transfer (one all-gather across ranks): before the ZPD sampler plans its next block, before a log
or a checkpoint, at the end of an epoch, and at least every ``_MAX_PENDING_STEPS`` optimizer steps.
They are applied one optimizer step at a time, so the sampler ends up exactly as if every step
had been committed on its own. The ZPD plan is made at fixed points of training, far enough ahead
of the data loader's look-ahead that plans never depend on when a loader worker happens to ask.

Exactness is checked at run time: every ``check_every`` optimizer steps the tokens of one row of
the batch are compared with the dataset row they are credited to, and a mismatch stops training.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import BatchSampler, IterableDataset
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ._losses import UnobservableLossError, check_loss_observable, per_example_from_forward
from ._samplers import (
    CurriculumSampler,
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
)
from ._scoring import (
    dataset_fingerprint,
    read_score_cache,
    score_cache_path,
    score_examples,
    write_score_cache,
)
from ._zpd import effective_sample_size
from ._zpd_sampler import ZPDAdaptiveSampler

__all__ = [
    "STATE_FILE",
    "CurriculumCallback",
    "EasyToHardCallback",
    "HardToEasyCallback",
    "RandomCallback",
    "ZPDAdaptiveCallback",
]

logger = logging.getLogger(__name__)

STATE_FILE = "zpd_curriculum_state.npz"
"""Name of the side file each checkpoint directory gets (the sampler state, atomically written)."""
_CACHE_DIR = "zpd_curriculum_cache"
# Optimizer steps whose losses may wait on the device before a commit (see the module docstring).
_MAX_PENDING_STEPS = 64


class CurriculumCallback(TrainerCallback):
    """Base class of the four callbacks: sampler swap, loss capture, checkpoints and logging.

    Args:
        difficulty: Where difficulty comes from: an array (one number per example of the
            Trainer's training dataset, higher = harder), a dataset column name, ``"length"``
            (tokens in ``input_ids``), ``"loss"`` (a no-grad scoring pass with the initial model,
            cached under ``output_dir``), or ``None``.
        seed: Sampler seed (default: ``args.data_seed``, else ``args.seed``).
        refresh_every: Sampler block size (default: ``N // 16`` clipped to
            ``[batch_size * gradient_accumulation_steps, 1024]``).
        plan_ahead: Micro-batches the ZPD plan is kept ahead of training (default: twice the data
            loader's largest possible look-ahead).
        check_every: Every this many optimizer steps, verify that a trained row's tokens match
            the dataset row it is credited to (0 disables the check).
        strict_resume: When resuming from a checkpoint without this callback's state file, raise
            (default) instead of starting a fresh curriculum.
        track_losses: Keep per-example statistics of the training-forward losses (see
            :meth:`loss_statistics`), e.g. for a data map; a strategy that needs no losses then
            reads them too. ZPDAdaptive always reads losses, and keeps these statistics only
            when asked.
        **sampler_options: Passed to the sampler (e.g. ``pacing=`` or ``center=``).

    Examples:
        >>> from zpd_curriculum import ZPDAdaptiveCallback
        >>> callback = ZPDAdaptiveCallback(check_every=10, floor=0.2)
        >>> callback.check_every, callback.sampler_options, callback.sampler is None
        (10, {'floor': 0.2}, True)
    """

    sampler_class: ClassVar[type[CurriculumSampler]]
    #: Whether the strategy consumes per-example losses (only ZPDAdaptive does).
    uses_losses: ClassVar[bool] = False
    #: Whether the strategy needs a difficulty (EasyToHard / HardToEasy).
    needs_difficulty: ClassVar[bool] = False

    def __init__(
        self,
        *,
        difficulty: Any = None,
        seed: int | None = None,
        refresh_every: int | None = None,
        plan_ahead: int | None = None,
        check_every: int = 25,
        strict_resume: bool = True,
        track_losses: bool = False,
        **sampler_options: Any,
    ) -> None:
        if self.needs_difficulty and difficulty is None:
            raise ValueError(
                f"{type(self).__name__} needs a difficulty: pass difficulty='loss' (the default), "
                "'length', a dataset column name, or an array with one number per example."
            )
        if not (isinstance(check_every, int) and check_every >= 0):
            raise ValueError(f"`check_every` must be an int >= 0, got {check_every!r}.")
        if plan_ahead is not None and not (isinstance(plan_ahead, int) and plan_ahead >= 1):
            raise ValueError(f"`plan_ahead` must be an int >= 1 or None, got {plan_ahead!r}.")
        self.difficulty_source = difficulty
        self.seed = seed
        self.refresh_every = refresh_every
        self.plan_ahead = plan_ahead
        self.check_every = check_every
        self.strict_resume = strict_resume
        self.track_losses = bool(track_losses)
        self._read_losses = self.track_losses or self.uses_losses
        self.sampler_options = sampler_options
        #: The active sampler, set at ``on_train_begin``.
        self.sampler: CurriculumSampler | None = None
        #: Difficulty per example used by the sampler and the metrics (``None`` if none).
        self.difficulty: np.ndarray | None = None
        self._hook: Any = None
        self._reset_run_state()

    # ------------------------------------------------------------------ set-up
    def _reset_run_state(self) -> None:
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._checks: list[tuple[int, int, torch.Tensor]] = []  # (micro-batch, row, tokens)
        self._check_now = False
        self._micro = 0
        self._committed_micro = 0
        self._step_ends: list[int] = []  # micro-batch counter after each uncommitted step
        self._skip_first = 0
        self._next_epoch = 0
        self._trained: np.ndarray | None = None
        self._percentile: np.ndarray | None = None
        self._since_log: list[np.ndarray] = []  # indices trained since the last log
        self._loss_stats: np.ndarray | None = None  # (3, N): count, mean, M2 (Welford)
        self._drawn_losses: list[np.ndarray] = []  # ZPD: stored losses of drawn examples
        self._cost = [0.0, 0]  # seconds inside the callback, optimizer steps
        self._warned: set[str] = set()

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        """Build the sampler, put it in the Trainer's data loader, hook the model, resume."""
        self._remove_hook()
        self._reset_run_state()
        trainer_frame = _find_trainer_frame()
        if train_dataloader is None or model is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the Trainer's `train_dataloader` and `model` in "
                "on_train_begin; add it with Trainer(callbacks=[...])."
            )
        self._world, self._rank = int(args.world_size), int(args.process_index)
        steps_before = len(train_dataloader)
        batch_sampler = _inner_batch_sampler(train_dataloader)
        if self._world > 1:
            _own_the_sharding(train_dataloader)
        dataset = train_dataloader.dataset
        old = batch_sampler.sampler
        if type(old).__name__ == "LengthGroupedSampler":
            logger.warning(
                "train_sampling_strategy='group_by_length' is replaced by the %s curriculum: "
                "batches are no longer grouped by length (more padding per batch).",
                type(self).__name__,
            )
        if self._read_losses:
            check_loss_observable(args)
        self._batch_size = int(batch_sampler.batch_size)
        ga = int(args.gradient_accumulation_steps)
        steps_per_epoch = max(len(train_dataloader) // ga + int(len(train_dataloader) % ga > 0), 1)
        n = len(dataset)
        seed = self.seed
        if seed is None:
            seed = args.data_seed if getattr(args, "data_seed", None) is not None else args.seed
        self._dataset = dataset
        self._fingerprint = dataset_fingerprint(dataset)
        saved = None
        if state.global_step > 0:
            resume_from = trainer_frame.get("resume_from_checkpoint") if trainer_frame else None
            saved = self._saved_state(args, state, resume_from)
        if saved is not None and "difficulty" in saved[2]:
            # the difficulty the run started with (a "loss" score of the *initial* model)
            self.difficulty = np.asarray(saved[2]["difficulty"], dtype=np.float64)
        else:
            self.difficulty = _resolve_difficulty(
                self.difficulty_source,
                dataset=dataset,
                model=model,
                collate_fn=train_dataloader.collate_fn,
                args=args,
            )
        global_batch = self._batch_size * ga * self._world
        refresh = self.refresh_every or min(max(n // 16, global_batch), 1024)
        self.sampler = self._build_sampler(
            n,
            seed=int(seed),
            num_samples=len(old),
            refresh_every=refresh,
            num_replicas=self._world,
            rank=self._rank,
            drop_last=bool(batch_sampler.drop_last),
            total_samples=max(int(state.max_steps), 1) * global_batch,
        )
        self._trained = np.zeros(n, dtype=bool)
        if self.track_losses:
            self._loss_stats = np.zeros((3, n), dtype=np.float64)
        if self.difficulty is not None:
            ranks = np.empty(n)
            ranks[np.argsort(self.difficulty, kind="stable")] = np.arange(n)
            self._percentile = (ranks / max(n - 1, 1)).astype(np.float32)
        self._next_epoch = int(state.global_step) // steps_per_epoch
        if saved is not None:
            self.sampler.load_state_dict(saved[0])
            self.sampler.rewind()  # the Trainer replays the epoch and skips what was trained
        if state.global_step > 0 and not args.ignore_data_skip:
            self._skip_first = (int(state.global_step) % steps_per_epoch) * ga
        lead = 2 * ga + 2 + (args.dataloader_prefetch_factor or 2) * args.dataloader_num_workers
        self._plan_ahead = self.plan_ahead or 2 * lead + 2
        if isinstance(self.sampler, ZPDAdaptiveSampler):
            self.sampler.strict_planning = True
        batch_sampler.sampler = self.sampler
        if len(train_dataloader) != steps_before:
            raise RuntimeError(
                f"The curriculum changed the data loader's length from {steps_before} to "
                f"{len(train_dataloader)} batches, which would break the Trainer's step schedule. "
                "Please report this with your TrainingArguments."
            )
        self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)
        _run_first_on_log(self, trainer_frame)

    def _build_sampler(self, n: int, **common: Any) -> CurriculumSampler:
        common.pop("total_samples")
        return self.sampler_class(n, **common, **self.sampler_options)

    def on_epoch_begin(self, args, state, control, **kwargs):
        """Select the epoch and plan its first blocks before the data loader starts."""
        if self.sampler is None:
            return
        self._commit()  # nothing is pending unless on_epoch_end was skipped
        self.sampler.set_epoch(self._next_epoch)
        self._next_epoch += 1
        self._micro = self._committed_micro = self._skip_first
        self._skip_first = 0
        self._plan()

    def on_step_begin(self, args, state, control, **kwargs):
        """Decide whether this optimizer step runs the attribution self-check."""
        self._check_now = self.check_every > 0 and state.global_step % self.check_every == 0

    def on_substep_end(self, args, state, control, **kwargs):
        """A micro-batch without an optimizer step has finished."""
        self._micro += 1

    def on_step_end(self, args, state, control, **kwargs):
        """Close the step; commit pending losses when due; plan ahead."""
        if self.sampler is None:
            return
        start = time.perf_counter()
        self._micro += 1
        self._step_ends.append(self._micro)
        if len(self._step_ends) >= _MAX_PENDING_STEPS:
            self._commit()
        self._plan()
        self._cost[0] += time.perf_counter() - start
        self._cost[1] += 1

    def on_epoch_end(self, args, state, control, **kwargs):
        """Commit what the epoch trained while its plan is still current."""
        self._timed_commit()

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Add ``curriculum/*`` metrics to the Trainer's training logs."""
        if self.sampler is None or logs is None or "loss" not in logs:
            return
        self._timed_commit()  # every rank logs the training loss, so every rank commits
        metrics = self.metrics()
        logs.update(metrics)
        history = state.log_history
        if history and history[-1].get("step") == state.global_step and "loss" in history[-1]:
            history[-1].update(metrics)

    def on_save(self, args, state, control, **kwargs):
        """Write the sampler's state into the checkpoint directory (atomically, on rank 0)."""
        self._timed_commit()  # on every rank: a commit gathers from all of them
        if self.sampler is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(folder):
            logger.warning("Checkpoint folder %s not found: curriculum state not saved.", folder)
            return
        meta = {
            "callback": type(self).__name__,
            "dataset_fingerprint": self._fingerprint,
            "global_step": int(state.global_step),
        }
        extra = {}
        if self.difficulty is not None:
            extra["difficulty"] = _lossless_float32(self.difficulty)
        _save_state(os.path.join(folder, STATE_FILE), self.sampler.state_dict(), meta, extra)

    def on_train_end(self, args, state, control, **kwargs):
        """Commit what is left and remove the forward hook."""
        self._timed_commit()
        self._remove_hook()

    # ------------------------------------------------------------------ losses
    def _on_forward(self, module, args, kwargs, output):
        if not (module.training and torch.is_grad_enabled()) or self.sampler is None:
            return
        start = time.perf_counter()
        m = self._micro
        lo, hi = m * self._batch_size, min((m + 1) * self._batch_size, len(self.sampler))
        if self._pending and self._pending[-1][0] == m:
            if "repeat" not in self._warned:
                self._warned.add("repeat")
                logger.warning(
                    "More than one training forward ran for one micro-batch; per-example losses "
                    "are taken from the first."
                )
            return
        if self._read_losses:
            try:
                sums, counts = per_example_from_forward(kwargs, output, num_examples=hi - lo)
            except UnobservableLossError:
                self._remove_hook()
                raise
            if sums.shape[0] != hi - lo:
                raise RuntimeError(
                    f"Micro-batch {m} has {sums.shape[0]} examples but the sampler put {hi - lo} "
                    "in it: per-example losses cannot be attributed. This happens when a data "
                    "collator drops or adds rows; use a collator that keeps one row per example."
                )
            self._pending.append((m, sums, counts))  # computed from detached tensors
        if self._check_now and "input_ids" in kwargs:  # the step's first micro-batch
            self._check_now = False
            row = m % max(hi - lo, 1)
            self._checks.append((m, row, _row_tokens(kwargs, row)))
        self._cost[0] += time.perf_counter() - start

    def _timed_commit(self) -> None:
        if self.sampler is not None:
            start = time.perf_counter()
            self._commit()
            self._cost[0] += time.perf_counter() - start

    def _commit(self) -> None:
        """Apply the optimizer steps since the last commit: one transfer, then step by step."""
        ends, self._step_ends = self._step_ends, []
        if not ends:
            return
        size, first = self._batch_size, self._committed_micro
        self._committed_micro = ends[-1]
        lo = first * size
        # what every rank trained in these steps; all ranks share one global plan, so any rank
        # can tell what the others trained without sending indices
        trained = np.stack(
            [self.sampler.indices_at(lo, ends[-1] * size, rank=r) for r in range(self._world)]
        )  # (world, positions)
        if not trained.size:
            return
        self._trained[trained.reshape(-1)] = True
        self._since_log.append(trained.reshape(-1))
        checks, self._checks = self._checks, []
        for m, row, tokens in checks:
            index = int(trained[self._rank, m * size + row - lo])
            _verify_row(self._dataset, index, tokens.cpu(), micro=m)
        if not self._pending:
            return
        micro = [m for m, _, _ in self._pending]
        if micro != list(range(first, ends[-1])):
            raise RuntimeError(
                f"The forward hook saw micro-batches {micro} in optimizer steps that trained "
                f"micro-batches {first} to {ends[-1] - 1}: per-example losses cannot be "
                "attributed. Please report this setup."
            )
        local = torch.stack(
            [torch.cat([s for _, s, _ in self._pending]).float(),
             torch.cat([c for _, _, c in self._pending]).float()]
        )  # fmt: skip
        self._pending = []
        if local.shape[1] != trained.shape[1]:
            raise RuntimeError(
                f"{local.shape[1]} per-example losses arrived for {trained.shape[1]} trained "
                "examples: some micro-batch was not seen by the forward hook. Please report "
                "this setup."
            )
        sums, counts = _gather_ranks(local, self._world).cpu().numpy()  # the one device sync
        with np.errstate(invalid="ignore", divide="ignore"):
            losses = (sums / counts).reshape(self._world, -1)  # rank-major, like `trained`
        # step by step, each step's examples in rank order: as if committed after every step
        bounds = (np.minimum(np.asarray([first, *ends]) * size, len(self.sampler)) - lo).tolist()
        spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        indices = np.concatenate([trained[:, a:b].reshape(-1) for a, b in spans])
        losses = np.concatenate([losses[:, a:b].reshape(-1) for a, b in spans])
        if self._loss_stats is not None:
            self._accumulate(indices, losses)
        self._update(indices, losses, [(b - a) * self._world for a, b in spans])

    def _accumulate(self, indices: np.ndarray, losses: np.ndarray) -> None:
        stats = self._loss_stats
        for i, x in zip(indices.tolist(), losses.tolist(), strict=True):  # one step's rows
            if not np.isfinite(x):
                continue
            stats[0, i] += 1
            delta = x - stats[1, i]
            stats[1, i] += delta / stats[0, i]
            stats[2, i] += delta * (x - stats[1, i])

    def loss_statistics(self) -> dict[str, np.ndarray]:
        """Per-example statistics of the training-forward losses seen so far.

        Available with ``track_losses=True`` (24 bytes per example). With epochs as
        the unit, mean against standard deviation is a data map (Swayamdipta et al., "Dataset
        Cartography", EMNLP 2020).

        Returns:
            ``count``, ``mean`` and ``std`` (population; NaN where fewer than one observation).

        Raises:
            RuntimeError: If losses are not being read.
        """
        if self._loss_stats is None:
            raise RuntimeError(
                f"{type(self).__name__} keeps no loss statistics: pass track_losses=True."
            )
        count, mean, m2 = self._loss_stats
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "count": count.astype(np.int64),
                "mean": np.where(count > 0, mean, np.nan),
                "std": np.where(count > 0, np.sqrt(m2 / count), np.nan),
            }

    def _update(self, indices: np.ndarray, losses: np.ndarray, step_sizes: list[int]) -> None:
        """Feed consecutive optimizer steps' per-example losses to the strategy (ZPD only)."""

    def _plan(self) -> None:
        """Plan the stream ahead of the data loader (only the ZPD plan depends on losses)."""

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> dict[str, float]:
        """The ``curriculum/*`` metrics since the last call (what ``on_log`` adds).

        Returns:
            ``competence``, ``difficulty_percentile`` (mean over examples trained since the last
            log; with a difficulty), ``coverage`` (fraction of examples trained, or observed for
            ZPD), ``effective_sample_size`` of the current draw distribution, and
            ``callback_ms_per_step``.
        """
        out = {"curriculum/competence": self._competence()}
        if self._since_log:
            percentiles = self._difficulty_percentiles(np.concatenate(self._since_log))
            if percentiles is not None:
                out["curriculum/difficulty_percentile"] = float(np.mean(percentiles))
        self._since_log = []
        out["curriculum/coverage"] = self._coverage()
        out["curriculum/effective_sample_size"] = self._effective_sample_size()
        seconds, steps = self._cost
        if steps:
            out["curriculum/callback_ms_per_step"] = 1000.0 * seconds / steps
        self._cost = [0.0, 0]
        return {k: float(v) for k, v in out.items()}

    def _difficulty_percentiles(self, indices: np.ndarray) -> np.ndarray | None:
        return None if self._percentile is None else self._percentile[indices]

    def _competence(self) -> float:
        return 1.0

    def _coverage(self) -> float:
        return float(self._trained.mean())

    def _effective_sample_size(self) -> float:
        return float(self.sampler.num_examples)

    # ------------------------------------------------------------------ resume
    def _saved_state(self, args, state, resume_from: Any):
        """The checkpoint's ``(sampler_state, meta, extra)``, validated, or ``None``."""
        candidates = []
        if isinstance(resume_from, (str, os.PathLike)):
            candidates.append(os.fspath(resume_from))
        candidates.append(
            os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        )
        path = next(
            (os.path.join(c, STATE_FILE) for c in candidates
             if os.path.isfile(os.path.join(c, STATE_FILE))),
            None,
        )  # fmt: skip
        if path is None:
            message = (
                f"Resuming at step {state.global_step}, but no {STATE_FILE} was found in "
                f"{candidates}: the checkpoint was saved without {type(self).__name__}, so the "
                "curriculum cannot continue exactly. Resume from a checkpoint saved with this "
                "callback, or pass strict_resume=False to start a fresh curriculum."
            )
            if self.strict_resume:
                raise FileNotFoundError(message)
            logger.warning(message)
            return None
        sampler_state, meta, extra = _load_state(path)
        if meta.get("dataset_fingerprint") != self._fingerprint:
            raise ValueError(
                f"{path} was saved while training on another dataset (fingerprint "
                f"{meta.get('dataset_fingerprint')!r}, now {self._fingerprint!r}). Resume with "
                "the training dataset the checkpoint was made with."
            )
        if meta.get("callback") != type(self).__name__:
            raise ValueError(
                f"{path} was saved by {meta.get('callback')}, not {type(self).__name__}: resume "
                "with the same curriculum callback."
            )
        return sampler_state, meta, extra

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class RandomCallback(CurriculumCallback):
    """Uniform random order (the control), with the same bookkeeping as the curricula.

    Args:
        difficulty: Optional, for the ``curriculum/difficulty_percentile`` metric only.
        seed: See :class:`CurriculumCallback` (likewise the options below).
        refresh_every: Sampler block size.
        plan_ahead: Micro-batches planned ahead of training.
        check_every: Optimizer steps between attribution self-checks.
        strict_resume: Refuse to resume from a checkpoint without curriculum state.
        track_losses: Keep per-example loss statistics (see :meth:`loss_statistics`).
        **sampler_options: Passed to :class:`zpd_curriculum.RandomSampler`.

    Examples:
        >>> callback = RandomCallback()
        >>> callback.sampler is None  # built at on_train_begin
        True
    """

    sampler_class = RandomSampler


class EasyToHardCallback(CurriculumCallback):
    """Easy-to-hard curriculum: see :class:`zpd_curriculum.EasyToHardSampler`.

    The pacing spans the run: ``total_samples`` is ``max_steps x batch x accumulation``.

    Args:
        difficulty: Difficulty source (default ``"loss"``: scored with the initial model).
        **kwargs: See :class:`CurriculumCallback`; sampler options such as ``pacing``,
            ``start`` and ``full_at`` pass through.

    Examples:
        >>> EasyToHardCallback(pacing="root", start=0.1).sampler_options
        {'pacing': 'root', 'start': 0.1}
    """

    sampler_class = EasyToHardSampler
    needs_difficulty = True

    def __init__(self, *, difficulty: Any = "loss", **kwargs: Any) -> None:
        super().__init__(difficulty=difficulty, **kwargs)

    def _build_sampler(self, n: int, **common: Any) -> CurriculumSampler:
        total = common.pop("total_samples")
        options = {"total_samples": total, **self.sampler_options}
        return self.sampler_class(n, difficulty=self.difficulty, **common, **options)

    def _competence(self) -> float:
        position = self._micro * self._batch_size * self._world
        return self.sampler.competence_at(min(position, self.sampler.num_samples))

    def _effective_sample_size(self) -> float:
        return self._competence() * self.sampler.num_examples


class HardToEasyCallback(EasyToHardCallback):
    """Hard-to-easy order: see :class:`zpd_curriculum.HardToEasySampler`.

    Args:
        difficulty: Difficulty source (default ``"loss"``); higher means harder.
        **kwargs: See :class:`EasyToHardCallback`.

    Examples:
        >>> HardToEasyCallback(difficulty="length", pacing="sorted").sampler_options
        {'pacing': 'sorted'}
    """

    sampler_class = HardToEasySampler


class ZPDAdaptiveCallback(CurriculumCallback):
    """ZPD-adaptive order from live per-example losses of the training forward.

    Args:
        difficulty: Optional prior for unseen examples (default ``None``).
        seed: See :class:`CurriculumCallback` (likewise the options below).
        refresh_every: Sampler block size: probabilities are recomputed every this many draws.
        plan_ahead: Micro-batches planned ahead of training.
        check_every: Optimizer steps between attribution self-checks.
        strict_resume: Refuse to resume from a checkpoint without curriculum state.
        track_losses: Also keep per-example loss statistics (:meth:`loss_statistics`); losses
            are read for the curriculum either way.
        **sampler_options: Passed to :class:`zpd_curriculum.ZPDAdaptiveSampler`, e.g.
            ``center``, ``width``, ``floor``, ``warmup``.

    Examples:
        >>> callback = ZPDAdaptiveCallback(center=0.3)
        >>> callback.uses_losses, callback.sampler_options
        (True, {'center': 0.3})
    """

    sampler_class = ZPDAdaptiveSampler
    uses_losses = True

    def _build_sampler(self, n: int, **common: Any) -> CurriculumSampler:
        common.pop("total_samples")
        return ZPDAdaptiveSampler(
            n, difficulty=self.difficulty, **common, **self.sampler_options
        )

    def _update(self, indices: np.ndarray, losses: np.ndarray, step_sizes: list[int]) -> None:
        if self._percentile is None:
            self._drawn_losses.append(self.sampler.example_losses_at(indices))
        self.sampler.update(indices, losses, step_sizes=step_sizes)

    def _plan(self) -> None:
        ahead = (self._micro + self._plan_ahead) * self._batch_size * self._world
        planned = self.sampler.planned_until
        if ahead > planned and planned < self.sampler.num_samples:
            self._commit()  # a new block is planned from every loss seen so far
            self.sampler.plan_until(ahead)

    def _difficulty_percentiles(self, indices: np.ndarray) -> np.ndarray | None:
        if self._percentile is not None:
            return self._percentile[indices]
        # No difficulty given: where the drawn examples' stored losses, as they were before their
        # steps were committed, sit among the table's observed losses now.
        values = np.concatenate(self._drawn_losses) if self._drawn_losses else np.empty(0)
        self._drawn_losses = []
        values = values[np.isfinite(values)]
        table = self.sampler.example_losses
        observed = table[np.isfinite(table)]
        if observed.size < 2 or values.size == 0:
            return None
        grid = np.linspace(0.0, 1.0, 101)
        return np.interp(values, np.quantile(observed, grid), grid)

    def _competence(self) -> float:
        return self.sampler.competence

    def _coverage(self) -> float:
        return self.sampler.num_observed / self.sampler.num_examples

    def _effective_sample_size(self) -> float:
        return effective_sample_size(self.sampler.probabilities())


# ---------------------------------------------------------------------- helpers
def _inner_batch_sampler(dataloader: Any) -> BatchSampler:
    """The torch ``BatchSampler`` whose ``.sampler`` decides the order."""
    batch_sampler = getattr(dataloader, "batch_sampler", None)
    if type(batch_sampler).__name__ == "BatchRebalanceSampler":
        raise ValueError(
            "train_sampling_strategy='batch_rebalance' builds its own batches, so a curriculum "
            "cannot set the order. Use train_sampling_strategy='random' (the default) with a "
            "curriculum callback."
        )
    inner = getattr(batch_sampler, "batch_sampler", None)  # accelerate's BatchSamplerShard
    if inner is not None:
        batch_sampler = inner
    if not isinstance(batch_sampler, BatchSampler) or not hasattr(batch_sampler, "sampler"):
        raise TypeError(
            "The training data loader has no map-style BatchSampler to reorder (got "
            f"{type(batch_sampler).__name__}). Curriculum ordering needs a map-style dataset with "
            "__len__ and __getitem__; an IterableDataset streams in its own order."
        )
    dataset = getattr(dataloader, "dataset", None)
    if isinstance(dataset, IterableDataset) or not hasattr(batch_sampler.sampler, "__len__"):
        raise TypeError(
            f"The training dataset is an IterableDataset ({type(dataset).__name__}): it streams in "
            "its own order, so there is no order to curriculum. Use a map-style dataset (e.g. "
            "datasets.Dataset rather than IterableDataset, or `.to_iterable_dataset()` not called)."
        )
    return batch_sampler


def _find_trainer_frame(max_depth: int = 12) -> dict[str, Any] | None:
    """Locals of the Trainer's ``_inner_training_loop`` frame, if it is on the stack."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        if frame.f_code.co_name == "_inner_training_loop":
            return frame.f_locals
        frame = frame.f_back
    return None


def _run_first_on_log(callback: CurriculumCallback, trainer_frame: Mapping | None) -> None:
    """Move the callback to the front of the Trainer's callback list.

    Integrations (TensorBoard, W&B) are registered before user callbacks, so a metric added in
    ``on_log`` would reach them only if this callback runs first. The move keeps the iteration
    in progress intact: every callback after this one is still called exactly once.
    """
    trainer = trainer_frame.get("self") if trainer_frame else None
    handler = getattr(trainer, "callback_handler", None)
    if not isinstance(handler, CallbackHandler) or callback not in handler.callbacks:
        logger.warning(
            "Could not find the Trainer's callback handler: curriculum metrics will reach "
            "state.log_history but maybe not report_to integrations."
        )
        return
    handler.callbacks.remove(callback)
    handler.callbacks.insert(0, callback)


def _resolve_difficulty(spec: Any, *, dataset: Any, model: Any, collate_fn: Any, args: Any):
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "loss":
            return _score_difficulty(model, dataset, collate_fn=collate_fn, args=args)
        if spec == "length":
            columns = getattr(dataset, "column_names", None) or []
            if "input_ids" in columns:  # a column read, not one row at a time
                ids = dataset["input_ids"]
            else:
                ids = (row["input_ids"] for row in _rows(dataset))
            return np.asarray([len(row) for row in ids], dtype=np.float64)
        columns = getattr(dataset, "column_names", None) or []
        if spec in columns:
            return np.asarray(dataset[spec], dtype=np.float64)
        raise ValueError(
            f"difficulty={spec!r} is neither 'loss', 'length' nor a column of the training "
            f"dataset (columns: {columns}). Note that the Trainer drops columns the model does "
            "not take unless remove_unused_columns=False."
        )
    values = np.asarray(spec, dtype=np.float64)
    if values.shape != (len(dataset),):
        raise ValueError(
            f"difficulty has shape {values.shape}, but the Trainer's training dataset has "
            f"{len(dataset)} rows: pass one number per row of trainer.train_dataset (after any "
            "processing the trainer does, e.g. TRL's)."
        )
    return values


def _score_difficulty(model: Any, dataset: Any, *, collate_fn: Any, args: Any) -> np.ndarray:
    """The ``"loss"`` difficulty: a cached scoring pass, split across ranks and gathered."""
    world, rank = int(args.world_size), int(args.process_index)
    path = score_cache_path(model, dataset, os.path.join(args.output_dir, _CACHE_DIR))
    cached = read_score_cache(path, len(dataset))
    if _all_ranks_agree(cached is not None, world):
        return cached.astype(np.float64)
    shard = list(range(rank, len(dataset), world))
    scores = score_examples(
        model,
        torch.utils.data.Subset(dataset, shard) if world > 1 else dataset,
        batch_size=args.per_device_eval_batch_size,
        data_collator=collate_fn,
        show_progress=not args.disable_tqdm and rank == 0,
        desc="zpd-curriculum: scoring difficulty",
    )
    if world > 1:
        parts: list[Any] = [None] * world
        torch.distributed.all_gather_object(parts, scores)
        full = np.empty(len(dataset), dtype=np.float32)
        for r, part in enumerate(parts):
            full[r::world] = part
        scores = full
    if rank == 0:
        write_score_cache(path, scores)
    return scores.astype(np.float64)  # the sampler then references it rather than copying


def _all_ranks_agree(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    everyone: list[Any] = [None] * world
    torch.distributed.all_gather_object(everyone, bool(flag))
    return all(everyone)


def _gather_ranks(local: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate a ``(2, k)`` tensor from every rank along dim 1, in rank order."""
    if world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(parts, local.contiguous())
    return torch.cat(parts, dim=1)


def _own_the_sharding(dataloader: Any) -> None:
    """Let the curriculum sampler shard its global plan instead of accelerate.

    accelerate wraps the batch sampler in a ``BatchSamplerShard`` that deals global batch ``k``
    to rank ``k % world``; a curriculum sampler with ``num_replicas``/``rank`` already yields
    this rank's share of one global order, so the wrapper becomes a passthrough, as the Trainer
    does for its own rank-aware ``BatchRebalanceSampler``. The number of batches per epoch is
    unchanged: ``ceil(ceil(N / world) / b) == ceil(ceil(N / b) / world)``.
    """
    shard = getattr(dataloader, "batch_sampler", None)
    if type(dataloader).__name__ == "DataLoaderDispatcher" or shard is None:
        raise ValueError(
            "With dispatch_batches=True, rank 0 loads every batch and slices it across ranks; "
            "a curriculum needs each rank to load its own share. Set "
            "accelerator_config={'dispatch_batches': False} in TrainingArguments."
        )
    if type(shard).__name__ != "BatchSamplerShard":
        raise TypeError(
            f"Unexpected multi-process data loader layout ({type(shard).__name__}); the "
            "curriculum cannot shard it. Please report your accelerate version."
        )
    if shard.split_batches:
        raise ValueError(
            "accelerator_config split_batches=True slices every batch across ranks; the "
            "curriculum shards by example. Set accelerator_config={'split_batches': False}."
        )
    shard.num_processes = 1
    shard.process_index = 0
    shard.even_batches = False  # every rank has the same share length: no padding batches


def _rows(dataset: Any):
    for i in range(len(dataset)):
        yield dataset[i]


def _row_tokens(kwargs: Mapping[str, Any], row: int) -> torch.Tensor:
    """The real (unpadded) token ids of one example of a training batch, on its device."""
    ids = kwargs["input_ids"]
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None:
        return ids.reshape(-1)[cu[row] : cu[row + 1]].detach().clone()
    mask = kwargs.get("attention_mask")
    if ids.shape[0] == 1 and mask is None and kwargs.get("position_ids") is not None:
        starts = torch.nonzero(kwargs["position_ids"].reshape(-1) == 0).reshape(-1)
        bounds = torch.cat([starts, starts.new_tensor([ids.numel()])])
        return ids.reshape(-1)[bounds[row] : bounds[row + 1]].detach().clone()
    tokens = ids[row]
    if mask is not None and mask.dim() == 2:
        tokens = tokens[mask[row].bool()]
    return tokens.detach().clone()


def _verify_row(dataset: Any, index: int, tokens: torch.Tensor, *, micro: int) -> None:
    row = dataset[index]
    if not isinstance(row, Mapping) or "input_ids" not in row:
        return
    expected = torch.as_tensor(row["input_ids"]).reshape(-1).tolist()
    seen = tokens.reshape(-1).tolist()
    if not seen or seen != expected[: len(seen)]:
        raise RuntimeError(
            f"zpd-curriculum self-check failed: micro-batch {micro} holds tokens "
            f"{seen[:12]}... but is credited to dataset row {index} whose input_ids start "
            f"{expected[:12]}. Per-example losses would be misattributed, so training stops. "
            "Something reorders or replaces the Trainer's batches (a custom sampler or data "
            "loader, a collator that reorders rows); please report it with your Trainer setup."
        )


def _lossless_float32(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 when that loses nothing (loss scores, lengths), else unchanged."""
    single = np.asarray(values).astype(np.float32)
    return single if np.array_equal(single, values) else np.asarray(values)


def _save_state(
    path: str, state: Mapping[str, Any], meta: Mapping[str, Any], extra: Mapping[str, Any]
) -> None:
    arrays = {f"state.{k}": np.asarray(v) for k, v in state.items()}
    arrays.update({f"extra.{k}": np.asarray(v) for k, v in extra.items()})
    arrays["meta"] = np.asarray(json.dumps(dict(meta)))
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".zpd-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_state(path: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        parts: dict[str, dict[str, Any]] = {"state": {}, "extra": {}}
        for key in data.files:
            group, _, name = key.partition(".")
            if group in parts:
                value = data[key]
                parts[group][name] = value.item() if value.ndim == 0 else value
    return parts["state"], meta, parts["extra"]

