"""Evaluation with lm-evaluation-harness: the benchmarks of the study and offline fixture tasks.

The GPU presets evaluate each trained adapter on ``kobest``, ``mmlu``, ``gsm8k`` and ``humaneval``
with ``lm_eval.simple_evaluate(model="hf", model_args="pretrained=BASE,peft=ADAPTER,...")``. The
``fixture-ko`` preset and the tests call the same function with two custom tasks defined here
over the shipped Korean fixtures (a generation task in the training template, like GSM8K and
HumanEval, and a multiple-choice task, like KoBEST and MMLU), read from local JSONL files: nothing
is downloaded, so only the model size separates that run from the GPU one.

lm-eval is an optional dependency: ``pip install 'zpd-curriculum[eval]'``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._data import FIXTURE_PATH

__all__ = [
    "FIXTURE_TASKS",
    "MC_FIXTURE_PATH",
    "PRIMARY_METRICS",
    "extract_scores",
    "fixture_task_configs",
    "lm_eval_model_args",
    "resolve_tasks",
    "run_lm_eval",
]

logger = logging.getLogger(__name__)

MC_FIXTURE_PATH = Path(__file__).resolve().parent / "fixtures" / "ko_multiple_choice_sample.jsonl"
"""Sixteen Korean multiple-choice items (``question``, ``choices``, ``label``), KoBEST-like."""

FIXTURE_TASKS = "fixture-ko"
"""Task name that stands for the two offline fixture tasks in ``lm_eval_tasks``."""

#: The result key reported for each benchmark (lm-eval 0.4): its headline number.
PRIMARY_METRICS: Mapping[str, str] = {
    "kobest": "acc,none",
    "mmlu": "acc,none",
    "gsm8k": "exact_match,strict-match",
    "humaneval": "pass@1,create_test",
    "zpd_fixture_ko_gen": "exact_match,none",
    "zpd_fixture_ko_mc": "acc,none",
}


def _require_lm_eval():
    try:
        import lm_eval
    except ImportError as err:
        raise ImportError(
            "evaluation with lm-evaluation-harness needs `lm_eval`, which is not installed; run "
            "`pip install 'zpd-curriculum[eval]'` (or pick --evaluator addition / none)."
        ) from err
    return lm_eval


def fixture_task_configs(template: str = "solar") -> list[dict[str, Any]]:
    """lm-eval task configs (dicts) over the shipped fixtures, read offline.

    ``zpd_fixture_ko_gen`` generates an answer to each row of :data:`FIXTURE_PATH` in the training
    template and scores exact match; ``zpd_fixture_ko_mc`` picks among ``choices`` of
    :data:`MC_FIXTURE_PATH` by log-likelihood and scores accuracy.

    Args:
        template: ``"solar"``, ``"chatml"`` or ``"plain"`` (see
            :func:`~zpd_curriculum.study._config.prompt_template`).

    Returns:
        Two task configs for ``lm_eval.simple_evaluate(tasks=...)``.

    Examples:
        >>> [task["task"] for task in fixture_task_configs()]
        ['zpd_fixture_ko_gen', 'zpd_fixture_ko_mc']
    """
    from ._config import prompt_template

    prompt = prompt_template(template).prompt
    user = "{{instruction}}{% if input %}\n\n{{input}}{% endif %}"
    return [
        {
            "task": "zpd_fixture_ko_gen",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": os.fspath(FIXTURE_PATH)}},
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": prompt.replace("{user}", user),
            "doc_to_target": "{{output}}",
            "generation_kwargs": {"until": ["\n\n###", "<|im_end|>"], "max_gen_toks": 16,
                                  "do_sample": False},
            "metric_list": [
                {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}
            ],
            "metadata": {"version": 1.0},
        },
        {
            "task": "zpd_fixture_ko_mc",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": os.fspath(MC_FIXTURE_PATH)}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{{question}} 답변:",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        },
    ]  # fmt: skip


def resolve_tasks(names: Sequence[str], *, template: str = "solar") -> list[str | dict[str, Any]]:
    """Task names for lm-eval, with :data:`FIXTURE_TASKS` replaced by the fixture configs.

    Examples:
        >>> [t if isinstance(t, str) else t["task"] for t in resolve_tasks(["mmlu", "fixture-ko"])]
        ['mmlu', 'zpd_fixture_ko_gen', 'zpd_fixture_ko_mc']
    """
    out: list[str | dict[str, Any]] = []
    for name in names:
        if name == FIXTURE_TASKS:
            out.extend(fixture_task_configs(template))
        else:
            out.append(name)
    return out


def task_names(tasks: Sequence[str | Mapping[str, Any]]) -> list[str]:
    """The names results are reported under."""
    return [t if isinstance(t, str) else str(t["task"]) for t in tasks]


def lm_eval_model_args(
    pretrained: str | os.PathLike[str],
    *,
    peft: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    dtype: str | None = None,
) -> str:
    """The ``model_args`` string of lm-eval's ``hf`` model: ``pretrained=...,peft=...``.

    Raises:
        ValueError: If a value contains a comma (lm-eval splits the string on commas).

    Examples:
        >>> lm_eval_model_args("upstage/SOLAR-10.7B-v1.0", peft="runs/a/adapter", dtype="bfloat16")
        'pretrained=upstage/SOLAR-10.7B-v1.0,peft=runs/a/adapter,dtype=bfloat16'
    """
    parts = {"pretrained": pretrained, "peft": peft, "tokenizer": tokenizer, "dtype": dtype}
    items = []
    for key, value in parts.items():
        if value is None:
            continue
        text = os.fspath(value)
        if "," in text:
            raise ValueError(
                f"lm-eval model_args are comma-separated, so {key}={text!r} cannot contain a "
                "comma; move the folder to a path without one."
            )
        items.append(f"{key}={text}")
    return ",".join(items)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_lm_eval(
    *,
    pretrained: str | os.PathLike[str],
    peft: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    tasks: Sequence[str],
    template: str = "solar",
    dtype: str | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    batch_size: int | str = "auto",
    device: str | None = None,
    confirm_run_unsafe_code: bool = False,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluate a base model plus an adapter with ``lm_eval.simple_evaluate``.

    Args:
        pretrained: Hub id or local folder of the base model.
        peft: Folder of the LoRA adapter (``None``: the model alone).
        tokenizer: Tokenizer folder (the run saves its tokenizer, pad token included, next to
            the adapter); ``None``: the base model's.
        tasks: lm-eval task names; :data:`FIXTURE_TASKS` adds the offline fixture tasks.
        template: Prompt template of the fixture generation task.
        dtype: ``dtype`` model argument (``bfloat16`` on GPU).
        limit: Items per task (tests; ``None`` for the whole benchmark).
        num_fewshot: Few-shot examples (``None``: each task's default).
        batch_size: lm-eval batch size (``"auto"`` on GPU).
        device: ``"cuda"``, ``"cpu"``... (``None``: lm-eval's choice).
        confirm_run_unsafe_code: Allow tasks that execute model-written code (HumanEval); sets
            ``HF_ALLOW_CODE_EVAL=1`` for the call.
        seed: lm-eval's random, numpy, torch and few-shot seeds.

    Returns:
        ``(scores, summary)``: the headline number of each task in points (0-100, see
        :data:`PRIMARY_METRICS`), and lm-eval's ``results`` and ``n-samples`` sections.

    Raises:
        ImportError: If lm-eval is not installed.
        ValueError: If a task executes code and ``confirm_run_unsafe_code`` is false.
    """
    names = list(tasks)
    if "humaneval" in names and not confirm_run_unsafe_code:
        raise ValueError(
            "humaneval executes model-written code: pass confirm_run_unsafe_code=True "
            "(--confirm_run_unsafe_code) after reading lm-eval's warning, or drop the task."
        )
    lm_eval = _require_lm_eval()
    resolved = resolve_tasks(names, template=template)
    env = {"HF_ALLOW_CODE_EVAL": "1"} if confirm_run_unsafe_code else {}
    model_args = lm_eval_model_args(pretrained, peft=peft, tokenizer=tokenizer, dtype=dtype)
    logger.info("lm-eval: hf %s on %s (limit=%s)", model_args, task_names(resolved), limit)
    with _environment(**env):
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=resolved,
            num_fewshot=num_fewshot,
            batch_size=batch_size,
            device=device,
            limit=limit,
            log_samples=False,
            confirm_run_unsafe_code=confirm_run_unsafe_code,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    if output is None:  # non-zero ranks of a distributed evaluation
        return {}, {}
    results = output.get("results", {})
    scores = extract_scores(results, task_names(resolved))
    summary = {"results": results, "n-samples": output.get("n-samples", {})}
    return scores, summary


