"""Before/after of the ZPD sampler: a git revision's version against the working tree, interleaved.

    python benchmarks/compare_zpd.py --base 939ed3a            # N = 1e4 ... 1e7
    python benchmarks/compare_zpd.py --base 939ed3a --quick    # N up to 1e6, fewer repeats

The base revision's sampler modules are read with ``git show`` (read-only) into a temporary
package, so both versions run in one process on the same tables, in alternating order.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402 (after the sys.path line above)

from benchmarks import _common, bench_samplers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("_samplers", "_pacing", "_zpd", "_zpd_sampler")


def load_base(revision: str, folder: Path):
    """The ``ZPDAdaptiveSampler`` class of ``revision``, imported as package ``zpd_base``."""
    package = folder / "zpd_base"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        source = subprocess.run(
            ["git", "show", f"{revision}:src/zpd_curriculum/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    from zpd_base._zpd_sampler import ZPDAdaptiveSampler  # type: ignore[import-not-found]

    return ZPDAdaptiveSampler


def build(cls, n: int, *, blocks: int, prior: bool = False, width: float = 0.5):
    """A sampler of class ``cls`` with the benchmark's table (same seed for both versions)."""
    rng = np.random.default_rng(0)
    sampler = cls(
        n,
        difficulty=rng.random(n) if prior else None,
        width=width,
        refresh_every=bench_samplers.BLOCK,
        num_samples=bench_samplers.BLOCK * blocks,
    )
    bench_samplers.fill_table(sampler, rng, fraction=0.5 if prior else 1.0)
    return sampler


def compare(base_cls, sizes: tuple[int, ...], repeats: int) -> list[list[Any]]:
    """Rows of (what, N, base ms, new ms, speed-up)."""
    from zpd_curriculum import ZPDAdaptiveSampler

    rows = []
    cases = {"refresh + block": {}, "refresh + block, prior, 50% seen": {"prior": True}}
    for n in sizes:
        for case, options in cases.items():
            planners = {
                version: bench_samplers._BlockPlanner(
                    build(cls, n, blocks=repeats + 2, **options), feed=True
                )
                for version, cls in (("base", base_cls), ("new", ZPDAdaptiveSampler))
            }
            before = {k: p.between for k, p in planners.items()}
            timings = _common.interleaved(planners, repeats=repeats, before=before)
            rows.append(_row(case, n, timings))
        samplers = {
            "base": build(base_cls, n, blocks=2),
            "new": build(ZPDAdaptiveSampler, n, blocks=2),
        }
        timings = _common.interleaved(
            {k: s.probabilities for k, s in samplers.items()}, repeats=repeats
        )
        rows.append(_row("probabilities()", n, timings))
    for batch in (16, 256):
        rng = np.random.default_rng(0)
        steps = [(rng.integers(0, 100_000, batch), rng.random(batch) + 0.5) for _ in range(200)]
        samplers = {"base": base_cls(100_000), "new": ZPDAdaptiveSampler(100_000)}

        def feed(sampler, steps=steps):
            for indices, losses in steps:
                sampler.update(indices, losses)

        timings = _common.interleaved(
            {k: (lambda s=s: feed(s)) for k, s in samplers.items()}, repeats=repeats
        )
        for timing in timings.values():
            timing.samples = [x / len(steps) for x in timing.samples]
        rows.append(_row(f"update(), {batch} losses per step", 100_000, timings))
    return rows


def _row(case: str, n: int, timings: dict[str, _common.Timing]) -> list[Any]:
    base, new = timings["base"], timings["new"]
    return [
        case,
        f"{n:,}",
        _common.fmt_range(base),
        _common.fmt_range(new),
        f"{base.median / new.median:.1f}×",
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse the options, compare, print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of the 'before' version")
    parser.add_argument("--quick", action="store_true", help="N up to 1e6, fewer repeats")
    args = parser.parse_args(argv)
    sizes = (10_000, 100_000, 1_000_000) + (() if args.quick else (10_000_000,))
    repeats = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as folder:
        base_cls = load_base(args.base, Path(folder))
        rows = compare(base_cls, sizes, repeats)
    print(_common.machine_line(_common.machine()))
    print(
        f"\nZPDAdaptiveSampler, {args.base} (base) vs working tree (new); ms, median (min–max) "
        f"of {repeats} interleaved runs.\n"
    )
    print(_common.markdown_table(["what", "N", "base, ms", "new, ms", "speed-up"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
