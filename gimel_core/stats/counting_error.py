"""How much a stored count can be off: the counting error every statistic carries.

A Redis HyperLogLog count of n distinct uuids is modelled as ``n * exp(e)``, ``e`` normal with
mean 0 and standard deviation ``sigma(n) = hll_relative_error(n)``: the relative error measured
on Redis 6.2 (16,384 registers, Ertl's improved estimator). It is not the textbook constant
``1.04 / sqrt(16384)`` = 0.81%: 0.55-0.58% up to 10k, 0.63% at 20k, 0.73% at 100k, 0.78% at
200k, the textbook value only from about 500k (MEASURED_ERROR). ``exact`` counts carry
none, and every statistic then is exactly the textbook one.

A goal's uuids are a subset of its variant's participants (a converted visitor is counted in
both), so the two estimates share registers and their errors correlate positively. Measured:
for a subset of s uuids among n, ``Cov(e_s, e_n) = (s / n)^gamma sigma(s)^2`` with
gamma = 1.1 (gamma = 1 is exact for collisions among few uuids and for an idealised sketch,
where the superset's absolute error is the subset's plus an independent part; Redis's 6-bit
registers correlate a little less), so the log of a rate has the counting variance

    Var(log s_hat - log n_hat) = sigma(s)^2 (1 - 2 (s / n)^gamma) + sigma(n)^2

(0 when every participant converted: both counters then hold the same set). At 20% conversion
that is ~0.66 sigma(s)^2 + sigma(n)^2, against the 2 * 0.0081^2 of independent counters of
the textbook error: 2.1x less at 20k participants, 1.5x at 200k, 1.3x at 1M. Participants of
different variants are disjoint sets, so their errors are independent (SRM).

The measurement: ``python -m bench.aa --measure 3000,300,600`` (9 minutes) streams random
128-bit hex uuids into fresh HyperLogLogs of a redis-server 6.2, PFCOUNTing at every
cardinality of the table, with nested subsets (fractions 0.01, 0.05, 0.2, 0.5 and 0.8 of each
stream; 0.2 only in the last 600 streams) in HyperLogLogs of their own. From 100 to 200k
(3,300 streams: each measured variance within ~2.5%), at the fractions 0.05-0.8 with at least
25 uuids in the subset, the model's rate variance is 3% below to 12% above the measured one
(median 2% above); from 500k to 2M (900 streams at fraction 0.2, ~5%), 9% below to 3% above.
gamma = 1 would be up to 12% below it.
"""

from __future__ import annotations

import math

HLL_RSE = 1.04 / math.sqrt(16384)
"""The textbook relative standard error of a 16,384-register HyperLogLog (large counts)."""

MEASURED_ERROR: tuple[tuple[int, float], ...] = (
    # cardinality, sd of log(PFCOUNT / cardinality), from 3,300 streams of uuids (standard
    # error of each figure: 1.2% of it) to 100k, 3,900 at 200k (1.1%), 900 above (2.4%).
    # The mean error is within 0.02% of 0 from 500 on (-0.3% at 100, where a collision of two
    # uuids in one register loses one of them).
    (100, 0.00553),
    (200, 0.00537),
    (500, 0.00600),
    (1_000, 0.00554),
    (2_000, 0.00573),
    (5_000, 0.00578),
    (10_000, 0.00584),
    (20_000, 0.00629),
    (50_000, 0.00693),
    (100_000, 0.00735),
    (200_000, 0.00776),
    (500_000, 0.00804),
    (1_000_000, 0.00804),
    (2_000_000, 0.00820),
)
"""(true cardinality, standard deviation of log(PFCOUNT / cardinality)) on Redis 6.2."""

SUBSET_EXPONENT = 1.1
"""gamma in Cov(e_s, e_n) = (s / n)^gamma sigma(s)^2, fitted to the measured covariances."""

_LOG_N = [math.log(n) for n, _ in MEASURED_ERROR]
_SIGMA = [sigma for _, sigma in MEASURED_ERROR]


def hll_relative_error(count: float) -> float:
    """Relative standard error of a Redis HyperLogLog count of this cardinality.

    Linear in log(count) between the measured cardinalities, constant beyond the ends
    (below 100 the count is nearly exact and its error, a register collision now and then,
    is far below a rate's binomial noise; above 2M it is the large-count limit). 0 for 0.
    """
    if count <= 0:
        return 0.0
    x = math.log(count)
    if x <= _LOG_N[0]:
        return _SIGMA[0]
    if x >= _LOG_N[-1]:
        return _SIGMA[-1]
    i = next(i for i in range(1, len(_LOG_N)) if x <= _LOG_N[i])
    w = (x - _LOG_N[i - 1]) / (_LOG_N[i] - _LOG_N[i - 1])
    return _SIGMA[i - 1] + w * (_SIGMA[i] - _SIGMA[i - 1])


def count_variance(count: int, counting: str | None) -> float:
    """Counting variance of log(count): of one variant's participants, for the SRM test."""
    if counting != "hll":
        return 0.0
    return hll_relative_error(count) ** 2


def rate_variance(successes: int, trials: int, counting: str | None) -> float:
    """Counting variance of log(successes) - log(trials), the log of a variant's rate.

    The goal's counter holds a subset of the participants' uuids: their errors correlate
    (module docstring). Counts are clamped as the statistics clamp them.
    """
    if counting != "hll" or trials <= 0:
        return 0.0
    s = min(max(successes, 0), trials)
    sigma_s = hll_relative_error(s)
    sigma_n = hll_relative_error(trials)
    shared = (s / trials) ** SUBSET_EXPONENT
    return max(0.0, sigma_s * sigma_s * (1.0 - 2.0 * shared) + sigma_n * sigma_n)


def equivalent_rse(
    successes: int, trials: int, control_successes: int, control_trials: int, counting: str | None
) -> float:
    """One relative error per count that gives a statistic adding ``2 rse^2`` per arm to the
    variance of log(rate / control rate) (:mod:`.sequential`) this model's counting variance
    of that log ratio: sqrt((rate_variance + control's rate_variance) / 4)."""
    return math.sqrt(
        (
            rate_variance(successes, trials, counting)
            + rate_variance(control_successes, control_trials, counting)
        )
        / 4.0
    )
