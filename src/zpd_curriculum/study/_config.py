"""Configuration of a curriculum study: dataclasses a command line is built from, and presets.

A study is a grid of runs, one per (condition, seed): the same model, data and training settings,
trained once with each of the four curriculum callbacks. Its settings are split into six
dataclasses whose fields carry ``metadata={"help": ...}``, so ``transformers.HfArgumentParser``
builds the command line (``zpd-curriculum study run --help``) from them:

- :class:`StudyArguments`: which preset, conditions, seeds, where outputs go, the dry-run plan's
  assumptions;
- :class:`ModelArguments`: base model, prompt template, special tokens, LoRA;
- :class:`DataArguments`: where the instruction rows come from and how many;
- :class:`TrainArguments`: optimizer and schedule (what the ``Trainer`` gets);
- :class:`CurriculumArguments`: the callbacks' difficulty source and loss tracking;
- :class:`EvalArguments`: the final evaluation (lm-evaluation-harness or the addition task).

:class:`StudyConfig` bundles them; :func:`preset` returns the named designs:

- ``solar-10.7b``: the reference design R4 (SOLAR 10.7B, LoRA r = 8, lr 3e-4, batch 8, 10,000
  steps, 5 seeds, four conditions, KoBEST / MMLU / GSM8K / HumanEval through lm-eval);
- ``qwen2.5-7b``: the same for Qwen2.5-7B (the comparison of hypothesis H3a);
- ``tiny``: the same code path offline on a CPU: a tiny Llama built from a config, a character
  tokenizer built locally and reversed multi-digit addition (difficulty = digits);
- ``fixture-ko``: the shipped Korean JSONL through LoRA on a tiny Llama and lm-eval on offline
  custom tasks: the full-scale path with only the model size changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONDITIONS",
    "CONDITION_LABELS",
    "DATA_SOURCES",
    "HUB_DATASETS",
    "KNOWN_ARCHITECTURES",
    "PRESETS",
    "TINY_MODEL",
    "Architecture",
    "CurriculumArguments",
    "DataArguments",
    "EvalArguments",
    "ModelArguments",
    "StudyArguments",
    "StudyConfig",
    "TrainArguments",
    "build_parser",
    "parse_study_args",
    "preset",
    "prompt_template",
]

CONDITIONS: tuple[str, ...] = ("random", "easy_to_hard", "hard_to_easy", "zpd_adaptive")
"""The four conditions, control first."""

CONDITION_LABELS: Mapping[str, str] = {
    "random": "Random",
    "easy_to_hard": "Easy-to-Hard",
    "hard_to_easy": "Hard-to-Easy",
    "zpd_adaptive": "ZPD-Adaptive",
}
"""How each condition is named in reports."""

DATA_SOURCES: tuple[str, ...] = ("gugugo-ko", "openorca-ko", "jsonl", "addition")
"""Where training rows can come from (see :class:`DataArguments`)."""

HUB_DATASETS: Mapping[str, str] = {
    "openorca-ko": "kyujinpy/OpenOrca-KO",
    "gugugo-ko": "squarelike/OpenOrca-gugugo-ko",
}
"""Hugging Face Hub dataset of each hub data source (downloaded only by the GPU presets)."""

TINY_MODEL = "tiny-llama"
"""``model_name_or_path`` value that builds a small Llama from a config instead of loading one."""

PRESETS: tuple[str, ...] = ("solar-10.7b", "qwen2.5-7b", "tiny", "fixture-ko")
"""Names accepted by :func:`preset`."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only model, enough to estimate memory and compute without weights.

    Attributes:
        num_parameters: Total parameters.
        hidden_size: Model width.
        intermediate_size: MLP width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        vocab_size: Vocabulary size (output logits per token).
    """

    num_parameters: float
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int


KNOWN_ARCHITECTURES: Mapping[str, Architecture] = {
    # config.json of upstage/SOLAR-10.7B-v1.0: Llama architecture, depth up-scaled Mistral 7B.
    "upstage/SOLAR-10.7B-v1.0": Architecture(10.73e9, 4096, 14336, 48, 32, 8, 32000),
    # config.json of Qwen/Qwen2.5-7B.
    "Qwen/Qwen2.5-7B": Architecture(7.62e9, 3584, 18944, 28, 28, 4, 152064),
}
"""Architectures of the preset models, used by the dry-run plan (no weights are loaded)."""


def prompt_template(name: str):
    """The :class:`~zpd_curriculum.study.PromptTemplate` of a ``template`` setting.

    ``"solar"`` and ``"chatml"`` are :data:`~zpd_curriculum.study.PROMPT_TEMPLATES`; ``"plain"``
    is ``"{user}="``, a short prompt that keeps the tiny preset's sequences (and CPU time) small.

    Examples:
        >>> prompt_template("plain").render("12+34")
        '12+34='
    """
    from ._data import PROMPT_TEMPLATES, PromptTemplate

    if name == "plain":
        return PromptTemplate("plain", "{user}=")
    if name not in PROMPT_TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose 'solar', 'chatml' or 'plain'.")
    return PROMPT_TEMPLATES[name]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class StudyArguments:
    """Which runs make up the study and where they go."""

    _argument_group_name = "study"

    preset: Literal["solar-10.7b", "qwen2.5-7b", "tiny", "fixture-ko"] = field(
        default="tiny", metadata=_help(f"Preset whose settings are the defaults: {PRESETS}.")
    )
    conditions: list[str] = field(
        default_factory=lambda: list(CONDITIONS),
        metadata=_help(f"Conditions to run, from {CONDITIONS}; 'random' is the control."),
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        metadata=_help(
            "Seeds; one seed gives the same initial model (and LoRA init) and the same data in "
            "every condition, so comparisons are paired by seed."
        ),
    )
    output_dir: str = field(
        default="study-output",
        metadata=_help("Folder for results.json, results.md, plots and one folder per run."),
    )
    num_workers: int = field(
        default=1,
        metadata=_help(
            "Runs trained at the same time, each in its own process (CPU presets: 2 on 2 cores). "
            "Results do not depend on it."
        ),
    )
    torch_threads: int | None = field(
        default=None,
        metadata=_help(
            "torch.set_num_threads in each run's process (None: leave torch's default)."
        ),
    )
    dry_run: bool = field(
        default=False,
        metadata=_help("Print the plan (runs, steps, tokens, memory, GPU-hours) and stop."),
    )
    resume: bool = field(
        default=False,
        metadata=_help("Reuse finished runs in output_dir whose settings match (after a crash)."),
    )
    plan_tokens_per_example: float = field(
        default=600.0,
        metadata=_help(
            "Dry-run assumption: mean tokens per training example after the prompt template "
            "(measure it with `zpd-curriculum score`, which reports the token count)."
        ),
    )
    plan_gpu_tflops: float = field(
        default=989.0,
        metadata=_help("Dry-run assumption: peak dense bf16 TFLOP/s of one GPU (H100 SXM: 989)."),
    )
    plan_mfu: float = field(
        default=0.35,
        metadata=_help("Dry-run assumption: model FLOP utilisation reached in training."),
    )
    plan_eval_gpu_hours: float = field(
        default=1.5,
        metadata=_help(
            "Dry-run assumption: GPU-hours of the final lm-eval evaluation of one run (all "
            "tasks); set it from a pilot run."
        ),
    )

    def __post_init__(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        _check(
            not unknown,
            f"conditions {unknown} are unknown; choose from {list(CONDITIONS)}.",
        )
        _check(bool(self.conditions), "conditions is empty; name at least one.")
        _check(
            len(set(self.conditions)) == len(self.conditions),
            f"conditions repeats a name: {self.conditions}.",
        )
        _check(bool(self.seeds), "seeds is empty; pass at least one seed, e.g. --seeds 0 1 2.")
        _check(
            all(isinstance(s, int) and s >= 0 for s in self.seeds),
            f"seeds must be integers >= 0; got {self.seeds}.",
        )
        _check(len(set(self.seeds)) == len(self.seeds), f"seeds repeats a value: {self.seeds}.")
        _check(self.num_workers >= 1, f"num_workers must be >= 1; got {self.num_workers}.")
        _check(
            self.torch_threads is None or self.torch_threads >= 1,
            f"torch_threads must be >= 1 or None; got {self.torch_threads}.",
        )
        _check(
            self.plan_tokens_per_example > 0 and self.plan_gpu_tflops > 0,
            "plan_tokens_per_example and plan_gpu_tflops must be > 0.",
        )
        _check(0 < self.plan_mfu <= 1, f"plan_mfu must be in (0, 1]; got {self.plan_mfu}.")
        _check(self.plan_eval_gpu_hours >= 0, "plan_eval_gpu_hours must be >= 0.")


@dataclass
class ModelArguments:
    """The base model, its tokenizer and the parameters that are trained."""

    _argument_group_name = "model"

    model_name_or_path: str = field(
        default=TINY_MODEL,
        metadata=_help(
            f"Hub id or local folder of the base model; {TINY_MODEL!r} builds a tiny Llama from "
            "a config with a character tokenizer (offline)."
        ),
    )
    model_label: str = field(
        default="tiny-llama",
        metadata=_help("Name of the model in results and reports."),
    )
    template: Literal["solar", "chatml", "plain"] = field(
        default="solar",
        metadata=_help(
            "Prompt template: 'solar' ('### User:\\n...\\n\\n### Assistant:\\n'), 'chatml' "
            "(Qwen2.5) or 'plain' ('{user}=', the tiny preset's short prompt)."
        ),
    )
    pad_token: str | None = field(
        default=None,
        metadata=_help(
            "Pad token to set when the tokenizer has none (SOLAR: '<unk>'); never the EOS token, "
            "or padding masks the labelled EOS."
        ),
    )
    eos_token: str | None = field(
        default=None,
        metadata=_help(
            "EOS token that closes answers, if not the tokenizer's (Qwen2.5: '<|im_end|>')."
        ),
    )
    dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="float32", metadata=_help("dtype the base model's weights are loaded in.")
    )
    attn_implementation: str | None = field(
        default=None, metadata=_help("Attention kernel (e.g. 'sdpa', 'flash_attention_2').")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in backward (saves GPU memory).")
    )
    use_lora: bool = field(
        default=False, metadata=_help("Train LoRA adapters (PEFT) instead of all weights.")
    )
    lora_r: int = field(default=8, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=16, metadata=_help("LoRA scaling numerator (alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input."))
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata=_help("Comma-separated module names that get adapters."),
    )
    tiny_hidden_size: int = field(default=64, metadata=_help(f"{TINY_MODEL}: width."))
    tiny_num_layers: int = field(default=2, metadata=_help(f"{TINY_MODEL}: decoder layers."))
    tiny_num_heads: int = field(default=4, metadata=_help(f"{TINY_MODEL}: attention heads."))

    def __post_init__(self) -> None:
        _check(bool(self.model_name_or_path), "model_name_or_path is empty.")
        _check(self.lora_r >= 1, f"lora_r must be >= 1; got {self.lora_r}.")
        _check(self.lora_alpha >= 1, f"lora_alpha must be >= 1; got {self.lora_alpha}.")
        _check(
            0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1); got {self.lora_dropout}."
        )
        _check(
            bool(_split_names(self.lora_target_modules)),
            "lora_target_modules is empty; name modules such as 'q_proj,v_proj'.",
        )
        _check(
            self.pad_token is None or self.pad_token != self.eos_token,
            f"pad_token and eos_token are both {self.pad_token!r}: padding would mask the "
            "labelled EOS. Pad with another token (SOLAR: '<unk>').",
        )
        for name in ("tiny_hidden_size", "tiny_num_layers", "tiny_num_heads"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1; got {getattr(self, name)}.")

    @property
    def is_tiny(self) -> bool:
        """Whether the model is built locally from a config."""
        return self.model_name_or_path == TINY_MODEL

    @property
    def target_modules(self) -> list[str]:
        """``lora_target_modules`` as a list."""
        return _split_names(self.lora_target_modules)


@dataclass
class DataArguments:
    """Where the training rows come from, how many, and how they are tokenized."""

    _argument_group_name = "data"

    data_source: Literal["gugugo-ko", "openorca-ko", "jsonl", "addition"] = field(
        default="addition",
        metadata=_help(
            "'gugugo-ko': a sample of squarelike/OpenOrca-gugugo-ko (~2M rows); 'openorca-ko': "
            "kyujinpy/OpenOrca-KO (~21.6k rows, fewer than R4's 100k); 'jsonl': data_path; "
            "'addition': the synthetic reversed-addition task (offline)."
        ),
    )
    data_path: str | None = field(
        default=None,
        metadata=_help("JSONL file for data_source='jsonl' (OpenOrca-KO or gugugo schema)."),
    )
    num_train_examples: int = field(
        default=100_000, metadata=_help("Training rows (all available if the source has fewer).")
    )
    num_eval_examples: int = field(
        default=1_000,
        metadata=_help("Held-out rows (disjoint from training) for the learning curve."),
    )
    data_seed: int = field(
        default=0,
        metadata=_help(
            "Seed of the sample and split; fixed across seeds and conditions, so every run "
            "trains on the same rows."
        ),
    )
    max_length: int = field(
        default=2048, metadata=_help("Most tokens per example; longer answers are cut.")
    )
    addition_digits: list[int] = field(
        default_factory=lambda: [2, 3, 4],
        metadata=_help("addition: operand lengths (the difficulty levels), balanced."),
    )
    addition_instruction: str | None = field(
        default=None,
        metadata=_help("addition: instruction text (None: the library's ADDITION_INSTRUCTION)."),
    )

    def __post_init__(self) -> None:
        _check(
            self.data_source != "jsonl" or bool(self.data_path),
            "data_source='jsonl' needs data_path: pass --data_path FILE.jsonl.",
        )
        _check(self.num_train_examples >= 1, "num_train_examples must be >= 1.")
        _check(self.num_eval_examples >= 0, "num_eval_examples must be >= 0.")
        _check(self.data_seed >= 0, f"data_seed must be >= 0; got {self.data_seed}.")
        _check(self.max_length >= 2, f"max_length must be >= 2; got {self.max_length}.")
        _check(bool(self.addition_digits), "addition_digits is empty.")


@dataclass
class TrainArguments:
    """Optimizer, schedule and logging: what the ``Trainer``'s ``TrainingArguments`` get."""

    _argument_group_name = "training"

    learning_rate: float = field(default=3e-4, metadata=_help("Peak learning rate."))
    per_device_train_batch_size: int = field(default=8, metadata=_help("Examples per step."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Micro-batches per step."))
    max_steps: int = field(default=10_000, metadata=_help("Optimizer steps per run."))
    warmup_ratio: float = field(default=0.03, metadata=_help("Warm-up, fraction of max_steps."))
    lr_scheduler_type: str = field(default="cosine", metadata=_help("Learning-rate schedule."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    adam_beta2: float = field(default=0.999, metadata=_help("AdamW second-moment decay."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm."))
    logging_steps: int = field(
        default=50, metadata=_help("Steps between Trainer logs (and curriculum/* metrics).")
    )
    eval_steps: int = field(
        default=500, metadata=_help("Steps between learning-curve evaluations.")
    )
    save_steps: int = field(
        default=0, metadata=_help("Steps between checkpoints (0: no checkpoints).")
    )
    per_device_eval_batch_size: int = field(
        default=8, metadata=_help("Batch size of the scoring pass and evaluation.")
    )
    use_cpu: bool = field(default=False, metadata=_help("Train on the CPU."))
    dataloader_num_workers: int = field(default=0, metadata=_help("Data loader workers."))
    disable_tqdm: bool = field(
        default=False, metadata=_help("Print Trainer logs as lines instead of a progress bar.")
    )

    def __post_init__(self) -> None:
        _check(self.learning_rate > 0, f"learning_rate must be > 0; got {self.learning_rate}.")
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_steps",
            "logging_steps",
            "eval_steps",
            "per_device_eval_batch_size",
        ):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1; got {getattr(self, name)}.")
        _check(
            0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1); got {self.warmup_ratio}."
        )
        _check(self.save_steps >= 0, f"save_steps must be >= 0; got {self.save_steps}.")
        _check(0 < self.adam_beta2 < 1, f"adam_beta2 must be in (0, 1); got {self.adam_beta2}.")

    @property
    def examples_per_step(self) -> int:
        """Examples per optimizer step (batch size times accumulation)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


@dataclass
class CurriculumArguments:
    """How the curriculum callbacks are built (each otherwise at its defaults)."""

    _argument_group_name = "curriculum"

    difficulty: Literal["loss", "length", "digits"] = field(
        default="loss",
        metadata=_help(
            "Difficulty of Easy-to-Hard / Hard-to-Easy (and of Random's difficulty metric): "
            "'loss' (the callbacks' default: a scoring pass with the initial model), 'length', "
            "or 'digits' (addition only: the true level, an oracle for comparison)."
        ),
    )
    pacing: str = field(default="linear", metadata=_help("Pacing of Easy-to-Hard / Hard-to-Easy."))
    track_losses: bool = field(
        default=True,
        metadata=_help("Keep per-example training losses in every condition (for the data map)."),
    )

    def __post_init__(self) -> None:
        _check(bool(self.pacing), "pacing is empty.")


@dataclass
class EvalArguments:
    """The evaluation after training (and during it, for the learning curve)."""

    _argument_group_name = "evaluation"

    evaluator: Literal["lm-eval", "addition", "none"] = field(
        default="addition",
        metadata=_help(
            "'lm-eval': lm-evaluation-harness on lm_eval_tasks after training; 'addition': "
            "exact match by greedy decoding on held-out addition rows, every eval_steps; 'none'."
        ),
    )
    lm_eval_tasks: str = field(
        default="kobest,mmlu,gsm8k,humaneval",
        metadata=_help(
            "Comma-separated lm-eval tasks; 'fixture-ko' names the offline tasks over the "
            "shipped Korean fixtures."
        ),
    )
    lm_eval_limit: float | None = field(
        default=None, metadata=_help("Items per task (tests only; None: the whole benchmark).")
    )
    lm_eval_num_fewshot: int | None = field(
        default=None, metadata=_help("Few-shot examples (None: each task's default).")
    )
    lm_eval_batch_size: str = field(default="auto", metadata=_help("lm-eval batch size."))
    confirm_run_unsafe_code: bool = field(
        default=False,
        metadata=_help(
            "Allow HumanEval to execute model-written code (sets HF_ALLOW_CODE_EVAL=1 for the "
            "evaluation); required when humaneval is in lm_eval_tasks."
        ),
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata=_help("addition: most tokens generated (None: answer length + 1).")
    )

    def __post_init__(self) -> None:
        if self.evaluator == "lm-eval":
            _check(bool(self.tasks), "lm_eval_tasks is empty; name at least one task.")
        _check(
            self.lm_eval_limit is None or self.lm_eval_limit > 0,
            f"lm_eval_limit must be > 0 or None; got {self.lm_eval_limit}.",
        )

    @property
    def tasks(self) -> list[str]:
        """``lm_eval_tasks`` as a list."""
        return _split_names(self.lm_eval_tasks)


SECTIONS: tuple[tuple[str, type], ...] = (
    ("study", StudyArguments),
    ("model", ModelArguments),
    ("data", DataArguments),
    ("train", TrainArguments),
    ("curriculum", CurriculumArguments),
    ("evaluation", EvalArguments),
)


@dataclass
class StudyConfig:
    """Every setting of a study: the six argument dataclasses, checked against each other.

    Examples:
        >>> config = preset("solar-10.7b")
        >>> config.model.lora_r, config.train.learning_rate, config.train.max_steps
        (8, 0.0003, 10000)
        >>> config.replace(max_steps=20).train.max_steps
        20
    """

    study: StudyArguments
    model: ModelArguments
    data: DataArguments
    train: TrainArguments
    curriculum: CurriculumArguments
    evaluation: EvalArguments

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check settings that involve more than one section.

        Raises:
            ValueError: Naming the settings that disagree and the fix.
        """
        data, evaluation = self.data, self.evaluation
        _check(
            evaluation.evaluator != "addition" or data.data_source == "addition",
            f"evaluator='addition' scores the addition task, but data_source is "
            f"{data.data_source!r}; use --evaluator lm-eval (or none), or --data_source addition.",
        )
        _check(
            evaluation.evaluator != "addition" or data.num_eval_examples >= 1,
            "evaluator='addition' needs held-out rows: set --num_eval_examples >= 1.",
        )
        _check(
            self.curriculum.difficulty != "digits" or data.data_source == "addition",
            "difficulty='digits' is the addition task's level; other data has no digits. Use "
            "--difficulty loss.",
        )
        _check(
            not (self.model.use_lora and self.model.is_tiny and self.model.tiny_hidden_size < 8),
            "tiny_hidden_size must be >= 8 with LoRA.",
        )

    # ---------------------------------------------------------------- dict round trip
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the settings as ``{section: {field: value}}`` (JSON-ready)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name, _ in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> StudyConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise.

        Raises:
            ValueError: If a section or a field is unknown.
        """
        unknown = set(data) - {name for name, _ in SECTIONS}
        _check(not unknown, f"unknown config sections {sorted(unknown)}.")
        sections = {}
        for name, kind in SECTIONS:
            values = dict(data.get(name, {}))
            names = {f.name for f in dataclasses.fields(kind)}
            extra = set(values) - names
            _check(not extra, f"unknown {name} settings {sorted(extra)}; known: {sorted(names)}.")
            sections[name] = kind(**values)
        return cls(**sections)

    def flat(self) -> dict[str, Any]:
        """All fields in one dict (field names are unique across sections)."""
        out: dict[str, Any] = {}
        for name, _ in SECTIONS:
            out.update(dataclasses.asdict(getattr(self, name)))
        return out

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with fields changed by name, whichever section they are in.

        Raises:
            ValueError: If a name is not a field of any section.
        """
        data = self.to_dict()
        owner = {f.name: name for name, kind in SECTIONS for f in dataclasses.fields(kind)}
        for key, value in changes.items():
            _check(
                key in owner,
                f"{key!r} is not a study setting; see `zpd-curriculum study run --help`.",
            )
            data[owner[key]][key] = value
        return StudyConfig.from_dict(data)

    def fingerprint(self, *, exclude: Sequence[str] = ()) -> str:
        """A short hash of the settings (for reusing finished runs), minus ``exclude`` fields."""
        flat = {k: v for k, v in self.flat().items() if k not in exclude}
        return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def _field_owner_check() -> None:
    seen: dict[str, str] = {}
    for name, kind in SECTIONS:
        for f in dataclasses.fields(kind):
            if f.name in seen:  # pragma: no cover - a programming error, caught by the tests
                raise RuntimeError(f"field {f.name!r} is in both {seen[f.name]} and {name}")
            seen[f.name] = name


_field_owner_check()


# ---------------------------------------------------------------------------------------- presets
def _r4(model_name: str, label: str, template: str, **model: Any) -> StudyConfig:
    """The R4 design for one model: everything but the model is shared by the GPU presets."""
    return StudyConfig(
        study=StudyArguments(preset="solar-10.7b"),
        model=ModelArguments(
            model_name_or_path=model_name,
            model_label=label,
            template=template,
            dtype="bfloat16",
            attn_implementation="sdpa",
            gradient_checkpointing=True,
            use_lora=True,
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            **model,
        ),
        data=DataArguments(
            data_source="gugugo-ko",
            num_train_examples=100_000,
            num_eval_examples=1_000,
            max_length=2048,
        ),
        train=TrainArguments(
            learning_rate=3e-4,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            max_steps=10_000,
            warmup_ratio=0.03,
            logging_steps=50,
            eval_steps=500,
            save_steps=1_000,
            per_device_eval_batch_size=8,
        ),
        curriculum=CurriculumArguments(difficulty="loss"),
        evaluation=EvalArguments(evaluator="lm-eval", lm_eval_tasks="kobest,mmlu,gsm8k,humaneval"),
    )


def _tiny() -> StudyConfig:
    # Sized so that the full grid (4 conditions x 5 seeds) runs in about 30 minutes on 2 cores
    # with 2 workers, and so that Random learns the task well above chance (exact match of a
    # random guess is ~0.1 %). Chosen from Random runs only, never by comparing conditions:
    # 16 heads left the loss plateau within the budget (4 and 8 did not), 3 digit levels did
    # not, and the short 'plain' prompt made steps about 3x cheaper than SOLAR's template.
    return StudyConfig(
        study=StudyArguments(
            preset="tiny", num_workers=2, torch_threads=1, output_dir="study-tiny"
        ),
        model=ModelArguments(
            model_name_or_path=TINY_MODEL,
            model_label="tiny-llama",
            template="plain",
            dtype="float32",
            use_lora=False,
            tiny_hidden_size=64,
            tiny_num_layers=2,
            tiny_num_heads=16,
        ),
        data=DataArguments(
            data_source="addition",
            num_train_examples=4_000,
            num_eval_examples=300,
            max_length=32,
            addition_digits=[2, 3],
            addition_instruction="",
        ),
        train=TrainArguments(
            learning_rate=6e-3,
            per_device_train_batch_size=32,
            max_steps=2_000,
            warmup_ratio=0.05,
            lr_scheduler_type="cosine",
            adam_beta2=0.98,
            logging_steps=100,
            eval_steps=200,
            per_device_eval_batch_size=150,
            use_cpu=True,
            disable_tqdm=True,
        ),
        curriculum=CurriculumArguments(difficulty="loss"),
        evaluation=EvalArguments(evaluator="addition"),
    )


def _fixture_ko() -> StudyConfig:
    from ._data import FIXTURE_PATH

    return StudyConfig(
        study=StudyArguments(
            preset="fixture-ko",
            conditions=list(CONDITIONS),
            seeds=[0, 1],
            num_workers=1,
            torch_threads=1,
            output_dir="study-fixture-ko",
        ),
        model=ModelArguments(
            model_name_or_path=TINY_MODEL,
            model_label="tiny-llama-ko",
            template="solar",
            dtype="float32",
            use_lora=True,
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            tiny_hidden_size=32,
            tiny_num_layers=2,
            tiny_num_heads=4,
        ),
        data=DataArguments(
            data_source="jsonl",
            data_path=os.fspath(FIXTURE_PATH),
            num_train_examples=32,
            num_eval_examples=8,
            max_length=256,
        ),
        train=TrainArguments(
            learning_rate=3e-4,
            per_device_train_batch_size=8,
            max_steps=8,
            warmup_ratio=0.0,
            logging_steps=2,
            eval_steps=4,
            per_device_eval_batch_size=8,
            use_cpu=True,
            disable_tqdm=True,
        ),
        curriculum=CurriculumArguments(difficulty="loss"),
        evaluation=EvalArguments(
            evaluator="lm-eval", lm_eval_tasks="fixture-ko", lm_eval_limit=4, lm_eval_batch_size="4"
        ),
    )


def preset(name: str) -> StudyConfig:
    """The settings of a named study design.

    Args:
        name: One of :data:`PRESETS`.

    Returns:
        A fresh :class:`StudyConfig` (change it with :meth:`StudyConfig.replace`).

    Raises:
        ValueError: If ``name`` is unknown.

    Examples:
        >>> preset("qwen2.5-7b").model.template
        'chatml'
        >>> preset("tiny").data.data_source, preset("tiny").model.use_lora
        ('addition', False)
    """
    if name == "solar-10.7b":
        # SOLAR has no pad token; '<unk>' pads (padding with EOS '</s>' would mask its label).
        return _r4("upstage/SOLAR-10.7B-v1.0", "SOLAR-10.7B", "solar", pad_token="<unk>")
    if name == "qwen2.5-7b":
        # The base model's EOS and pad are both <|endoftext|>; answers close with ChatML's
        # <|im_end|>, so the pad token stays distinct from the EOS that is trained on.
        config = _r4(
            "Qwen/Qwen2.5-7B", "Qwen2.5-7B", "chatml", eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
        )  # fmt: skip
        return config.replace(preset="qwen2.5-7b")
    if name == "tiny":
        return _tiny()
    if name == "fixture-ko":
        return _fixture_ko()
    raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}.")


# ------------------------------------------------------------------------------- command line
def build_parser(config: StudyConfig, *, prog: str | None = None):
    """An ``HfArgumentParser`` over the six sections whose defaults are ``config``'s values.

    Args:
        config: The defaults (usually a :func:`preset`).
        prog: Program name shown in ``--help``.

    Returns:
        A ``transformers.HfArgumentParser``.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser([kind for _, kind in SECTIONS], prog=prog)
    parser.set_defaults(**config.flat())
    return parser


def parse_study_args(argv: Sequence[str] | None = None, *, prog: str | None = None) -> StudyConfig:
    """Build a :class:`StudyConfig` from command-line arguments: a preset, then overrides.

    ``--preset NAME`` picks the defaults (``tiny`` if absent); every other option overrides one
    field, e.g. ``--max_steps 200 --seeds 0 1 --conditions random zpd_adaptive``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name for ``--help``.

    Returns:
        The validated config.

    Raises:
        ValueError: If the settings are inconsistent.
        SystemExit: On ``--help`` or an argument error (argparse's behaviour).

    Examples:
        >>> config = parse_study_args(["--preset", "solar-10.7b", "--max_steps", "100",
        ...                            "--seeds", "0", "1", "--confirm_run_unsafe_code"])
        >>> config.train.max_steps, config.study.seeds, config.model.lora_r
        (100, [0, 1], 8)
    """
    import argparse
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="tiny", choices=PRESETS)
    known, _ = pre.parse_known_args(argv)
    base = preset(known.preset)
    parser = build_parser(base, prog=prog)
    sections = parser.parse_args_into_dataclasses(args=argv)
    return StudyConfig(**{name: value for (name, _), value in zip(SECTIONS, sections, strict=True)})
