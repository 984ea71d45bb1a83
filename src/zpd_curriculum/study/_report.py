"""Render a :class:`~zpd_curriculum.study._stats.StudyAnalysis` as a paper table and a figure.

Nothing here computes statistics: every number comes from the analysis, and the verdict
sentences are chosen from the adjusted p-values, the sign of the difference and the minimum
detectable effect, so the text cannot claim more than the numbers support.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from zpd_curriculum.study._stats import Comparison, StudyAnalysis

__all__ = ["plot_results", "render_markdown"]

_CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _num(x: float, decimals: int, *, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def _interval(ci: tuple[float, float], decimals: int) -> str:
    if not all(math.isfinite(v) for v in ci):
        return "n/a"
    return f"[{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"


def _pvalue(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _level(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def _check_analysis(analysis: object) -> StudyAnalysis:
    if not isinstance(analysis, StudyAnalysis):
        raise TypeError(
            "`analysis` must be the StudyAnalysis returned by `analyze(records)`; "
            f"got {type(analysis).__name__}."
        )
    return analysis


def _results_table(analysis: StudyAnalysis, model: str, decimals: int) -> list[str]:
    keys = [
        (model, metric, condition)
        for condition in analysis.conditions
        for metric in analysis.metrics
        if (model, metric, condition) in analysis.summaries
    ]
    ns = {analysis.summaries[key].n for key in keys}
    heading = f"### {model}"
    if len(ns) == 1:
        heading += f" (n = {ns.pop()} seeds per condition)"
        show_n = False
    else:
        show_n = True
    metrics = [m for m in analysis.metrics if any(k[1] == m for k in keys)]
    lines = [
        heading,
        "",
        "| Condition | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for condition in analysis.conditions:
        cells = []
        for metric in metrics:
            summary = analysis.summaries.get((model, metric, condition))
            if summary is None:
                cells.append("—")
                continue
            cell = f"{_num(summary.mean, decimals)} ± {_num(summary.sd, decimals)}"
            cells.append(cell + (f" (n={summary.n})" if show_n else ""))
        if any(cell != "—" for cell in cells):
            lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return lines


def _comparison_table(analysis: StudyAnalysis, model: str, decimals: int) -> list[str]:
    keys = [k for k in analysis.comparisons if k[0] == model]
    if not keys:
        return []
    level = _level(analysis.confidence)
    test = "paired t-test by seed" if analysis.paired else "Welch t-test"
    correction = _CORRECTION_NAMES[analysis.correction]
    header = [
        "Metric",
        "Condition",
        "Δ (points)",
        "Δ %",
        f"{level} CI (t)",
        f"{level} CI (bootstrap)",
        f"d [{level} CI]",
    ]
    if analysis.paired:
        header.append(f"d_z [{level} CI]")
    header += ["g", "p", "p_adj"]
    lines = [
        f"Comparisons with `{analysis.control}` ({test}; p_adj: {correction} over the "
        f"{len(keys)} comparisons of this model).",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(header) - 2),
    ]
    for key in keys:
        c = analysis.comparisons[key]
        row = [
            key[1],
            key[2],
            _num(c.diff, decimals, signed=True),
            _num(c.rel_diff_pct, 1, signed=True),
            _interval(c.ci, decimals),
            _interval(c.bootstrap_ci, decimals),
            f"{_num(c.cohens_d, 2)} {_interval(c.cohens_d_ci, 2)}",
        ]
        if analysis.paired:
            row.append(f"{_num(c.cohens_dz, 2)} {_interval(c.cohens_dz_ci, 2)}")
        row += [
            _num(c.hedges_g, 2),
            _pvalue(c.pvalue),
            _pvalue(analysis.pvalues_adjusted[key]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _mde_sentence(analysis: StudyAnalysis, model: str) -> str:
    mde = analysis.mde[model]
    unit = "d_z" if mde.paired else "d"
    text = (
        f"**{model}** (n = {mde.n} {'paired ' if mde.paired else ''}seeds; "
        f"{_CORRECTION_NAMES[analysis.correction]} over {mde.n_tests} comparisons, "
        f"α = {mde.alpha:g}). Smallest effect detectable at {100 * mde.power:g} % power: "
        f"{unit} = {mde.d:.2f} at α = {mde.alpha:g}"
    )
    if mde.n_tests > 1:
        text += (
            f", {unit} = {mde.d_corrected:.2f} at α/{mde.n_tests} = {mde.alpha / mde.n_tests:.3g}"
        )
    return text + "."


def _verdict(
    analysis: StudyAnalysis,
    key: tuple[str, str, str],
    comparison: Comparison,
    *,
    decimals: int,
    lower_is_better: Collection[str],
) -> str:
    model, metric, condition = key
    control = analysis.control
    p_adj = analysis.pvalues_adjusted[key]
    effect = (
        f"Δ = {_num(comparison.diff, decimals, signed=True)} points, "
        f"{_num(comparison.rel_diff_pct, 1, signed=True)} %"
    )
    if not math.isfinite(p_adj):
        return (
            f"{metric}: the test of `{condition}` vs `{control}` is undefined because the "
            f"{'per-seed differences' if analysis.paired else 'samples'} have zero variance "
            f"({effect}); these runs allow no inference."
        )
    if p_adj < analysis.alpha and comparison.diff != 0:
        better = (comparison.diff > 0) != (metric in lower_is_better)
        outcome = "beat" if better else "did worse than"
        return (
            f"{metric}: `{condition}` {outcome} `{control}` ({effect}, "
            f"p_adj = {_pvalue(p_adj)} < {analysis.alpha:g})."
        )
    text = (
        f"{metric}: no detectable effect of `{condition}` vs `{control}` ({effect}, "
        f"p_adj = {_pvalue(p_adj)})"
    )
    mde = analysis.mde[model]
    sd = comparison.sd_diff if mde.paired else comparison.sd_pooled
    if math.isfinite(sd) and sd > 0:
        spread = "the per-seed differences" if mde.paired else "the runs"
        text += (
            f"; the detectable effect here is about {mde.d * sd:.{decimals}f} points "
            f"(SD of {spread}: {sd:.{decimals}f})"
        )
    return text + "."


def render_markdown(
    analysis: StudyAnalysis,
    *,
    decimals: int = 3,
    conditions: Sequence[str] | None = None,
    lower_is_better: Collection[str] = (),
) -> str:
    """Render the study's results as Markdown: tables a paper would print, then a verdict.

    Per model: a table of ``mean ± SD`` over seeds (rows: conditions, columns: metrics), then
    a table of comparisons with the control (Δ in points and in %, t and bootstrap CIs,
    Cohen's d / d_z with CIs, Hedges' g, raw and adjusted p). The verdict states, for each
    model, metric and condition, whether the condition beat the control at the corrected level
    (``p_adj < analysis.alpha``) and, if not, says "no detectable effect" and gives the minimum
    detectable effect for the number of seeds.

    Args:
        analysis: The result of :func:`~zpd_curriculum.study._stats.analyze`.
        decimals: Decimals for metric values and differences.
        conditions: Conditions to give verdicts for; default: every non-control condition.
        lower_is_better: Metrics where a smaller value is better (e.g. a loss), so that a
            significant negative Δ is reported as a win.

    Returns:
        The Markdown text.

    Raises:
        TypeError: If ``analysis`` is not a ``StudyAnalysis``.
        ValueError: If ``conditions`` names a condition that is not in the analysis.

    Examples:
        >>> from zpd_curriculum.study import analyze
        >>> runs = [
        ...     {"model": "m", "condition": c, "seed": s, "metrics": {"acc": 60.0 + s + gain}}
        ...     for s in range(5)
        ...     for c, gain in [("random", 0.0), ("zpd", 0.3 * (-1) ** s)]
        ... ]
        >>> text = render_markdown(analyze(runs, n_resamples=999))
        >>> "| random | 62.000 ± 1.581 |" in text
        True
        >>> "no detectable effect of `zpd` vs `random`" in text
        True
    """
    analysis = _check_analysis(analysis)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"`decimals` must be a non-negative integer; got {decimals!r}.")
    if conditions is None:
        wanted = [c for c in analysis.conditions if c != analysis.control]
    else:
        wanted = list(conditions)
        unknown = [c for c in wanted if c not in analysis.conditions]
        if unknown:
            raise ValueError(
                f"`conditions` names {unknown}, not in the analysis; "
                f"available: {list(analysis.conditions)}."
            )
    lines = [
        "## Results",
        "",
        f"Values are mean ± SD over seeds; intervals are {_level(analysis.confidence)} "
        "confidence intervals. Δ is condition − control in the metric's units (points).",
        "",
    ]
    verdicts: list[str] = []
    for model in analysis.models:
        lines += _results_table(analysis, model, decimals) + [""]
        comparison_lines = _comparison_table(analysis, model, decimals)
        if comparison_lines:
            lines += comparison_lines + [""]
        bullets = [
            "- " + _verdict(analysis, key, c, decimals=decimals, lower_is_better=lower_is_better)
            for key, c in analysis.comparisons.items()
            if key[0] == model and key[2] in wanted
        ]
        if bullets:
            verdicts += [_mde_sentence(analysis, model), "", *bullets, ""]
    lines += ["### Verdict", ""]
    lines += verdicts or [f"No condition other than `{analysis.control}` was compared.", ""]
    return "\n".join(lines)


def plot_results(analysis: StudyAnalysis, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    r"""Plot each metric's per-condition means with confidence intervals to a PNG file.

    One panel per metric; conditions on the x axis, one colour per model, a marker with the
    t confidence interval of the mean, and each seed's value as a faint dot. Uses matplotlib's
    Agg canvas directly, so the global pyplot backend is left untouched.

    Args:
        analysis: The result of :func:`~zpd_curriculum.study._stats.analyze`.
        path: Where to write the PNG (its folder must exist).
        dpi: Resolution of the image.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ImportError: If matplotlib is not installed.
        TypeError: If ``analysis`` is not a ``StudyAnalysis``.

    Examples:
        >>> import tempfile, pathlib
        >>> from zpd_curriculum.study import analyze
        >>> runs = [{"model": "m", "condition": c, "seed": s, "metrics": {"acc": s + g}}
        ...         for s in range(3) for c, g in [("random", 0.0), ("zpd", 1.0)]]
        >>> out = plot_results(analyze(runs, n_resamples=99),
        ...                    pathlib.Path(tempfile.mkdtemp()) / "results.png")
        >>> out.read_bytes()[:4] == b"\x89PNG"
        True
    """
    analysis = _check_analysis(analysis)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'plot_results needs matplotlib; install it with `pip install "zpd-curriculum[study]"`.'
        ) from exc
    metrics = analysis.metrics
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    n_models = len(analysis.models)
    width = 0.7 / n_models
    for ax, metric in zip(axes.flat, metrics, strict=False):  # spare panels are hidden
        for j, model in enumerate(analysis.models):
            color = f"C{j % 10}"
            offset = (j - (n_models - 1) / 2) * width
            labelled = False
            for i, condition in enumerate(analysis.conditions):
                key = (model, metric, condition)
                summary = analysis.summaries.get(key)
                if summary is None:
                    continue
                x = i + offset
                seeds = [value for _, value in analysis.values[key]]
                ax.scatter([x] * len(seeds), seeds, s=12, color=color, alpha=0.35, linewidths=0)
                low, high = summary.ci
                yerr = None
                if math.isfinite(low) and math.isfinite(high):
                    yerr = [[summary.mean - low], [high - summary.mean]]
                ax.errorbar(
                    [x],
                    [summary.mean],
                    yerr=yerr,
                    fmt="o",
                    color=color,
                    capsize=3,
                    label=None if labelled else model,
                )
                labelled = True
        ax.set_xticks(range(len(analysis.conditions)), analysis.conditions, rotation=20)
        ax.set_title(metric)
        ax.set_ylabel(f"mean, {_level(analysis.confidence)} CI")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    if n_models > 1:
        axes.flat[0].legend(frameon=False)
    fig.savefig(os.fspath(path), dpi=dpi, format="png")
    return Path(path)
