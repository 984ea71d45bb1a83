"""Samplers at scale: refresh + one block of draws, against torch and numpy baselines; state size.

What one "block" costs for each method, at N examples:

* ``ZPDAdaptive``: ``plan_until`` of the next block of ``BLOCK`` indices after a training step has
  updated the loss table, i.e. the probability refresh and the draws without repeats (the table
  holds every example, losses log-normal around the competence, so the band is realistic).
* ``ZPDAdaptive, prior, 50% seen``: the same with a difficulty prior while half of the examples are
  unseen (epoch 1 of a run with ``difficulty=``): unseen examples read the quantiles of the
  observed losses, which change with every step.
* ``ZPDAdaptive, narrow band`` (``width=0.02``) and ``band almost empty`` (``width=0.002``): so
  little of the table is in the band that rejection needs many proposals, up to the point where
  the sampler gives up on it and draws by inverse CDF over the whole table (the worst case).
* ``ZPDAdaptive probabilities()``: materialising all ``N`` probabilities (the callbacks do it
  once per log for the effective-sample-size metric).
* ``EasyToHard``: the next block with the whole pool eligible (``start=1.0``: the most work).
* ``WeightedRandomSampler`` (``replacement=False`` / ``True``) and
  ``numpy.random.Generator.choice(p=..., replace=False)``: the same block size from the ZPD
  probabilities, given precomputed (so the baselines are not charged for computing them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from zpd_curriculum import (
    CurriculumSampler,
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
    ZPDAdaptiveSampler,
    zpd_weights,
)
from zpd_curriculum._callbacks import _lossless_float32

from ._common import Timing, fmt_ms, fmt_range, interleaved, markdown_table, verdict

BLOCK = 4096
STEP = 64  # examples per training step between two blocks (the table keeps changing)
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 100_000, 1_000_000)

ZPD = "ZPDAdaptive"
ZPD_PRIOR = "ZPDAdaptive, prior, 50% seen"
ZPD_NARROW = "ZPDAdaptive, narrow band (width 0.02)"
ZPD_FAR = "ZPDAdaptive, band almost empty (width 0.002)"
ZPD_PROBS = "ZPDAdaptive probabilities() (all N)"
E2H = "EasyToHard (whole pool)"
WRS_FALSE = "WeightedRandomSampler(replacement=False)"
WRS_TRUE = "WeightedRandomSampler(replacement=True) (repeats)"
NUMPY = "numpy Generator.choice(p, replace=False)"
BASELINES = (WRS_FALSE, WRS_TRUE, NUMPY)


def synthetic_losses(rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-example losses, log-normal: log-ratios to the competence spread like a real run's."""
    return np.exp(rng.normal(0.7, 0.5, size))


