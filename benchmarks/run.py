"""Run the zpd-curriculum benchmarks, print a markdown table, write JSON (and the docs table).

    python benchmarks/run.py                    # everything (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick            # small sizes, few repeats (about 2 minutes)
    python benchmarks/run.py --only samplers    # one section (repeat --only for several)

A complete, non-quick run writes ``docs/_benchmarks_table.md`` (included by the docs' benchmark
page) and ``benchmarks/results.json``; other runs write ``benchmarks/results-partial.json`` and
leave the docs alone unless ``--markdown`` names a file. Timings within one section are
interleaved (round-robin, rotated order) so that load from other processes hits every method
alike: compare ratios within one run, not absolute times across machines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common  # noqa: E402 (the repository root is importable only now)

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("samplers", "trainer", "scoring")
TITLES = {
    "samplers": "Samplers at scale",
    "trainer": "Trainer overhead",
    "scoring": "Scoring pass",
}


def run_section(name: str, *, quick: bool) -> dict[str, Any]:
    """Run one section and return its JSON."""
    if name == "samplers":
        from benchmarks import bench_samplers

        return bench_samplers.run(quick=quick, log=_log)
    if name == "trainer":
        from benchmarks import bench_trainer

        return bench_trainer.run(quick=quick, log=_log)
    if name == "scoring":
        from benchmarks import bench_scoring

        return bench_scoring.run(quick=quick, log=_log)
    raise ValueError(name)  # pragma: no cover - argparse restricts the choices


def section_table(name: str, result: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown of one section's results, and its targets."""
    if name == "samplers":
        from benchmarks import bench_samplers

        return bench_samplers.table(result["blocks"], result["state"])
    if name == "trainer":
        from benchmarks import bench_trainer

        return bench_trainer.table(result)
    from benchmarks import bench_scoring

    return bench_scoring.table(result)


def render(
    machine: dict[str, Any], texts: dict[str, str], targets: list[dict[str, Any]], *, quick: bool
) -> str:
    """The whole markdown: machine line, one part per section, then the targets."""
    out = [_common.machine_line(machine)]
    if quick:
        out[0] += " Quick run (`--quick`): small sizes, few repeats."
    for name, text in texts.items():
        out += ["", f"**{TITLES[name]}.** " + text]
    if targets:
        rows = [[t["target"], t["value"], t["verdict"]] for t in targets]
        out += ["", "**Targets.**", "", _common.markdown_table(["target", "measured", ""], rows)]
    return "\n".join(out) + "\n"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the sections, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--markdown", type=Path, help="where to write the markdown table")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="render the table of a results file written earlier instead of running anything",
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        return _render_saved(args.from_json, args.markdown)
    sections = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    complete = not args.quick and len(sections) == len(SECTIONS)
    json_path = args.json or ROOT / "benchmarks" / (
        "results.json" if complete else "results-partial.json"
    )
    markdown_path = args.markdown or (ROOT / "docs" / "_benchmarks_table.md" if complete else None)

    _silence_libraries()
    machine = _common.machine()
    _log(_common.machine_line(machine))
    results, texts, targets = {}, {}, []
    started = time.perf_counter()
    for name in sections:
        _log(f"{TITLES[name]} ...")
        results[name] = run_section(name, quick=args.quick)
        texts[name], section_targets = section_table(name, results[name])
        targets += section_targets
    markdown = render(machine, texts, targets, quick=args.quick)
    print(markdown)
    payload = {
        "machine": machine,
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "results": results,
        "targets": targets,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=1, default=float) + "\n", encoding="utf-8")
    _log(f"wrote {json_path}")
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(markdown, encoding="utf-8")
        _log(f"wrote {markdown_path}")
    return 0


def _render_saved(json_path: Path, markdown_path: Path | None) -> int:
    """Print (and write) the markdown of a results file, as the run that wrote it did."""
    payload = json.loads(json_path.read_text(encoding="utf-8"))
    texts, targets = {}, []
    for name in SECTIONS:
        if name in payload["results"]:
            texts[name], section_targets = section_table(name, payload["results"][name])
            targets += section_targets
    markdown = render(payload["machine"], texts, targets, quick=payload["quick"])
    print(markdown)
    if markdown_path is not None:
        markdown_path.write_text(markdown, encoding="utf-8")
        _log(f"wrote {markdown_path}")
    return 0


def _silence_libraries() -> None:
    """Keep the Trainer's own log lines and progress bars out of the benchmark output."""
    import logging
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("zpd_curriculum").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers comes with the `hf` extra
        pass


if __name__ == "__main__":
    raise SystemExit(main())
