"""Statistics for the curriculum study: summaries, comparisons, effect sizes and power.

Every function here is pure: arrays or lists of records in, frozen dataclasses out. The tests
and p-values come from :mod:`scipy.stats`; only what scipy does not provide (Holm's step-down,
the effect-size formulas, the record bookkeeping) is written out here, with its source.

The study design is paired: seed ``s`` gives the same initial model and data in every training
order, so a condition is compared with the control seed by seed (``scipy.stats.ttest_rel``),
and the Welch test (``scipy.stats.ttest_ind(equal_var=False)``) is reported beside it.

References:
    Borenstein, Hedges, Higgins & Rothstein (2009). *Introduction to Meta-Analysis*, Wiley, ch. 4.
    Cohen (1988). *Statistical Power Analysis for the Behavioral Sciences*, 2nd ed.
    Cumming & Finch (2001). A primer on the understanding, use, and calculation of confidence
    intervals that are based on central and noncentral distributions. *Educ. Psychol. Meas.* 61.
    Efron & Tibshirani (1993). *An Introduction to the Bootstrap*, ch. 14 (BCa intervals).
    Hedges (1981). Distribution theory for Glass's estimator of effect size and related
    estimators. *J. Educ. Stat.* 6(2).
    Hedges & Olkin (1985). *Statistical Methods for Meta-Analysis*, Academic Press, ch. 5.
    Holm (1979). A simple sequentially rejective multiple test procedure. *Scand. J. Stat.* 6.
    Lakens (2013). Calculating and reporting effect sizes to facilitate cumulative science.
    *Front. Psychol.* 4:863.
    Steiger & Fouladi (1997). Noncentrality interval estimation and the evaluation of
    statistical models. In *What If There Were No Significance Tests?*
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

try:
    from scipy import optimize, special, stats
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'zpd_curriculum.study needs scipy; install it with `pip install "zpd-curriculum[study]"`.'
    ) from exc

__all__ = [
    "MDE",
    "Comparison",
    "Interaction",
    "StudyAnalysis",
    "Summary",
    "adjust_pvalues",
    "analyze",
    "compare",
    "describe",
    "interaction_test",
    "minimum_detectable_effect",
    "power",
]

# A standard deviation at or below this fraction of the data's magnitude is treated as exactly
# zero: the spread is floating-point noise, and a t statistic built on it is meaningless.
_ZERO_SD_RTOL = 1e-12
# scipy warns about "catastrophic cancellation" for (nearly) constant samples. Zero spread is
# detected here first (the affected fields become NaN), so the warning carries no information.
_PRECISION_LOSS = "Precision loss occurred in moment calculation"

Correction = Literal["holm", "bh"]


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample (e.g. one condition over seeds).

    Attributes:
        n: Number of observations.
        mean: Sample mean.
        sd: Sample standard deviation with ``ddof=1``; NaN when ``n == 1``.
        sem: Standard error of the mean, ``sd / sqrt(n)``; NaN when ``n == 1``.
        ci: Two-sided t interval ``mean ± t_{(1+c)/2, n-1} * sem``; NaN when ``n == 1`` and
            zero-width when ``sd == 0``.
        confidence: Confidence level ``c`` of ``ci``.
    """

    n: int
    mean: float
    sd: float
    sem: float
    ci: tuple[float, float]
    confidence: float


@dataclass(frozen=True)
class Comparison:
    """Treatment versus control: difference, tests, effect sizes and intervals.

    A field whose standard deviation is zero (e.g. every seed scored exactly the same) is NaN:
    the statistic is undefined, not infinitely significant. Which SD matters per field is
    listed below.

    Attributes:
        paired: Whether the observations were paired (by seed) when computing the fields.
        n_treatment: Number of treatment observations.
        n_control: Number of control observations.
        mean_treatment: Mean of the treatment sample.
        mean_control: Mean of the control sample.
        diff: ``mean_treatment - mean_control``, in the metric's own units ("points").
        rel_diff_pct: ``100 * diff / |mean_control|``; NaN when ``mean_control == 0``.
        ci: t interval of ``diff`` from the primary test (paired t if ``paired`` else Welch).
        statistic: t statistic of the primary test.
        df: Degrees of freedom of the primary test (Welch-Satterthwaite when unpaired).
        pvalue: Two-sided p-value of the primary test.
        pvalue_paired: Two-sided ``scipy.stats.ttest_rel`` p-value; NaN when unpaired or when
            the per-pair differences are constant.
        pvalue_welch: Two-sided ``scipy.stats.ttest_ind(equal_var=False)`` p-value, reported
            for paired data too; NaN when both samples are constant.
        sd_pooled: Pooled SD ``sqrt(((n1-1)s1² + (n2-1)s2²) / (n1+n2-2))``.
        sd_diff: SD of the per-pair differences; NaN when unpaired.
        cohens_d: ``diff / sd_pooled`` (Cohen 1988); NaN when ``sd_pooled == 0``.
        cohens_d_ci: Interval for ``cohens_d``; method in ``effect_ci_method``.
        cohens_dz: ``mean(differences) / sd_diff`` (Cohen 1988; Lakens 2013), the effect the
            paired t-test tests (``t = d_z * sqrt(n)``); NaN when unpaired.
        cohens_dz_ci: Exact noncentral-t interval for ``cohens_dz``.
        hedges_g: ``J(df) * cohens_d`` with the exact small-sample factor
            ``J(df) = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2))`` (Hedges 1981), ``df = n1+n2-2``
            unpaired and ``n-1`` paired (Borenstein et al. 2009, eq. 4.29); NaN when ``df < 2``.
        hedges_g_ci: ``J(df)`` times ``cohens_d_ci`` (Hedges & Olkin 1985).
        effect_ci_method: How ``cohens_d_ci`` was computed.
        bootstrap_ci: ``scipy.stats.bootstrap`` interval of ``diff``; pairs are resampled
            together when paired.
        bootstrap_method: ``"BCa"``, or ``"percentile"`` where BCa was degenerate, or
            ``"none"`` when the resampled statistic has zero spread (``bootstrap_ci`` NaN).
        n_resamples: Bootstrap resamples drawn.
        confidence: Confidence level of every interval.
    """

    paired: bool
    n_treatment: int
    n_control: int
    mean_treatment: float
    mean_control: float
    diff: float
    rel_diff_pct: float
    ci: tuple[float, float]
    statistic: float
    df: float
    pvalue: float
    pvalue_paired: float
    pvalue_welch: float
    sd_pooled: float
    sd_diff: float
    cohens_d: float
    cohens_d_ci: tuple[float, float]
    cohens_dz: float
    cohens_dz_ci: tuple[float, float]
    hedges_g: float
    hedges_g_ci: tuple[float, float]
    effect_ci_method: str
    bootstrap_ci: tuple[float, float]
    bootstrap_method: str
    n_resamples: int
    confidence: float


