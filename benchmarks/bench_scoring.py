"""Scoring pass: ``zpd_curriculum.score_examples`` against a one-example-at-a-time loop.

Both score the same rows with the same model (a Llama from a config, nothing downloaded) and must
agree: the naive loop takes each example's token-mean loss from the model's own ``loss``, one
unpadded example per forward; ``score_examples`` batches length-sorted examples and reads
per-example losses from the logits. The scores are asserted equal to float32 rounding.

Batching cannot remove arithmetic. To tell how far any batching could go, the pass's
floating-point operations are counted (``torch.utils.flop_counter.FlopCounterMode``: matrix
products and attention) and divided by the fastest float32 matrix-product rate this machine
reaches on one thread (the best of several large products): no scoring method that does the
same arithmetic on this CPU can beat that time, so ``naive time / that time`` is the ceiling
of any speed-up over the naive loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zpd_curriculum import score_examples

from ._common import Timing, interleaved, markdown_table, verdict

VOCAB = 256


def rows(n: int, *, max_length: int = 128, seed: int = 0) -> list[dict[str, list[int]]]:
    """``n`` rows of 8 to ``max_length`` tokens; every fifth masks its first half (a prompt)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(8, max_length + 1))
        ids = rng.integers(3, VOCAB, length).tolist()
        row = {"input_ids": ids}
        if i % 5 == 0:
            row["labels"] = [-100] * (length // 2) + ids[length // 2 :]
        out.append(row)
    return out


def model(hidden: int = 256, seed: int = 0):
    """A two-layer Llama of the given width."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def naive_scores(net, data) -> np.ndarray:
    """One example per forward, each example's loss from the model itself."""
    out = np.full(len(data), np.nan, dtype=np.float32)
    with torch.no_grad():
        for i, row in enumerate(data):
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row.get("labels", row["input_ids"])])
            if (labels[:, 1:] != -100).any():
                out[i] = float(net(input_ids=ids, labels=labels).loss)
    return out


def batched_scores(net, data, *, batch_size: int) -> np.ndarray:
    """``score_examples``: length-sorted batches, per-example losses from the logits."""
    return score_examples(net, data, batch_size=batch_size, show_progress=False)


# (hidden size, longest example in tokens): the trainer benchmark's short rows, and longer ones
CONFIGS = ((64, 12), (64, 128), (512, 12), (512, 128))
_GEMMS = ("linear", "scaled_dot_product_attention", "matmul", "bmm", "addmm")


def gemm_share(task: Callable[[], Any]) -> float:
    """Fraction of ``task``'s time in matrix products and attention (cProfile, by name)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    task()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, _)}
    total = sum(v[2] for v in stats.values())
    gemm = sum(v[2] for k, v in stats.items() if any(g in k[2] for g in _GEMMS))
    return gemm / total if total else float("nan")


def counted_flops(task: Callable[[], Any]) -> int:
    """Floating-point operations of ``task``'s matrix products and attention, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        task()
    return int(counter.get_total_flops())


# square-ish float32 products large enough to run at the machine's best rate
_PEAK_SHAPES = ((1024, 1024, 1024), (4096, 512, 1024), (2048, 2048, 512))


def peak_flops(repeats: int = 5) -> float:
    """The fastest float32 matrix-product rate (FLOP/s) of this machine at the current threads."""
    best = 0.0
    for m, k, n in _PEAK_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * m * k * n / (time.perf_counter() - start))
    return best


