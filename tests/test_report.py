"""Tests for zpd_curriculum.study._report: the Markdown holds the right numbers, the PNG exists."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import stats

from zpd_curriculum.study._report import plot_results, render_markdown
from zpd_curriculum.study._stats import adjust_pvalues, analyze, minimum_detectable_effect

FAST = {"n_resamples": 199}

BASE = np.array([60.0, 62.0, 58.0, 61.0, 59.0])  # per-seed score of the random order
GAIN = np.array([2.1, 1.8, 2.4, 2.0, 1.9])  # zpd - random on "acc": a clear effect
NOISE = np.array([0.4, -0.6, 0.3, -0.2, 0.1])  # zpd - random on "f1": nothing
E2H = np.array([-0.5, 0.5, 0.2, -0.1, 0.3])  # easy_to_hard - random on both metrics


def make_records(zpd_gain=GAIN, models=("solar",)):
    by_condition = {
        "random": (BASE, BASE / 2),
        "easy_to_hard": (BASE + E2H, BASE / 2 + E2H),
        "zpd": (BASE + zpd_gain, BASE / 2 + NOISE),
    }
    return [
        {
            "model": model,
            "condition": condition,
            "seed": seed,
            "metrics": {"acc": float(acc[seed]), "f1": float(f1[seed])},
        }
        for model in models
        for condition, (acc, f1) in by_condition.items()
        for seed in range(5)
    ]


def _row(text, first_cells):
    """The table line that starts with the given cells."""
    prefix = "| " + " | ".join(first_cells) + " |"
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return line


def _p(p):
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def test_results_table_has_mean_and_sd_per_condition_and_metric():
    text = render_markdown(analyze(make_records(), **FAST))
    assert "### solar (n = 5 seeds per condition)" in text
    assert "| Condition | acc | f1 |" in text
    values = {
        "random": (BASE, BASE / 2),
        "easy_to_hard": (BASE + E2H, BASE / 2 + E2H),
        "zpd": (BASE + GAIN, BASE / 2 + NOISE),
    }
    for condition, (acc, f1) in values.items():
        cells = [f"{np.mean(x):.3f} ± {np.std(x, ddof=1):.3f}" for x in (acc, f1)]
        assert _row(text, [condition]) == f"| {condition} | {cells[0]} | {cells[1]} |"
    # control first
    lines = text.splitlines()
    assert lines.index(_row(text, ["random"])) < lines.index(_row(text, ["zpd"]))


def test_comparison_rows_hold_the_analysis_numbers():
    analysis = analyze(make_records(), **FAST)
    text = render_markdown(analysis, decimals=2)
    c = analysis.comparisons["solar", "acc", "zpd"]
    ttest = stats.ttest_rel(BASE + GAIN, BASE)
    family = [k for k in analysis.comparisons if k[0] == "solar"]
    p_adj = adjust_pvalues([analysis.comparisons[k].pvalue for k in family], "holm")
    expected = [
        "acc",
        "zpd",
        f"{GAIN.mean():+.2f}",
        f"{100 * GAIN.mean() / BASE.mean():+.1f}",
        f"[{c.ci[0]:.2f}, {c.ci[1]:.2f}]",
        f"[{c.bootstrap_ci[0]:.2f}, {c.bootstrap_ci[1]:.2f}]",
        f"{c.cohens_d:.2f} [{c.cohens_d_ci[0]:.2f}, {c.cohens_d_ci[1]:.2f}]",
        f"{GAIN.mean() / GAIN.std(ddof=1):.2f} [{c.cohens_dz_ci[0]:.2f}, {c.cohens_dz_ci[1]:.2f}]",
        f"{c.hedges_g:.2f}",
        _p(ttest.pvalue),
        _p(p_adj[family.index(("solar", "acc", "zpd"))]),
    ]
    assert _row(text, ["acc", "zpd"]) == "| " + " | ".join(expected) + " |"
    assert "paired t-test by seed; p_adj: Holm over the 4 comparisons" in text
    header = (
        "| Metric | Condition | Δ (points) | Δ % | 95% CI (t) | 95% CI (bootstrap) "
        "| d [95% CI] | d_z [95% CI] | g | p | p_adj |"
    )
    assert header in text


def test_verdict_reports_a_win_and_no_detectable_effect_with_the_mde():
    analysis = analyze(make_records(), **FAST)
    text = render_markdown(analysis, decimals=2)
    verdict = text.split("### Verdict")[1]
    p_adj = analysis.pvalues_adjusted["solar", "acc", "zpd"]
    assert p_adj < 0.05
    assert f"- acc: `zpd` beat `random` (Δ = {GAIN.mean():+.2f} points" in verdict
    assert "- f1: no detectable effect of `zpd` vs `random`" in verdict
    mde = minimum_detectable_effect(5, paired=True)
    assert f"d_z = {mde:.2f} at α = 0.05" in verdict
    corrected = minimum_detectable_effect(5, alpha=0.05 / 4, paired=True)
    assert f"d_z = {corrected:.2f} at α/4 = 0.0125" in verdict
    # the MDE in points uses the SD of this metric's per-seed differences
    sd = np.std(NOISE, ddof=1)
    assert f"about {mde * sd:.2f} points (SD of the per-seed differences: {sd:.2f})" in verdict


def test_verdict_follows_the_sign_of_the_effect():
    worse = render_markdown(analyze(make_records(zpd_gain=-GAIN), **FAST))
    assert "- acc: `zpd` did worse than `random`" in worse
    assert "beat" not in worse.split("### Verdict")[1]
    loss_like = render_markdown(
        analyze(make_records(zpd_gain=-GAIN), **FAST), lower_is_better={"acc"}
    )
    assert "- acc: `zpd` beat `random`" in loss_like


def test_verdict_calls_zero_variance_undefined():
    records = make_records(zpd_gain=np.full(5, 1.0))  # every seed gains exactly one point
    text = render_markdown(analyze(records, **FAST))
    assert "- acc: the test of `zpd` vs `random` is undefined" in text
    assert _row(text, ["acc", "zpd"]).count("n/a") >= 5


def test_conditions_select_the_verdicts():
    analysis = analyze(make_records(), **FAST)
    verdict = render_markdown(analysis, conditions=["zpd"]).split("### Verdict")[1]
    assert "`zpd`" in verdict and "`easy_to_hard`" not in verdict
    everything = render_markdown(analysis).split("### Verdict")[1]
    assert "`easy_to_hard`" in everything
    with pytest.raises(ValueError, match="available"):
        render_markdown(analysis, conditions=["zpd_adaptive"])


def test_unpaired_bh_analysis_is_labelled_as_such():
    analysis = analyze(
        make_records(models=("solar", "qwen")), paired=False, correction="bh", **FAST
    )
    text = render_markdown(analysis)
    assert "Welch t-test; p_adj: Benjamini-Hochberg over the 4 comparisons" in text
    assert "d_z [" not in text
    assert "### qwen (n = 5 seeds per condition)" in text
    assert f"d = {minimum_detectable_effect(5):.2f} at α = 0.05" in text


def test_render_rejects_bad_arguments():
    with pytest.raises(TypeError, match="StudyAnalysis"):
        render_markdown({"models": []})
    with pytest.raises(ValueError, match="decimals"):
        render_markdown(analyze(make_records(), **FAST), decimals=-1)


def test_plot_writes_a_png(tmp_path):
    records = make_records(models=("solar", "qwen"))
    for r in records:  # four metrics: a 2 × 3 grid with two hidden panels
        r["metrics"]["gsm8k"] = r["metrics"]["acc"] / 3
        r["metrics"]["humaneval"] = r["metrics"]["f1"] / 4
    out = plot_results(analyze(records, **FAST), tmp_path / "results.png", dpi=50)
    assert out == tmp_path / "results.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] == 2 * 3.6 * 50 and image.shape[1] == 3 * 4.5 * 50
    assert image[..., :3].std() > 0  # not a blank canvas


def test_plot_names_the_extra_when_matplotlib_is_missing(tmp_path, monkeypatch):
    analysis = analyze(make_records(), **FAST)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "zpd-curriculum\[study\]"'):
        plot_results(analysis, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
