"""The hll counting-error model: against its measurement on Redis, and an A/A study on real
HyperLogLogs through the app's statistics (bench/aa.py at a smaller scale)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from statistics import NormalDist

import pytest
from scipy import stats as sps

from bench import aa
from gimel_core.embedded import EmbeddedRedis
from gimel_core.stats.counting_error import (
    HLL_RSE,
    MEASURED_ERROR,
    count_variance,
    hll_relative_error,
    rate_variance,
)

# Var(log goal count - log participants count) measured on Redis 6.2 (python -m bench.aa
# --measure 3000,300,600: 3,300 streams of random uuids to 200k, 300 to 2M and 600 more from
# 200k to 2M, a subset of fraction f of each counted in a second HyperLogLog), with its
# standard error:
# (participants, fraction, variance, standard error)
MEASURED_RATE_VARIANCE = [
    (1_000, 0.2, 4.926e-05, 1.2e-06),
    (2_000, 0.2, 5.290e-05, 1.3e-06),
    (2_000, 0.5, 3.239e-05, 8.0e-07),
    (10_000, 0.05, 6.449e-05, 1.6e-06),
    (20_000, 0.2, 6.034e-05, 1.5e-06),
    (20_000, 0.5, 4.102e-05, 1.0e-06),
    (50_000, 0.2, 6.977e-05, 1.7e-06),
    (100_000, 0.2, 7.864e-05, 1.9e-06),
    (200_000, 0.05, 9.415e-05, 2.3e-06),
    (200_000, 0.2, 8.713e-05, 2.0e-06),
    (200_000, 0.5, 6.318e-05, 1.6e-06),
    (200_000, 0.8, 2.715e-05, 6.7e-07),
    (500_000, 0.2, 1.088e-04, 5.1e-06),
    (1_000_000, 0.2, 1.008e-04, 4.7e-06),
    (1_000_000, 0.5, 6.663e-05, 5.4e-06),
    (2_000_000, 0.2, 1.128e-04, 5.3e-06),
]


def test_relative_error_follows_the_measured_table() -> None:
    for n, sigma in MEASURED_ERROR:
        assert hll_relative_error(n) == pytest.approx(sigma, rel=1e-12)
    # linear in log n between measured points, constant beyond them, nothing for nothing
    (n0, s0), (n1, s1) = MEASURED_ERROR[7], MEASURED_ERROR[8]
    assert hll_relative_error(math.sqrt(n0 * n1)) == pytest.approx((s0 + s1) / 2)
    assert hll_relative_error(10) == MEASURED_ERROR[0][1]
    assert hll_relative_error(10**9) == MEASURED_ERROR[-1][1]
    assert hll_relative_error(0) == 0.0
    # Measured: more accurate than the textbook 1.04/sqrt(m) below a million, and 1.04/sqrt(m)
    # (0.81%) within the measurement's error above.
    assert all(sigma < 0.95 * HLL_RSE for n, sigma in MEASURED_ERROR if n <= 100_000)
    assert hll_relative_error(2_000_000) == pytest.approx(HLL_RSE, rel=0.05)


@pytest.mark.parametrize(("n", "fraction", "measured", "se"), MEASURED_RATE_VARIANCE)
def test_rate_variance_matches_the_measurement(
    n: int, fraction: float, measured: float, se: float
) -> None:
    model = rate_variance(round(fraction * n), n, "hll")
    # Never below the measurement by more than 3% or its sampling error (3 standard errors),
    # and at most 13% above it: the model is fitted across cardinalities and fractions, and
    # errs on the side of caution where it errs.
    assert model >= min(measured / 1.03, measured - 3 * se), (model, measured)
    assert model <= 1.13 * measured, (model, measured)
    # The model of the first release (independent counters, 1.04/sqrt(m) each) is far off.
    assert 2 * HLL_RSE**2 > 1.15 * measured


def test_rate_variance_edges() -> None:
    assert rate_variance(0, 0, "hll") == 0.0
    assert rate_variance(5, 10, "exact") == 0.0
    assert rate_variance(5, 10, None) == 0.0
    # Every participant converted: the goal's counter holds the same set, the rate is exact.
    assert rate_variance(50_000, 50_000, "hll") == 0.0
    assert rate_variance(60_000, 50_000, "hll") == 0.0  # clamped as the statistics clamp
    # No conversion: the rate is 0 whatever the participants' count is.
    assert rate_variance(0, 50_000, "hll") == pytest.approx(hll_relative_error(50_000) ** 2)
    # Correlated counters: a rate is more precise than two independent counts would make it.
    s, n = 40_000, 200_000
    independent = hll_relative_error(s) ** 2 + hll_relative_error(n) ** 2
    assert rate_variance(s, n, "hll") < 0.9 * independent
    assert count_variance(n, "hll") == hll_relative_error(n) ** 2
    assert count_variance(n, "exact") == 0.0


def test_ks_uniform_matches_scipy() -> None:
    rng = __import__("random").Random(3)
    for n in (20, 200, 2_000):
        for power in (1.0, 1.1, 1.5):
            values = [rng.random() ** power for _ in range(n)]
            d, p = aa.ks_uniform(values)
            expected = sps.kstest(values, "uniform")
            assert d == pytest.approx(expected.statistic, rel=1e-12)
            assert p == pytest.approx(expected.pvalue, rel=0.05, abs=0.003)


@pytest.fixture(scope="module")
def hll_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of our own, without the suite's append-only file: it would log the
    20 million members this study PFADDs."""
    data: Path = tmp_path_factory.mktemp("aa")
    server = EmbeddedRedis(data, extra_args=["--appendonly", "no"]).start()
    yield server
    server.stop()


def test_aa_on_real_hyperloglogs_is_calibrated(hll_server: EmbeddedRedis) -> None:
    """400 A/A experiments of 20,000 participants per arm at 20%, counted by Redis
    HyperLogLogs exactly as Gimel counts them, analysed as the app analyses them (~4 s).

    Deterministic (seeded uuids, Redis's fixed hash): 17 of 400 reach p < 0.05 (4.2%
    [2.7, 6.7]), the mean z^2 is 0.91 and the KS p-value 0.21. The first release's model on
    the same counters: 7 (1.8% [0.9, 3.6]), 0.72 and 0.0001; without any counting error:
    29 (7.2% [5.1, 10.2]) and 1.20. Both would fail here.
    """
    pipe = aa.Pipe(hll_server.url)
    try:
        reps = aa.simulate(pipe, 20_000, 400, 0.2, 0.0, seed=11)
    finally:
        pipe.close()
    assert all(r.true[1] == r.true[3] == 20_000 for r in reps)
    assert all(abs(r.hll[1] / 20_000 - 1) < 0.05 for r in reps)  # counted, not copied
    p_values = [aa.analysed(r.hll, "hll")[0] for r in reps]
    rejected = sum(p < 0.05 for p in p_values)
    low, high = aa.wilson_interval(rejected, len(reps))
    assert low <= 0.05 <= high
    assert rejected / len(reps) >= 0.03
    # The variance of the test statistic is the modelled one: mean z^2 near 1 (its standard
    # error with 400 experiments: ~0.07), where the first release's model gives ~0.8.
    z2 = [NormalDist().inv_cdf(1 - p / 2) ** 2 for p in p_values if p < 1]
    assert 0.85 < sum(z2) / len(z2) < 1.15
    assert aa.ks_uniform(p_values)[1] > 0.01
