"""Means from per-arm sums (revenue per visitor, CUPED): checked against GrowthBook's gbstats."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import RegressionAdjustedStatistic, SampleMeanStatistic
from hypothesis import example, given, settings
from hypothesis import strategies as hs
from scipy import stats as scipy_stats

from gimel_core.stats import means, student
from gimel_core.stats.means import Sums

TOLERANCE = 1e-9
"""Largest disagreement with gbstats allowed, absolute below 1, relative above."""


def _arm(rng: np.random.Generator, n: int, sigma: float, rate: float, rho: float, lift: float):
    """n participants: y zero-inflated log-normal (revenue), x its log-normal pre-period value."""
    z = rng.standard_normal(n)
    x = np.exp(0.5 + sigma * z) * (rng.random(n) < min(1.0, 2 * rate))
    noise = rng.standard_normal(n)
    y = np.exp(sigma * (rho * z + math.sqrt(1 - rho * rho) * noise)) * (rng.random(n) < rate)
    y = y * (1.0 + lift)
    return Sums(
        n,
        float(y.sum()),
        float((y * y).sum()),
        float(x.sum()),
        float((x * x).sum()),
        float((x * y).sum()),
    )


def _tables() -> list[tuple[Sums, Sums]]:
    """(arm, control) sum tables: small and large n, mild and very skewed values, lifts."""
    rng = np.random.default_rng(20240522)
    sizes = [2, 3, 5, 8, 20, 50, 200, 1_000, 5_000, 40_000]
    tables = []
    for i in range(40):
        n1 = int(rng.choice(sizes))
        n0 = int(rng.choice(sizes)) if i % 3 else n1
        sigma = float(rng.choice([0.3, 1.0, 2.0, 3.0]))  # 3.0: a few users hold most revenue
        rate = 1.0 if n1 < 20 or n0 < 20 else float(rng.choice([0.05, 0.3, 1.0]))
        rho = float(rng.uniform(-0.3, 0.95))
        lift = float(rng.choice([0.0, 0.05, -0.2, 1.0]))
        tables.append((_arm(rng, n1, sigma, rate, rho, lift), _arm(rng, n0, sigma, rate, rho, 0.0)))
    return tables


TABLES = _tables()


def _plain(s: Sums) -> SampleMeanStatistic:
    return SampleMeanStatistic(n=s.n, sum=s.sum_y, sum_squares=s.sum_y2)


def _adjusted(s: Sums) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=s.n,
        post_statistic=_plain(s),
        pre_statistic=SampleMeanStatistic(n=s.n, sum=s.sum_x, sum_squares=s.sum_x2),
        post_pre_sum_of_products=s.sum_xy,
        theta=0,  # gbstats sets the pooled theta itself, in the test's constructor
    )


def gbstats_result(arm: Sums, control: Sums, *, cuped: bool, tuning: float | None) -> Any:
    """GrowthBook's relative-difference test: TwoSidedTTest, or sequential with a tuning."""
    build = _adjusted if cuped else _plain
    a, b = build(control), build(arm)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tuning is None:
            return TwoSidedTTest(a, b, FrequentistConfig(alpha=0.05)).compute_result()
        config = SequentialConfig(alpha=0.05, sequential_tuning_parameter=tuning)
        return SequentialTwoSidedTTest(a, b, config).compute_result()


