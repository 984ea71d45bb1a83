"""Plots of a study's runs: learning curves, curriculum dynamics and data maps.

Each function takes the run records of ``results.json`` (see
:func:`~zpd_curriculum.study._runner.run_one`), draws on matplotlib's Agg canvas (the global
pyplot backend is left alone), writes a PNG and returns its path, or ``None`` when the runs hold
nothing to draw. Values are averaged over seeds per condition; bands are ± one standard deviation
over seeds, clipped to the range of the seeds' values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._config import CONDITION_LABELS, CONDITIONS

__all__ = ["plot_curriculum_dynamics", "plot_data_map", "plot_learning_curves"]

_COLORS = {c: f"C{i}" for i, c in enumerate(CONDITIONS)}


def _figure(ncols: int, nrows: int = 1, *, width: float = 4.6, height: float = 3.6):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "the study plots need matplotlib: pip install 'zpd-curriculum[study]'."
        ) from err
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _by_condition(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for condition in CONDITIONS:
        picked = sorted((r for r in runs if r["condition"] == condition), key=lambda r: r["seed"])
        if picked:
            out[condition] = picked
    return out


def _series(
    runs: Sequence[Mapping[str, Any]], entries: str, key: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps and a (seeds, steps) array of ``key`` from each run's ``entries`` list.

    Steps missing in some run are dropped, so every column has every seed.
    """
    per_run = []
    for run in runs:
        points = {int(e["step"]): e[key] for e in run.get(entries, []) if e.get(key) is not None}
        if points:
            per_run.append(points)
    if not per_run:
        return None
    steps = sorted(set.intersection(*(set(p) for p in per_run)))
    if not steps:
        return None
    values = np.asarray([[p[s] for s in steps] for p in per_run], dtype=np.float64)
    return np.asarray(steps, dtype=np.float64), values


def _band(ax: Any, steps: np.ndarray, values: np.ndarray, color: str, label: str) -> None:
    mean = values.mean(axis=0)
    ax.plot(steps, mean, color=color, label=label, linewidth=1.6)
    if values.shape[0] > 1:
        sd = values.std(axis=0, ddof=1)  # the band stays within the values seen
        low = np.maximum(mean - sd, values.min(axis=0))
        high = np.minimum(mean + sd, values.max(axis=0))
        ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    fig.savefig(os.fspath(path), dpi=dpi, format="png")
    return Path(path)


def plot_learning_curves(
    runs: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, dpi: int = 130
) -> Path | None:
    """Evaluation metric over training steps, one line per condition (mean ± SD over seeds).

    Addition runs: exact match overall and per digit level; other runs: held-out loss.

    Args:
        runs: Run records with a ``curve`` list of ``{"step": ..., metric: ...}``.
        path: Where to write the PNG.
        dpi: Resolution.

    Returns:
        ``path``, or ``None`` if no run has a curve.
    """
    groups = _by_condition(runs)
    keys: list[str] = []
    for run in runs:
        for entry in run.get("curve", []):
            for k in entry:
                if k != "step" and k not in keys:
                    keys.append(k)
    if not keys:
        return None
    if "exact_match" in keys:
        keys = ["exact_match"] + sorted(
            (k for k in keys if k.startswith("exact_match_d")), key=lambda k: int(k[13:])
        )
    fig, axes = _figure(len(keys))
    for ax, key in zip(axes.flat, keys, strict=True):
        for condition, picked in groups.items():
            series = _series(picked, "curve", key)
            if series is not None:
                _band(ax, *series, _COLORS[condition], CONDITION_LABELS[condition])
        if key == "exact_match":
            ax.set_title("exact match, all levels")
        elif key.startswith("exact_match_d"):
            ax.set_title(f"exact match, {key[13:]} digits")
        else:
            ax.set_title(key.replace("_", " "))
        ax.set_xlabel("step")
        ax.set_ylabel("%" if key.startswith("exact_match") else key)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(frameon=False, fontsize=8)
    return _save(fig, path, dpi)