@dataclass(frozen=True)
class Interaction:
    """Model × condition interaction (hypothesis H3a) as a difference in differences.

    For each model the per-seed effect is ``condition - control`` on the same seed; the
    interaction is ``effect_a - effect_b``, tested with Welch's t-test on the two sets of
    per-seed effects (the models share no seeds' initial weights, so they are independent).

    Attributes:
        metric: Metric analysed.
        model_a: Model expected to gain more (e.g. SOLAR under H3a).
        model_b: Reference model.
        condition: Treatment condition.
        control: Control condition.
        n_a: Number of paired seeds for ``model_a``.
        n_b: Number of paired seeds for ``model_b``.
        effect_a: Mean per-seed ``condition - control`` for ``model_a``.
        effect_b: Same for ``model_b``.
        did: ``effect_a - effect_b``.
        ci: Welch t interval of ``did``.
        statistic: Welch t statistic.
        df: Welch-Satterthwaite degrees of freedom.
        pvalue: Two-sided Welch p-value.
        pvalue_greater: One-sided p-value for ``effect_a > effect_b``; use it only if the
            direction was fixed before seeing the data (pre-registered).
        bootstrap_ci: ``scipy.stats.bootstrap`` interval of ``did`` (each model's per-seed
            effects resampled independently).
        bootstrap_method: As in :class:`Comparison`.
        cohens_d_a: Cohen's d (pooled SD) of condition vs control for ``model_a``.
        cohens_d_b: Same for ``model_b``.
        comparison_a: Full paired comparison for ``model_a``.
        comparison_b: Full paired comparison for ``model_b``.
    """

    metric: str
    model_a: str
    model_b: str
    condition: str
    control: str
    n_a: int
    n_b: int
    effect_a: float
    effect_b: float
    did: float
    ci: tuple[float, float]
    statistic: float
    df: float
    pvalue: float
    pvalue_greater: float
    bootstrap_ci: tuple[float, float]
    bootstrap_method: str
    cohens_d_a: float
    cohens_d_b: float
    comparison_a: Comparison
    comparison_b: Comparison


