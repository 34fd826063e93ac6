"""Always-valid inference for the uplift: checked against GrowthBook's engine (gbstats)."""

from __future__ import annotations

import itertools
import math
import random
import warnings
from typing import Any

import numpy as np
import pytest
from gbstats.frequentist.tests import SequentialConfig, SequentialTwoSidedTTest
from gbstats.models.statistics import ProportionStatistic
from hypothesis import given, settings
from hypothesis import strategies as hs

from gimel_core import stats
from gimel_core.stats import Running, Sequential

# (successes, trials): tiny to tens of millions, rates near 0 and 1, degenerate arms included.
ARMS = [
    (0, 0),
    (0, 10),
    (10, 10),
    (1, 2),
    (3, 10),
    (7, 10),
    (1, 50),
    (49, 50),
    (12, 1_000),
    (480, 1_000),
    (997, 1_000),
    (3, 100_000),
    (5_100, 100_000),
    (99_990, 100_000),
    (123_456, 1_000_000),
    (124_999, 1_000_000),
    (999_000, 1_000_000),
    (40, 20_000_000),
    (2_500_000, 10_000_000),
    (29_999_980, 30_000_000),
]
TUNINGS = [1000, 5000, 50_000]


def gbstats_result(
    s: int, n: int, s0: int, n0: int, tuning: float = 5000, alpha: float = 0.05
) -> Any:
    """GrowthBook's sequential test of a binomial metric, as its engine builds it.

    A binomial metric's row has sum = sum_squares = successes and count = trials, which gbstats
    turns into ``ProportionStatistic(sum=successes, n=trials)`` (its sum_squares is its sum).
    """
    config = SequentialConfig(alpha=alpha, sequential_tuning_parameter=tuning)
    test = SequentialTwoSidedTTest(
        ProportionStatistic(sum=s0, n=n0), ProportionStatistic(sum=s, n=n), config
    )
    # Its e-value overflows to inf for huge effects (p-value 0, as ours): not an error here.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return test.compute_result()


def close(ours: float, theirs: float) -> bool:
    return ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("tuning", TUNINGS)
@pytest.mark.parametrize(("variant", "control"), list(itertools.product(ARMS, ARMS)))
def test_equals_gbstats(variant: tuple[int, int], control: tuple[int, int], tuning: float) -> None:
    ours = stats.sequential_uplift(*variant, *control, tuning=tuning)
    theirs = gbstats_result(*variant, *control, tuning=tuning)
    # gbstats answers "no result" (an error message, p = 1, ci [0, 0]) where ours is None.
    assert (ours is None) == (theirs.error_message is not None)
    if ours is None:
        return
    assert close(ours.uplift, theirs.expected)
    assert close(math.sqrt(ours.variance), theirs.uplift.stddev)
    assert close(ours.ci[0], theirs.ci[0])
    assert close(ours.ci[1], theirs.ci[1])
    assert close(ours.p_value, theirs.p_value)


@settings(max_examples=300, deadline=None)
@given(
    hs.integers(1, 10**7),
    hs.integers(1, 10**7),
    hs.integers(1, 10**7),
    hs.integers(1, 10**7),
    hs.sampled_from(TUNINGS),
    hs.sampled_from([0.01, 0.05, 0.1, 0.2]),
)
def test_equals_gbstats_anywhere(
    s: int, n: int, s0: int, n0: int, tuning: float, alpha: float
) -> None:
    """Random counts and alphas, p-values compared relatively too (they span 1e-300 to 1)."""
    s, n = min(s, n), max(s, n)
    s0, n0 = min(s0, n0), max(s0, n0)
    ours = stats.sequential_uplift(s, n, s0, n0, tuning=tuning, alpha=alpha)
    theirs = gbstats_result(s, n, s0, n0, tuning, alpha)
    assert (ours is None) == (theirs.error_message is not None)
    if ours is not None:
        assert [ours.uplift, *ours.ci] == pytest.approx([theirs.expected, *theirs.ci], rel=1e-9)
        assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-6, abs=1e-300)


