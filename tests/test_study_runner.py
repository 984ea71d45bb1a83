"""The study runner: one run, the grid, the dry-run plan, lm-eval wiring and the report."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("matplotlib")

from zpd_curriculum.study import (  # noqa: E402
    FIXTURE_PATH,
    IGNORE_INDEX,
    _runner,  # noqa: E402
    preset,
)
from zpd_curriculum.study._lmeval import (  # noqa: E402
    MC_FIXTURE_PATH,
    extract_scores,
    fixture_task_configs,
    lm_eval_model_args,
)
from zpd_curriculum.study._runner import (  # noqa: E402
    curve_metrics,
    format_plan,
    load_results,
    plan_study,
    prepare_inputs,
    run_one,
    run_study,
    write_report,
)

pytestmark = [
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

PNG = b"\x89PNG"
STEPS, BATCH = 24, 8


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(output_dir, **changes):
    settings = dict(
        max_steps=STEPS, eval_steps=8, logging_steps=4, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=32, num_train_examples=96, num_eval_examples=32,
        seeds=[0, 1], conditions=["random", "easy_to_hard", "zpd_adaptive"],
        output_dir=str(output_dir), num_workers=1, torch_threads=1,
    )  # fmt: skip
    settings.update(changes)
    return preset("tiny").replace(**settings)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A small grid (3 conditions x 2 seeds, 24 steps) run once for the module's tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = tiny_config(tmp_path_factory.mktemp("study"))
    results = run_study(config, progress=False)
    torch.set_num_threads(threads)
    return config, results


# ------------------------------------------------------------------------------------- the grid
def test_results_hold_every_run_in_condition_then_seed_order(tiny_study):
    config, results = tiny_study
    runs = results["runs"]
    assert [(r["condition"], r["seed"]) for r in runs] == [
        (c, s) for c in ("random", "easy_to_hard", "zpd_adaptive") for s in (0, 1)
    ]
    saved = json.loads((Path(config.study.output_dir) / "results.json").read_text())
    assert [r["metrics"] for r in saved["runs"]] == [r["metrics"] for r in runs]
    run = runs[0]
    assert run["config"] == config.to_dict()
    assert run["environment"]["versions"]["torch"] == torch.__version__
    assert run["environment"]["versions"]["zpd-curriculum"]
    assert all(run["timings"][k] > 0 for k in ("prepare_s", "train_s", "total_s"))
    assert run["timings"]["total_s"] >= run["timings"]["train_s"] >= run["timings"]["eval_s"] > 0
    assert results["study"]["plan"]["num_runs"] == 6


def test_learning_curve_and_metrics_agree(tiny_study):
    for run in tiny_study[1]["runs"]:
        curve = run["curve"]
        assert [p["step"] for p in curve] == [0, 8, 16, 24]
        metrics = run["metrics"]
        assert metrics["exact_match"] == curve[-1]["exact_match"]
        assert {"exact_match_d2", "exact_match_d3"} <= set(metrics)
        values = [p["exact_match"] for p in curve]
        assert metrics["auc"] == pytest.approx(np.trapezoid(values, [0, 8, 16, 24]) / STEPS)
        assert all(0 <= p["exact_match"] <= 100 for p in curve)


def test_every_trained_example_is_counted_in_the_loss_statistics(tiny_study):
    config, results = tiny_study
    root = Path(config.study.output_dir)
    for run in results["runs"]:
        with np.load(root / run["artifacts"]["loss_stats"]) as data:
            count, mean, levels = data["loss_count"], data["loss_mean"], data["levels"]
        assert count.sum() == STEPS * BATCH
        assert len(count) == len(levels) == run["data"]["train_examples"] == 96
        assert np.all(np.isfinite(mean[count > 0])) and np.all(np.isnan(mean[count == 0]))
        assert set(levels.tolist()) == {2, 3}


def test_one_seed_gives_the_same_model_and_data_in_every_condition(tiny_study):
    config, results = tiny_study
    root = Path(config.study.output_dir)
    by = {(r["condition"], r["seed"]): r for r in results["runs"]}

    def difficulty(condition, seed):
        with np.load(root / by[condition, seed]["artifacts"]["loss_stats"]) as data:
            return data["difficulty"]

    # The scored difficulty is a function of the initial model and the data: equal across
    # conditions of a seed, different across seeds (another initial model).
    np.testing.assert_array_equal(difficulty("random", 0), difficulty("easy_to_hard", 0))
    assert not np.array_equal(difficulty("random", 0), difficulty("random", 1))
    assert sorted(p.name for p in (root / "base-models").iterdir()) == ["seed-0", "seed-1"]
    # one scoring pass per seed, shared through the cache
    assert len(list((root / "cache" / "seed-0").glob("*.npy"))) == 1
    # the first evaluation (step 0, before training) is the same initial model everywhere
    assert by["random", 0]["curve"][0] == by["zpd_adaptive", 0]["curve"][0]
    check = by["easy_to_hard", 0]["difficulty_check"]
    assert -1 <= check["spearman_with_digits"] <= 1
    assert set(check["mean_by_digits"]) == {"2", "3"}


def test_curriculum_metrics_are_logged(tiny_study):
    by = {(r["condition"], r["seed"]): r for r in tiny_study[1]["runs"]}
    log = by["easy_to_hard", 0]["curriculum_log"]
    assert [e["step"] for e in log] == [4, 8, 12, 16, 20, 24]
    competence = [e["curriculum/competence"] for e in log]
    assert competence == sorted(competence) and 0 < competence[0] < competence[-1] <= 1
    assert all(0 <= e["curriculum/difficulty_percentile"] <= 1 for e in log)
    assert all(e["curriculum/competence"] == 1 for e in by["random", 0]["curriculum_log"])


def test_report_and_plots_are_written(tiny_study):
    config, _ = tiny_study
    root = Path(config.study.output_dir)
    text = (root / "results.md").read_text()
    for piece in ("## Did ZPD-Adaptive beat Random?", "| Random |", "| Easy-to-Hard |",
                  "| ZPD-Adaptive |", "2 digits", "3 digits", "21.6k", "Spearman",
                  "This is the tiny CPU stand-in"):  # fmt: skip
        assert piece in text
    for name in ("results", "learning_curves", "curriculum_dynamics", "data_map"):
        assert (root / "plots" / f"{name}.png").read_bytes()[:4] == PNG


def test_a_run_is_reproducible_and_independent_of_the_other_runs(tiny_study, tmp_path):
    config, results = tiny_study
    again = run_one(tiny_config(tmp_path), "zpd_adaptive", 1)
    original = next(
        r for r in results["runs"] if (r["condition"], r["seed"]) == ("zpd_adaptive", 1)
    )
    assert again["metrics"] == original["metrics"]
    assert again["curve"] == original["curve"]
    with (
        np.load(tmp_path / again["artifacts"]["loss_stats"]) as a,
        np.load(Path(config.study.output_dir) / original["artifacts"]["loss_stats"]) as b,
    ):
        np.testing.assert_array_equal(a["loss_mean"], b["loss_mean"])


def test_resume_reuses_a_finished_run_only_with_the_same_settings(tiny_study):
    config, results = tiny_study
    reused = run_one(config.replace(resume=True), "random", 0)
    assert reused["reused"] is True
    assert reused["metrics"] == results["runs"][0]["metrics"]
    fingerprint = _runner._run_fingerprint
    assert fingerprint(config, "random", 0) == fingerprint(config.replace(seeds=[5]), "random", 0)
    assert fingerprint(config, "random", 0) != fingerprint(
        config.replace(learning_rate=1e-3), "random", 0
    )


@pytest.mark.slow
def test_parallel_workers_give_the_same_results_as_one_process(tiny_study, tmp_path):
    config, results = tiny_study
    parallel = run_study(
        tiny_config(tmp_path, conditions=["random", "zpd_adaptive"], num_workers=2),
        progress=False,
    )
    serial = {(r["condition"], r["seed"]): r["metrics"] for r in results["runs"]}
    for run in parallel["runs"]:
        assert run["metrics"] == serial[run["condition"], run["seed"]]


def test_curve_metrics_by_hand():
    points = [
        {"step": 0, "exact_match": 0.0, "exact_match_d2": 0.0},
        {"step": 10, "exact_match": 60.0, "exact_match_d2": 95.0},
        {"step": 20, "exact_match": 92.0, "exact_match_d2": 100.0},
    ]
    assert curve_metrics(points, 20) == {
        "exact_match": 92.0,
        "exact_match_d2": 100.0,
        "auc": (30 * 10 + 76 * 10) / 20,
        "steps_to_90": 20,
        "steps_to_90_d2": 10,
    }
    assert curve_metrics(points[:2], 10)["steps_to_90"] is None


# ------------------------------------------------------------------------------------- the plan
def test_solar_plan_counts_runs_steps_and_lora_parameters():
    plan = plan_study(preset("solar-10.7b"))
    assert plan["num_runs"] == 20
    assert plan["examples_per_run"] == 80_000
    assert plan["epochs_per_run"] == pytest.approx(0.8)
    # LoRA r=8 on q, k, v, o, gate, up, down of 48 layers (hidden 4096, kv 1024, MLP 14336)
    per_layer = 8 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert plan["architecture"]["lora_parameters"] == 48 * per_layer == 31_457_280
    memory = plan["memory_gb"]
    assert memory["weights"] == pytest.approx(10.73e9 * 2 / 1e9)
    assert 30 < memory["total"] < 45
    compute = plan["compute"]
    # LoRA with recomputation: 6 N T FLOPs per run
    assert compute["train_flops_per_run"] == pytest.approx(6 * 10.73e9 * 80_000 * 600)
    assert compute["gpu_hours_total"] == pytest.approx(
        20 * (compute["train_gpu_hours_per_run"] + 1.5) + compute["scoring_gpu_hours_total"]
    )
    text = format_plan(plan)
    assert "20 = 4 conditions" in text and "80,000 examples per run" in text
    assert "LoRA 31.5M trained" in text and "GPU-hours" in text


def test_openorca_ko_plan_shows_several_epochs_of_its_21k_rows():
    plan = plan_study(preset("qwen2.5-7b").replace(data_source="openorca-ko"))
    assert plan["train_examples"] == 21_600 - 1_000
    assert plan["epochs_per_run"] == pytest.approx(80_000 / 20_600)


def test_dry_run_lists_what_stops_a_real_run():
    plan = plan_study(preset("solar-10.7b").replace(dry_run=True))
    assert any("confirm_run_unsafe_code" in p for p in plan["problems"])
    ok = preset("solar-10.7b").replace(confirm_run_unsafe_code=True, dry_run=True)
    assert not any("confirm_run_unsafe_code" in p for p in plan_study(ok)["problems"])


# ----------------------------------------------------------------------- the full-scale data path
def _local_model_without_pad(folder: Path) -> Path:
    """A tiny Llama saved like a hub model whose tokenizer, like SOLAR's, has no pad token."""
    from zpd_curriculum.study import (
        build_char_tokenizer,
        collect_chars,
        load_instruction_jsonl,
        make_tiny_llama,
    )

    chars = collect_chars(load_instruction_jsonl(FIXTURE_PATH))
    for line in MC_FIXTURE_PATH.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        chars += item["question"] + "".join(item["choices"]) + "답변"
    tokenizer = build_char_tokenizer(chars)
    model = make_tiny_llama(tokenizer, hidden_size=32, num_layers=1, seed=3)
    model.save_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    return folder


