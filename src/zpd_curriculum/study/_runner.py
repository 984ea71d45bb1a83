"""Run a curriculum study: one run, the grid of runs, the dry-run plan and the report.

One run (:func:`run_one`) walks the path the GPU study walks, whatever the preset: instruction rows
(``instruction``, ``input``, ``output``) are put in the prompt template and tokenized with labels
on the assistant's tokens only; the base model is loaded with ``from_pretrained`` (the tiny preset
first builds a small Llama from a config and saves it, so it is loaded the same way); LoRA adapters
are added if asked; an unmodified ``transformers.Trainer`` trains with one of the four curriculum
callbacks; the result is evaluated (lm-evaluation-harness on the saved adapter, or exact match on
held-out addition rows every ``eval_steps``); and a ``run.json`` is written.

The grid (:func:`run_study`) runs every (condition, seed), in parallel processes if asked, and
writes ``results.json``, ``results.md`` and the plots (:func:`write_report`). A seed fixes the
initial model, the LoRA initialisation and the data in every condition, so runs pair by seed, and
each run's numbers depend only on its condition and seed, not on the order or process it ran in.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._config import (
    CONDITION_LABELS,
    CONDITIONS,
    HUB_DATASETS,
    KNOWN_ARCHITECTURES,
    Architecture,
    StudyConfig,
    prompt_template,
)
from ._data import (
    ADDITION_INSTRUCTION,
    _require,
    build_char_tokenizer,
    collect_chars,
    evaluate_addition,
    load_instruction_jsonl,
    make_addition_splits,
    make_tiny_llama,
    normalize_row,
    tokenize_rows,
)

__all__ = [
    "RESULTS_JSON",
    "RESULTS_MD",
    "check_runnable",
    "format_plan",
    "load_results",
    "plan_study",
    "prepare_inputs",
    "run_one",
    "run_study",
    "write_report",
]

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RUN_JSON = "run.json"
_SCORE_CACHE = "zpd_curriculum_cache"  # where the callbacks cache difficulty scores (output_dir/…)

# Study settings that do not change what a single run computes (left out of its fingerprint).
_NOT_IN_RUN = (
    "preset", "conditions", "seeds", "output_dir", "num_workers", "dry_run", "resume",
    "plan_tokens_per_example", "plan_gpu_tflops", "plan_mfu", "plan_eval_gpu_hours",
    "disable_tqdm", "dataloader_num_workers",
)  # fmt: skip


# ------------------------------------------------------------------------------------------ data
def _split_indices(
    n_rows: int, n_train: int, n_eval: int, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle with ``seed``; the first ``n_eval`` rows are held out, the next ``n_train`` train."""
    if n_eval >= n_rows:
        raise ValueError(
            f"{source} has {n_rows} rows, so {n_eval} held-out rows leave none to train on; "
            "lower --num_eval_examples."
        )
    order = np.random.default_rng([seed, 7]).permutation(n_rows)
    rest = order[n_eval:]
    if n_train > len(rest):
        logger.warning(
            "%s has %d rows after holding out %d; training on all %d instead of the %d asked for.",
            source, n_rows, n_eval, len(rest), n_train,
        )  # fmt: skip
    return rest[:n_train], order[:n_eval]


