"""Rates and their comparison: Wilson intervals, the pooled z-test, the uplift interval, Holm.

Each function takes raw counts and clamps them itself (successes above trials count as
trials: independent HyperLogLog counters can overshoot), so callers never pre-process.
A ``variance`` is the counting variance of an arm's log rate, Var(log successes - log trials)
from :func:`.counting_error.rate_variance`; 0 for exact counts (the default), which leaves
every statistic exactly the textbook one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)

_SQRT2 = math.sqrt(2.0)


def clamp(successes: int, trials: int) -> tuple[int, int]:
    """Counts as the statistics use them: trials >= 0, 0 <= successes <= trials."""
    n = int(trials)
    s = int(successes)
    if n < 0:
        n = 0
    if s > n:
        s = n
    elif s < 0:
        s = 0
    return s, n


def unit(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def wilson(successes: int, trials: int, variance: float = 0.0, z: float = Z) -> list[float] | None:
    """Wilson score interval of a proportion, widened by the counting variance of its log.

    Wilson rather than Wald: it stays inside [0, 1] and keeps its coverage at 0 or n
    successes. With variance > 0 the rate's counting variance p^2 variance (delta method) is
    added, in quadrature, to the half-width, so the interval is never narrower than the exact
    one. None without trials.
    """
    s, n = clamp(successes, trials)
    if not n:
        return None
    p = s / n
    z2n = z * z / n
    denom = 1.0 + z2n
    center = (p + 0.5 * z2n) / denom
    half = z / denom * math.sqrt((p * (1.0 - p) + 0.25 * z2n) / n)
    if variance:
        half = math.hypot(half, z * math.sqrt(variance) * p)
    # Exact bounds at 0 and n successes (rounding would leave 1e-17).
    low = 0.0 if s == 0 or center <= half else center - half
    high = 1.0 if s == n or center + half >= 1.0 else center + half
    return [low, high]


def two_proportion_p(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    variance_a: float = 0.0,
    variance_b: float = 0.0,
) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (counting variance added).

    Under the null both rates equal the pooled rate p; each observed rate then also carries
    its counting variance p^2 variance. Equal rates (including all-zero) give 1.
    """
    s1, n1 = clamp(successes_a, trials_a)
    s0, n0 = clamp(successes_b, trials_b)
    if not (n1 and n0):
        return None
    diff = abs(s1 / n1 - s0 / n0)
    if diff == 0.0:
        return 1.0
    pooled = (s1 + s0) / (n1 + n0)
    var = pooled * ((1.0 - pooled) * (1.0 / n1 + 1.0 / n0) + (variance_a + variance_b) * pooled)
    return min(1.0, math.erfc(diff / math.sqrt(var) / _SQRT2))


def uplift_interval(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    variance: float = 0.0,
    control_variance: float = 0.0,
    z: float = Z,
) -> list[float] | None:
    """Interval of the relative uplift rate/control_rate - 1 (Katz log method).

    The log of a ratio of rates has variance 1/s - 1/n per arm (binomial, delta method) plus
    each arm's counting variance of its log rate. None when either arm has no success.
    """
    s1, n1 = clamp(successes, trials)
    s0, n0 = clamp(control_successes, control_trials)
    if not (s1 and s0):
        return None
    log_ratio = math.log((s1 * n0) / (s0 * n1))
    se = math.sqrt(1.0 / s1 - 1.0 / n1 + 1.0 / s0 - 1.0 / n0 + (variance + control_variance))
    return [math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjustment; None entries stay None and are not counted in the family."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    present.sort()
    adjusted: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        scaled = (m - rank) * p
        if scaled > running:
            running = scaled if scaled < 1.0 else 1.0
        adjusted[i] = running
    return adjusted
