"""The visitors bench/means.py simulates: the covariate correlates rho with each visitor's
total whatever its skew, and the running totals are what the snippet would send."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import means


@pytest.mark.parametrize("lift", [0.0, 0.15])
def test_the_covariate_correlates_rho_with_the_total(lift: float) -> None:
    n = 400_000
    data = means.arm(np.random.default_rng(7), n, lift)
    totals = data.totals
    # The standard error of a correlation near 0.7 at 400k is about 0.001; y's skew widens it.
    assert abs(np.corrcoef(data.covariate, totals)[0, 1] - means.RHO) < 0.01
    mean, variance = means.visitor_moments()
    assert abs(totals.mean() / (1 + lift) - mean) < 4 * math.sqrt(variance / n)
    assert abs(totals.std() / (1 + lift) / math.sqrt(variance) - 1) < 0.03
    assert abs((totals == 0).mean() - (1 - means.BUYERS)) < 0.005


def test_each_purchase_carries_the_visitors_total_before_it() -> None:
    data = means.arm(np.random.default_rng(3), 2_000)
    running: dict[int, float] = {}
    for visitor, amount, before in zip(data.owner, data.amount, data.before, strict=True):
        assert before == pytest.approx(running.get(visitor, 0.0), abs=1e-9)
        running[visitor] = running.get(visitor, 0.0) + amount
    # What the server adds, (total + v)^2 - total^2 per event, sums to each visitor's total^2.
    after = data.before + data.amount
    squares = np.sum(after * after - data.before * data.before)
    assert squares == pytest.approx(np.sum(data.totals**2), rel=1e-12)
    assert len(running) == np.count_nonzero(data.totals)