def _usable(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Rows with a user turn and an answer (others cannot be trained on)."""
    kept = [r for r in rows if (r["instruction"] or r["input"]) and r["output"]]
    if len(kept) < len(rows):
        logger.warning(
            "%s: dropped %d of %d rows with an empty question or answer.",
            source, len(rows) - len(kept), len(rows),
        )  # fmt: skip
    return kept


def load_rows(config: StudyConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out rows of the configured source, the same for every seed.

    Hub sources are downloaded with ``datasets.load_dataset`` (GPU presets only) and only the
    sampled rows are read; the JSONL and addition sources are local. Rows with an empty question
    or answer are dropped (with a warning).

    Args:
        config: The study settings (``config.data``).

    Returns:
        ``(train_rows, eval_rows)`` in OpenOrca-KO's schema (addition rows keep ``digits``).
    """
    data = config.data
    if data.data_source == "addition":
        train, held_out = make_addition_splits(
            data.num_train_examples,
            data.num_eval_examples,
            digits=tuple(data.addition_digits),
            seed=data.data_seed,
        )
        if data.addition_instruction is not None:
            for row in (*train, *held_out):
                row["instruction"] = data.addition_instruction
        return train, held_out
    if data.data_source == "jsonl":
        table: Any = [dict(row) for row in load_instruction_jsonl(data.data_path)]
        source = str(data.data_path)
    else:
        datasets = _require("datasets")
        source = HUB_DATASETS[data.data_source]
        logger.info("Loading %s from the Hugging Face Hub", source)
        table = datasets.load_dataset(source, split="train")
    train_idx, eval_idx = _split_indices(
        len(table), data.num_train_examples, data.num_eval_examples, data.data_seed, source
    )

    def pick(indices: np.ndarray) -> list[dict[str, Any]]:
        rows = table.select(indices) if hasattr(table, "select") else [table[i] for i in indices]
        return _usable([normalize_row(row) for row in rows], source)

    return pick(train_idx), pick(eval_idx)


def _tokenizer_chars(train_rows: Iterable[Mapping[str, Any]], config: StudyConfig) -> str:
    """Characters a locally built tokenizer needs: the rows', and the fixture tasks'."""
    chars = set(collect_chars(train_rows))
    if config.evaluation.evaluator == "lm-eval":
        from ._data import FIXTURE_PATH
        from ._lmeval import MC_FIXTURE_PATH

        chars.update(collect_chars(load_instruction_jsonl(FIXTURE_PATH)))
        with open(MC_FIXTURE_PATH, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    item = json.loads(line)
                    chars.update(item["question"] + "".join(item["choices"]) + " 답변:")
    return "".join(sorted(chars))


# ----------------------------------------------------------------------------------------- model
def _dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _tiny_base(config: StudyConfig, seed: int, chars: str, folder: Path) -> Path:
    """Build the tiny Llama of ``seed`` and its tokenizer once, saved to ``folder``."""
    if (folder / "config.json").is_file():
        return folder
    tokenizer = build_char_tokenizer(chars)
    model = make_tiny_llama(
        tokenizer,
        hidden_size=config.model.tiny_hidden_size,
        num_layers=config.model.tiny_num_layers,
        num_heads=config.model.tiny_num_heads,
        max_position_embeddings=max(config.data.max_length, 64),
        seed=seed,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)  # atomic: parallel runs of one seed see all of it or nothing
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
    return folder


def base_model_path(config: StudyConfig, seed: int, train_rows: Sequence[Mapping[str, Any]]) -> str:
    """Where the base model of ``seed`` is loaded from (the tiny one is built there first)."""
    if not config.model.is_tiny:
        return config.model.model_name_or_path
    folder = Path(config.study.output_dir) / "base-models" / f"seed-{seed}"
    return os.fspath(_tiny_base(config, seed, _tokenizer_chars(train_rows, config), folder))


def load_tokenizer(config: StudyConfig, path: str):
    """The base model's tokenizer with the study's pad and EOS tokens set.

    Raises:
        ValueError: If the tokenizer would pad with its EOS token.
    """
    transformers = _require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if config.model.eos_token is not None:
        tokenizer.eos_token = config.model.eos_token
    if config.model.pad_token is not None:
        tokenizer.pad_token = config.model.pad_token
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"the tokenizer of {path} has no pad token; set --pad_token to a token that is not "
            f"EOS (for SOLAR '<unk>')."
        )
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(
            f"the tokenizer of {path} pads with its EOS token {tokenizer.eos_token!r}, so padding "
            "would mask the labelled EOS and the model would not learn to stop; set --pad_token "
            "to another token (SOLAR: '<unk>', Qwen2.5 with --eos_token '<|im_end|>': "
            "'<|endoftext|>')."
        )
    return tokenizer


def load_model(config: StudyConfig, path: str, tokenizer: Any, seed: int):
    """The base model from ``path``, with LoRA adapters initialised from ``seed`` if asked."""
    transformers = _require("transformers")
    kwargs: dict[str, Any] = {"dtype": _dtype(config.model.dtype)}
    if config.model.attn_implementation:
        kwargs["attn_implementation"] = config.model.attn_implementation
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if config.model.use_lora:
        peft = _require("peft")
        lora = peft.LoraConfig(
            r=config.model.lora_r,
            lora_alpha=config.model.lora_alpha,
            lora_dropout=config.model.lora_dropout,
            target_modules=config.model.target_modules,
            task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the adapters' initialisation depends on the seed only
            model = peft.get_peft_model(model, lora)
    return model


# ------------------------------------------------------------------------------------ run inputs
def prepare_inputs(config: StudyConfig, seed: int) -> dict[str, Any]:
    """Everything a run of ``seed`` trains on, before a condition is chosen.

    Returns:
        A dict with ``base_path``, ``tokenizer``, ``train_dataset`` (``datasets.Dataset`` of
        ``input_ids``/``attention_mask``/``labels``), ``eval_dataset`` (tokenized held-out rows, or
        ``None``), ``train_rows`` (the kept rows, aligned with the dataset), ``eval_rows`` and
        ``levels`` (digits per training example for the addition task, else ``None``).
    """
    datasets = _require("datasets")
    train_rows, eval_rows = load_rows(config)
    base_path = base_model_path(config, seed, train_rows)
    tokenizer = load_tokenizer(config, base_path)
    template, max_length = prompt_template(config.model.template), config.data.max_length
    examples, kept = tokenize_rows(
        train_rows, tokenizer, template=template, max_length=max_length, on_unusable="drop"
    )
    train_rows = [train_rows[i] for i in kept]
    eval_dataset = None
    if eval_rows and config.evaluation.evaluator != "addition":
        eval_examples, _ = tokenize_rows(
            eval_rows, tokenizer, template=template, max_length=max_length, on_unusable="drop"
        )
        eval_dataset = datasets.Dataset.from_list(eval_examples)
    levels = None
    if train_rows and "digits" in train_rows[0]:
        levels = np.asarray([row["digits"] for row in train_rows], dtype=np.int64)
    return {
        "base_path": base_path,
        "tokenizer": tokenizer,
        "train_dataset": datasets.Dataset.from_list(examples),
        "eval_dataset": eval_dataset,
        "train_rows": train_rows,
        "eval_rows": eval_rows,
        "levels": levels,
    }


def make_callback(condition: str, config: StudyConfig, levels: np.ndarray | None):
    """The curriculum callback of ``condition``, at its defaults except difficulty and tracking.

    Easy-to-Hard and Hard-to-Easy order by ``config.curriculum.difficulty`` (default ``"loss"``,
    their own default); Random gets the same difficulty for its ``difficulty_percentile`` metric
    only (its order does not use it); ZPD-Adaptive is left at its default (no difficulty prior).
    """
    import zpd_curriculum as zc

    curriculum = config.curriculum
    if curriculum.difficulty == "digits":
        if levels is None:
            raise ValueError("difficulty='digits' needs the addition task's levels.")
        difficulty: Any = levels.astype(np.float64)
    else:
        difficulty = curriculum.difficulty
    common = {"track_losses": curriculum.track_losses}
    if condition == "random":
        return zc.RandomCallback(difficulty=difficulty, **common)
    if condition == "easy_to_hard":
        return zc.EasyToHardCallback(difficulty=difficulty, pacing=curriculum.pacing, **common)
    if condition == "hard_to_easy":
        return zc.HardToEasyCallback(difficulty=difficulty, pacing=curriculum.pacing, **common)
    if condition == "zpd_adaptive":
        return zc.ZPDAdaptiveCallback(**common)
    raise ValueError(f"unknown condition {condition!r}; choose from {list(CONDITIONS)}.")


def _learning_curve_callback(config: StudyConfig, tokenizer: Any, eval_rows: list[dict[str, Any]]):
    transformers = _require("transformers")

    class AdditionCurve(transformers.TrainerCallback):
        """Exact match on held-out rows at step 0, every ``eval_steps`` and at the last step.

        Greedy decoding in eval mode without gradient: it draws no random numbers and the
        curriculum callbacks ignore its forwards, so training is the same with or without it.
        """

        def __init__(self) -> None:
            self.points: list[dict[str, float]] = []
            self.seconds = 0.0

        def _evaluate(self, model: Any, step: int) -> None:
            start = time.perf_counter()
            scores = evaluate_addition(
                model,
                tokenizer,
                eval_rows,
                template=prompt_template(config.model.template),
                max_new_tokens=config.evaluation.eval_max_new_tokens,
                batch_size=config.train.per_device_eval_batch_size,
            )
            self.seconds += time.perf_counter() - start
            self.points.append({"step": step, **{k: 100.0 * v for k, v in scores.items()}})
            logger.info("step %d: exact match %.1f%%", step, 100.0 * scores["exact_match"])

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._evaluate(model, int(state.global_step))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = int(state.global_step)
            if step % config.train.eval_steps == 0 or step == state.max_steps:
                self._evaluate(model, step)

    return AdditionCurve()


# ------------------------------------------------------------------------------------- metrics
def curve_metrics(points: Sequence[Mapping[str, float]], max_steps: int) -> dict[str, float | None]:
    """Final exact match, area under the learning curve and steps to 90 %, from curve points.

    Args:
        points: ``{"step": s, "exact_match": x, "exact_match_d2": ...}`` in increasing steps,
            values in points (0-100), the first at step 0.
        max_steps: Steps of the run.

    Returns:
        ``exact_match`` and each ``exact_match_d*`` at the last point; ``auc``: the curve's
        trapezoid area divided by ``max_steps`` (mean exact match over training, in points);
        ``steps_to_90`` (and per level): first evaluated step with exact match >= 90, ``None``
        if never reached.

    Examples:
        >>> pts = [{"step": 0, "exact_match": 0.0}, {"step": 10, "exact_match": 50.0},
        ...        {"step": 20, "exact_match": 95.0}]
        >>> curve_metrics(pts, 20)
        {'exact_match': 95.0, 'auc': 48.75, 'steps_to_90': 20}
    """
    if not points:
        raise ValueError("no learning-curve points; was evaluation switched off?")
    steps = np.asarray([p["step"] for p in points], dtype=np.float64)
    out: dict[str, float | None] = {}
    keys = [k for k in points[-1] if k.startswith("exact_match")]
    for key in keys:
        out[key] = float(points[-1][key])
    values = np.asarray([p["exact_match"] for p in points], dtype=np.float64)
    area = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps)))
    out["auc"] = area / max(max_steps, 1)
    for key in keys:
        suffix = key[len("exact_match") :]
        reached = [p["step"] for p in points if p[key] >= 90.0]
        out[f"steps_to_90{suffix}"] = int(reached[0]) if reached else None
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def _difficulty_check(difficulty: np.ndarray | None, levels: np.ndarray | None) -> dict[str, Any]:
    """How the difficulty a callback used relates to the true level (addition task)."""
    if difficulty is None or levels is None:
        return {}
    difficulty = np.asarray(difficulty, dtype=np.float64)
    by_level = {
        str(int(level)): float(np.nanmean(difficulty[levels == level]))
        for level in np.unique(levels)
    }
    return {"spearman_with_digits": _spearman(difficulty, levels.astype(np.float64)),
            "mean_by_digits": by_level}  # fmt: skip