def test_growthbook_fixture() -> None:
    """GrowthBook's own published example of a sequential test on a proportion.

    gbstats' test suite (packages/stats/tests/frequentist/test_tests.py,
    ``TestSequentialTTest.test_sequential_test_runs_prop``): control 1396/3000, variant
    2422/3461, default N* = 5000: uplift 0.50386 (sd 0.03386), interval (0.40098, 0.60675),
    p-value 0 to five decimals.
    """
    result = stats.sequential_uplift(2422, 3461, 1396, 3000)
    assert result is not None
    assert round(result.uplift, 5) == 0.50386
    assert round(math.sqrt(result.variance), 5) == 0.03386
    assert [round(x, 5) for x in result.ci] == [0.40098, 0.60675]
    assert round(result.p_value, 5) == 0.0


def test_tuning_is_tightest_near_its_size() -> None:
    """N* is the total size at which the interval is narrowest (eq. 161's choice of rho)."""

    def width(tuning: float) -> float:
        result = stats.sequential_uplift(2422, 3461, 1396, 3000, tuning=tuning)
        assert result is not None
        return result.ci[1] - result.ci[0]

    assert width(6461) < width(10_000) < width(10)
    assert width(6461) < width(3_000)


# -- Properties --------------------------------------------------------------------------------


counts = hs.integers(-5, 10**7)


@settings(max_examples=400, deadline=None)
@given(
    counts,
    counts,
    counts,
    counts,
    hs.sampled_from(TUNINGS),
    hs.sampled_from([0.0, stats.HLL_RSE, 0.05]),
)
def test_properties(s: int, n: int, s0: int, n0: int, tuning: float, rse: float) -> None:
    result = stats.sequential_uplift(s, n, s0, n0, tuning=tuning, rse=rse)
    c1, t1 = min(max(s, 0), max(n, 0)), max(n, 0)
    c0, t0 = min(max(s0, 0), max(n0, 0)), max(n0, 0)
    if not (0 < c1 < t1 and 0 < c0 < t0):
        assert result is None
        return
    assert result is not None
    values = [result.uplift, result.variance, *result.ci, result.p_value]
    assert all(math.isfinite(v) for v in values)
    assert result.uplift == pytest.approx((c1 / t1) / (c0 / t0) - 1.0, rel=1e-12)
    assert result.variance > 0.0
    assert 0.0 <= result.p_value <= 1.0
    low, high = result.ci
    assert low < result.uplift < high
    # Wider than the fixed-horizon normal interval of the same variance: every multiplier of a
    # 95% confidence sequence is above 3.03, beyond Z = 1.96 at any size.
    se = math.sqrt(result.variance)
    assert high - result.uplift > 1.5 * stats.Z * se
    # Dual: significant at alpha exactly when the interval excludes 0.
    if result.p_value < 0.05 * (1 - 1e-9):
        assert low > 0.0 or high < 0.0
    elif result.p_value > 0.05 * (1 + 1e-9):
        assert low < 0.0 < high
    # The variance is (1 + uplift)^2 times the variance of the log ratio that the fixed-horizon
    # (Katz) interval uses, plus the counting variance of the log ratio, 2 rse^2 per arm.
    katz = stats.uplift_interval(c1, t1, c0, t0)
    assert katz is not None
    var_log = ((math.log1p(katz[1]) - math.log1p(result.uplift)) / stats.Z) ** 2 + 4 * rse**2
    assert result.variance == pytest.approx((1.0 + result.uplift) ** 2 * var_log)


