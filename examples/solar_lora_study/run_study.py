"""Reproduce the SOLAR 10.7B LoRA curriculum study (R4), or its tiny CPU stand-in.

A thin runner over the library's study code (``pip install 'zpd-curriculum[study]'``, plus
``[eval]`` for lm-evaluation-harness). Its settings are six dataclasses of
``zpd_curriculum.study`` (``StudyArguments``, ``ModelArguments``, ``DataArguments``,
``TrainArguments``, ``CurriculumArguments``, ``EvalArguments``), parsed by
``transformers.HfArgumentParser`` with the chosen preset's values as defaults:

    python examples/solar_lora_study/run_study.py --preset tiny                   # CPU, offline
    python examples/solar_lora_study/run_study.py --preset solar-10.7b --dry_run  # the plan
    python examples/solar_lora_study/run_study.py --preset solar-10.7b --confirm_run_unsafe_code

``--help`` lists every setting. ``zpd-curriculum study run ...`` does the same.
"""

from __future__ import annotations

import logging
import sys

from zpd_curriculum.study import format_plan, parse_study_args, plan_study, run_study


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = parse_study_args(argv, prog="run_study.py")  # HfArgumentParser over the dataclasses
    print(format_plan(plan_study(config)), flush=True)
    if config.study.dry_run:
        return 0
    results = run_study(config)  # results.json, results.md and plots/ in config.study.output_dir
    print(
        f"{len(results['runs'])} runs in {results['study']['wall_time_s'] / 60:.1f} min; "
        f"report: {config.study.output_dir}/results.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
