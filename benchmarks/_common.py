"""Shared pieces of the benchmarks: the machine line, interleaved timing, summaries, tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, load, library versions, date."""
    import numpy
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": load,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line naming the machine."""
    versions = ", ".join(
        f"{name} {info[name]}"
        for name in ("python", "numpy", "torch", "transformers")
        if name in info
    )
    load = "/".join(str(x) for x in info.get("load_average", []))
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores (load average {load or 'n/a'} at start); "
        f"{versions}; {info['date']}."
    )


@dataclass
class Timing:
    """Repeated measurements of one thing, in seconds."""

    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.low,
            "max_s": self.high,
            "samples_s": self.samples,
            "note": self.note,
        }


def interleaved(
    tasks: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    slow_s: float = float("inf"),
    before: dict[str, Callable[[], Any]] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time every task ``repeats`` times, interleaved (round-robin, order rotated every round).

    Load from other processes then hits every task alike, so medians and ratios taken within one
    call are comparable. ``before[name]`` runs, untimed, before each run of that task. A task
    whose single run exceeds ``slow_s`` is not repeated (its note says so).
    """
    before = before or {}
    names = list(tasks)
    out = {name: Timing() for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            timing = out[name]
            if timing.note:
                continue
            if name in before:
                before[name]()
            start = timer()
            tasks[name]()
            timing.samples.append(timer() - start)
            if timing.samples[-1] > slow_s:
                timing.note = f"{len(timing.samples)} run(s): slower than {slow_s:g} s"
    return out


def fmt_ms(seconds: float) -> str:
    """Milliseconds with three significant figures."""
    ms = seconds * 1e3
    if ms != ms:  # NaN
        return "—"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_range(timing: Timing) -> str:
    """``median (min–max)`` in milliseconds."""
    if len(timing.samples) <= 1:
        return fmt_ms(timing.median)
    return f"{fmt_ms(timing.median)} ({fmt_ms(timing.low)}–{fmt_ms(timing.high)})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    """The mark a target row gets."""
    return "met" if ok else "**not met**"