@settings(max_examples=300, deadline=None)
@given(
    hs.integers(20, 10**7),
    hs.integers(20, 10**7),
    hs.integers(20, 10**7),
    hs.integers(20, 10**7),
    hs.sampled_from(TUNINGS),
)
def test_wider_than_fixed_horizon(s: int, f: int, s0: int, f0: int, tuning: float) -> None:
    """With 20 successes and failures per arm or more, the sequential interval holds Gimel's
    fixed-horizon (Katz) uplift interval, and both hold the uplift.

    With fewer successes the Katz interval's skew can push its upper end past the sequential
    one's, which is symmetric on the ratio's scale.
    """
    result = stats.sequential_uplift(s, s + f, s0, s0 + f0, tuning=tuning)
    fixed = stats.uplift_interval(s, s + f, s0, s0 + f0)
    assert result is not None and fixed is not None
    assert result.ci[0] < fixed[0] < result.uplift < fixed[1] < result.ci[1]


def test_counting_error_widens() -> None:
    exact = stats.sequential_uplift(5_300, 100_000, 5_000, 100_000)
    hll = stats.sequential_uplift(5_300, 100_000, 5_000, 100_000, rse=stats.HLL_RSE)
    assert exact is not None and hll is not None
    assert hll.uplift == exact.uplift
    assert hll.ci[0] < exact.ci[0] and hll.ci[1] > exact.ci[1]
    assert hll.p_value > exact.p_value


def test_overshooting_counts_are_clamped() -> None:
    """Successes above trials count as trials (a rate of 1: no variance, so no result)."""
    assert stats.sequential_uplift(120, 100, 50, 100) is None
    assert stats.sequential_uplift(30, 100, 150, 100) is None
    assert stats.sequential_uplift(30, -100, 50, 100) is None
    assert stats.sequential_uplift(-3, 100, 50, 100) is None


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 0.0}, {"alpha": 1.0}, {"tuning": 0}, {"rse": -0.1}, {"alpha": math.nan}]
)
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        stats.sequential_uplift(30, 100, 50, 100, **kwargs)


# -- Running values over looks -----------------------------------------------------------------


def look(low: float, high: float, p_value: float) -> Sequential:
    return Sequential((low + high) / 2, 1.0, [low, high], p_value)


def test_running_by_hand() -> None:
    looks = [look(-0.1, 0.3, 0.8), None, look(0.0, 0.2, 0.3), look(0.05, 0.4, 0.5)]
    assert stats.running(looks) == [
        Running([-0.1, 0.3], 0.8),
        Running([-0.1, 0.3], 0.8),
        Running([0.0, 0.2], 0.3),
        Running([0.05, 0.2], 0.3),
    ]


def test_running_empty_intersection_collapses_to_the_last_look() -> None:
    looks = [look(0.0, 0.2, 0.4), look(0.3, 0.5, 0.01), look(0.25, 0.45, 0.02)]
    assert stats.running(looks) == [
        Running([0.0, 0.2], 0.4),
        Running([0.3, 0.5], 0.01, collapsed=True),
        Running([0.3, 0.45], 0.01),
    ]


def test_running_without_looks() -> None:
    assert stats.running([]) == []
    assert stats.running([None, None]) == [Running(None, None), Running(None, None)]


@settings(max_examples=200, deadline=None)
@given(
    hs.lists(
        hs.tuples(hs.integers(0, 5_000), hs.integers(0, 5_000), hs.integers(0, 5_000)),
        min_size=1,
        max_size=30,
    ),
    hs.sampled_from(TUNINGS),
)
def test_running_is_monotone(days: list[tuple[int, int, int]], tuning: float) -> None:
    """Cumulative daily counts (both arms get the same trials): the running interval never
    widens and the running p-value never rises, except where an empty intersection collapses."""
    s = s0 = n = 0
    looks = []
    for trials, a, b in days:
        n += trials
        s += min(a, trials)
        s0 += min(b, trials)
        looks.append(stats.sequential_uplift(s, n, s0, n, tuning=tuning))
    points = stats.running(looks)
    assert len(points) == len(looks)
    for before, after in itertools.pairwise(points):
        if before.ci is None:
            continue
        assert after.ci is not None and after.p_value is not None
        assert before.p_value is not None and after.p_value <= before.p_value
        if not after.collapsed:
            assert before.ci[0] <= after.ci[0] <= after.ci[1] <= before.ci[1]
    for point, current in zip(points, looks, strict=True):
        if point.collapsed:
            assert current is not None and point.ci == current.ci


