"""Smoke tests of the benchmark suite (``benchmarks/``) at tiny sizes, and of what it measures.

The suite itself runs for minutes (``python benchmarks/run.py``); here every code path of it runs
on a few hundred examples, and the values it reports are checked where they are exact: the
scoring pass agrees with the naive loop, the ZPD state fits 16 bytes per example, the callbacks
add no training forward, and the sampler's draws that the benchmark times follow ``p``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks live beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, bench_samplers, bench_scoring, bench_trainer, run  # noqa: E402

from zpd_curriculum import ZPDAdaptiveSampler  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_interleaved_rotates_the_order_and_runs_before_untimed():
    calls: list[str] = []
    tasks = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    before = {"b": lambda: calls.append("b-before")}
    timings = _common.interleaved(tasks, repeats=3, before=before)
    assert [len(t.samples) for t in timings.values()] == [3, 3, 3]
    assert calls[:4] == ["a", "b-before", "b", "c"]
    assert calls[4:8] == ["b-before", "b", "c", "a"]  # round 2 starts one later


def test_a_task_slower_than_the_limit_runs_once():
    timings = _common.interleaved({"slow": lambda: None}, repeats=5, slow_s=-1.0)
    assert len(timings["slow"].samples) == 1
    assert "1 run" in timings["slow"].note


def test_sampler_blocks_table_and_extrapolated_baselines():
    results = bench_samplers.time_blocks(
        (600, 6000), repeats=2, slow_s=10.0, skip_s=1e-9, block=32, log=lambda _: None
    )
    small, large = results["600"]["timings"], results["6000"]["timings"]
    for name in (bench_samplers.ZPD, bench_samplers.E2H, *bench_samplers.BASELINES):
        assert len(small[name]["samples_s"]) == 2, name
    # at the larger N the baselines would exceed skip_s: extrapolated from N=600, not run
    for name in bench_samplers.BASELINES:
        assert large[name]["note"].startswith("not run")
        expected = small[name]["median_s"] * 10
        assert large[name]["median_s"] == pytest.approx(expected)
    assert 0.0 < results["600"]["zpd_band_mass"] <= 1.0
    sizes = bench_samplers.state_sizes(20_000, block=256)
    text, targets = bench_samplers.table(results, sizes)
    zpd_row = next(line for line in text.splitlines() if line.startswith("| WeightedRandomSampler"))
    assert zpd_row.rstrip(" |").endswith("†")  # N = 6,000: extrapolated, marked
    assert {t["met"] for t in targets if "bytes" in t["target"]} == {True}


def test_zpd_state_is_at_most_16_bytes_per_example_in_memory_and_on_disk():
    sizes = bench_samplers.state_sizes(20_000, block=256)
    for name in ("ZPDAdaptive", "ZPDAdaptive (difficulty prior)"):
        size = sizes[name]
        assert size["memory_bytes_per_example"] <= 16, name
        assert size["disk_bytes_per_example"] <= 16, name
        assert size["updates"] > 0  # the table was filled, the history is reported apart
    # the sampler's own arrays, one epoch planned: 4 (ema) + 2 (count) + 4 (last) + 4 (plan)
    assert sizes["ZPDAdaptive"]["memory_bytes_per_example"] == pytest.approx(14.0)
    assert sizes["ZPDAdaptive (difficulty prior)"]["memory_bytes_per_example"] == pytest.approx(16)


def test_scoring_pass_agrees_with_the_naive_loop():
    result = bench_scoring.run_config(64, 12, n=12, repeats=1, batch_size=4)  # asserts equality
    assert 0.0 <= result["max_abs_difference"] < 2e-5
    assert 0.0 < result["naive_gemm_share"] < 1.0
    assert result["naive_flops"] > 0 and result["batched_flops"] > 0
    peak = bench_scoring.peak_flops(repeats=1)
    text, targets = bench_scoring.table({"configs": [result], "peak_flops": peak})
    assert "hidden 64, 8–12 tokens" in text and "ceiling of any speed-up" in text
    assert len(targets) == 1


def test_flop_count_and_peak_rate():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert bench_scoring.counted_flops(lambda: torch.mm(a, b)) == 2 * 8 * 16 * 4
    assert 1e8 < bench_scoring.peak_flops(repeats=1) < 1e13  # a CPU thread's float32 rate


def test_callbacks_add_no_training_forward_and_log_their_cost():
    torch.set_num_threads(1)
    dataset = bench_trainer.index_dataset(64)
    none = bench_trainer.train_once(
        bench_trainer.NONE, hidden=16, n=64, batch_size=8, dataset=dataset
    )
    zpd = bench_trainer.train_once(
        "ZPDAdaptiveCallback", hidden=16, n=64, batch_size=8, dataset=dataset
    )
    assert none["forwards"] == zpd["forwards"] == none["steps"] == 8
    assert zpd["callback_ms_per_step"] > 0
    assert "_trained" in zpd["callback_bytes_per_example"]


def test_the_docs_table_is_the_rendering_of_the_committed_results(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert run.main(["--from-json", str(ROOT / "benchmarks" / "results.json"), "--markdown",
                     str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert out.read_text(encoding="utf-8") == (ROOT / "docs" / "_benchmarks_table.md").read_text(
        encoding="utf-8"
    )


def test_paired_ratios_cancel_a_faster_core():
    # the callback costs 5%; core 0 runs 10% faster than core 1, and each side runs on each core
    base = [{"wall_s": 1.0}, {"wall_s": 0.9}] * 2
    runs = [{"wall_s": 0.9 * 1.05}, {"wall_s": 1.0 * 1.05}] * 2
    assert bench_trainer._paired_ratios(runs, base, "wall_s") == pytest.approx([1.05, 1.05])


def test_render_writes_the_machine_line_and_the_targets():
    machine = _common.machine()
    assert machine["cores"] >= 1 and machine["numpy"] == np.__version__
    targets = [{"target": "t", "value": "1×", "verdict": "met"}]
    text = run.render(machine, {"scoring": "table"}, targets, quick=True)
    assert text.startswith("Machine: ") and "Quick run" in text
    assert "**Scoring pass.** table" in text and "| t | 1× | met |" in text
    json.dumps(machine)


# ------------------------------------------------------------------ the draws the benchmark times
def _first_draws(sampler: ZPDAdaptiveSampler) -> np.ndarray:
    sampler.plan_until(sampler.num_samples)
    return sampler.state_dict()["planned"].reshape(-1, sampler.refresh_every)


@pytest.mark.parametrize("prior", [False, True])
def test_rejection_draws_follow_successive_sampling(prior):
    """Blocks of two from a table large enough for rejection: both draws distributed exactly."""
    from scipy import stats

    n = 40
    rng = np.random.default_rng(1)
    sampler = ZPDAdaptiveSampler(
        n,
        difficulty=rng.random(n) if prior else None,
        warmup=0.0,
        floor=0.2,
        refresh_every=2,
        num_samples=2 * 4_000,
    )
    seen = np.arange(0, n, 2) if prior else np.arange(n)
    sampler.update(seen, np.geomspace(0.2, 20.0, seen.size))
    p = sampler.probabilities()
    blocks = _first_draws(sampler)
    first = np.bincount(blocks[:, 0], minlength=n)
    assert stats.chisquare(first, p * first.sum()).pvalue > 1e-3
    second_given_first = p[:, None] * p[None, :] / (1 - p[:, None])  # successive sampling
    np.fill_diagonal(second_given_first, 0.0)
    second = np.bincount(blocks[:, 1], minlength=n)
    expected = second_given_first.sum(axis=0) * second.sum()
    assert stats.chisquare(second, expected).pvalue > 1e-3


def test_a_narrow_band_falls_back_to_the_full_pass_with_the_same_law():
    from scipy import stats

    n = 2000
    sampler = ZPDAdaptiveSampler(
        n, warmup=0.0, floor=0.05, width=0.02, refresh_every=100, num_samples=100 * 150
    )
    sampler.update(np.arange(n), np.geomspace(0.2, 20.0, n))
    p = sampler.probabilities()
    first = np.bincount(_first_draws(sampler)[:, 0], minlength=n)
    heavy = p > 1e-3  # the band; the floor's mass is spread too thin to test cell by cell
    expected = p[heavy] / p[heavy].sum() * first[heavy].sum()
    assert stats.chisquare(first[heavy], expected).pvalue > 1e-3


def test_large_table_blocks_are_reproducible_and_resume_exactly():
    def make():
        sampler = bench_samplers.zpd_sampler(50_000, blocks=6, block=512, prior=True)
        sampler.plan_until(1024)
        return sampler

    a, b = make(), make()
    np.testing.assert_array_equal(a.state_dict()["planned"], b.state_dict()["planned"])
    state = a.state_dict()
    a.plan_until(a.num_samples)
    resumed = bench_samplers.zpd_sampler(50_000, blocks=6, block=512, prior=True)
    resumed.load_state_dict(state)
    resumed.plan_until(resumed.num_samples)
    np.testing.assert_array_equal(resumed.state_dict()["planned"], a.state_dict()["planned"])
    planned = a.state_dict()["planned"].reshape(-1, 512)
    assert all(len(set(row.tolist())) == 512 for row in planned)


@pytest.mark.parametrize("floor", [0.0, 1.0])
def test_rejection_blocks_at_the_floor_extremes(floor):
    """floor=1 leaves the band no draw to make (k=0); floor=0 leaves it every draw."""
    sampler = ZPDAdaptiveSampler(200, warmup=0.0, floor=floor, refresh_every=4, num_samples=400)
    sampler.update(np.arange(200), np.geomspace(0.1, 10.0, 200))
    planned = _first_draws(sampler)
    assert planned.shape == (100, 4)
    assert all(len(set(row.tolist())) == 4 for row in planned)
