"""The ``zpd-curriculum`` command: run and report curriculum studies, score datasets.

::

    zpd-curriculum study run --preset tiny --seeds 0 1 2 --output-dir out   # train, report
    zpd-curriculum study run --preset solar-10.7b --dry-run                # the plan only
    zpd-curriculum study report out                                        # re-render
    zpd-curriculum score --preset tiny --output scores.npy                 # difficulty scores

``study run`` takes a preset and then any setting of
:class:`~zpd_curriculum.study.StudyConfig` as an override (``zpd-curriculum study run --preset
tiny --help`` lists them with the preset's values). It needs the ``study`` extra (and ``eval``
for lm-eval): ``pip install 'zpd-curriculum[study]'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger("zpd_curriculum.cli")

_PROG = "zpd-curriculum"


def _study_imports():
    try:
        from zpd_curriculum.study import _config, _runner
    except ImportError as err:  # pragma: no cover - the study extra is missing
        raise SystemExit(
            f"{_PROG}: the study commands need the study extra: "
            f"pip install 'zpd-curriculum[study]' ({err})"
        ) from err
    return _config, _runner


def _study_run(argv: Sequence[str]) -> int:
    _config, _runner = _study_imports()
    try:
        config = _config.parse_study_args(argv, prog=f"{_PROG} study run")
    except ValueError as err:
        print(f"{_PROG} study run: error: {err}", file=sys.stderr)
        return 2
    if config.study.dry_run:
        plan = _runner.plan_study(config)
        print(_runner.format_plan(plan))
        return 0
    problems = _runner.check_runnable(config)
    if problems:
        print(f"{_PROG} study run: cannot run:", *(f"  - {p}" for p in problems), sep="\n",
              file=sys.stderr)  # fmt: skip
        return 2
    print(_runner.format_plan(_runner.plan_study(config)), flush=True)
    results = _runner.run_study(config)
    root = Path(config.study.output_dir)
    print(
        f"\nWrote {root / _runner.RESULTS_JSON}, {root / _runner.RESULTS_MD} and {root / 'plots'}/"
    )
    print(
        f"Wall time {results['study']['wall_time_s'] / 60:.1f} min for {len(results['runs'])} runs."
    )
    return 0


def _study_report(args: argparse.Namespace) -> int:
    _, _runner = _study_imports()
    results = _runner.load_results(args.results)
    out = Path(args.output_dir) if args.output_dir else Path(args.results[0])
    if out.suffix == ".json":
        out = out.parent
    out.mkdir(parents=True, exist_ok=True)
    written = _runner.write_report(results, out)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _score(argv: Sequence[str]) -> int:
    _config, _runner = _study_imports()
    parser = argparse.ArgumentParser(prog=f"{_PROG} score", add_help=False)
    parser.add_argument("--output", required=False, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-h", "--help", action="store_true")
    own, rest = parser.parse_known_args(argv)
    if own.help or own.output is None:
        print(
            f"usage: {_PROG} score --output FILE.npy [--seed N] [--preset NAME] [settings...]\n\n"
            "Scores every training example of the configured data by its token-mean loss under\n"
            "the initial model of --seed (zpd_curriculum.score_examples; the difficulty the\n"
            "Easy-to-Hard and Hard-to-Easy callbacks use by default) and writes a float32 .npy\n"
            "in training-set order, plus FILE.json with ids and token counts. Settings are those\n"
            f"of `{_PROG} study run` (e.g. --preset, --data_source, --model_name_or_path).",
            file=sys.stderr if own.output is None and not own.help else sys.stdout,
        )
        return 0 if own.help else 2
    try:
        config = _config.parse_study_args(rest, prog=f"{_PROG} score")
    except ValueError as err:
        print(f"{_PROG} score: error: {err}", file=sys.stderr)
        return 2
    import numpy as np
    import torch
    import transformers

    from zpd_curriculum import score_examples

    if config.study.torch_threads is not None:
        torch.set_num_threads(config.study.torch_threads)
    inputs = _runner.prepare_inputs(config, own.seed)
    model = _runner.load_model(config, inputs["base_path"], inputs["tokenizer"], own.seed)
    if torch.cuda.is_available() and not config.train.use_cpu:
        model = model.to("cuda")
    collator = transformers.DataCollatorForSeq2Seq(
        inputs["tokenizer"], padding=True, label_pad_token_id=-100
    )
    scores = score_examples(
        model,
        inputs["train_dataset"],
        batch_size=config.train.per_device_eval_batch_size,
        data_collator=collator,
        desc="zpd-curriculum: scoring",
    )
    output = Path(own.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.save(output, scores)
    lengths = [len(ids) for ids in inputs["train_dataset"]["input_ids"]]
    side = {
        "ids": [row.get("id") for row in inputs["train_rows"]],
        "tokens": lengths,
        "model": config.model.model_name_or_path,
        "seed": own.seed,
    }
    output.with_suffix(".json").write_text(json.dumps(side, ensure_ascii=False) + "\n",
                                           encoding="utf-8")  # fmt: skip
    finite = scores[np.isfinite(scores)]
    print(
        f"Scored {len(scores)} examples -> {output}: loss mean {finite.mean():.3f}, "
        f"min {finite.min():.3f}, max {finite.max():.3f}; {float(np.mean(lengths)):.1f} tokens "
        "per example on average (the dry run's --plan_tokens_per_example)."
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Curriculum studies with zpd-curriculum's Trainer callbacks."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser("study", help="Run or report a curriculum study.")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    study_commands.add_parser(
        "run",
        help="Train every (condition, seed) of a preset and write results, report and plots.",
        add_help=False,
    )
    report = study_commands.add_parser(
        "report", help="Re-render results.md and the plots from results.json."
    )
    report.add_argument(
        "results",
        nargs="+",
        help="results.json files or study folders; two models' results merged give the H3a test "
        "(the first model is the one expected to gain more).",
    )
    report.add_argument("--output-dir", "--output_dir", default=None,
                        help="Where to write (default: the first results' folder).")  # fmt: skip
    commands.add_parser(
        "score", help="Score a dataset's examples by loss under the initial model (.npy).",
        add_help=False,
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zpd-curriculum`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    # `study run` and `score` hand their arguments to HfArgumentParser, so argparse only routes.
    if argv[:2] == ["study", "run"]:
        return _study_run(argv[2:])
    if argv[:1] == ["score"]:
        return _score(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "study" and args.study_command == "report":
        return _study_report(args)
    parser.print_help()  # pragma: no cover - argparse requires a command
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