def fixture_config(tmp_path, **changes):
    model_dir = _local_model_without_pad(tmp_path / "model")
    settings = dict(
        model_name_or_path=str(model_dir),
        pad_token="<unk>",
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        logging_steps=2,
        eval_steps=2,
    )
    settings.update(changes)
    return preset("fixture-ko").replace(**settings)


def test_korean_fixture_is_templated_with_labels_on_the_answer_only(tmp_path):
    config = fixture_config(tmp_path)
    inputs = prepare_inputs(config, 0)
    tokenizer = inputs["tokenizer"]
    assert tokenizer.pad_token == "<unk>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len(inputs["train_dataset"]) == 32 and len(inputs["eval_rows"]) == 8
    for example, row in zip(inputs["train_dataset"], inputs["train_rows"], strict=True):
        labels, ids = example["labels"], example["input_ids"]
        first = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
        assert all(t == IGNORE_INDEX for t in labels[:first])
        assert labels[first:] == ids[first:]
        assert tokenizer.decode(ids[:first]).endswith("### Assistant:\n")
        assert tokenizer.decode(labels[first:]) == row["output"] + "</s>"


def test_a_tokenizer_that_pads_with_eos_is_refused(tmp_path):
    config = fixture_config(tmp_path, pad_token="</s>")
    with pytest.raises(ValueError, match="pads with its EOS token"):
        prepare_inputs(config, 0)
    with pytest.raises(ValueError, match="has no pad token"):
        prepare_inputs(config.replace(pad_token=None), 0)