def extract_scores(
    results: Mapping[str, Mapping[str, Any]], tasks: Sequence[str]
) -> dict[str, float]:
    """The headline number of each task, in points (x 100).

    A task in :data:`PRIMARY_METRICS` reports that key; another reports its first numeric
    metric (``name,filter``) that is not a standard error.

    Raises:
        KeyError: If a task is missing from ``results`` or has no numeric metric.

    Examples:
        >>> extract_scores({"mmlu": {"acc,none": 0.61, "acc_stderr,none": 0.004}}, ["mmlu"])
        {'mmlu': 61.0}
    """
    scores: dict[str, float] = {}
    for task in tasks:
        if task not in results:
            raise KeyError(f"lm-eval returned no results for task {task!r}; got {sorted(results)}.")
        entry = results[task]
        key = PRIMARY_METRICS.get(task)
        if key is None or key not in entry:
            numeric = [
                k for k, v in entry.items()
                if "," in k and "_stderr" not in k and isinstance(v, int | float)
                and not isinstance(v, bool)
            ]  # fmt: skip
            if not numeric:
                raise KeyError(f"task {task!r} has no numeric metric in {sorted(entry)}.")
            key = numeric[0]
        value = float(entry[key])
        if not math.isfinite(value):
            raise KeyError(f"task {task!r} metric {key!r} is {value}.")
        scores[task] = 100.0 * value
    return scores