def _gap(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / max(1.0, abs(theirs))


def _compare(ours: means.Uplift | None, theirs: Any, inference: means.Inference | None) -> float:
    """The largest gap over uplift, standard error, interval and p-value (asserted small)."""
    assert theirs.error_message is None, theirs.error_message
    assert ours is not None and inference is not None
    gaps = [
        _gap(ours.uplift, theirs.expected),
        _gap(math.sqrt(ours.variance), theirs.uplift.stddev),
        _gap(inference.ci[0], theirs.ci[0]),
        _gap(inference.ci[1], theirs.ci[1]),
        _gap(inference.p_value, theirs.p_value),
    ]
    assert max(gaps) <= TOLERANCE, (gaps, ours, inference, theirs)
    return max(gaps)


def _uplift(arm: Sums, control: Sums, cuped: bool) -> means.Uplift | None:
    if not cuped:
        return means.relative_uplift(arm, control)
    result = means.cuped(arm, control)
    return None if result is None else result.adjusted


@pytest.mark.parametrize("cuped", [False, True], ids=["plain", "cuped"])
@pytest.mark.parametrize("tuning", [None, 1000, 5000, 50_000], ids=lambda t: f"tuning={t}")
def test_equals_gbstats_on_random_tables(cuped: bool, tuning: float | None) -> None:
    compared = 0
    for arm, control in TABLES:
        theirs = gbstats_result(arm, control, cuped=cuped, tuning=tuning)
        ours = _uplift(arm, control, cuped)
        if theirs.error_message is not None:  # gbstats declines (zero variance or mean)
            assert ours is None
            continue
        inference = None
        if ours is not None:
            inference = ours.fixed() if tuning is None else ours.sequential(tuning)
        _compare(ours, theirs, inference)
        compared += 1
    assert compared >= 30


def test_tables_cover_small_skewed_and_covariate() -> None:
    """The random tables hold what the comparison is meant to reach."""
    assert min(min(a.n, c.n) for a, c in TABLES) <= 3
    assert max(a.n for a, _ in TABLES) >= 10_000
    thetas = [means.theta(a, c) for a, c in TABLES]
    assert sum(t != 0.0 for t in thetas) >= 30
    ratio = [a.sum_y2 * a.n / a.sum_y**2 for a, _ in TABLES if a.sum_y > 0 and a.n >= 1_000]
    assert max(ratio) > 50  # E[y^2] / E[y]^2: a heavy right tail


def test_cuped_theta_and_means_equal_gbstats() -> None:
    for arm, control in TABLES:
        a, b = _adjusted(control), _adjusted(arm)
        TwoSidedTTest(a, b)  # sets the pooled theta on both, as gbstats' engine does
        ours = means.cuped(arm, control)
        if ours is None:
            continue
        assert _gap(ours.theta, b.theta) <= TOLERANCE
        assert _gap(ours.mean, b.mean) <= TOLERANCE
        assert _gap(ours.control_mean, a.mean) <= TOLERANCE


def test_mean_and_variance_of_an_arm() -> None:
    values = [0.0, 3.5, 0.0, 12.25, 1.0]
    arm = Sums(len(values), sum(values), sum(v * v for v in values))
    assert arm.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert arm.variance == pytest.approx(np.var(values, ddof=1), rel=1e-14)
    assert arm.variance == pytest.approx(_plain(arm).variance, rel=1e-15)


def test_student_t_equals_scipy() -> None:
    for dof in [1, 1.7, 4, 29.5, 300, 8_000, 99_999, 100_001, 3e6]:
        for t in [0.0, 0.4, 1.5, 1.96, 2.8, 6.0, 15.0]:
            assert abs(student.two_sided_p(t, dof) - 2 * scipy_stats.t.sf(t, dof)) < 1e-12
        for p in [0.6, 0.9, 0.975, 0.995, 0.025]:
            assert _gap(student.quantile(p, dof), scipy_stats.t.ppf(p, dof)) < 1e-11


# --- CUPED without a covariate ------------------------------------------------------------


@pytest.mark.parametrize("x", [0.0, 1.0, 7.25], ids=["absent", "constant-1", "constant-7.25"])
def test_cuped_without_covariate_variance_is_unadjusted(x: float) -> None:
    """x absent (all 0) or constant: theta 0, every figure the unadjusted one, no division."""
    for arm, control in TABLES:
        arm = Sums(arm.n, arm.sum_y, arm.sum_y2, x * arm.n, x * x * arm.n, x * arm.sum_y)
        control = Sums(
            control.n, control.sum_y, control.sum_y2, x * control.n, x * x * control.n,
            x * control.sum_y,
        )  # fmt: skip
        plain = means.relative_uplift(arm, control)
        result = means.cuped(arm, control)
        if plain is None:
            assert result is None or result.unadjusted is None
            continue
        assert result is not None
        assert result.theta == 0.0
        assert result.adjusted == plain == result.unadjusted
        assert result.variance_reduction == 0.0
        assert result.mean == arm.mean and result.control_mean == control.mean
        assert result.adjusted.fixed() == plain.fixed()


# --- Degenerate and bad input: None, never NaN ---------------------------------------------

GOOD = Sums(100, 250.0, 1_900.0, 80.0, 300.0, 400.0)
BAD_ARMS = {
    "no participants": Sums(0, 0.0, 0.0),
    "one participant": Sums(1, 5.0, 25.0),
    "all zero": Sums(100, 0.0, 0.0),
    "constant 0.1": Sums(1_000, 0.1 * 1_000, 0.1 * 0.1 * 1_000),
    "negative n": Sums(-5, 10.0, 30.0),
    "negative squares": Sums(100, 10.0, -30.0),
    "squares below the mean's": Sums(100, 100.0, 50.0),
    "nan": Sums(100, math.nan, 30.0),
    "inf": Sums(100, 10.0, math.inf),
    "nan covariate": Sums(100, 250.0, 1_900.0, math.nan, 1.0, 1.0),
    "overflowing": Sums(100, 1e200, 1e307),
}


@pytest.mark.parametrize("bad", BAD_ARMS.values(), ids=BAD_ARMS.keys())
def test_degenerate_arm_gives_none(bad: Sums) -> None:
    assert bad.variance is None
    for arm, control in ((bad, GOOD), (GOOD, bad)):
        if (arm, control) == (bad, GOOD) and bad.mean == 0.0 and bad.n >= 2:
            continue  # a zero mean in the variant is fine; its zero variance is the point
        assert means.relative_uplift(arm, control) is None
    assert means.cuped(GOOD, bad) is None


@pytest.mark.parametrize("name", ["no participants", "one participant", "all zero"])
def test_gbstats_declines_where_we_give_none(name: str) -> None:
    bad = BAD_ARMS[name]
    for cuped in (False, True):
        for arm, control in ((bad, GOOD), (GOOD, bad)):
            theirs = gbstats_result(arm, control, cuped=cuped, tuning=None)
            assert theirs.error_message is not None
            assert _uplift(arm, control, cuped) is None


def test_zero_control_mean_gives_none_and_zero_variant_mean_does_not() -> None:
    zero_mean = Sums(100, 0.0, 50.0)  # values of both signs (refunds) averaging 0
    assert means.relative_uplift(GOOD, zero_mean) is None
    assert means.cuped(GOOD, zero_mean) is None
    result = means.relative_uplift(zero_mean, GOOD)
    assert result is not None and result.uplift == -1.0


def test_y_exactly_linear_in_x_gives_none() -> None:
    """y = 2x: the adjusted variance is 0 (rounding noise), not a p-value of 0."""
    rng = np.random.default_rng(3)
    arms = []
    for _ in range(2):
        x = rng.lognormal(size=500)
        y = 2 * x
        arms.append(Sums(500, y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum()))
    assert means.cuped(*arms) is None
    assert means.relative_uplift(*arms) is not None


def test_bad_parameters_are_refused() -> None:
    uplift = means.relative_uplift(GOOD, Sums(100, 200.0, 1_500.0))
    assert uplift is not None
    for alpha in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError):
            uplift.fixed(alpha)
        with pytest.raises(ValueError):
            uplift.sequential(alpha=alpha)
    with pytest.raises(ValueError):
        uplift.sequential(tuning=0)