class FakeLmEval:
    """Stands in for `lm_eval`: records the call, returns lm-eval 0.4's result layout."""

    def __init__(self):
        self.calls = []

    def simple_evaluate(self, **kwargs):
        self.calls.append(kwargs)
        names = [t if isinstance(t, str) else t["task"] for t in kwargs["tasks"]]
        results = {
            "zpd_fixture_ko_gen": {"exact_match,none": 0.25, "exact_match_stderr,none": 0.1},
            "zpd_fixture_ko_mc": {"acc,none": 0.5, "acc_stderr,none": 0.2},
        }
        return {"results": {n: results[n] for n in names}, "n-samples": {}}


@pytest.fixture
def fake_lm_eval(monkeypatch):
    fake = FakeLmEval()
    module = types.ModuleType("lm_eval")
    module.simple_evaluate = fake.simple_evaluate
    monkeypatch.setitem(sys.modules, "lm_eval", module)
    return fake


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_run_evaluates_the_saved_adapter_through_lm_eval(tmp_path, fake_lm_eval):
    config = fixture_config(tmp_path, gradient_checkpointing=True)
    record = run_one(config, "easy_to_hard", 0)
    (call,) = fake_lm_eval.calls
    root = Path(config.study.output_dir)
    adapter = root / "runs" / "easy_to_hard" / "seed-0" / "adapter"
    assert call["model"] == "hf"
    assert call["model_args"] == (
        f"pretrained={config.model.model_name_or_path},peft={adapter},tokenizer={adapter},"
        "dtype=float32"
    )
    assert call["limit"] == 4 and call["confirm_run_unsafe_code"] is False
    gen, mc = call["tasks"]
    assert gen["dataset_kwargs"]["data_files"]["test"] == str(FIXTURE_PATH)
    assert mc["dataset_kwargs"]["data_files"]["test"] == str(MC_FIXTURE_PATH)
    assert record["metrics"]["zpd_fixture_ko_gen"] == 25.0
    assert record["metrics"]["zpd_fixture_ko_mc"] == 50.0
    assert [p["step"] for p in record["curve"]] == [2, 4]  # held-out loss every eval_steps
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["r"] == 8 and set(saved["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    }  # fmt: skip
    assert record["artifacts"]["model"] == "runs/easy_to_hard/seed-0/adapter"


def test_lm_eval_helpers():
    assert (
        lm_eval_model_args("a/b", peft="c", dtype="bfloat16")
        == "pretrained=a/b,peft=c,dtype=bfloat16"
    )
    with pytest.raises(ValueError, match="cannot contain a comma"):
        lm_eval_model_args("a,b")
    results = {
        "kobest": {"acc,none": 0.7, "acc_stderr,none": 0.01, "f1,none": 0.6},
        "humaneval": {"pass@1,create_test": 0.45},
        "custom": {"alias": "x", "bleu,none": 0.2},
    }
    assert extract_scores(results, ["kobest", "humaneval", "custom"]) == pytest.approx(
        {"kobest": 70.0, "humaneval": 45.0, "custom": 20.0}
    )
    with pytest.raises(KeyError, match="no results for task 'mmlu'"):
        extract_scores(results, ["mmlu"])
    assert fixture_task_configs("chatml")[0]["doc_to_text"].startswith("<|im_start|>user\n")


def test_humaneval_needs_confirmation(tmp_path):
    from zpd_curriculum.study import run_lm_eval

    with pytest.raises(ValueError, match="confirm_run_unsafe_code"):
        run_lm_eval(pretrained=tmp_path, tasks=["humaneval"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # lm-eval's own dependencies
def test_real_lm_eval_runs_the_offline_fixture_tasks(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    config = fixture_config(tmp_path)
    record = run_one(config, "zpd_adaptive", 0)
    summary = record["lm_eval"]
    assert summary["n-samples"]["zpd_fixture_ko_gen"] == {"original": 42, "effective": 4}
    assert summary["n-samples"]["zpd_fixture_ko_mc"] == {"original": 16, "effective": 4}
    assert record["metrics"]["zpd_fixture_ko_gen"] in {0.0, 25.0, 50.0, 75.0, 100.0}
    assert record["metrics"]["zpd_fixture_ko_mc"] in {0.0, 25.0, 50.0, 75.0, 100.0}


# ----------------------------------------------------------------------------- hub data sources
def test_gugugo_rows_are_normalised_split_and_capped(monkeypatch, caplog):
    import datasets

    rows = [{"id": f"g{i}", "system_prompt": "", "question": f"질문 {i}", "response": f"답 {i}"}
            for i in range(30)]  # fmt: skip
    seen = []

    def fake_load_dataset(name, split):
        seen.append((name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    config = preset("solar-10.7b").replace(num_train_examples=20, num_eval_examples=5)
    train, held_out = _runner.load_rows(config)
    assert seen == [("squarelike/OpenOrca-gugugo-ko", "train")]
    assert len(train) == 20 and len(held_out) == 5
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in held_out)
    assert set(train[0]) == {"id", "instruction", "input", "output"}
    assert train == _runner.load_rows(config)[0]  # the sample depends on data_seed only
    with caplog.at_level(logging.WARNING):
        train, _ = _runner.load_rows(config.replace(num_train_examples=100))
    assert len(train) == 25 and "training on all 25" in caplog.text


def test_rows_without_a_question_or_an_answer_are_dropped(caplog):
    rows = [
        {"id": "a", "instruction": "", "input": "", "output": "x"},
        {"id": "b", "instruction": "q", "input": "", "output": ""},
        {"id": "c", "instruction": "", "input": "q", "output": "x"},
    ]
    with caplog.at_level(logging.WARNING):
        assert [r["id"] for r in _runner._usable(rows, "src")] == ["c"]
    assert "dropped 2 of 3 rows" in caplog.text


# --------------------------------------------------------------------------------- the report
def synthetic_results(gain, *, models=("tiny-llama",), noise=None, seeds=5):
    config = preset("tiny").replace(seeds=list(range(seeds)))
    rng = np.random.default_rng(0)
    runs = []
    for m, model in enumerate(models):
        for condition in ("random", "zpd_adaptive"):
            for seed in range(seeds):
                base = 50.0 + 3 * seed
                value = base + (gain[m] if condition == "zpd_adaptive" else 0.0)
                if noise:
                    value += rng.normal(0, noise)
                metrics = {"exact_match": value, "auc": value / 2, "exact_match_d2": value + 10,
                           "steps_to_90": None}  # fmt: skip
                runs.append({
                    "model": model, "condition": condition, "seed": seed, "metrics": metrics,
                    "curve": [{"step": 0, "exact_match": 0.0}, {"step": 10, "exact_match": value}],
                    "curriculum_log": [], "difficulty_check": {}, "artifacts": {},
                    "data": {"train_examples": 10},
                    "timings": {"train_s": 1.0, "total_s": 2.0, "eval_s": 0.5},
                })  # fmt: skip
    return {
        "study": {"preset": "tiny", "seeds": list(range(seeds)),
                  "conditions": ["random", "zpd_adaptive"], "config": config.to_dict(),
                  "wall_time_s": 60.0, "environment": {}},
        "runs": runs,
    }  # fmt: skip


def test_report_says_zpd_beat_random_when_every_seed_gains(tmp_path):
    results = synthetic_results([4.0 + 0.0])
    for run in results["runs"]:  # make the gain vary a little by seed
        if run["condition"] == "zpd_adaptive":
            run["metrics"]["exact_match"] += 0.1 * run["seed"]
    written = write_report(results, tmp_path)
    text = written["markdown"].read_text()
    assert "- tiny-llama, exact_match: ZPD-Adaptive **beat** Random (Δ = +4.20 points" in text
    assert "| Random | 56.00 ± 4.74 | 28.00 ± 2.37 |" in text
    assert written["results_plot"].read_bytes()[:4] == PNG
    assert written["learning_curves"].read_bytes()[:4] == PNG
    assert "data_map" not in written and "curriculum_dynamics" not in written


def test_report_says_no_detectable_effect_for_noise(tmp_path):
    text = write_report(synthetic_results([0.0], noise=2.0), tmp_path)["markdown"].read_text()
    assert "**no detectable effect** of ZPD-Adaptive vs Random" in text
    assert "**beat**" not in text


def test_two_models_merged_give_the_h3a_interaction(tmp_path):
    a = synthetic_results([4.0], models=("SOLAR-10.7B",), noise=0.5)
    b = synthetic_results([1.0], models=("Qwen2.5-7B",), noise=0.5)
    for name, data in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(data))
    merged = load_results([tmp_path / "a", tmp_path / "b" / "results.json"])
    assert len(merged["runs"]) == 20
    text = write_report(merged, tmp_path / "merged")["markdown"].read_text()
    assert "## H3a: is the ZPD effect larger for the first model?" in text
    assert "- exact_match: effect SOLAR-10.7B +" in text
    with pytest.raises(ValueError, match="repeats the run"):
        load_results([tmp_path / "a", tmp_path / "a"])