def plot_curriculum_dynamics(
    runs: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, dpi: int = 130
) -> Path | None:
    """What each curriculum fed the model over training, from the ``curriculum/*`` logs.

    Three panels, mean ± SD over seeds per condition: the difficulty percentile of the examples
    trained since the previous log (Random, Easy-to-Hard, Hard-to-Easy: percentile of the static
    difficulty; ZPD-Adaptive, which has none: percentile of their stored loss among the losses
    observed so far); the effective sample size as a fraction of the training set (how much of
    the data is in play: 1 for Random, the pacing's competence for Easy-to-Hard / Hard-to-Easy,
    the ZPD distribution's ESS); and ZPD-Adaptive's competence (a running mean of the batch loss)
    next to every condition's training loss.

    Returns:
        ``path``, or ``None`` if no run has curriculum logs.
    """
    groups = _by_condition(runs)
    if not any(run.get("curriculum_log") for run in runs):
        return None
    fig, axes = _figure(3)
    pct, ess, comp = axes.flat
    for condition, picked in groups.items():
        color, label = _COLORS[condition], CONDITION_LABELS[condition]
        series = _series(picked, "curriculum_log", "curriculum/difficulty_percentile")
        if series is not None:
            suffix = " (loss percentile)" if condition == "zpd_adaptive" else ""
            _band(pct, *series, color, label + suffix)
        series = _series(picked, "curriculum_log", "curriculum/effective_sample_size")
        if series is not None:
            n = float(picked[0].get("data", {}).get("train_examples") or 1)
            _band(ess, series[0], series[1] / n, color, label)
        series = _series(picked, "curriculum_log", "loss")
        if series is not None:
            _band(comp, *series, color, f"{label}: training loss")
        if condition == "zpd_adaptive":
            series = _series(picked, "curriculum_log", "curriculum/competence")
            if series is not None:
                steps, values = series
                comp.plot(steps, values.mean(axis=0), color=color, linestyle="--",
                          label="ZPD-Adaptive: competence")  # fmt: skip
    pct.set_title("difficulty percentile of trained examples")
    pct.set_ylim(0, 1)
    ess.set_title("effective sample size / training set")
    ess.set_ylim(0, 1.05)
    comp.set_title("training loss and ZPD competence")
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    return _save(fig, path, dpi)


def plot_data_map(
    runs: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    dpi: int = 130,
) -> Path | None:
    """Mean training loss against its variability per example, one panel per condition.

    A data map (Swayamdipta et al., "Dataset Cartography", EMNLP 2020) with losses in place of
    gold-label probabilities, from each condition's first seed: every training example seen at
    least twice is a dot at (standard deviation, mean) of the losses the training forward gave it,
    coloured by its digit count (addition) or its difficulty score.

    Args:
        runs: Run records whose ``artifacts["loss_stats"]`` point to an ``.npz`` under ``root``.
        path: Where to write the PNG.
        root: The study's output folder.
        dpi: Resolution.

    Returns:
        ``path``, or ``None`` if no run kept loss statistics.
    """
    panels = []
    for condition, picked in _by_condition(runs).items():
        for run in picked:
            rel = run.get("artifacts", {}).get("loss_stats")
            file = Path(run.get("_root", root)) / rel if rel else None
            if file is not None and file.is_file():
                with np.load(file) as data:
                    arrays = {k: data[k] for k in data.files}
                if "loss_mean" in arrays:
                    panels.append((condition, run["seed"], arrays))
                    break
    if not panels:
        return None
    ncols = min(len(panels), 2)
    fig, axes = _figure(ncols, math.ceil(len(panels) / ncols), width=4.4, height=3.8)
    for ax, (condition, seed, arrays) in zip(axes.flat, panels, strict=False):
        seen = arrays["loss_count"] >= 2
        if "levels" in arrays:
            color, label = arrays["levels"], "digits"
        elif "difficulty" in arrays:
            color, label = arrays["difficulty"], "difficulty score"
        else:
            color, label = arrays["loss_count"], "times seen"
        points = ax.scatter(
            arrays["loss_std"][seen], arrays["loss_mean"][seen], c=np.asarray(color)[seen],
            s=4, alpha=0.5, cmap="viridis", linewidths=0,
        )  # fmt: skip
        fig.colorbar(points, ax=ax, label=label)
        ax.set_title(f"{CONDITION_LABELS[condition]} (seed {seed}, {int(seen.sum())} examples)")
        ax.set_xlabel("variability (SD of training loss)")
        ax.set_ylabel("mean training loss")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path, dpi)