_finite = hs.floats(allow_nan=True, allow_infinity=True, width=64)
_sums = hs.builds(
    Sums, hs.integers(-3, 60), _finite, _finite, _finite, _finite, _finite
) | hs.builds(
    Sums,
    hs.integers(0, 60),
    hs.floats(0, 1e6),
    hs.floats(0, 1e9),
    hs.floats(0, 1e6),
    hs.floats(0, 1e9),
    hs.floats(-1e9, 1e9),
)


def _all_finite(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float | int):
        return math.isfinite(value)
    if isinstance(value, tuple):
        return all(_all_finite(v) for v in value)
    return all(_all_finite(getattr(value, f)) for f in value.__slots__)  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None)
@given(_sums, _sums)
@example(Sums(2, 0.0, 2e-300), Sums(2, 2e-160, 4e-300))  # underflowing squares and powers
@example(Sums(3, 3e150, 1e305), Sums(3, 1e-150, 1e-290))  # an overflowing ratio
def test_never_nan_or_infinite(arm: Sums, control: Sums) -> None:
    assert _all_finite(arm.mean) and _all_finite(arm.variance)
    assert math.isfinite(means.theta(arm, control))
    plain = means.relative_uplift(arm, control)
    result = means.cuped(arm, control)
    assert _all_finite(plain) and _all_finite(result)
    for uplift in (plain, result and result.adjusted):
        if uplift is not None:
            assert _all_finite(uplift.fixed()) and _all_finite(uplift.sequential())


# --- CUPED's variance reduction --------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9])
def test_cuped_variance_is_one_minus_rho_squared_of_unadjusted(rho: float) -> None:
    """On 2 x 200,000 participants the adjusted uplift's variance is (1 - rho^2) times the
    unadjusted one, rho the population correlation of x and y, within 0.01 (the sampling
    error of rho^2 there is about 0.002)."""
    rng = np.random.default_rng(int(rho * 10))
    sigma_x = 0.5
    variance_x = (math.exp(sigma_x**2) - 1) * math.exp(sigma_x**2)  # log-normal(0, 0.5)
    slope = 1.5
    # Noise making corr(x, y) = rho: rho^2 = slope^2 var_x / (slope^2 var_x + noise^2).
    noise = math.sqrt(slope**2 * variance_x * (1 / rho**2 - 1)) if rho else 1.0
    arms = []
    for lift in (0.02, 0.0):
        n = 200_000
        x = rng.lognormal(0.0, sigma_x, n)
        y = (10.0 + (slope if rho else 0.0) * x + rng.normal(0.0, noise, n)) * (1 + lift)
        arms.append(Sums(n, y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum()))
    result = means.cuped(*arms)
    assert result is not None and result.unadjusted is not None
    assert result.variance_reduction == pytest.approx(rho * rho, abs=0.01)
    ratio = result.adjusted.variance / result.unadjusted.variance
    assert ratio == pytest.approx(1 - rho * rho, abs=0.01)
    assert result.adjusted.uplift == pytest.approx(0.02, abs=0.01)