def run_config(hidden: int, max_length: int, *, n: int, repeats: int, batch_size: int = 16):
    """Both methods on one model and data set, interleaved; scores compared."""
    data = rows(n, max_length=max_length)
    net = model(hidden)
    results: dict[str, np.ndarray] = {}
    tasks = {
        "naive": lambda: results.__setitem__("naive", naive_scores(net, data)),
        "score_examples": lambda: results.__setitem__(
            "batched", batched_scores(net, data, batch_size=batch_size)
        ),
    }
    tasks["score_examples"]()  # warm-up
    timings = interleaved(tasks, repeats=repeats)
    naive, batched = results["naive"], results["batched"]
    if not np.array_equal(np.isnan(naive), np.isnan(batched)):
        raise AssertionError("score_examples and the naive loop disagree on unscorable rows")
    finite = ~np.isnan(naive)
    diff = float(np.max(np.abs(naive[finite] - batched[finite]))) if finite.any() else 0.0
    if not np.allclose(naive, batched, rtol=2e-5, atol=2e-5, equal_nan=True):
        raise AssertionError(f"score_examples differs from the naive loop by up to {diff:.3g}")
    subset = data[: max(8, n // 8)]
    naive_flops = counted_flops(lambda: naive_scores(net, data))
    batched_flops = counted_flops(lambda: batched_scores(net, data, batch_size=batch_size))
    return {
        "hidden": hidden,
        "max_length": max_length,
        "n": n,
        "batch_size": batch_size,
        "tokens": sum(len(r["input_ids"]) for r in data),
        "max_abs_difference": diff,
        "naive_flops": naive_flops,
        "batched_flops": batched_flops,
        "naive_gemm_share": gemm_share(lambda: naive_scores(net, subset)),
        "batched_gemm_share": gemm_share(
            lambda: batched_scores(net, subset, batch_size=batch_size)
        ),
        "timings": {name: t.as_dict() for name, t in timings.items()},
    }


def run(*, quick: bool, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Examples per second of both methods for each configuration."""
    torch.set_num_threads(1)
    out = []
    peaks = [peak_flops()]
    for hidden, max_length in CONFIGS:
        n = (32 if quick else 128) * (4 if max_length <= 16 else 1)
        log(f"  scoring: hidden {hidden}, rows of 8-{max_length} tokens, {n} examples ...")
        out.append(run_config(hidden, max_length, n=n, repeats=2 if quick else 5))
        peaks.append(peak_flops())  # between configurations, so load changes are sampled
    return {"configs": out, "peak_flops": max(peaks)}


def table(result: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown of the scoring section, and its targets."""
    rows_, targets = [], []
    peak = result["peak_flops"]
    for config in result["configs"]:
        n = config["n"]
        naive = Timing(samples=config["timings"]["naive"]["samples_s"])
        batched = Timing(samples=config["timings"]["score_examples"]["samples_s"])
        speedup = naive.median / batched.median
        floor_s = config["naive_flops"] / peak  # the naive loop's arithmetic at the best rate
        ceiling = naive.median / floor_s
        setting = f"hidden {config['hidden']}, 8–{config['max_length']} tokens"
        rows_.append(
            [
                setting,
                f"{n}",
                f"{n / naive.median:,.0f} ({n / naive.high:,.0f}–{n / naive.low:,.0f})",
                f"{n / batched.median:,.0f} ({n / batched.high:,.0f}–{n / batched.low:,.0f})",
                f"{speedup:.1f}×",
                f"{100 * config['naive_gemm_share']:.0f}% / "
                f"{100 * config['batched_gemm_share']:.0f}%",
                f"{config['naive_flops'] / n / 1e6:,.0f} / "
                f"{config['batched_flops'] / n / 1e6:,.0f}",
                f"{config['naive_flops'] / naive.median / 1e9:.1f} / "
                f"{config['batched_flops'] / batched.median / 1e9:.1f}",
                f"{ceiling:.1f}×",
                f"{config['max_abs_difference']:.1g}",
            ]
        )
        met = speedup >= 3 and not math.isnan(speedup)
        value = f"{speedup:.1f}×"
        if not met:
            value += (
                f"; the ceiling of any batching here is {ceiling:.1f}× (the naive loop already "
                f"runs its arithmetic at {100 / ceiling:.0f}% of the best rate measured)"
            )
        targets.append(
            {
                "target": f"score_examples >= 3x the naive loop ({setting})",
                "value": value,
                "met": met,
            }
        )
    repeats = len(result["configs"][0]["timings"]["naive"]["samples_s"])
    text = [
        "Examples per second scoring rows of random tokens (every fifth with a masked prompt) "
        "with a two-layer Llama, CPU, one torch thread, `score_examples(batch_size=16)` against "
        "one unpadded example per forward with the model's own loss; median (range) of "
        f"{repeats} interleaved repeats. Batching removes per-forward overhead and makes small "
        "matrix products efficient; it cannot remove arithmetic, so where the naive loop already "
        "spends most of its time in large matrix products (long rows, wide model) the two "
        "converge. Time in matrix products from cProfile. MFLOP per example counted by torch's "
        "`FlopCounterMode` (matrix products and attention); GFLOP/s is that count over the "
        "median time. The ceiling is the naive loop's time over the time its arithmetic would "
        f"take at {peak / 1e9:.1f} GFLOP/s, the fastest float32 matrix-product rate measured on "
        "one thread of this machine in the same run (best of large products): no method doing "
        "the same arithmetic here can be faster than that. Scores agree to float32 rounding "
        "(asserted; largest difference shown).",
        "",
        markdown_table(
            [
                "setting",
                "examples",
                "naive loop, ex/s",
                "score_examples, ex/s",
                "speed-up",
                "time in matmuls, naive / batched",
                "MFLOP per example, naive / batched",
                "GFLOP/s, naive / batched",
                "ceiling of any speed-up",
                "max abs diff",
            ],
            rows_,
        ),
    ]
    for target in targets:
        target["verdict"] = verdict(target["met"])
    return "\n".join(text), targets