# -- A/A simulation ----------------------------------------------------------------------------


def binomial(rng: random.Random, n: int, p: float) -> int:
    """An exact Binomial(n, p) draw by inversion of its distribution function."""
    u = rng.random()
    k = 0
    pmf = (1.0 - p) ** n
    assert pmf > 0.0
    cdf = pmf
    odds = p / (1.0 - p)
    while u > cdf and k < n:
        pmf *= (n - k) / (k + 1) * odds
        k += 1
        cdf += pmf
    return k


@pytest.mark.slow
def test_aa_experiments_watched_daily() -> None:
    """A/A experiments looked at daily for 30 days, stopped at the first significant look.

    The sequential p-value keeps the share of false winners at 5% at most (within its binomial
    margin); the fixed-horizon z-test, looked at the same 30 times, is fooled far more often.
    """
    rng = random.Random(20240607)
    experiments, looks, daily = 10_000, 30, 200
    sequential = fixed = 0
    for i in range(experiments):
        rate = (0.05, 0.2, 0.5)[i % 3]
        s = s0 = n = 0
        seq_hit = fixed_hit = False
        for _ in range(looks):
            n += daily
            s += binomial(rng, daily, rate)
            s0 += binomial(rng, daily, rate)
            result = stats.sequential_uplift(s, n, s0, n)
            seq_hit = seq_hit or (result is not None and result.p_value < 0.05)
            p = stats.two_proportion_p(s, n, s0, n)
            fixed_hit = fixed_hit or (p is not None and p < 0.05)
        sequential += seq_hit
        fixed += fixed_hit
    margin = 1.96 * math.sqrt(0.05 * 0.95 / experiments)
    print(f"ever significant over {looks} looks of {experiments} A/A experiments:")
    print(f"sequential {sequential / experiments:.4f}, fixed-horizon {fixed / experiments:.4f}")
    assert sequential / experiments < 0.05 + margin
    assert fixed / experiments > 0.15


@pytest.mark.parametrize("tuning", [None, 2000])
def test_the_app_reports_gbstats_values_at_a_single_look(make_app: Any, tuning: int | None) -> None:
    """Through /track and /experiments, exact counts: what GrowthBook's engine says."""
    from conftest import AUTH

    client = make_app(counting="exact").test_client()
    counts = {"control": (1396, 3000), "red": (2422, 3461), "blue": (1300, 2900)}
    events = []
    for variant, (s, n) in counts.items():
        for i in range(n):
            one = {"experiment": "e", "variant": variant, "uuid": f"{variant}-{i}"}
            events.append({**one, "event": "participate"})
            if i < s:
                events.append({**one, "event": "signup"})
    for start in range(0, len(events), 500):
        assert client.post("/track", json=events[start : start + 500]).status_code == 200
    if tuning:
        body = {"sequential_tuning": tuning}
        assert client.patch("/experiments/e", json=body, headers=AUTH).status_code == 200
    exp = client.get("/experiments/e", headers=AUTH).get_json()
    assert exp["analysis"] == "sequential" and exp["sequential_tuning"] == (tuning or 5000)
    rows = {row["label"]: row for row in exp["goals"][0]["results"]}
    for variant in ("red", "blue"):
        theirs = gbstats_result(*counts[variant], *counts["control"], tuning=tuning or 5000)
        row = rows[variant]
        assert close(row["uplift"], theirs.expected)
        assert close(row["uplift_ci"][0], theirs.ci[0]) and close(row["uplift_ci"][1], theirs.ci[1])
        assert close(row["p_value"], theirs.p_value)
        assert row["running_uplift_ci"] == row["uplift_ci"]  # one look: nothing to intersect