def fill_table(sampler: ZPDAdaptiveSampler, rng: np.random.Generator, *, fraction: float = 1.0):
    """Observe ``fraction`` of the examples once, in steps of at most ``n / 256`` examples."""
    n = sampler.num_examples
    seen = rng.permutation(n)[: int(round(fraction * n))]
    step = max(1024, n // 256)
    for start in range(0, seen.size, step):
        chunk = seen[start : start + step]
        sampler.update(chunk, synthetic_losses(rng, chunk.size))


def zpd_sampler(
    n: int,
    *,
    blocks: int,
    block: int = BLOCK,
    prior: bool = False,
    width: float = 0.5,
    seed: int = 0,
) -> ZPDAdaptiveSampler:
    """A ZPD sampler whose table is filled (half of it with a prior), ready to plan blocks."""
    rng = np.random.default_rng(seed)
    sampler = ZPDAdaptiveSampler(
        n,
        difficulty=rng.random(n) if prior else None,
        width=width,
        refresh_every=block,
        num_samples=block * blocks,
        seed=seed,
    )
    fill_table(sampler, rng, fraction=0.5 if prior else 1.0)
    return sampler


class _BlockPlanner:
    """Plans one new block per call; a training step's losses arrive (untimed) in between."""

    def __init__(self, sampler: CurriculumSampler, *, feed: bool) -> None:
        self.sampler = sampler
        self.feed = feed
        self.rng = np.random.default_rng(1)

    def between(self) -> None:
        if self.feed:
            indices = self.rng.integers(0, self.sampler.num_examples, STEP)
            self.sampler.update(indices, synthetic_losses(self.rng, STEP))

    def __call__(self) -> None:
        self.sampler.plan_until(self.sampler.planned_until + 1)


def _baselines(p: np.ndarray, block: int) -> dict[str, Callable[[], Any]]:
    weights = torch.from_numpy(p)
    generator = torch.Generator().manual_seed(0)
    without = WeightedRandomSampler(weights, block, replacement=False, generator=generator)
    with_ = WeightedRandomSampler(weights, block, replacement=True, generator=generator)
    rng = np.random.default_rng(0)
    n = p.size
    return {
        WRS_FALSE: lambda: list(without),
        WRS_TRUE: lambda: list(with_),
        NUMPY: lambda: rng.choice(n, block, replace=False, p=p),
    }


def time_blocks(
    sizes: tuple[int, ...],
    *,
    repeats: int,
    slow_s: float,
    skip_s: float,
    block: int = BLOCK,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Median time of one block per method and N, interleaved within each N."""
    results: dict[str, Any] = {}
    previous: dict[str, tuple[int, float]] = {}
    for n in sizes:
        log(f"  samplers: N={n:,} ...")
        blocks = repeats + 2
        planners = {
            ZPD: _BlockPlanner(zpd_sampler(n, blocks=blocks, block=block), feed=True),
            ZPD_PRIOR: _BlockPlanner(
                zpd_sampler(n, blocks=blocks, block=block, prior=True), feed=True
            ),
            ZPD_NARROW: _BlockPlanner(
                zpd_sampler(n, blocks=blocks, block=block, width=0.02), feed=True
            ),
            ZPD_FAR: _BlockPlanner(
                zpd_sampler(n, blocks=blocks, block=block, width=0.002), feed=True
            ),
            E2H: _BlockPlanner(
                EasyToHardSampler(
                    n,
                    difficulty=np.random.default_rng(2).random(n),
                    start=1.0,
                    refresh_every=block,
                    num_samples=block * blocks,
                ),
                feed=False,
            ),
        }
        zpd = planners[ZPD].sampler
        tasks: dict[str, Callable[[], Any]] = dict(planners)
        tasks[ZPD_PROBS] = zpd.probabilities
        skipped: dict[str, Timing] = {}
        for name, task in _baselines(zpd.probabilities(), block).items():
            if name in previous:
                prev_n, prev_s = previous[name]
                estimate = prev_s * n / prev_n
                if estimate > skip_s:
                    skipped[name] = Timing(
                        samples=[estimate],
                        note=f"not run: ~{fmt_ms(estimate)} ms extrapolated linearly from "
                        f"N={prev_n:,}",
                    )
                    continue
            tasks[name] = task
        before = {name: planner.between for name, planner in planners.items()}
        timings = interleaved(tasks, repeats=repeats, slow_s=slow_s, before=before)
        timings.update(skipped)
        results[str(n)] = {
            "block": block,
            "timings": {name: t.as_dict() for name, t in timings.items()},
            "zpd_band_mass": _acceptance(zpd),
            "narrow_band_mass": _acceptance(planners[ZPD_NARROW].sampler),
            "far_band_mass": _acceptance(planners[ZPD_FAR].sampler),
        }
        for name, timing in timings.items():
            if not timing.note.startswith("not run"):
                previous[name] = (n, timing.median)
        del planners, tasks, zpd
    return results


def _acceptance(sampler: ZPDAdaptiveSampler) -> float:
    """Mean ZPD weight: the acceptance rate of the sampler's rejection draws."""
    weights = zpd_weights(sampler.relative_difficulty(), center=sampler.center, width=sampler.width)
    return float(weights.mean(dtype=np.float64))


# ----------------------------------------------------------------------- state size
def _held_arrays(obj: Any) -> list[tuple[str, np.ndarray]]:
    found = []
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            found.append((name, value))
        elif isinstance(value, (list, tuple)):
            found += [(name, v) for v in value if isinstance(v, np.ndarray)]
    return found


def state_size(
    sampler: CurriculumSampler,
    *,
    per_step_names: tuple[str, ...] = (),
    difficulty: np.ndarray | None = None,
    given: np.ndarray | None = None,
) -> dict:
    """Bytes the sampler holds per example in memory and writes per example into a checkpoint.

    In memory: every numpy array the sampler references (the planned epoch included), with the
    arrays that grow per optimizer step (``per_step_names``) and the array the sampler was
    ``given`` as its difficulty, when it references it rather than a copy, reported apart. On
    disk: the file the Trainer callbacks write (``_save_state`` in ``_callbacks.py``):
    ``np.savez`` of ``state_dict()`` under ``state.*``, plus, when the callback has a
    difficulty, that difficulty under ``extra.difficulty`` (float32 when that is exact).
    """
    n = sampler.num_examples
    memory: dict[str, int] = {}
    per_step = shared = 0
    for name, array in _held_arrays(sampler):
        if name in per_step_names:
            per_step += array.nbytes
        elif given is not None and np.shares_memory(array, given):
            shared += array.nbytes
        else:
            memory[name] = memory.get(name, 0) + array.nbytes
    state = sampler.state_dict()
    arrays = {f"state.{k}": np.asarray(v) for k, v in state.items()}
    if difficulty is not None:
        arrays["extra.difficulty"] = _lossless_float32(difficulty)
    arrays["meta"] = np.asarray('{"callback": "benchmark"}')
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "state.npz")
        np.savez(path, **arrays)
        disk = os.path.getsize(path)
    disk_arrays = {k: int(v.nbytes) for k, v in arrays.items() if v.size > 1 and k != "meta"}
    step_disk = disk_arrays.get("state.history", 0)
    return {
        "memory_bytes_per_example": sum(memory.values()) / n,
        "memory_breakdown": {k: v / n for k, v in memory.items()},
        "memory_per_step_bytes_total": per_step,
        "memory_shared_with_caller_per_example": shared / n,
        "disk_bytes_per_example": (disk - step_disk) / n,
        "disk_breakdown": {k: v / n for k, v in disk_arrays.items()},
        "disk_per_step_bytes_total": step_disk,
    }


def state_sizes(n: int, *, block: int = BLOCK) -> dict[str, Any]:
    """State size of each sampler after one epoch planned and (ZPD) every example observed."""
    rng = np.random.default_rng(0)
    # float64 holding float32 values, as the callbacks hold a loss score or a length
    difficulty = rng.random(n, dtype=np.float32).astype(np.float64)
    samplers: dict[str, CurriculumSampler] = {
        "Random": RandomSampler(n, refresh_every=block),
        "EasyToHard": EasyToHardSampler(n, difficulty=difficulty, refresh_every=block),
        "HardToEasy": HardToEasySampler(n, difficulty=difficulty, refresh_every=block),
        "ZPDAdaptive": ZPDAdaptiveSampler(n, refresh_every=block),
        "ZPDAdaptive (difficulty prior)": ZPDAdaptiveSampler(
            n, difficulty=difficulty, refresh_every=block
        ),
    }
    out = {}
    for name, sampler in samplers.items():
        if isinstance(sampler, ZPDAdaptiveSampler):
            fill_table(sampler, rng)
        sampler.plan_until(sampler.num_samples)  # a whole epoch planned: the largest state
        steps = sampler.num_updates if isinstance(sampler, ZPDAdaptiveSampler) else 0
        size = state_size(
            sampler, per_step_names=("_history", "_history32"), given=difficulty
        )
        size["checkpoint_with_callback_difficulty"] = (
            state_size(sampler, difficulty=difficulty)["disk_bytes_per_example"]
            if name != "Random" and name != "ZPDAdaptive"
            else size["disk_bytes_per_example"]
        )
        size["updates"] = steps
        out[name] = size
    return out


# ----------------------------------------------------------------------- report
def table(results: dict[str, Any], sizes: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown of the sampler section, and its targets."""
    ns = list(results)
    block = results[ns[0]]["block"]
    header = ["method", *[f"N = {int(n):,}" for n in ns]]
    names = [ZPD, ZPD_PRIOR, ZPD_NARROW, ZPD_FAR, ZPD_PROBS, E2H, *BASELINES]
    rows = []
    for name in names:
        cells = [name]
        for n in ns:
            timing = results[n]["timings"].get(name)
            if timing is None:
                cells.append("—")
                continue
            t = Timing(samples=timing["samples_s"], note=timing["note"])
            cell = fmt_range(t) if not t.note.startswith("not run") else f"~{fmt_ms(t.median)}"
            if t.note:
                cell += " †" if t.note.startswith("not run") else " ‡"
            cells.append(cell)
        rows.append(cells)
    speedup = [f"ZPDAdaptive vs {WRS_FALSE}"]
    for n in ns:
        timings = results[n]["timings"]
        speedup.append(f"{timings[WRS_FALSE]['median_s'] / timings[ZPD]['median_s']:.0f}×")
    rows.append(speedup)
    band = ["mean band weight (rejection acceptance): default / narrow / almost empty"]
    band += [
        f"{results[n]['zpd_band_mass']:.2f} / {results[n]['narrow_band_mass']:.3f} / "
        f"{results[n]['far_band_mass']:.4f}"
        for n in ns
    ]
    rows.append(band)
    text = [
        f"Milliseconds for one block of {block:,} indices (probability refresh + draws), median "
        f"(min–max) of interleaved runs; a training step of {STEP} losses updates the ZPD table "
        "between blocks (not timed). Baselines draw from the ZPD probabilities, precomputed.",
        "",
        markdown_table(header, rows),
        "",
        "† not run: extrapolated linearly in N from the largest N that ran. "
        "‡ slower than the per-run limit: timed once.",
    ]
    size_rows = []
    for name, size in sizes.items():
        shared = size.get("memory_shared_with_caller_per_example", 0.0)
        size_rows.append(
            [
                name,
                f"{size['memory_bytes_per_example']:.2f}",
                ", ".join(f"{k} {v:.2f}" for k, v in size["memory_breakdown"].items()),
                f"{shared:.2f}" if shared else "—",
                f"{size['disk_bytes_per_example']:.2f}",
                f"{size['checkpoint_with_callback_difficulty']:.2f}",
            ]
        )
    text += [
        "",
        "Bytes of state per example, one epoch planned (ZPD: every example observed). The ZPD "
        "competence history grows by one float64 per optimizer step (12 bytes in memory, "
        "8 on disk), reported apart. A sampler given a float64 difficulty keeps a reference to "
        "that array, not a copy (shown apart: the caller holds it anyway, e.g. the Trainer "
        "callback for its metrics and checkpoints). The callback's checkpoint file adds the "
        "difficulty to the sampler's state: float32 when that is exact, as for loss scores "
        "and lengths (used here), else float64.",
        "",
        markdown_table(
            [
                "sampler",
                "in memory",
                "memory breakdown (bytes/example)",
                "referenced difficulty",
                "checkpoint (np.savez)",
                "callback checkpoint file",
            ],
            size_rows,
        ),
    ]
    targets = []
    for n, limit in (("1000000", 0.020), ("10000000", 0.250)):
        if n not in results:
            continue
        timings = results[n]["timings"]
        zpd = timings[ZPD]["median_s"]
        wrs = timings[WRS_FALSE]["median_s"]
        targets.append(
            {
                "target": f"ZPD refresh + block at N = {int(n):,} <= {limit * 1e3:.0f} ms",
                "value": f"{fmt_ms(zpd)} ms",
                "met": zpd <= limit,
            }
        )
        targets.append(
            {
                "target": f"ZPD >= 10x faster than {WRS_FALSE} at N = {int(n):,}",
                "value": f"{wrs / zpd:.0f}×",
                "met": wrs / zpd >= 10,
            }
        )
    for name, size in sizes.items():
        memory, disk = size["memory_bytes_per_example"], size["disk_bytes_per_example"]
        targets.append(
            {
                "target": f"{name}: <= 16 bytes of sampler state per example in memory and on "
                "disk",
                "value": f"{memory:.2f} / {disk:.2f}",
                "met": max(memory, disk) <= 16,
            }
        )
    for target in targets:
        target["verdict"] = verdict(target["met"])
    return "\n".join(text), targets


def run(*, quick: bool, log=print) -> dict[str, Any]:
    """The sampler benchmark; ``quick`` runs smaller sizes with fewer repeats."""
    torch.set_num_threads(1)
    sizes = QUICK_SIZES if quick else SIZES
    repeats = 3 if quick else 9
    results = time_blocks(
        sizes,
        repeats=repeats,
        slow_s=0.5 if quick else 2.0,
        skip_s=1.0 if quick else 15.0,
        log=log,
    )
    size_n = 100_000 if quick else 1_000_000
    log(f"  samplers: state size at N={size_n:,} ...")
    return {
        "blocks": results,
        "state": state_sizes(size_n),
        "state_n": size_n,
        "block": BLOCK,
        "repeats": repeats,
    }
