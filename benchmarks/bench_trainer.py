"""Trainer overhead: wall time of ``trainer.train()`` with each curriculum callback vs none.

A tiny offline Llama (the setup of ``tests/trainer_utils.py``, copied so the benchmarks do not
import the tests) trains on examples that encode their index. Every round runs five
configurations (no callback, an A/A control; the four callbacks) in a fresh random order, each
on a freshly built model with the same seed and each *at the same time* as its own run without a
callback, one per core, so machine load hits both alike; a callback's ratio is its wall time over
that simultaneous run's, and the table gives the median, range and a bootstrap interval of the
median of those ratios. ``torch.set_num_threads(1)``: on a shared two-core
machine a second intra-op thread waits on a busy core (small kernels became up to 100x slower
with two threads while other jobs ran), so one thread gives steadier step times.

Also recorded per run: the sum of step durations with load spikes clipped, CPU time of the
process, the ``curriculum/callback_ms_per_step`` the callbacks log (time inside the callback per
optimizer step), the one-off ``on_train_begin`` time, and the number of training forwards (the
callbacks must add none).
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback

from ._common import markdown_table, verdict

PAD, BOS, DIGIT0, FILLER0 = 0, 1, 10, 20
VOCAB = 64

NONE = "no callback"
CONTROL = "no callback (A/A control)"
CALLBACKS = ("RandomCallback", "EasyToHardCallback", "HardToEasyCallback", "ZPDAdaptiveCallback")
TARGETS = {64: 1.03, 512: 1.01}  # ZPDAdaptiveCallback wall-time ratio per hidden size


def index_row(i: int) -> list[int]:
    """Tokens of example i: BOS, the digits of i, then i-dependent filler of varying length."""
    digits = [DIGIT0 + int(c) for c in f"{i % 10_000:04d}"]
    filler = [FILLER0 + (i * 7 + k) % 40 for k in range(3 + i % 5)]
    return [BOS, *digits, *filler]


ROW_WIDTH = len(index_row(4))  # the longest row: BOS, four digits, seven filler tokens


def index_dataset(n: int):
    """A ``datasets.Dataset`` of ``n`` rows with ``input_ids`` and ``labels``."""
    rows = [index_row(i) for i in range(n)]
    return Dataset.from_dict({"input_ids": rows, "labels": rows})


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-pad a list of rows to the data set's longest row.

    Every batch then costs the same whatever the order: padded to the batch's own longest row, a
    curriculum that draws short rows first would train faster, which is not the callback's cost.
    """
    width = ROW_WIDTH
    ids = torch.full((len(batch), width), PAD)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[r, :k] = torch.as_tensor(b["input_ids"])
        labels[r, :k] = torch.as_tensor(b["labels"])
        mask[r, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def tiny_llama(hidden: int, seed: int = 0):
    """A two-layer Llama with the given hidden size, initialised from ``seed``."""
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def make_callback(name: str):
    """A callback by class name (``None`` for no callback); curricula read ``"length"``."""
    import zpd_curriculum

    if name in (NONE, CONTROL):
        return None
    cls = getattr(zpd_curriculum, name)
    if name in ("EasyToHardCallback", "HardToEasyCallback"):
        return cls(difficulty="length")
    return cls()


class _ForwardCounter:
    """Counts the model's training forwards (grad enabled, training mode)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        if module.training and torch.is_grad_enabled():
            self.count += 1


class StepClock(TrainerCallback):
    """Timestamps of the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def clipped_step_seconds(ends: list[float], *, clip: float = 3.0) -> float:
    """Sum of the step durations, each at most ``clip`` times the median step (first dropped).

    Steps that outside load slowed down several-fold are clipped; steady per-step costs, and
    periodic ones well under ``clip`` steps, are kept.
    """
    steps = np.diff(np.asarray(ends))
    if steps.size == 0:
        return float("nan")
    return float(np.minimum(steps, clip * np.median(steps)).sum())


def train_once(
    name: str,
    *,
    hidden: int,
    n: int,
    batch_size: int,
    dataset,
    seed: int = 0,
    ready: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Build a Trainer with callback ``name`` and time ``trainer.train()``.

    ``ready`` is called after the set-up, right before the timed part (to start two runs at once).
    """
    callback = make_callback(name)
    model = tiny_llama(hidden, seed)
    counter = _ForwardCounter(model)
    clock = StepClock()
    setup = [0.0]
    if callback is not None:
        begin = callback.on_train_begin

        def timed_begin(*args, **kwargs):
            start = time.perf_counter()
            try:
                return begin(*args, **kwargs)
            finally:
                setup[0] += time.perf_counter() - start

        callback.on_train_begin = timed_begin  # this instance only
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=batch_size,
                num_train_epochs=1,
                learning_rate=1e-3,
                report_to=[],
                use_cpu=True,
                seed=seed,
                save_strategy="no",
                logging_steps=max(1, min(16, n // batch_size // 4)),
                disable_tqdm=True,
                dataloader_num_workers=0,
            ),  # fmt: skip
            train_dataset=dataset,
            data_collator=collate,
            callbacks=[clock, callback] if callback is not None else [clock],
        )
        trainer.remove_callback(PrinterCallback)  # no log lines on stdout
        gc.collect()
        if ready is not None:
            ready()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        trainer.train()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        logs = [h for h in trainer.state.log_history if "curriculum/callback_ms_per_step" in h]
        per_step = [h["curriculum/callback_ms_per_step"] for h in logs]
        steps = int(trainer.state.global_step)
        held = _callback_bytes(callback, n) if callback is not None else {}
    counter.handle.remove()
    return {
        "wall_s": wall,
        "clipped_steps_s": clipped_step_seconds(clock.ends),
        "cpu_s": cpu,
        "steps": steps,
        "forwards": counter.count,
        "callback_ms_per_step": statistics.mean(per_step) if per_step else None,
        "on_train_begin_s": setup[0],
        "callback_bytes_per_example": held,
    }


def _callback_bytes(callback, n: int) -> dict[str, float]:
    """Per-example arrays the callback itself holds (besides its sampler), bytes per example."""
    out = {}
    for name, value in vars(callback).items():
        if isinstance(value, np.ndarray) and value.size >= n:
            out[name] = value.nbytes / n
    return out


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap (percentile) interval of the median of ``values``, reproducible."""
    from scipy.stats import bootstrap

    if len(values) < 3:
        return math.nan, math.nan
    result = bootstrap(
        (np.asarray(values),), np.median, confidence_level=confidence, method="percentile",
        n_resamples=9999, rng=np.random.default_rng(0),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _pair_worker(core: int, conn, barrier) -> None:
    """A process pinned to one core: runs the trainings it is sent, each started with its twin."""
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    datasets: dict[int, Any] = {}
    while (job := conn.recv()) is not None:
        name, hidden, n, batch_size = job
        if n not in datasets:
            datasets[n] = index_dataset(n)
        conn.send(
            train_once(
                name, hidden=hidden, n=n, batch_size=batch_size, dataset=datasets[n],
                ready=barrier.wait,
            )  # fmt: skip
        )


class _Pairs:
    """Runs two trainings at once, one per core, so that load from other processes hits both.

    On a shared machine the speed changes from second to second; runs of a pair overlap in time,
    so their ratio cancels most of that, where runs one after the other do not. With fewer than
    two cores the pair runs one after the other.
    """

    def __init__(self) -> None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.cores = cores[:2]
        self.workers: list[tuple[Any, Any]] = []
        self.datasets: dict[int, Any] = {}  # without workers: built once per size, here
        if len(self.cores) < 2:
            return
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(2)  # held here until the workers have their copy
        for core in self.cores:
            parent, child = context.Pipe()
            process = context.Process(
                target=_pair_worker, args=(core, child, self.barrier), daemon=True
            )
            process.start()
            self.workers.append((parent, process))

    def run(self, names: tuple[str, str], **job: Any) -> list[dict[str, Any]]:
        if not self.workers:
            if job["n"] not in self.datasets:
                self.datasets[job["n"]] = index_dataset(job["n"])
            return [train_once(name, dataset=self.datasets[job["n"]], **job) for name in names]
        for (conn, _), name in zip(self.workers, names, strict=True):
            conn.send((name, job["hidden"], job["n"], job["batch_size"]))
        return [conn.recv() for conn, _ in self.workers]

    def close(self) -> None:
        for conn, process in self.workers:
            conn.send(None)
            process.join(timeout=30)


def _paired_ratios(runs: list[dict], bases: list[dict], key: str) -> list[float]:
    """Per round: the geometric mean of the two simultaneous pairs' ratios (cores swapped).

    One core of a shared machine can be steadily faster than the other; running each side of a
    pair once on each core and taking the geometric mean cancels that.
    """
    ratios = [a[key] / b[key] for a, b in zip(runs, bases, strict=True)]
    return [math.sqrt(x * y) for x, y in zip(ratios[::2], ratios[1::2], strict=True)]


def run_model(
    hidden: int, *, rounds: int, n: int, batch_size: int, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """``rounds`` rounds; in each, every configuration runs at the same time as a no-callback run.

    Each configuration (the A/A control and the four callbacks) is paired with its own
    no-callback run, the two started together on the two cores (see :class:`_Pairs`), twice, the
    cores swapping sides; configurations run in a fresh random order every round.
    """
    names = [CONTROL, *CALLBACKS]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    bases: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    job = {"hidden": hidden, "n": n, "batch_size": batch_size}
    pairs = _Pairs()
    try:
        pairs.run((NONE, NONE), **job)  # warm-up
        order = np.random.default_rng(hidden)
        for r in range(rounds):
            for name in order.permutation(names).tolist():
                for swap in (False, True):  # each core runs each side once
                    first, second = pairs.run((name, NONE) if swap else (NONE, name), **job)
                    runs[name].append(first if swap else second)
                    bases[name].append(second if swap else first)
            log(
                f"  trainer: hidden {hidden}, round {r + 1}/{rounds}: "
                + ", ".join(
                    f"{k.replace('Callback', '').replace('no callback (A/A control)', 'A/A')} "
                    f"{_paired_ratios(v[-2:], bases[k][-2:], 'wall_s')[0]:.3f}"
                    for k, v in runs.items()
                )
            )
    finally:
        pairs.close()
    runs[NONE] = [b for name in names for b in bases[name]]
    summary = {}
    for name in (CONTROL, *CALLBACKS):
        base = bases[name]
        wall = _paired_ratios(runs[name], base, "wall_s")
        cpu = _paired_ratios(runs[name], base, "cpu_s")
        clipped = _paired_ratios(runs[name], base, "clipped_steps_s")
        ms = [a["callback_ms_per_step"] for a in runs[name] if a["callback_ms_per_step"]]
        step_ms = statistics.median(1e3 * b["wall_s"] / b["steps"] for b in base)
        low, high = median_interval(wall)
        summary[name] = {
            "wall_ratio_ci_low": low,
            "wall_ratio_ci_high": high,
            "wall_ratio_of_minima": min(a["wall_s"] for a in runs[name])
            / min(b["wall_s"] for b in base),
            "wall_ratio_median": statistics.median(wall),
            "wall_ratio_min": min(wall),
            "wall_ratio_max": max(wall),
            "clipped_ratio_median": statistics.median(clipped),
            "clipped_ratio_min": min(clipped),
            "clipped_ratio_max": max(clipped),
            "cpu_ratio_median": statistics.median(cpu),
            "cpu_ratio_min": min(cpu),
            "cpu_ratio_max": max(cpu),
            "callback_ms_per_step": statistics.median(ms) if ms else None,
            "callback_share_of_step": (statistics.median(ms) / step_ms) if ms else None,
            "on_train_begin_ms": 1e3 * statistics.median(a["on_train_begin_s"] for a in runs[name]),
            "forwards": runs[name][0]["forwards"],
            "callback_bytes_per_example": runs[name][0]["callback_bytes_per_example"],
        }
    return {
        "hidden": hidden,
        "n": n,
        "batch_size": batch_size,
        "steps": runs[NONE][0]["steps"],
        "forwards_without_callback": runs[NONE][0]["forwards"],
        "step_ms_without_callback": statistics.median(
            1e3 * b["wall_s"] / b["steps"] for b in runs[NONE]
        ),
        "wall_s_without_callback": statistics.median(b["wall_s"] for b in runs[NONE]),
        "summary": summary,
        "runs": runs,
    }


def table(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown of the trainer section, and its targets."""
    rows = []
    targets = []
    for key, result in results.items():
        del key
        hidden = result["hidden"]
        for name, s in result["summary"].items():
            ms = s["callback_ms_per_step"]
            rows.append(
                [
                    f"{hidden}",
                    name,
                    f"{s['wall_ratio_median']:.3f} ({s['wall_ratio_min']:.3f}–"
                    f"{s['wall_ratio_max']:.3f})",
                    f"{s['wall_ratio_ci_low']:.3f}–{s['wall_ratio_ci_high']:.3f}",
                    f"{s['wall_ratio_of_minima']:.3f}",
                    f"{s['clipped_ratio_median']:.3f} ({s['clipped_ratio_min']:.3f}–"
                    f"{s['clipped_ratio_max']:.3f})",
                    f"{s['cpu_ratio_median']:.3f} ({s['cpu_ratio_min']:.3f}–"
                    f"{s['cpu_ratio_max']:.3f})",
                    "—" if ms is None else f"{ms:.2f} ({100 * s['callback_share_of_step']:.1f}%)",
                    f"{s['on_train_begin_ms']:.0f}",
                    f"{s['forwards']} / {result['forwards_without_callback']}",
                ]
            )
        zpd = result["summary"]["ZPDAdaptiveCallback"]
        control = result["summary"][CONTROL]
        limit = TARGETS.get(hidden)
        if limit is not None:
            targets.append(
                {
                    "target": f"ZPDAdaptiveCallback wall time <= {limit:.2f}x no callback, "
                    f"hidden {hidden}",
                    "value": f"{zpd['wall_ratio_median']:.3f}× (95% CI "
                    f"{zpd['wall_ratio_ci_low']:.3f}–{zpd['wall_ratio_ci_high']:.3f}, fastest runs "
                    f"{zpd['wall_ratio_of_minima']:.3f}×, clipped steps "
                    f"{zpd['clipped_ratio_median']:.3f}×, in callback "
                    f"{100 * (zpd['callback_share_of_step'] or math.nan):.1f}% of a step; A/A "
                    "control "
                    f"{control['wall_ratio_median']:.3f}×, range "
                    f"{control['wall_ratio_min']:.3f}–{control['wall_ratio_max']:.3f})",
                    "met": zpd["wall_ratio_median"] <= limit,
                }
            )
    context = "; ".join(
        f"hidden {r['hidden']}: {r['n']:,} examples, {r['steps']} optimizer steps, "
        f"{r['step_ms_without_callback']:.1f} ms/step without a callback, "
        f"{len(r['runs'][CONTROL]) // 2} rounds"  # two pairs a round
        for r in results.values()
    )
    first = next(iter(results.values()))
    held = {
        name: s["callback_bytes_per_example"]
        for name, s in first["summary"].items()
        if s["callback_bytes_per_example"]
    }
    held_text = "; ".join(
        f"{name}: " + ", ".join(f"`{k}` {v:g}" for k, v in arrays.items())
        for name, arrays in held.items()
    )
    text = [
        "`trainer.train()` of a two-layer Llama on examples of 8–12 tokens, every batch padded "
        "to 12 (so that the order does not change the work), batch "
        f"{first['batch_size']}, one epoch, CPU, one torch thread ({context}); "
        "each round runs every configuration once, in a fresh random order, on a fresh "
        "model, at the same time as a run without a callback: the two start together, one on "
        "each core, so load from other processes hits both; each pair runs twice, the cores "
        "swapping sides (one core can be steadily faster than the other). A round's ratio is "
        "the geometric mean of the two pairs' ratios (time with the callback / time of the "
        "simultaneous run without): median (min–max) over rounds, and a bootstrap 95% interval "
        "of the median; "
        '"fastest runs" divides the fastest run of each; "clipped step time" '
        "sums the optimizer steps' durations with each clipped at 3× the run's median step "
        "(removes steps slowed by other processes; excludes `on_train_begin`). The A/A control is "
        "a second run without a callback: its spread is the resolution of the measurement on "
        "this machine. "
        '"In callback" is the `curriculum/callback_ms_per_step` the callbacks log. Curricula '
        'use `difficulty="length"`.',
        "",
        markdown_table(
            [
                "hidden",
                "callback",
                "wall-time ratio",
                "95% CI of the median",
                "fastest runs",
                "clipped step-time ratio",
                "CPU-time ratio",
                "in callback, ms/step (share of step)",
                "on_train_begin, ms",
                "training forwards (with / without)",
            ],
            rows,
        ),
        "",
        f"Per-example arrays the callbacks hold besides their sampler, bytes per example: "
        f"{held_text or 'none'}.",
    ]
    for target in targets:
        target["verdict"] = verdict(target["met"])
    return "\n".join(text), targets


def run(*, quick: bool, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """The trainer benchmark at hidden 64 and 512."""
    torch.set_num_threads(1)
    # hidden: (examples per run, rounds); one run takes about 2 s at hidden 64, 7 s at 512
    plan = {64: (256, 2), 512: (128, 2)} if quick else {64: (2048, 11), 512: (768, 7)}
    return {
        str(hidden): run_model(hidden, rounds=rounds, n=n, batch_size=16, log=log)
        for hidden, (n, rounds) in plan.items()
    }