@dataclass(frozen=True)
class MDE:
    """Minimum detectable effect for one model's number of seeds.

    Attributes:
        n: Seeds per condition (the smallest over the model's comparisons).
        paired: If true, ``d`` is in units of d_z (SD of the per-seed differences), else d.
        alpha: Nominal two-sided significance level.
        power: Target power.
        d: Minimum detectable standardized effect at ``alpha``.
        n_tests: Number of comparisons in the model's correction family.
        d_corrected: Minimum detectable effect at ``alpha / n_tests``, the threshold Holm
            (and BH) apply to the smallest p-value of the family.
    """

    n: int
    paired: bool
    alpha: float
    power: float
    d: float
    n_tests: int
    d_corrected: float


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything :func:`analyze` computed, keyed by ``(model, metric, condition)``.

    Attributes:
        control: Control condition every other condition is compared with.
        models: Models in first-seen order.
        metrics: Metrics analysed.
        conditions: Conditions, control first, then in first-seen order.
        paired: Whether comparisons pair observations by seed.
        correction: ``"holm"`` or ``"bh"``, applied per model across metrics and conditions.
        alpha: Significance level used for the MDE and for verdicts.
        confidence: Confidence level of every interval.
        values: ``(model, metric, condition) -> ((seed, value), ...)`` sorted by seed.
        summaries: ``(model, metric, condition) -> Summary``.
        comparisons: ``(model, metric, condition) -> Comparison`` for condition ≠ control.
        pvalues_adjusted: Same keys as ``comparisons``; the adjusted primary p-value.
        mde: ``model -> MDE``.
    """

    control: str
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    conditions: tuple[str, ...]
    paired: bool
    correction: str
    alpha: float
    confidence: float
    values: dict[tuple[str, str, str], tuple[tuple[int, float], ...]]
    summaries: dict[tuple[str, str, str], Summary]
    comparisons: dict[tuple[str, str, str], Comparison]
    pvalues_adjusted: dict[tuple[str, str, str], float]
    mde: dict[str, MDE]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists, NaN becomes ``None``).

        Returns:
            A dict that ``json.dumps(..., allow_nan=False)`` accepts.
        """
        key_names = ("model", "metric", "condition")
        return _jsonable(
            {
                "control": self.control,
                "models": self.models,
                "metrics": self.metrics,
                "conditions": self.conditions,
                "paired": self.paired,
                "correction": self.correction,
                "alpha": self.alpha,
                "confidence": self.confidence,
                "values": [
                    {**dict(zip(key_names, key, strict=True)), "seed": seed, "value": value}
                    for key, pairs in self.values.items()
                    for seed, value in pairs
                ],
                "summaries": [
                    {**dict(zip(key_names, key, strict=True)), **asdict(summary)}
                    for key, summary in self.summaries.items()
                ],
                "comparisons": [
                    {
                        **dict(zip(key_names, key, strict=True)),
                        "control": self.control,
                        **asdict(comparison),
                        "pvalue_adjusted": self.pvalues_adjusted[key],
                    }
                    for key, comparison in self.comparisons.items()
                ],
                "mde": {model: asdict(mde) for model, mde in self.mde.items()},
            }
        )


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _sample(values: Any, name: str, *, min_n: int) -> np.ndarray:
    """Return ``values`` as a finite 1-D float array with at least ``min_n`` entries."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a sequence of numbers; got {values!r}.") from exc
    if x.ndim != 1:
        raise ValueError(
            f"`{name}` must be one-dimensional (one value per seed); got shape {x.shape}."
        )
    if x.size < min_n:
        raise ValueError(
            f"`{name}` needs at least {min_n} observation(s); got {x.size}. "
            "Run more seeds before computing this statistic."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"`{name}` contains NaN or infinite values: {x.tolist()}. "
            "Drop or rerun the failed evaluations first."
        )
    return x


def _check_level(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number in (0, 1); got {value!r}.")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1), e.g. 0.95; got {value!r}.")
    return float(value)


def _check_count(value: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _is_zero_spread(sd: float, scale: float) -> bool:
    """Whether ``sd`` is zero up to floating-point noise relative to ``scale``."""
    return bool(sd <= _ZERO_SD_RTOL * scale)


def _scale(*arrays: np.ndarray) -> float:
    return float(max(np.max(np.abs(a)) for a in arrays))


def _nan2() -> tuple[float, float]:
    return (math.nan, math.nan)


# --------------------------------------------------------------------------------------------
# Descriptives
# --------------------------------------------------------------------------------------------


def describe(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> Summary:
    """Summarize one sample: n, mean, SD (ddof=1), SEM and a t confidence interval.

    Args:
        values: One value per seed.
        confidence: Confidence level of the interval.

    Returns:
        A :class:`Summary`. With one value, ``sd``, ``sem`` and ``ci`` are NaN.

    Raises:
        ValueError: If ``values`` is empty, not 1-D, or holds NaN/inf.

    Examples:
        >>> s = describe([70.0, 72.0, 74.0])
        >>> s.n, s.mean, s.sd
        (3, 72.0, 2.0)
        >>> [round(v, 3) for v in s.ci]  # 72 ± t(0.975, 2) * 2 / sqrt(3)
        [67.032, 76.968]
    """
    confidence = _check_level(confidence, "confidence")
    x = _sample(values, "values", min_n=1)
    n = int(x.size)
    mean = float(np.mean(x))
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, _nan2(), confidence)
    sd = float(np.std(x, ddof=1))
    if _is_zero_spread(sd, _scale(x)):
        return Summary(n, mean, 0.0, 0.0, (mean, mean), confidence)
    sem = float(stats.sem(x))
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Summary(n, mean, sd, sem, (float(low), float(high)), confidence)


# --------------------------------------------------------------------------------------------
# Effect sizes
# --------------------------------------------------------------------------------------------


def _hedges_j(df: float) -> float:
    """Exact small-sample bias factor of Hedges (1981), eq. 6e; NaN for ``df < 2``."""
    if df < 2:
        return math.nan
    return math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)


def _nct_cdf(x: float, df: float, ncp: float) -> float:
    """``scipy.stats.nct.cdf`` with a fallback for the far tail.

    scipy 1.17 returns NaN for some far-tail arguments (e.g. ``nct.cdf(-3.18, 3, 8)``, true
    value about 1e-18); the reflection ``P(T <= x; ncp) = P(T >= -x; -ncp)`` evaluates those.
    """
    value = float(stats.nct.cdf(x, df, ncp))
    if math.isnan(value):
        value = float(stats.nct.sf(-x, df, -ncp))
    return value


def _solve_ncp(t_obs: float, df: float, target: float) -> float:
    """The noncentrality ``ncp`` with ``nct.cdf(t_obs, df, ncp) == target``; NaN if unsolvable.

    ``nct.cdf(t, df, ncp)`` decreases in ``ncp``, so the root is bracketed by stepping away from
    ``t_obs`` with doubling steps.
    """

    def f(ncp: float) -> float:
        return _nct_cdf(t_obs, df, ncp) - target

    step = max(1.0, abs(t_obs))
    direction = -1.0 if f(t_obs) < 0 else 1.0  # cdf too small: move ncp down
    inner = t_obs
    for _ in range(60):
        outer = t_obs + direction * step
        value = f(outer)
        if math.isnan(value):
            return math.nan
        if (value > 0) == (direction < 0):
            lo, hi = sorted((inner, outer))
            return float(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12))
        inner, step = outer, step * 2
    return math.nan  # pragma: no cover - needs |t| beyond what nct.cdf can evaluate


def _ncp_interval(t_obs: float, df: float, confidence: float) -> tuple[float, float]:
    """Noncentral-t confidence interval of the noncentrality parameter.

    Inverts ``nct.cdf(t_obs; df, ncp)`` at ``(1 ± confidence) / 2`` (Steiger & Fouladi 1997;
    Cumming & Finch 2001).
    """
    lower = _solve_ncp(t_obs, df, (1 + confidence) / 2)
    upper = _solve_ncp(t_obs, df, (1 - confidence) / 2)
    return (lower, upper)


def _effect_sizes(
    treatment: np.ndarray, control: np.ndarray, *, paired: bool, confidence: float
) -> dict[str, Any]:
    n1, n2 = treatment.size, control.size
    scale = _scale(treatment, control)
    diff = float(np.mean(treatment) - np.mean(control))
    s1, s2 = np.std(treatment, ddof=1), np.std(control, ddof=1)
    sd_pooled = float(math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2)))
    out: dict[str, Any] = {
        "sd_pooled": sd_pooled,
        "sd_diff": math.nan,
        "cohens_d": math.nan,
        "cohens_d_ci": _nan2(),
        "cohens_dz": math.nan,
        "cohens_dz_ci": _nan2(),
        "hedges_g": math.nan,
        "hedges_g_ci": _nan2(),
    }
    if paired:
        n = n1
        differences = treatment - control
        sd_diff = float(np.std(differences, ddof=1))
        out["sd_diff"] = 0.0 if _is_zero_spread(sd_diff, scale) else sd_diff
        if out["sd_diff"] > 0:
            dz = float(np.mean(differences)) / sd_diff
            lo, hi = _ncp_interval(dz * math.sqrt(n), n - 1, confidence)
            out["cohens_dz"] = dz
            out["cohens_dz_ci"] = (lo / math.sqrt(n), hi / math.sqrt(n))
        j = _hedges_j(n - 1)
        out["effect_ci_method"] = (
            "d: normal approximation for matched groups, "
            "var = (1/n + d^2/(2n)) * 2(1-r) (Borenstein et al. 2009, eq. 4.28); "
            "d_z: exact noncentral t (Steiger & Fouladi 1997); g: J * d interval"
        )
    else:
        j = _hedges_j(n1 + n2 - 2)
        out["effect_ci_method"] = (
            "d: exact noncentral t (Steiger & Fouladi 1997; Cumming & Finch 2001); "
            "g: J * d interval (Hedges & Olkin 1985)"
        )
    if _is_zero_spread(sd_pooled, scale):
        out["sd_pooled"] = 0.0
        return out
    d = diff / sd_pooled
    if paired:
        if _is_zero_spread(min(s1, s2), scale):
            d_ci = _nan2()  # the correlation r is undefined
        else:
            r = float(np.clip(np.cov(treatment, control)[0, 1] / (s1 * s2), -1.0, 1.0))
            half = stats.norm.ppf((1 + confidence) / 2) * math.sqrt(
                (1 / n1 + d**2 / (2 * n1)) * 2 * (1 - r)
            )
            d_ci = (d - half, d + half)
    else:
        factor = math.sqrt(n1 * n2 / (n1 + n2))
        lo, hi = _ncp_interval(d * factor, n1 + n2 - 2, confidence)
        d_ci = (lo / factor, hi / factor)
    out["cohens_d"] = d
    out["cohens_d_ci"] = d_ci
    out["hedges_g"] = j * d
    out["hedges_g_ci"] = (j * d_ci[0], j * d_ci[1])
    return out


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _bootstrap_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> tuple[tuple[float, float], str]:
    """BCa bootstrap interval of ``mean(a) - mean(b)``; percentile where BCa degenerates.

    Paired data are bootstrapped as the per-pair differences ``a - b`` (drawing a difference
    is drawing its pair: the same resamples as ``bootstrap(..., paired=True)``); unpaired data
    as ``a - m`` and ``b - m`` with ``m = min(a ∪ b)``, resampled within each group. The
    estimate is the same, but this way the arithmetic, and so BCa's count of bootstrap values
    tied with the estimate, does not depend on a common offset of the data or on which group
    is called treatment: with whole-number scores the interval is exactly shift-invariant and
    antisymmetric. (Without centring, a rounding flip of one tie moved a 5-seed BCa bound by
    12 %.)
    """
    scale = _scale(a, b)
    spread = float(np.std(a - b)) if paired else float(max(np.std(a), np.std(b)))
    if _is_zero_spread(spread, scale):
        return _nan2(), "none"
    if paired:
        data, statistic = (a - b,), _mean
    else:
        m = min(float(np.min(a)), float(np.min(b)))
        data, statistic = (a - m, b - m), _mean_diff
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa is undefined when, e.g., no resample falls on one side of the estimate;
            # scipy then warns and returns NaN, and the percentile interval is used instead.
            warnings.filterwarnings("ignore", category=stats.DegenerateDataWarning)
            result = stats.bootstrap(
                data,
                statistic,
                n_resamples=n_resamples,
                vectorized=True,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return (low, high), method
    return _nan2(), "none"  # pragma: no cover - percentile intervals are always finite here


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def _ttest(
    treatment: np.ndarray, control: np.ndarray, *, paired: bool, confidence: float
) -> tuple[float, float, float, tuple[float, float]]:
    """(t, df, p, CI of the mean difference) from scipy, NaN where the SD is zero."""
    scale = _scale(treatment, control)
    if paired:
        degenerate = _is_zero_spread(float(np.std(treatment - control, ddof=1)), scale)
    else:
        degenerate = _is_zero_spread(
            float(max(np.std(treatment, ddof=1), np.std(control, ddof=1))), scale
        )
    if degenerate:
        return math.nan, math.nan, math.nan, _nan2()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PRECISION_LOSS, category=RuntimeWarning)
        if paired:
            result = stats.ttest_rel(treatment, control)
        else:
            result = stats.ttest_ind(treatment, control, equal_var=False)
        ci = result.confidence_interval(confidence_level=confidence)
    return (
        float(result.statistic),
        float(result.df),
        float(result.pvalue),
        (float(ci.low), float(ci.high)),
    )


def compare(
    treatment: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    *,
    paired: bool,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare a treatment sample with a control sample.

    Computes the difference of means (in points and in % of the control mean), the paired
    t-test (``scipy.stats.ttest_rel``, when ``paired``) and Welch's t-test
    (``scipy.stats.ttest_ind(equal_var=False)``, always), Cohen's d with the pooled SD, d_z for
    paired data, Hedges' g, and a bootstrap interval of the difference
    (``scipy.stats.bootstrap``, BCa, Efron & Tibshirani 1993, ch. 14).

    Effect-size intervals (recorded in ``Comparison.effect_ci_method``):

    * unpaired d: exact noncentral-t interval. With ``t = d * sqrt(n1 n2 / (n1 + n2))`` and
      ``df = n1 + n2 - 2``, find the noncentralities where ``nct.cdf(t; df, ncp)`` equals
      ``(1 ± c) / 2`` and rescale them (Steiger & Fouladi 1997; Cumming & Finch 2001).
    * d_z: the same with ``t = d_z * sqrt(n)``, ``df = n - 1``.
    * paired d: d's sampling distribution is not noncentral t when the SD is pooled over
      correlated groups, so the large-sample normal interval of Borenstein et al. (2009,
      eq. 4.28) is used: ``var(d) = (1/n + d²/(2n)) * 2(1 - r)``, ``r`` the Pearson
      correlation of the pairs. It is approximate; with a handful of seeds, read d_z instead.
    * g: ``J(df)`` times the d interval (Hedges & Olkin 1985).

    With the study's 5 seeds, bootstrap intervals are typically narrower than the t interval
    (the bootstrap cannot see beyond the spread of so few values); both are reported, and the
    t interval is the one that matches the p-value.

    Args:
        treatment: One value per seed for the treatment condition.
        control: One value per seed for the control; for ``paired=True`` in the same seed order
            as ``treatment``.
        paired: Pair ``treatment[i]`` with ``control[i]`` (same seed). The primary test is then
            the paired t-test, else Welch's.
        n_resamples: Bootstrap resamples.
        seed: Seed of the bootstrap's private ``numpy.random.Generator``.
        confidence: Confidence level of every interval.

    Returns:
        A :class:`Comparison`. Fields whose SD is zero are NaN (see the class docstring).

    Raises:
        ValueError: If a sample has fewer than 2 values or NaN/inf, or if ``paired`` and the
            lengths differ.
        TypeError: If ``paired`` is not a bool or a sample is not numeric.

    Examples:
        >>> c = compare([72.0, 74.0, 73.0, 75.0], [70.0, 71.0, 71.5, 72.5], paired=True,
        ...             n_resamples=999)
        >>> c.diff, round(c.rel_diff_pct, 2)
        (2.25, 3.16)
        >>> round(c.pvalue, 4), round(c.cohens_dz, 3)  # ttest_rel: t = 6.97, df = 3
        (0.0061, 3.486)
        >>> c.bootstrap_method, c.bootstrap_ci[0] <= c.diff <= c.bootstrap_ci[1]
        ('BCa', True)
    """
    confidence = _check_level(confidence, "confidence")
    n_resamples = _check_count(n_resamples, "n_resamples", minimum=1)
    seed = _check_count(seed, "seed", minimum=0)
    if not isinstance(paired, bool):
        raise TypeError(f"`paired` must be True or False; got {paired!r}.")
    t = _sample(treatment, "treatment", min_n=2)
    c = _sample(control, "control", min_n=2)
    if paired and t.size != c.size:
        raise ValueError(
            f"paired=True needs one control value per treatment value (same seeds); got "
            f"{t.size} treatment and {c.size} control values. Align the seeds or pass "
            "paired=False."
        )
    mean_t, mean_c = float(np.mean(t)), float(np.mean(c))
    diff = float(np.mean(t - c)) if paired else mean_t - mean_c
    rel = 100.0 * diff / abs(mean_c) if mean_c != 0 else math.nan
    t_welch, df_welch, p_welch, ci_welch = _ttest(t, c, paired=False, confidence=confidence)
    if paired:
        statistic, df, p_paired, ci = _ttest(t, c, paired=True, confidence=confidence)
        pvalue = p_paired
    else:
        statistic, df, pvalue, ci = t_welch, df_welch, p_welch, ci_welch
        p_paired = math.nan
    effects = _effect_sizes(t, c, paired=paired, confidence=confidence)
    boot_ci, boot_method = _bootstrap_ci(
        t, c, paired=paired, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    return Comparison(
        paired=paired,
        n_treatment=int(t.size),
        n_control=int(c.size),
        mean_treatment=mean_t,
        mean_control=mean_c,
        diff=diff,
        rel_diff_pct=rel,
        ci=ci,
        statistic=statistic,
        df=df,
        pvalue=pvalue,
        pvalue_paired=p_paired,
        pvalue_welch=p_welch,
        bootstrap_ci=boot_ci,
        bootstrap_method=boot_method,
        n_resamples=n_resamples,
        confidence=confidence,
        **effects,
    )


# --------------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------------


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down: ``p_(i) -> max_{j<=i} min(1, (m - j + 1) p_(j))``."""
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def adjust_pvalues(
    pvalues: Sequence[float] | np.ndarray, method: Correction = "holm"
) -> np.ndarray:
    """Adjust a family of p-values for multiple comparisons.

    ``"holm"`` controls the family-wise error rate with Holm's (1979) step-down, written out
    because scipy (checked on 1.17) has no Holm procedure. ``"bh"`` controls the false discovery
    rate with Benjamini-Hochberg via ``scipy.stats.false_discovery_control``. NaN p-values
    (undefined tests) are left out of the family and stay NaN.

    Args:
        pvalues: Raw p-values, 1-D, each in [0, 1] or NaN.
        method: ``"holm"`` or ``"bh"``.

    Returns:
        Adjusted p-values in the input order (same shape).

    Raises:
        ValueError: For an unknown ``method``, a p-value outside [0, 1], or non-1-D input.

    Examples:
        >>> adjust_pvalues([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.03, 0.06, 0.06, 0.02]
        >>> adjust_pvalues([0.01, 0.04, 0.03, 0.005], method="bh").round(4).tolist()
        [0.02, 0.04, 0.04, 0.02]
    """
    if method not in ("holm", "bh"):
        raise ValueError(f'`method` must be "holm" or "bh"; got {method!r}.')
    try:
        p = np.asarray(pvalues, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`pvalues` must be a sequence of numbers; got {pvalues!r}.") from exc
    if p.ndim != 1:
        raise ValueError(f"`pvalues` must be one-dimensional; got shape {p.shape}.")
    defined = ~np.isnan(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {p.tolist()}.")
    adjusted = np.full_like(p, np.nan)
    if not np.any(defined):
        return adjusted
    if method == "holm":
        adjusted[defined] = _holm(p[defined])
    else:
        adjusted[defined] = stats.false_discovery_control(p[defined], method="bh")
    return adjusted


# --------------------------------------------------------------------------------------------
# Power
# --------------------------------------------------------------------------------------------


def _design(n_per_group: int, paired: bool) -> tuple[int, float]:
    """Degrees of freedom and ``ncp / d`` of the two-sided t-test for this design."""
    if paired:
        return n_per_group - 1, math.sqrt(n_per_group)
    return 2 * n_per_group - 2, math.sqrt(n_per_group / 2)


def power(d: float, n_per_group: int, *, alpha: float = 0.05, paired: bool = False) -> float:
    """Power of the two-sided t-test to detect a standardized effect ``d``.

    Exact under normality: with ``T ~ nct(df, ncp)``, power is
    ``P(T > t_crit) + P(T < -t_crit)``, ``t_crit = t.isf(alpha/2, df)``. Unpaired (two groups
    of ``n``): ``df = 2n - 2``, ``ncp = d sqrt(n/2)``; paired (``n`` pairs, ``d`` read as d_z):
    ``df = n - 1``, ``ncp = d sqrt(n)`` (Cohen 1988, ch. 2).

    Args:
        d: Standardized effect (Cohen's d, or d_z when ``paired``).
        n_per_group: Observations per group (pairs when ``paired``), at least 2.
        alpha: Two-sided significance level.
        paired: Paired (one-sample on differences) instead of two independent groups.

    Returns:
        The probability of rejecting H0 at ``alpha``.

    Raises:
        ValueError: If ``n_per_group < 2`` or ``alpha`` is not in (0, 1).

    Examples:
        >>> round(power(0.5, 64), 4)  # Cohen (1988): n = 64 per group for d = .5
        0.8015
        >>> round(power(1.0, 20), 4)  # R: power.t.test(n = 20, delta = 1)
        0.869
    """
    n = _check_count(n_per_group, "n_per_group", minimum=2)
    alpha = _check_level(alpha, "alpha")
    if not math.isfinite(d):
        raise ValueError(f"`d` must be finite; got {d!r}.")
    df, per_d = _design(n, paired)
    t_crit = stats.t.isf(alpha / 2, df)
    ncp = d * per_d
    # P(T > t_crit; ncp) = P(T < -t_crit; -ncp): both tails through the same robust cdf.
    return _nct_cdf(-t_crit, df, -ncp) + _nct_cdf(-t_crit, df, ncp)


def minimum_detectable_effect(
    n_per_group: int, *, alpha: float = 0.05, power: float = 0.8, paired: bool = False
) -> float:
    """Smallest standardized effect the two-sided t-test detects with the given power.

    Solves ``power(d, n) == power`` for ``d > 0`` with ``scipy.optimize.brentq`` on the exact
    noncentral-t power of :func:`power`.

    Args:
        n_per_group: Observations per group (pairs, i.e. seeds, when ``paired``).
        alpha: Two-sided significance level.
        power: Target power; must exceed ``alpha`` (the power at ``d = 0``).
        paired: Paired design; the result is then in units of d_z.

    Returns:
        The minimum detectable Cohen's d (or d_z).

    Raises:
        ValueError: If ``n_per_group < 2`` or ``power <= alpha``.

    Examples:
        >>> round(minimum_detectable_effect(5), 2)  # 5 seeds per condition, unpaired
        2.02
        >>> round(minimum_detectable_effect(5, paired=True), 2)  # d_z, 5 paired seeds
        1.68
    """
    n = _check_count(n_per_group, "n_per_group", minimum=2)
    alpha = _check_level(alpha, "alpha")
    target = _check_level(power, "power")
    if target <= alpha:
        raise ValueError(
            f"`power` ({target}) must exceed `alpha` ({alpha}): even d = 0 is 'detected' with "
            "probability alpha. Ask for a higher power, e.g. 0.8."
        )

    def gap(d: float) -> float:
        return _power(d, n, alpha=alpha, paired=paired) - target

    high = 1.0
    while gap(high) < 0:
        high *= 2
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-10, rtol=1e-12))


_power = power  # `minimum_detectable_effect` has a parameter named `power`


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

_Table = dict[tuple[str, str, str], dict[int, float]]


def _collect(
    records: Iterable[Mapping[str, Any]], metrics: Sequence[str] | None
) -> tuple[_Table, list[str], list[str], list[str]]:
    """Index records as ``(model, metric, condition) -> {seed: value}``, validating each."""
    if isinstance(records, Mapping | str | bytes):
        raise TypeError(
            "`records` must be a list of dicts like "
            '{"model": ..., "condition": ..., "seed": 0, "metrics": {"acc": 0.7}}; '
            f"got {type(records).__name__}."
        )
    if metrics is not None:
        if isinstance(metrics, str):
            raise TypeError(f"`metrics` must be a list of names; got the string {metrics!r}.")
        metrics = list(metrics)
        if not metrics:
            raise ValueError("`metrics` is empty; pass None to analyse every metric.")
    table: _Table = {}
    models: list[str] = []
    conditions: list[str] = []
    seen_metrics: list[str] = []
    seen_runs: set[tuple[str, str, int]] = set()
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"records[{i}] must be a dict; got {type(record).__name__}.")
        missing = {"model", "condition", "seed", "metrics"} - set(record)
        if missing:
            raise ValueError(
                f"records[{i}] lacks the key(s) {sorted(missing)}; each record needs "
                '"model", "condition", "seed" and "metrics".'
            )
        model, condition, seed, values = (
            record["model"],
            record["condition"],
            record["seed"],
            record["metrics"],
        )
        if not isinstance(model, str) or not isinstance(condition, str):
            raise TypeError(f"records[{i}]: 'model' and 'condition' must be strings.")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"records[{i}]: 'seed' must be an integer; got {seed!r}.")
        if not isinstance(values, Mapping):
            raise TypeError(f"records[{i}]: 'metrics' must be a dict of name -> number.")
        run = (model, condition, int(seed))
        if run in seen_runs:
            raise ValueError(
                f"records[{i}] repeats model={model!r}, condition={condition!r}, seed={seed}; "
                "keep one record per run (average repeated evaluations beforehand)."
            )
        seen_runs.add(run)
        if model not in models:
            models.append(model)
        if condition not in conditions:
            conditions.append(condition)
        wanted = metrics if metrics is not None else list(values)
        for name in wanted:
            if name not in values:
                raise ValueError(
                    f"records[{i}] ({model}, {condition}, seed {seed}) has no metric {name!r}; "
                    f"it has {sorted(values)}."
                )
            value = values[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
                raise ValueError(
                    f"records[{i}] metric {name!r} must be a finite number; got {value!r}."
                )
            if name not in seen_metrics:
                seen_metrics.append(name)
            table.setdefault((model, name, condition), {})[int(seed)] = float(value)
    if not table:
        raise ValueError("`records` holds no metric values; nothing to analyse.")
    return table, models, conditions, metrics if metrics is not None else seen_metrics


def _paired_arrays(
    table: _Table, model: str, metric: str, condition: str, control: str, *, paired: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Treatment and control arrays, aligned by seed when ``paired``."""
    treated = table.get((model, metric, condition), {})
    base = table.get((model, metric, control), {})
    if not base:
        raise ValueError(
            f"control condition {control!r} has no runs for model {model!r}, metric "
            f"{metric!r}; pass the name of the control condition as `control`."
        )
    if not treated:
        raise ValueError(
            f"condition {condition!r} has no runs for model {model!r}, metric {metric!r}."
        )
    if not paired:
        return (
            np.array([treated[s] for s in sorted(treated)]),
            np.array([base[s] for s in sorted(base)]),
        )
    if set(treated) != set(base):
        raise ValueError(
            f"paired comparison of {condition!r} vs {control!r} ({model}, {metric}) needs the "
            f"same seeds in both; only in {condition!r}: {sorted(set(treated) - set(base))}, "
            f"only in {control!r}: {sorted(set(base) - set(treated))}. Rerun the missing seeds "
            "or pass paired=False."
        )
    seeds = sorted(base)
    return np.array([treated[s] for s in seeds]), np.array([base[s] for s in seeds])


def _single_metric(table: _Table, metric: str | None) -> str:
    names = sorted({key[1] for key in table})
    if metric is None:
        if len(names) != 1:
            raise ValueError(f"the records hold several metrics {names}; pass `metric=`.")
        return names[0]
    if metric not in names:
        raise ValueError(f"metric {metric!r} is not in the records; available: {names}.")
    return metric


def interaction_test(
    records: Iterable[Mapping[str, Any]],
    *,
    model_a: str,
    model_b: str,
    condition: str,
    control: str,
    metric: str | None = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interaction:
    """Test whether ``condition - control`` is larger for ``model_a`` than for ``model_b``.

    Hypothesis H3a (the ZPD-vs-Random gain is larger for SOLAR than for Qwen) is a
    model × condition interaction. Per seed, the paired effect ``condition - control`` is
    formed within each model; the difference in differences ``mean_a - mean_b`` is tested with
    Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) on the two sets of per-seed
    effects, and bootstrapped with ``scipy.stats.bootstrap`` (each model resampled on its own).

    Args:
        records: Run records, as for :func:`analyze`.
        model_a: The model expected to gain more.
        model_b: The reference model.
        condition: Treatment condition, e.g. ``"zpd_adaptive"``.
        control: Control condition, e.g. ``"random"``.
        metric: Metric to test; may be omitted when the records hold exactly one.
        n_resamples: Bootstrap resamples.
        seed: Seed of the bootstrap generator.
        confidence: Confidence level of the intervals.

    Returns:
        An :class:`Interaction`. Its statistics are NaN when both models' per-seed effects are
        constant.

    Raises:
        ValueError: If a model lacks a condition, the seeds do not pair, or a model has fewer
            than 2 paired seeds.

    Examples:
        >>> runs = [
        ...     {"model": m, "condition": c, "seed": s, "metrics": {"acc": v}}
        ...     for m, gains in [("solar", [3.0, 4.0, 5.0]), ("qwen", [0.0, 1.0, 0.5])]
        ...     for s, gain in enumerate(gains)
        ...     for c, v in [("random", 60.0 + s), ("zpd", 60.0 + s + gain)]
        ... ]
        >>> r = interaction_test(runs, model_a="solar", model_b="qwen", condition="zpd",
        ...                      control="random", n_resamples=999)
        >>> r.effect_a, r.effect_b, r.did
        (4.0, 0.5, 3.5)
        >>> r.pvalue < 0.05
        True
    """
    confidence = _check_level(confidence, "confidence")
    n_resamples = _check_count(n_resamples, "n_resamples", minimum=1)
    seed = _check_count(seed, "seed", minimum=0)
    if model_a == model_b:
        raise ValueError(f"`model_a` and `model_b` are both {model_a!r}; pass two models.")
    table, models, _, _ = _collect(records, None)
    metric = _single_metric(table, metric)
    for model in (model_a, model_b):
        if model not in models:
            raise ValueError(f"model {model!r} is not in the records; available: {models}.")
    kwargs = {"paired": True, "n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    effects = []
    comparisons = []
    for model in (model_a, model_b):
        t, c = _paired_arrays(table, model, metric, condition, control, paired=True)
        comparisons.append(compare(t, c, **kwargs))
        effects.append(t - c)
    ea, eb = effects
    if min(ea.size, eb.size) < 2:
        raise ValueError(
            f"the interaction test needs at least 2 paired seeds per model; got {ea.size} for "
            f"{model_a!r} and {eb.size} for {model_b!r}. Run more seeds."
        )
    statistic, df, pvalue, ci = _ttest(ea, eb, paired=False, confidence=confidence)
    if math.isnan(statistic):
        p_greater = math.nan
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PRECISION_LOSS, category=RuntimeWarning)
            p_greater = float(
                stats.ttest_ind(ea, eb, equal_var=False, alternative="greater").pvalue
            )
    boot_ci, boot_method = _bootstrap_ci(
        ea, eb, paired=False, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    comp_a, comp_b = comparisons
    return Interaction(
        metric=metric,
        model_a=model_a,
        model_b=model_b,
        condition=condition,
        control=control,
        n_a=int(ea.size),
        n_b=int(eb.size),
        effect_a=float(np.mean(ea)),
        effect_b=float(np.mean(eb)),
        did=float(np.mean(ea) - np.mean(eb)),
        ci=ci,
        statistic=statistic,
        df=df,
        pvalue=pvalue,
        pvalue_greater=p_greater,
        bootstrap_ci=boot_ci,
        bootstrap_method=boot_method,
        cohens_d_a=comp_a.cohens_d,
        cohens_d_b=comp_b.cohens_d,
        comparison_a=comp_a,
        comparison_b=comp_b,
    )


def analyze(
    records: Iterable[Mapping[str, Any]],
    *,
    control: str = "random",
    metrics: Sequence[str] | None = None,
    paired: bool = True,
    correction: Correction = "holm",
    alpha: float = 0.05,
    mde_power: float = 0.8,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> StudyAnalysis:
    """Summarize every (model, metric, condition) and compare each condition with the control.

    Each record is one training run:
    ``{"model": str, "condition": str, "seed": int, "metrics": {name: float}}``. Within a model,
    every condition is compared with ``control`` by :func:`compare` (paired by seed when
    ``paired``), and the primary p-values of all of that model's comparisons (every metric ×
    condition) form one family for :func:`adjust_pvalues`. The minimum detectable effect is
    reported for the model's number of seeds, at ``alpha`` and at the Bonferroni bound
    ``alpha / m``.

    Args:
        records: Run records.
        control: The baseline condition.
        metrics: Metrics to analyse (each record must have them); default: every metric seen.
        paired: Pair runs by seed (the study design). Each condition then needs exactly the
            control's seeds.
        correction: ``"holm"`` (family-wise error) or ``"bh"`` (false discovery rate).
        alpha: Significance level for the MDE (and for verdicts in the report).
        mde_power: Power at which the MDE is computed.
        n_resamples: Bootstrap resamples per comparison.
        seed: Seed of every bootstrap generator.
        confidence: Confidence level of every interval.

    Returns:
        A :class:`StudyAnalysis`.

    Raises:
        ValueError: For malformed or duplicate records, a missing control, or unpaired seeds
            under ``paired=True``.

    Examples:
        >>> runs = [
        ...     {"model": "m", "condition": c, "seed": s, "metrics": {"acc": 60.0 + s + gain}}
        ...     for s in range(4)
        ...     for c, gain in [("random", 0.0), ("zpd", 2.0 + 0.5 * (s % 2))]
        ... ]
        >>> a = analyze(runs, n_resamples=999)
        >>> a.conditions
        ('random', 'zpd')
        >>> a.comparisons["m", "acc", "zpd"].diff
        2.25
        >>> round(a.mde["m"].d, 2)  # d_z detectable with 4 paired seeds at 80 % power
        2.13
    """
    if correction not in ("holm", "bh"):
        raise ValueError(f'`correction` must be "holm" or "bh"; got {correction!r}.')
    if not isinstance(paired, bool):
        raise TypeError(f"`paired` must be True or False; got {paired!r}.")
    alpha = _check_level(alpha, "alpha")
    mde_power = _check_level(mde_power, "mde_power")
    confidence = _check_level(confidence, "confidence")
    table, models, seen_conditions, metric_names = _collect(records, metrics)
    if control not in seen_conditions:
        raise ValueError(
            f"control condition {control!r} is not in the records; conditions found: "
            f"{seen_conditions}. Pass one of them as `control=`."
        )
    conditions = [control] + [c for c in seen_conditions if c != control]
    values: dict[tuple[str, str, str], tuple[tuple[int, float], ...]] = {}
    summaries: dict[tuple[str, str, str], Summary] = {}
    comparisons: dict[tuple[str, str, str], Comparison] = {}
    adjusted: dict[tuple[str, str, str], float] = {}
    mde: dict[str, MDE] = {}
    for model in models:
        family: list[tuple[str, str, str]] = []
        for metric in metric_names:
            for condition in conditions:
                key = (model, metric, condition)
                if key not in table:
                    continue
                values[key] = tuple(sorted(table[key].items()))  # seed order: record order
                summaries[key] = describe(  # must not change a single bit of the results
                    [value for _, value in values[key]], confidence=confidence
                )
                if condition == control:
                    continue
                t, c = _paired_arrays(table, model, metric, condition, control, paired=paired)
                comparisons[key] = compare(
                    t, c, paired=paired, n_resamples=n_resamples, seed=seed, confidence=confidence
                )
                family.append(key)
        if not family:
            continue
        raw = [comparisons[key].pvalue for key in family]
        for key, p_adj in zip(family, adjust_pvalues(raw, method=correction), strict=True):
            adjusted[key] = float(p_adj)
        n = min(min(comparisons[k].n_treatment, comparisons[k].n_control) for k in family)
        m = len(family)
        mde[model] = MDE(
            n=n,
            paired=paired,
            alpha=alpha,
            power=mde_power,
            d=minimum_detectable_effect(n, alpha=alpha, power=mde_power, paired=paired),
            n_tests=m,
            d_corrected=minimum_detectable_effect(
                n, alpha=alpha / m, power=mde_power, paired=paired
            ),
        )
    return StudyAnalysis(
        control=control,
        models=tuple(models),
        metrics=tuple(metric_names),
        conditions=tuple(conditions),
        paired=paired,
        correction=correction,
        alpha=alpha,
        confidence=confidence,
        values=values,
        summaries=summaries,
        comparisons=comparisons,
        pvalues_adjusted=adjusted,
        mde=mde,
    )


def _jsonable(obj: Any) -> Any:
    """Recursively turn tuples into lists, numpy scalars into Python, NaN into ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj
