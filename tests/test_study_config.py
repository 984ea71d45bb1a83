"""Study configuration: presets, the HfArgumentParser command line, validation."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import HfArgumentParser

from zpd_curriculum.study import CONDITIONS, PRESETS, StudyConfig, parse_study_args, preset
from zpd_curriculum.study._config import SECTIONS, build_parser


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_round_trips_through_dict_and_parser(name):
    config = preset(name)
    assert StudyConfig.from_dict(config.to_dict()) == config
    # HfArgumentParser builds each section from the flat dict, as from a command line.
    sections = HfArgumentParser([kind for _, kind in SECTIONS]).parse_dict(config.flat())
    assert StudyConfig(**dict(zip([n for n, _ in SECTIONS], sections, strict=True))) == config
    # Parsing no overrides gives the preset back.
    assert parse_study_args(["--preset", name]) == config


def test_solar_preset_is_the_r4_design():
    c = preset("solar-10.7b")
    assert c.model.model_name_or_path == "upstage/SOLAR-10.7B-v1.0"
    assert (c.model.use_lora, c.model.lora_r) == (True, 8)
    assert c.train.learning_rate == 3e-4
    assert c.train.examples_per_step == 8
    assert c.train.max_steps == 10_000
    assert c.study.seeds == [0, 1, 2, 3, 4]
    assert c.study.conditions == list(CONDITIONS)
    assert c.evaluation.tasks == ["kobest", "mmlu", "gsm8k", "humaneval"]
    assert c.data.num_train_examples == 100_000
    # OpenOrca-KO has ~21.6k rows, so the 100k sample comes from gugugo-ko.
    assert c.data.data_source == "gugugo-ko"
    assert (c.model.template, c.model.pad_token, c.model.eos_token) == ("solar", "<unk>", None)


def test_qwen_preset_differs_from_solar_only_in_the_model():
    solar, qwen = preset("solar-10.7b").flat(), preset("qwen2.5-7b").flat()
    changed = {k for k in solar if solar[k] != qwen[k]}
    assert changed == {
        "preset", "model_name_or_path", "model_label", "template", "pad_token", "eos_token",
    }  # fmt: skip
    assert (qwen["template"], qwen["eos_token"], qwen["pad_token"]) == (
        "chatml", "<|im_end|>", "<|endoftext|>",
    )  # fmt: skip


def test_every_field_has_help_and_names_are_unique_across_sections():
    names = []
    for _, kind in SECTIONS:
        for f in dataclasses.fields(kind):
            assert f.metadata.get("help"), f"{kind.__name__}.{f.name} has no help"
            names.append(f.name)
    assert len(names) == len(set(names))


def test_overrides_reach_their_sections_with_dash_and_underscore_spellings():
    config = parse_study_args(
        ["--preset", "tiny", "--conditions", "random", "zpd_adaptive", "--seeds", "3", "4",
         "--output-dir", "out/x", "--dry-run", "--max_steps", "77", "--lora_r", "4",
         "--no_track_losses"]
    )  # fmt: skip
    assert config.study.conditions == ["random", "zpd_adaptive"]
    assert config.study.seeds == [3, 4]
    assert config.study.output_dir == "out/x"
    assert config.study.dry_run is True
    assert config.train.max_steps == 77
    assert config.model.lora_r == 4
    assert config.curriculum.track_losses is False
    # everything else keeps the preset's value
    rest = {k: v for k, v in config.flat().items()
            if k not in {"conditions", "seeds", "output_dir", "dry_run", "max_steps", "lora_r",
                         "track_losses"}}  # fmt: skip
    base = preset("tiny").flat()
    assert rest == {k: base[k] for k in rest}


def test_help_lists_the_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser(preset("tiny"), prog="zpd-curriculum study run").parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--conditions", "--seeds", "--output_dir", "--dry_run", "--learning_rate",
                   "--lm_eval_tasks", "--difficulty"):  # fmt: skip
        assert option in text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"conditions": ["random", "curriculum"]}, "conditions ['curriculum'] are unknown"),
        ({"conditions": ["random", "random"]}, "repeats"),
        ({"seeds": []}, "seeds is empty"),
        ({"seeds": [1, 1]}, "seeds repeats"),
        ({"num_workers": 0}, "num_workers must be >= 1"),
        ({"pad_token": "</s>", "eos_token": "</s>"}, "padding would mask the labelled EOS"),
        ({"data_source": "jsonl", "data_path": None, "evaluator": "none"}, "needs data_path"),
        ({"data_source": "openorca-ko"}, "evaluator='addition' scores the addition task"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1)"),
        ({"lora_dropout": 1.0}, "lora_dropout must be in [0, 1)"),
    ],
)
def test_invalid_settings_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=_escape(message)):
        preset("tiny").replace(**changes)


def test_digits_difficulty_needs_the_addition_task():
    with pytest.raises(ValueError, match="digits"):
        preset("solar-10.7b").replace(difficulty="digits")
    assert preset("tiny").replace(difficulty="digits").curriculum.difficulty == "digits"


def test_replace_rejects_unknown_names_and_unknown_presets():
    with pytest.raises(ValueError, match="'lr' is not a study setting"):
        preset("tiny").replace(lr=0.1)
    with pytest.raises(ValueError, match="unknown preset 'solar'"):
        preset("solar")
    with pytest.raises(ValueError, match="unknown train settings"):
        StudyConfig.from_dict({**preset("tiny").to_dict(), "train": {"steps": 3}})


def test_fingerprint_changes_with_settings_but_not_with_excluded_ones():
    a = preset("tiny")
    assert a.fingerprint() == preset("tiny").fingerprint()
    assert a.fingerprint() != a.replace(learning_rate=1e-3).fingerprint()
    assert a.fingerprint(exclude=["seeds"]) == a.replace(seeds=[7]).fingerprint(exclude=["seeds"])


def _escape(text: str) -> str:
    import re

    return re.escape(text)