def _curriculum_log(history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Training-log entries with their step, loss and ``curriculum/*`` metrics."""
    out = []
    for entry in history:
        if "loss" not in entry:
            continue
        keep = {
            k: v
            for k, v in entry.items()
            if k.startswith("curriculum/") or k in ("loss", "learning_rate")
        }
        out.append({"step": int(entry["step"]), **{k: float(v) for k, v in keep.items()}})
    return out


def _eval_loss_curve(history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    return [
        {"step": int(e["step"]), "eval_loss": float(e["eval_loss"])}
        for e in history
        if "eval_loss" in e
    ]


# ------------------------------------------------------------------------------------ versions
_PACKAGES = (
    "zpd-curriculum", "torch", "transformers", "accelerate", "peft", "datasets", "tokenizers",
    "numpy", "scipy", "matplotlib", "tqdm", "lm_eval", "trl",
)  # fmt: skip


def environment() -> dict[str, Any]:
    """Python, platform, hardware and the versions of the library and its dependencies."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(_jsonable(data), indent=1, ensure_ascii=False, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- one run
def run_dir(config: StudyConfig, condition: str, seed: int) -> Path:
    """The folder of one run: ``output_dir/runs/<condition>/seed-<seed>``."""
    return Path(config.study.output_dir) / "runs" / condition / f"seed-{seed}"


def _run_fingerprint(config: StudyConfig, condition: str, seed: int) -> str:
    return f"{condition}-{seed}-{config.fingerprint(exclude=_NOT_IN_RUN)}"


@contextlib.contextmanager
def _threads(count: int | None):
    old = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _training_arguments(config: StudyConfig, folder: Path, seed: int, has_eval: bool):
    transformers = _require("transformers")
    train, model = config.train, config.model
    on_gpu = torch.cuda.is_available() and not train.use_cpu
    kwargs: dict[str, Any] = dict(
        output_dir=os.fspath(folder),
        per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a fraction of max_steps
        lr_scheduler_type=train.lr_scheduler_type,
        weight_decay=train.weight_decay,
        adam_beta2=train.adam_beta2,
        max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps,
        save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        bf16=on_gpu and model.dtype == "bfloat16",
        fp16=on_gpu and model.dtype == "float16",
        use_cpu=train.use_cpu,
        dataloader_num_workers=train.dataloader_num_workers,
        disable_tqdm=train.disable_tqdm,
        report_to="none",
        seed=seed,
    )
    if model.gradient_checkpointing:
        kwargs["activation_checkpointing"] = True
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return transformers.TrainingArguments(**kwargs)


def _share_score_cache(folder: Path, shared: Path) -> None:
    """Point the run's score cache at one folder per seed, so a seed's scoring pass runs once.

    The cache is keyed by the dataset's and the model's fingerprints, and one seed has the same
    initial model (and LoRA initialisation) in every condition.
    """
    shared.mkdir(parents=True, exist_ok=True)
    link = folder / _SCORE_CACHE
    if link.is_symlink() or link.exists():
        return
    try:
        link.symlink_to(shared.resolve(), target_is_directory=True)
    except OSError:  # no symlinks (some filesystems): each run scores for itself
        logger.info("Could not link %s to %s; the run scores difficulty itself.", link, shared)


def run_one(config: StudyConfig, condition: str, seed: int) -> dict[str, Any]:
    """Train and evaluate one (condition, seed) and write its ``run.json``.

    Args:
        config: The study settings.
        condition: One of :data:`~zpd_curriculum.study.CONDITIONS`.
        seed: The run's seed (initial model, LoRA initialisation, sampler, dropout).

    Returns:
        The run record: ``model``, ``condition``, ``seed``, ``metrics``, ``curve``,
        ``curriculum_log``, ``difficulty_check``, ``timings``, ``config``, ``environment`` and
        ``artifacts`` (paths relative to ``output_dir``).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {list(CONDITIONS)}.")
    transformers = _require("transformers")
    folder = run_dir(config, condition, seed)
    fingerprint = _run_fingerprint(config, condition, seed)
    if config.study.resume and (folder / RUN_JSON).is_file():
        record = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
        if record.get("fingerprint") == fingerprint:
            logger.info("Reusing the finished run %s", folder)
            return {**record, "reused": True}
    with _threads(config.study.torch_threads):
        return _run_one(config, condition, seed, folder, fingerprint, transformers)


def _run_one(config, condition, seed, folder, fingerprint, transformers) -> dict[str, Any]:
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(config.study.output_dir)
    logger.info("Run %s seed %d -> %s", CONDITION_LABELS[condition], seed, folder)
    inputs = prepare_inputs(config, seed)
    tokenizer, levels = inputs["tokenizer"], inputs["levels"]
    model = load_model(config, inputs["base_path"], tokenizer, seed)
    callback = make_callback(condition, config, levels)
    callbacks = [callback]
    curve_callback = None
    if config.evaluation.evaluator == "addition":
        curve_callback = _learning_curve_callback(config, tokenizer, inputs["eval_rows"])
        callbacks.append(curve_callback)
    _share_score_cache(folder, root / "cache" / f"seed-{seed}")
    args = _training_arguments(config, folder, seed, inputs["eval_dataset"] is not None)
    collator = transformers.DataCollatorForSeq2Seq(
        tokenizer,
        padding=True,
        label_pad_token_id=-100,
        pad_to_multiple_of=8 if torch.cuda.is_available() and not config.train.use_cpu else None,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=inputs["train_dataset"],
        eval_dataset=inputs["eval_dataset"],
        data_collator=collator,
        callbacks=callbacks,
    )
    prepared = time.perf_counter()
    trainer.train()
    trained = time.perf_counter()
    history = list(trainer.state.log_history)

    artifacts: dict[str, str] = {}
    stats = callback.loss_statistics() if callback.track_losses else None
    difficulty = None if callback.difficulty is None else np.asarray(callback.difficulty)
    arrays: dict[str, np.ndarray] = {}
    if stats is not None:
        arrays.update({f"loss_{k}": v for k, v in stats.items()})
    if difficulty is not None:
        arrays["difficulty"] = difficulty.astype(np.float64)
    if levels is not None:
        arrays["levels"] = levels
    if arrays:
        np.savez_compressed(folder / "loss_stats.npz", **arrays)
        artifacts["loss_stats"] = os.fspath((folder / "loss_stats.npz").relative_to(root))
    _write_json(folder / "log_history.json", history)

    metrics: dict[str, float | None] = {}
    curve: list[dict[str, float]] = []
    eval_seconds = 0.0
    lm_eval_summary: dict[str, Any] = {}
    if curve_callback is not None:
        curve = curve_callback.points
        eval_seconds = curve_callback.seconds
        metrics.update(curve_metrics(curve, config.train.max_steps))
    else:
        curve = _eval_loss_curve(history)
        if curve:
            metrics["eval_loss"] = curve[-1]["eval_loss"]
    if config.evaluation.evaluator == "lm-eval":
        eval_start = time.perf_counter()
        saved = _save_trained(trainer, tokenizer, folder, config)
        artifacts["model"] = os.fspath(Path(saved).relative_to(root))
        del trainer, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        from ._lmeval import run_lm_eval

        scores, lm_eval_summary = run_lm_eval(
            pretrained=inputs["base_path"] if config.model.use_lora else saved,
            peft=saved if config.model.use_lora else None,
            tokenizer=saved,
            tasks=config.evaluation.tasks,
            template=config.model.template,
            dtype=config.model.dtype,
            limit=config.evaluation.lm_eval_limit,
            num_fewshot=config.evaluation.lm_eval_num_fewshot,
            batch_size=_batch_size(config.evaluation.lm_eval_batch_size),
            device="cuda" if torch.cuda.is_available() and not config.train.use_cpu else "cpu",
            confirm_run_unsafe_code=config.evaluation.confirm_run_unsafe_code,
            seed=seed,
        )
        metrics.update(scores)
        eval_seconds += time.perf_counter() - eval_start
    finished = time.perf_counter()
    record = {
        "model": config.model.model_label,
        "condition": condition,
        "seed": seed,
        "metrics": metrics,
        "curve": curve,
        "curriculum_log": _curriculum_log(history),
        "difficulty_check": _difficulty_check(difficulty, levels),
        "data": {
            "train_examples": len(inputs["train_dataset"]),
            "eval_examples": len(inputs["eval_rows"]),
            "train_tokens_mean": float(
                np.mean([len(x) for x in inputs["train_dataset"]["input_ids"]])
            ),
        },
        "timings": {
            "prepare_s": prepared - start,
            "train_s": trained - prepared,
            "eval_s": eval_seconds,
            "total_s": finished - start,
        },
        "lm_eval": lm_eval_summary,
        "config": config.to_dict(),
        "environment": environment(),
        "artifacts": artifacts,
        "fingerprint": fingerprint,
    }
    _write_json(folder / RUN_JSON, record)
    return json.loads(json.dumps(_jsonable(record)))


def _batch_size(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _save_trained(trainer: Any, tokenizer: Any, folder: Path, config: StudyConfig) -> str:
    """Save the adapter (LoRA) or the whole model, with the run's tokenizer, for lm-eval."""
    target = folder / ("adapter" if config.model.use_lora else "model")
    trainer.model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return os.fspath(target)


# -------------------------------------------------------------------------------------- the grid
def _worker(config_dict: dict[str, Any], condition: str, seed: int) -> dict[str, Any]:
    """Entry point of a spawned process: one run."""
    logging.basicConfig(
        level=logging.INFO, format=f"[{condition}/seed-{seed}] %(message)s", force=True
    )
    return run_one(StudyConfig.from_dict(config_dict), condition, seed)


def check_runnable(config: StudyConfig) -> list[str]:
    """Problems that stop the study from running as configured (empty if none)."""
    problems = []
    evaluation = config.evaluation
    if evaluation.evaluator == "lm-eval":
        if "humaneval" in evaluation.tasks and not evaluation.confirm_run_unsafe_code:
            problems.append(
                "lm_eval_tasks includes humaneval, which executes model-written code: pass "
                "--confirm_run_unsafe_code after reading lm-eval's warning, or drop humaneval."
            )
        try:
            import lm_eval  # noqa: F401
        except ImportError:
            problems.append(
                "evaluator='lm-eval' needs lm-evaluation-harness: pip install "
                "'zpd-curriculum[eval]'."
            )
    if not config.model.is_tiny and not torch.cuda.is_available() and not config.train.use_cpu:
        problems.append(
            f"{config.model.model_name_or_path} is meant for a GPU and none is visible; run on a "
            "GPU machine, use --dry_run to see the plan, or the tiny preset on a CPU."
        )
    return problems


def run_study(config: StudyConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run every (condition, seed) of ``config`` and write the results and the report.

    Runs go seed by seed (all conditions of seed 0 first), so a seed's difficulty scores are
    computed once and reused; with ``num_workers > 1`` they run in spawned processes. Records are
    sorted by condition and seed, so the output does not depend on which finished first.

    Args:
        config: The study settings.
        progress: Show a tqdm bar over runs.

    Returns:
        The results (also written to ``output_dir/results.json``).

    Raises:
        RuntimeError: If :func:`check_runnable` finds a problem.
    """
    problems = check_runnable(config)
    if problems:
        raise RuntimeError("the study cannot run:\n- " + "\n- ".join(problems))
    root = Path(config.study.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s) for s in config.study.seeds for c in config.study.conditions]
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="study runs", unit="run", disable=not progress)
    try:
        if config.study.num_workers == 1:
            for condition, seed in jobs:
                bar.set_postfix_str(f"{condition} seed {seed}")
                records.append(run_one(config, condition, seed))
                bar.update(1)
        else:
            # Build each seed's tiny base model before the workers start (they would race).
            if config.model.is_tiny:
                train_rows, _ = load_rows(config)
                for seed in config.study.seeds:
                    base_model_path(config, seed, train_rows)
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=config.study.num_workers, mp_context=context
            ) as pool:
                futures = {
                    pool.submit(_worker, config.to_dict(), condition, seed): (condition, seed)
                    for condition, seed in jobs
                }
                for future in concurrent.futures.as_completed(futures):
                    condition, seed = futures[future]
                    records.append(future.result())
                    bar.set_postfix_str(f"done {condition} seed {seed}")
                    bar.update(1)
    finally:
        bar.close()
    order = {c: i for i, c in enumerate(CONDITIONS)}
    records.sort(key=lambda r: (order[r["condition"]], r["seed"]))
    results = {
        "study": {
            "preset": config.study.preset,
            "model": config.model.model_label,
            "conditions": config.study.conditions,
            "seeds": config.study.seeds,
            "wall_time_s": time.perf_counter() - start,
            "num_workers": config.study.num_workers,
            "config": config.to_dict(),
            "environment": environment(),
            "plan": plan_study(config),
        },
        "runs": records,
    }
    _write_json(root / RESULTS_JSON, results)
    write_report(results, root)
    return results


def load_results(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Read one or more ``results.json`` files; several are merged (e.g. SOLAR and Qwen for H3a).

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If two files hold the same (model, condition, seed).
    """
    merged: dict[str, Any] | None = None
    seen: set[tuple[str, str, int]] = set()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_JSON
        if not path.is_file():
            raise FileNotFoundError(
                f"no results file at {path}; run `zpd-curriculum study run` first."
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        for run in data["runs"]:
            key = (run["model"], run["condition"], int(run["seed"]))
            if key in seen:
                raise ValueError(
                    f"{path} repeats the run {key}; merge results of different models."
                )
            seen.add(key)
            run.setdefault("_root", os.fspath(path.parent))
        if merged is None:
            merged = data
            merged["study"]["sources"] = [os.fspath(path)]
        else:
            merged["runs"].extend(data["runs"])
            merged["study"]["sources"].append(os.fspath(path))
            merged["study"].setdefault("others", []).append(data["study"])
    if merged is None:
        raise ValueError("no results files given.")
    return merged


# ------------------------------------------------------------------------------------ the plan
def _lora_parameters(arch: Architecture, r: int, targets: Sequence[str]) -> int:
    h, ff = arch.hidden_size, arch.intermediate_size
    kv = arch.hidden_size // arch.num_heads * arch.num_kv_heads
    shapes = {
        "q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
        "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h),
    }  # fmt: skip
    per_layer = sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)
    return per_layer * arch.num_layers


def _tiny_architecture(config: StudyConfig) -> Architecture:
    h, layers = config.model.tiny_hidden_size, config.model.tiny_num_layers
    vocab = 110  # the character tokenizer's base vocabulary (more with extra characters)
    per_layer = 4 * h * h + 3 * h * 4 * h + 2 * h
    params = layers * per_layer + 2 * vocab * h + h
    return Architecture(float(params), h, 4 * h, layers, config.model.tiny_num_heads,
                        config.model.tiny_num_heads, vocab)  # fmt: skip


def _architecture(config: StudyConfig) -> Architecture | None:
    name = config.model.model_name_or_path
    if config.model.is_tiny:
        return _tiny_architecture(config)
    if name in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[name]
    path = Path(name) / "config.json"
    if path.is_file():  # a local model: read its config, load no weights
        c = json.loads(path.read_text(encoding="utf-8"))
        try:
            h, layers, ff = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
            heads, vocab = c["num_attention_heads"], c["vocab_size"]
        except KeyError:
            return None
        kv = c.get("num_key_value_heads", heads)
        per_layer = 2 * h * h + 2 * h * (h // heads * kv) + 3 * h * ff
        params = layers * per_layer + (1 if c.get("tie_word_embeddings") else 2) * vocab * h
        return Architecture(float(params), h, ff, layers, heads, kv, vocab)
    return None


def _memory_gb(config: StudyConfig, arch: Architecture, lora_params: int) -> dict[str, float]:
    """Peak GPU memory of one training step, in GB: a rough upper estimate (see the plan)."""
    train, model = config.train, config.model
    weight_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}[model.dtype]
    b, s, h = train.per_device_train_batch_size, config.data.max_length, arch.hidden_size
    weights = arch.num_parameters * weight_bytes
    trained = lora_params if model.use_lora else arch.num_parameters
    # fp32 trainable weights, gradients and two AdamW moments (PEFT keeps adapters in fp32).
    optimizer = trained * 16
    if model.gradient_checkpointing:
        # one saved hidden state per layer, plus one layer's activations during recomputation
        activations = b * s * h * weight_bytes * arch.num_layers + 34 * b * s * h
    else:
        activations = 34 * b * s * h * arch.num_layers
    # logits in the weights' dtype, their fp32 upcast for the loss, and its gradient
    logits = b * s * arch.vocab_size * (weight_bytes + 4 + 4)
    overhead = 1.5e9
    parts = {
        "weights": weights, "trainable_and_optimizer": optimizer, "activations": activations,
        "logits": logits, "cuda_overhead": overhead,
    }  # fmt: skip
    out = {k: v / 1e9 for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def plan_study(config: StudyConfig) -> dict[str, Any]:
    """What the study will do and cost, without loading data or weights (``--dry_run``).

    Token counts use ``plan_tokens_per_example`` and compute uses ``plan_gpu_tflops`` and
    ``plan_mfu``: assumptions, printed with the plan. Training FLOPs are ``6 N T`` for full
    fine-tuning, ``4 N T`` for LoRA (no weight gradients of the frozen base), plus ``2 N T`` when
    activations are recomputed; a difficulty scoring pass is ``2 N T`` over the training set, once
    per seed (the callbacks cache it and the runs of one seed share the cache).

    Args:
        config: The study settings.

    Returns:
        A JSON-ready dict; :func:`format_plan` prints it.
    """
    study, train, data, model = config.study, config.train, config.data, config.model
    runs = [{"condition": c, "seed": s} for s in study.seeds for c in study.conditions]
    per_run_examples = train.max_steps * train.examples_per_step
    available = {"openorca-ko": 21_600}.get(data.data_source)
    n_train = (
        data.num_train_examples
        if available is None
        else min(data.num_train_examples, available - data.num_eval_examples)
    )
    tokens_per_example, token_source = study.plan_tokens_per_example, "assumed"
    if data.data_source == "addition" and model.is_tiny:
        tokens_per_example, token_source = _addition_tokens_per_example(config), "measured"
    per_run_tokens = per_run_examples * tokens_per_example
    arch = _architecture(config)
    plan: dict[str, Any] = {
        "preset": study.preset,
        "model": model.model_name_or_path,
        "runs": runs,
        "num_runs": len(runs),
        "steps_per_run": train.max_steps,
        "examples_per_step": train.examples_per_step,
        "examples_per_run": per_run_examples,
        "train_examples": n_train,
        "epochs_per_run": per_run_examples / max(n_train, 1),
        "tokens_per_example": tokens_per_example,
        "tokens_per_example_source": token_source,
        "tokens_per_run": per_run_tokens,
        "tokens_total": per_run_tokens * len(runs),
        "evaluation": config.evaluation.evaluator,
        "lm_eval_tasks": config.evaluation.tasks
        if config.evaluation.evaluator == "lm-eval"
        else [],
        "problems": check_runnable(config) if study.dry_run else [],
    }
    if arch is None:
        plan["architecture"] = None
        return plan
    if model.is_tiny:  # a CPU preset: no GPU estimates
        plan["architecture"] = {"parameters": arch.num_parameters, "layers": arch.num_layers,
                                "hidden": arch.hidden_size, "vocab": arch.vocab_size,
                                "lora_parameters": 0}  # fmt: skip
        return plan
    lora_params = (
        _lora_parameters(arch, model.lora_r, model.target_modules) if model.use_lora else 0
    )
    plan["architecture"] = {
        "parameters": arch.num_parameters, "layers": arch.num_layers, "hidden": arch.hidden_size,
        "vocab": arch.vocab_size, "lora_parameters": lora_params,
    }  # fmt: skip
    plan["memory_gb"] = _memory_gb(config, arch, lora_params)
    factor = (4 if model.use_lora else 6) + (2 if model.gradient_checkpointing else 0)
    flops_run = factor * arch.num_parameters * per_run_tokens
    scoring_seeds = (
        len(study.seeds)
        if any(c != "zpd_adaptive" for c in study.conditions)
        and config.curriculum.difficulty == "loss"
        else 0
    )
    flops_scoring = 2 * arch.num_parameters * n_train * tokens_per_example * scoring_seeds
    throughput = study.plan_gpu_tflops * 1e12 * study.plan_mfu
    eval_hours = study.plan_eval_gpu_hours if config.evaluation.evaluator == "lm-eval" else 0.0
    train_hours = flops_run / throughput / 3600
    plan["compute"] = {
        "train_flops_per_run": flops_run,
        "scoring_flops_total": flops_scoring,
        "train_gpu_hours_per_run": train_hours,
        "scoring_gpu_hours_total": flops_scoring / throughput / 3600,
        "eval_gpu_hours_per_run": eval_hours,
        "gpu_hours_total": (train_hours + eval_hours) * len(runs)
        + flops_scoring / throughput / 3600,
        "assumptions": {
            "gpu_tflops": study.plan_gpu_tflops, "mfu": study.plan_mfu,
            "tokens_per_example": tokens_per_example, "eval_gpu_hours_per_run": eval_hours,
        },
    }  # fmt: skip
    return plan


def _addition_tokens_per_example(config: StudyConfig) -> float:
    """Mean tokens of the tiny preset's training examples (cheap: no model is built)."""
    data = config.data
    train, _ = make_addition_splits(
        min(data.num_train_examples, 500),
        0,
        digits=tuple(data.addition_digits),
        seed=data.data_seed,
    )
    for row in train:
        row["instruction"] = (
            ADDITION_INSTRUCTION if data.addition_instruction is None else data.addition_instruction
        )
    examples, _ = tokenize_rows(
        train,
        build_char_tokenizer(),
        template=prompt_template(config.model.template),
        max_length=config.data.max_length,
        on_unusable="drop",
    )
    return float(np.mean([len(e["input_ids"]) for e in examples]))


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def format_plan(plan: Mapping[str, Any]) -> str:
    """The dry-run plan as text."""
    conditions = sorted({r["condition"] for r in plan["runs"]}, key=CONDITIONS.index)
    seeds = sorted({r["seed"] for r in plan["runs"]})
    lines = [
        f"Study plan: preset {plan['preset']}, model {plan['model']}",
        f"  runs:        {plan['num_runs']} = {len(conditions)} conditions "
        f"({', '.join(CONDITION_LABELS[c] for c in conditions)}) x {len(seeds)} seeds {seeds}",
        f"  steps:       {plan['steps_per_run']:,} per run x {plan['examples_per_step']} examples "
        f"= {plan['examples_per_run']:,} examples per run "
        f"({plan['epochs_per_run']:.2f} epochs of {plan['train_examples']:,} training rows)",
        f"  tokens:      {_si(plan['tokens_per_run'])} per run, {_si(plan['tokens_total'])} in all "
        f"({plan['tokens_per_example_source']}: {plan['tokens_per_example']:.1f} tokens per "
        "example)",
    ]
    arch = plan.get("architecture")
    if arch:
        lines.append(
            f"  model:       {_si(arch['parameters'])} parameters, {arch['layers']} layers, "
            f"vocabulary {arch['vocab']:,}"
            + (f", LoRA {_si(arch['lora_parameters'])} trained" if arch["lora_parameters"] else "")
        )
    memory = plan.get("memory_gb")
    if arch and memory is None:
        lines.append("  hardware:    CPU preset (no GPU estimates)")
    if memory is not None:
        detail = ", ".join(f"{k} {v:.1f}" for k, v in memory.items() if k != "total")
        lines.append(f"  GPU memory:  ~{memory['total']:.0f} GB peak per run (rough: {detail})")
        compute = plan["compute"]
        a = compute["assumptions"]
        lines.append(
            f"  GPU-hours:   ~{compute['gpu_hours_total']:.0f} in all: "
            f"{compute['train_gpu_hours_per_run']:.2f} training + "
            f"{compute['eval_gpu_hours_per_run']:.2f} evaluation per run, "
            f"{compute['scoring_gpu_hours_total']:.2f} for difficulty scoring "
            f"(assuming {a['gpu_tflops']:g} TFLOP/s at {a['mfu']:.0%} utilisation)"
        )
    if plan["lm_eval_tasks"]:
        lines.append(f"  evaluation:  lm-eval {', '.join(plan['lm_eval_tasks'])} after training")
    else:
        lines.append(f"  evaluation:  {plan['evaluation']}")
    for problem in plan.get("problems", []):
        lines.append(f"  ! {problem}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the report
def write_report(results: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.md`` and the plots for ``results`` into ``output_dir``.

    Returns:
        Paths of what was written, by name.
    """
    root = Path(output_dir)
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    text, analysis = build_markdown(results)
    from ._plots import plot_curriculum_dynamics, plot_data_map, plot_learning_curves
    from ._report import plot_results

    written: dict[str, Path] = {}
    if analysis is not None:
        written["results_plot"] = plot_results(analysis, plots / "results.png")
    runs = results["runs"]
    path = plot_learning_curves(runs, plots / "learning_curves.png")
    if path is not None:
        written["learning_curves"] = path
    path = plot_curriculum_dynamics(runs, plots / "curriculum_dynamics.png")
    if path is not None:
        written["curriculum_dynamics"] = path
    path = plot_data_map(runs, plots / "data_map.png", root=root)
    if path is not None:
        written["data_map"] = path
    if written:
        text += (
            "\n## Plots\n\n"
            + "\n".join(
                f"- `{p.relative_to(root)}`: ![{name}]({p.relative_to(root)})"
                for name, p in written.items()
            )
            + "\n"
        )
    (root / RESULTS_MD).write_text(text, encoding="utf-8")
    written["markdown"] = root / RESULTS_MD
    return written


# ------------------------------------------------------------------------------ markdown report
_ALPHA = 0.05


def _records_for(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "model": run["model"],
            "condition": CONDITION_LABELS.get(run["condition"], run["condition"]),
            "seed": int(run["seed"]),
            "metrics": {m: run["metrics"][m] for m in metrics},
        }
        for run in runs
    ]


def primary_metrics(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics the study's tests are about (one family for the multiple-testing correction).

    Addition: final ``exact_match`` and ``auc``, plus ``steps_to_90`` when every run reached
    90 %. lm-eval: each task's headline number. Per-digit numbers are reported descriptively.
    """
    if not runs:
        return []
    keys = set.intersection(*(set(r["metrics"]) for r in runs))

    def finite(name: str) -> bool:
        return all(isinstance(r["metrics"].get(name), int | float) for r in runs)

    if "exact_match" in keys:
        out = ["exact_match", "auc"]
        if "steps_to_90" in keys and finite("steps_to_90"):
            out.append("steps_to_90")
        return out
    first = runs[0]["metrics"]
    return [m for m in first if m in keys and m != "eval_loss" and finite(m)]


def _fmt(x: Any, decimals: int = 1, signed: bool = False) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "n/a"
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def _mean_sd(values: Sequence[float]) -> str:
    arr = np.asarray([v for v in values if isinstance(v, int | float)], dtype=np.float64)
    if arr.size == 0:
        return "—"
    if arr.size == 1:
        return f"{arr[0]:.1f}"
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}"


def _by_condition(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for condition in CONDITIONS:
        picked = [r for r in runs if r["condition"] == condition]
        if picked:
            out[condition] = sorted(picked, key=lambda r: r["seed"])
    return out


def _answer(analysis: Any, models: Sequence[str], metrics: Sequence[str]) -> list[str]:
    """One sentence per model and metric: did ZPD-Adaptive beat Random, with the uncertainty."""
    zpd, control = CONDITION_LABELS["zpd_adaptive"], analysis.control
    lines = []
    for model in models:
        for metric in metrics:
            key = (model, metric, zpd)
            if key not in analysis.comparisons:
                continue
            c = analysis.comparisons[key]
            p_adj = analysis.pvalues_adjusted[key]
            lower_better = metric.startswith("steps_to_90")
            numbers = (
                f"Δ = {_fmt(c.diff, 2, signed=True)} points "
                f"({_fmt(c.rel_diff_pct, 1, signed=True)} % "
                f"of {control}), {100 * analysis.confidence:g} % CI [{_fmt(c.ci[0], 2)}, "
                f"{_fmt(c.ci[1], 2)}], d = {_fmt(c.cohens_d, 2)}, d_z = {_fmt(c.cohens_dz, 2)}, "
                f"p_adj = {_fmt(p_adj, 3)}"
            )
            if math.isfinite(p_adj) and p_adj < analysis.alpha and c.diff != 0:
                better = (c.diff > 0) != lower_better
                verdict = "**beat**" if better else "**did worse than**"
                lines.append(f"- {model}, {metric}: {zpd} {verdict} {control} ({numbers}).")
            else:
                lines.append(
                    f"- {model}, {metric}: **no detectable effect** of {zpd} vs {control} "
                    f"({numbers}): the interval includes zero, so these {c.n_treatment} seeds "
                    "cannot tell this effect from none."
                )
    return lines


def _per_level_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    levels = sorted(
        {k for r in runs for k in r["metrics"] if k.startswith("exact_match_d")},
        key=lambda k: int(k[len("exact_match_d") :]),
    )
    if not levels:
        return []
    names = [f"{k[len('exact_match_d') :]} digits" for k in levels]
    lines = [
        "## Exact match per difficulty level (final, %)",
        "",
        "Descriptive (mean ± SD over seeds); not part of the tested family.",
        "",
        "| Condition | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for condition, picked in _by_condition(runs).items():
        cells = [_mean_sd([r["metrics"].get(k) for r in picked]) for k in levels]
        lines.append(f"| {CONDITION_LABELS[condition]} | " + " | ".join(cells) + " |")
    keys = ["steps_to_90"] + [f"steps_to_90_d{k[len('exact_match_d') :]}" for k in levels]
    lines += [
        "",
        "Steps to 90 % exact match (first evaluated step; median over the seeds that reached it, "
        "and how many did):",
        "",
        "| Condition | overall | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for condition, picked in _by_condition(runs).items():
        cells = []
        for key in keys:
            reached = [r["metrics"].get(key) for r in picked if r["metrics"].get(key) is not None]
            if reached:
                cells.append(f"{np.median(reached):.0f} ({len(reached)}/{len(picked)})")
            else:
                cells.append(f"never (0/{len(picked)})")
        lines.append(f"| {CONDITION_LABELS[condition]} | " + " | ".join(cells) + " |")
    return lines + [""]


def _difficulty_table(runs: Sequence[Mapping[str, Any]], source: str) -> list[str]:
    rows = {}
    for run in runs:
        check = run.get("difficulty_check") or {}
        if check and run["condition"] in ("easy_to_hard", "hard_to_easy", "random"):
            rows.setdefault(int(run["seed"]), check)
    if not rows:
        return []
    levels = sorted({lvl for c in rows.values() for lvl in c["mean_by_digits"]}, key=int)
    lines = [
        "## How well the curricula's difficulty matches the digit count",
        "",
        f"Easy-to-Hard and Hard-to-Easy order by difficulty = {source!r}"
        + (" (token-mean loss of each example under the initial model, the callbacks' default)"
           if source == "loss" else "")
        + ". Spearman correlation with the number of digits, and the mean score per level:",
        "",
        "| Seed | Spearman ρ | " + " | ".join(f"{lvl} digits" for lvl in levels) + " |",
        "|---:|---:|" + "---:|" * len(levels),
    ]  # fmt: skip
    for seed, check in sorted(rows.items()):
        cells = [_fmt(check["mean_by_digits"].get(lvl), 3) for lvl in levels]
        lines.append(
            f"| {seed} | {_fmt(check['spearman_with_digits'], 3)} | " + " | ".join(cells) + " |"
        )
    rhos = [
        c["spearman_with_digits"] for c in rows.values() if c["spearman_with_digits"] is not None
    ]
    if rhos and max(abs(r) for r in rhos) < 0.3:
        lines += [
            "",
            "The scored difficulty barely tracks the digit count, so Easy-to-Hard and Hard-to-Easy "
            "order by something other than the task's real difficulty here; a difference (or none) "
            "between them and Random says little about ordering by true difficulty "
            "(`--difficulty digits` runs the oracle ordering for comparison).",
        ]
    return lines + [""]


def r4_caveats(results: Mapping[str, Any]) -> list[str]:
    """Where the reference design R4 differs from verified facts, with this study's numbers."""
    from ._stats import minimum_detectable_effect

    study = results["study"]
    config = study["config"]
    # R4's design: 5 seeds per condition, 3 comparisons with Random x 4 benchmarks per model.
    n_seeds, m = 5, 12
    d = minimum_detectable_effect(n_seeds, alpha=_ALPHA, power=0.8, paired=False)
    dz = minimum_detectable_effect(n_seeds, alpha=_ALPHA, power=0.8, paired=True)
    dz_holm = minimum_detectable_effect(n_seeds, alpha=_ALPHA / m, power=0.8, paired=True)
    power_text = (
        f"R4 runs 5 seeds: 5 vs 5 runs give 80 % power at α = .05 only for d ≥ {d:.2f} "
        f"(unpaired) or d_z ≥ {dz:.2f} (paired by seed); at the Holm threshold for the smallest "
        f"of R4's {m} comparisons per model (α/{m}), d_z ≥ {dz_holm:.2f}. This study's own "
        "detectable effect is in the verdict above."
    )
    se_humaneval = 100 * math.sqrt(0.45 * 0.55 / 164)
    data = config["data"]
    source = data["data_source"]
    caveats = [
        "**Data size.** R4: OpenOrca-KO, 100,000 examples. Fact: `kyujinpy/OpenOrca-KO` has about "
        "21.6k rows (`id, instruction, input, output`); 100k rows need another source, such as a "
        "sample of `squarelike/OpenOrca-gugugo-ko` (~2M rows; `id, system_prompt, question, "
        f"response`). This study: data source `{source}`, {data['num_train_examples']:,} training "
        "rows asked for.",
        "**Steps vs data.** 10,000 steps × batch 8 = 80,000 examples: 0.8 of an epoch over 100k "
        "rows (each condition sees a different 80 %), or ~3.7 epochs over OpenOrca-KO's 21.6k.",
        "**Tokenizer.** The R4 note calls SOLAR's tokenizer Korean-specific; SOLAR-10.7B-v1.0 is a "
        "Llama-architecture model with Mistral's English-centric 32k vocabulary, so Korean text "
        "takes more tokens. It has no pad token: the preset pads with `<unk>` (padding with EOS "
        "would mask the EOS label and the model would not learn to stop).",
        "**Prompt format.** SOLAR-Instruct's `### User:\\n{instruction}\\n\\n{input}\\n\\n### "
        "Assistant:\\n{output}` + EOS, loss on the assistant's tokens only; Qwen2.5-7B uses ChatML "
        "(answers closed by `<|im_end|>`, padded with `<|endoftext|>`).",
        "**Expected numbers are hypotheses.** R4's ZPD-vs-Random gains (+3–5 KoBEST, +2–4 MMLU, "
        "+3–5 HumanEval, +5–8 GSM8K) and effect sizes (d = 2.2 SOLAR vs 1.5 Qwen, H3a) were never "
        "measured; this report does not treat them as results.",
        f"**Power.** {power_text} H3a is an interaction (a difference between two models' "
        "effects, d = 2.2 vs 1.5 in R4): with 5 seeds per model only a difference of several "
        "standard deviations could be detected.",
        f"**HumanEval noise.** 164 problems give a binomial SE of about ±{se_humaneval:.1f} points "
        "per run at 45 % pass@1, as large as the hypothesised gain.",
        "**Hardware.** R4 says LoRA fits in 24 GB; SOLAR's bf16 weights alone take 21.4 GB. See "
        "`zpd-curriculum study run --preset solar-10.7b --dry_run` for the estimate used here.",
        "**Effect size.** R4 quotes Cohen's d without saying which; this report gives d "
        "(pooled SD) and d_z (SD of the per-seed differences) side by side.",
    ]
    if config["model"]["model_name_or_path"] == "tiny-llama" and source == "addition":
        caveats.insert(
            0,
            "**This is the tiny CPU stand-in**, not the R4 study: a small Llama trained from "
            "scratch on reversed addition, on the same code path. Its numbers say nothing about "
            "SOLAR; they check the pipeline and show what the statistics can resolve with this "
            "many seeds.",
        )
    return caveats


def build_markdown(results: Mapping[str, Any]) -> tuple[str, Any]:
    """The text of ``results.md`` and the analysis behind it (``None`` if too few runs).

    Every number comes from ``results`` (the runs' metrics) through
    :func:`~zpd_curriculum.study.analyze`; verdicts follow the adjusted p-values.
    """
    from ._report import render_markdown
    from ._stats import analyze, interaction_test

    study, runs = results["study"], results["runs"]
    config = study["config"]
    models = list(dict.fromkeys(r["model"] for r in runs))
    metrics = primary_metrics(runs)
    train = config["train"]
    lines = [
        f"# Curriculum study: {', '.join(models)} (preset `{study['preset']}`)",
        "",
        f"{len(runs)} runs: conditions "
        f"{', '.join(CONDITION_LABELS[c] for c in study['conditions'])}"
        f" × seeds {study['seeds']}; {train['max_steps']:,} steps × batch "
        f"{train['per_device_train_batch_size'] * train['gradient_accumulation_steps']}, "
        f"learning rate {train['learning_rate']:g}; data `{config['data']['data_source']}`; "
        f"evaluation `{config['evaluation']['evaluator']}`. One seed gives the same initial model "
        "and data in every condition; comparisons are paired by seed. Wall time "
        f"{study.get('wall_time_s', float('nan')) / 60:.1f} min.",
        "",
    ]
    analysis = None
    conditions = {r["condition"] for r in runs}
    seeds_per = min(len(v) for v in _by_condition(runs).values()) if runs else 0
    if metrics and "random" in conditions and len(conditions) > 1 and seeds_per >= 2:
        analysis = analyze(
            _records_for(runs, metrics),
            control=CONDITION_LABELS["random"],
            metrics=metrics,
            alpha=_ALPHA,
        )
        lines += ["## Did ZPD-Adaptive beat Random?", ""]
        answer = _answer(analysis, models, metrics)
        lines += answer or ["- ZPD-Adaptive was not run."]
        lines += [
            "",
            "Metrics in points (%), `auc`: mean exact match over training (area under the "
            "learning curve / steps), `steps_to_90`: first evaluated step at ≥ 90 % (lower is "
            "better). p_adj: Holm over all of a model's metrics × conditions.",
            "",
            render_markdown(
                analysis, decimals=2, lower_is_better=[m for m in metrics if m.startswith("steps")]
            ),
        ]
        if len(models) == 2 and "zpd_adaptive" in conditions:
            lines += ["## H3a: is the ZPD effect larger for the first model?", ""]
            for metric in metrics:
                try:
                    r = interaction_test(
                        _records_for(runs, [metric]), model_a=models[0], model_b=models[1],
                        condition=CONDITION_LABELS["zpd_adaptive"],
                        control=CONDITION_LABELS["random"], metric=metric,
                    )  # fmt: skip
                except ValueError as err:
                    lines.append(f"- {metric}: not testable ({err}).")
                    continue
                lines.append(
                    f"- {metric}: effect {models[0]} {_fmt(r.effect_a, 2, signed=True)} vs "
                    f"{models[1]} {_fmt(r.effect_b, 2, signed=True)}; difference "
                    f"{_fmt(r.did, 2, signed=True)} [{_fmt(r.ci[0], 2)}, {_fmt(r.ci[1], 2)}], "
                    f"Welch p = {_fmt(r.pvalue, 3)}; d {_fmt(r.cohens_d_a, 2)} vs "
                    f"{_fmt(r.cohens_d_b, 2)}."
                )
            lines.append("")
    else:
        lines += [
            "## Results",
            "",
            "Too few runs for a comparison (needs `random` and another condition with at least "
            "2 seeds each); values per run:",
            "",
            "| Condition | Seed | " + " | ".join(metrics) + " |",
            "|---|---:|" + "---:|" * len(metrics),
        ]
        for run in runs:
            cells = [_fmt(run["metrics"].get(m), 2) for m in metrics]
            lines.append(
                f"| {CONDITION_LABELS[run['condition']]} | {run['seed']} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    lines += _per_level_table(runs)
    lines += _difficulty_table(runs, config["curriculum"]["difficulty"])
    lines += ["## Where R4's assumptions differ from the facts", ""]
    lines += [f"- {c}" for c in r4_caveats(results)] + [""]
    lines += _timing_lines(results)
    return "\n".join(lines), analysis


def _timing_lines(results: Mapping[str, Any]) -> list[str]:
    runs = results["runs"]
    if not runs:
        return []
    env = results["study"].get("environment", {})
    train = [r["timings"]["train_s"] for r in runs]
    total = [r["timings"]["total_s"] for r in runs]
    evals = [r["timings"]["eval_s"] for r in runs]
    versions = env.get("versions", {})
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return [
        "## Runs",
        "",
        f"Per run: {np.mean(total):.0f} s on average ({np.min(total):.0f}–{np.max(total):.0f}), "
        f"of which training {np.mean(train):.0f} s (evaluation during training included: "
        f"{np.mean(evals):.0f} s). {results['study'].get('num_workers', 1)} worker process(es); "
        f"device {env.get('device', '?')}, Python {env.get('python', '?')}.",
        "",
        f"Versions: {shown}.",
        "",
    ]
