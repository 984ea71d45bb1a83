"""The `zpd-curriculum` console command: study run (and its dry run), study report, score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

from zpd_curriculum import cli  # noqa: E402

pytestmark = [
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

SMALL = ["--max_steps", "12", "--eval_steps", "6", "--logging_steps", "6",
         "--num_train_examples", "64", "--num_eval_examples", "16",
         "--per_device_train_batch_size", "8", "--num_workers", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_console_script_is_declared():
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["zpd-curriculum"] == "zpd_curriculum.cli:main"
    assert callable(cli.main)


def test_dry_run_prints_the_plan_without_loading_weights(capsys, monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run must not load weights or tokenizers")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    assert cli.main(["study", "run", "--preset", "solar-10.7b", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "runs:        20 = 4 conditions (Random, Easy-to-Hard, Hard-to-Easy, ZPD-Adaptive)" in out
    )
    assert "10,000 per run x 8 examples = 80,000 examples per run" in out
    assert "(0.80 epochs of 100,000 training rows)" in out
    assert "GPU memory:  ~" in out and "GPU-hours:   ~" in out
    assert "lm-eval kobest, mmlu, gsm8k, humaneval" in out
    assert "--confirm_run_unsafe_code" in out  # listed as what stops the real run


def test_dry_run_takes_overrides(capsys):
    args = ["study", "run", "--preset", "qwen2.5-7b", "--dry-run", "--seeds", "0", "1", "2",
            "--conditions", "random", "zpd_adaptive", "--max_steps", "500"]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "runs:        6 = 2 conditions (Random, ZPD-Adaptive) x 3 seeds [0, 1, 2]" in out
    assert "500 per run x 8 examples = 4,000 examples per run" in out


def test_bad_settings_exit_with_a_message(capsys):
    assert cli.main(["study", "run", "--preset", "tiny", "--conditions", "randm"]) == 2
    assert "conditions ['randm'] are unknown" in capsys.readouterr().err
    assert cli.main(["study", "run", "--no-such-option", "1"]) == 2
    assert "['--no-such-option', '1']" in capsys.readouterr().err


def test_gpu_preset_refuses_to_run_on_a_cpu_machine(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert cli.main(["study", "run", "--preset", "solar-10.7b", "--confirm_run_unsafe_code"]) == 2
    assert "meant for a GPU and none is visible" in capsys.readouterr().err


def test_study_run_then_report_and_score(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "run", "--preset", "tiny", "--seeds", "0", "1",
            "--conditions", "random", "zpd_adaptive", "--output-dir", str(out), *SMALL]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert f"Wrote {out / 'results.json'}" in printed
    results = json.loads((out / "results.json").read_text())
    assert [(r["condition"], r["seed"]) for r in results["runs"]] == [
        ("random", 0), ("random", 1), ("zpd_adaptive", 0), ("zpd_adaptive", 1),
    ]  # fmt: skip
    first = (out / "results.md").read_text()
    # `study report` re-renders the same report from results.json alone.
    (out / "results.md").unlink()
    assert cli.main(["study", "report", str(out / "results.json")]) == 0
    assert (out / "results.md").read_text() == first
    assert (out / "plots" / "learning_curves.png").is_file()

    scores_path = tmp_path / "scores.npy"
    score_args = ["score", "--output", str(scores_path), "--seed", "0", "--preset", "tiny",
                  "--output_dir", str(out), *SMALL]  # fmt: skip
    assert cli.main(score_args) == 0
    scores = np.load(scores_path)
    side = json.loads(scores_path.with_suffix(".json").read_text())
    assert scores.shape == (64,) and np.all(np.isfinite(scores))
    assert len(side["ids"]) == len(side["tokens"]) == 64
    # the same scores the Easy-to-Hard callback would use for seed 0 (same model, same data)
    with np.load(out / results["runs"][0]["artifacts"]["loss_stats"]) as data:
        np.testing.assert_allclose(scores, data["difficulty"], rtol=1e-5)


def test_score_without_output_prints_usage(capsys):
    assert cli.main(["score"]) == 2
    assert "usage: zpd-curriculum score --output FILE.npy" in capsys.readouterr().err
