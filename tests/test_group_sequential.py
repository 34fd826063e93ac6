"""Group-sequential bounds: checked against spotify-confidence, scipy and published tables."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import multivariate_normal, norm
from spotify_confidence.analysis.frequentist import sequential_bound_solver as spotify

from gimel_core.stats import group_sequential as gs


def even(looks: int, last: float = 1.0) -> list[float]:
    return [last * (i + 1) / looks for i in range(looks)]


LAN_DEMETS = {
    "obrien_fleming": lambda a, t: 2 - 2 * norm.cdf(norm.ppf(1 - a / 2) / np.sqrt(t)),
    "pocock": lambda a, t: a * np.log(1 + (np.e - 1) * t),
}


def oracle(monkeypatch: pytest.MonkeyPatch, t: list[float], sides: int, spending) -> np.ndarray:
    """spotify-confidence 4.1.0's bounds, called as its z-test calls them (ztrun 8, 1000 nints).

    It knows only the power family ``alpha t^rho``; for the O'Brien-Fleming and Pocock types its
    module-level ``_alphas`` (the cumulative and incremental spend per look) is replaced by the
    Lan-DeMets formulas written here again with scipy.
    """
    rho = spending if isinstance(spending, int) else 1
    if isinstance(spending, str):
        f = LAN_DEMETS[spending]

        def alphas(alpha: float, phi: float, tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            cumulative = np.array([f(alpha, x) for x in tt])
            return cumulative, np.diff(cumulative, prepend=0.0)

        monkeypatch.setattr(spotify, "_alphas", alphas)
    with warnings.catch_warnings():
        # Its pandas frames call numpy functions this numpy deprecates: the oracle's, not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        result = spotify.bounds(
            t=np.array(t), alpha=0.05, rho=rho, ztrun=8, sides=sides, max_nints=1000
        )
    return result.bounds


def ours(t: list[float], sides: int, spending) -> np.ndarray:
    how = spending if isinstance(spending, str) else gs.power_family(spending)
    return np.array(gs.bounds(t, 0.05, how, sides))


# (fractions, sides, spending: a name or the power family's rho). Where the oracle's own grid
# (trapezoids of 0.05 sd, at most 1000) and bisection (stops within 1e-7 of the spend) resolve
# a bound to 1e-4: see the two tests after this one for the schedules where they do not.
AGREE = [
    (even(2), 1, 1),
    (even(2), 2, 3),
    (even(3), 1, 2),
    (even(3), 2, 1),
    (even(5), 1, 1),
    (even(5), 2, 2),
    (even(5), 1, 3),
    (even(5), 2, "obrien_fleming"),
    (even(5), 1, "obrien_fleming"),
    (even(5), 2, "pocock"),
    (even(5, 0.8), 1, 2),
    (even(5, 0.8), 2, 3),
    (even(10), 2, 1),
    (even(10), 1, 3),
    (even(10), 2, "pocock"),
    (even(12, 0.6), 2, 1),
    (even(12, 0.6), 2, "pocock"),
    (even(25), 2, 1),
    (even(30), 2, 1),
    (even(30), 2, "pocock"),
    (even(40, 0.4), 1, "pocock"),
    ([0.001, 0.2, 0.5, 0.75, 1.0], 2, 1),
    ([0.001, 0.2, 0.5, 0.75, 1.0], 1, "pocock"),
    ([0.0005, 0.01, 0.4, 1.0], 2, 3),
    ([0.15, 0.4, 0.45, 1.0], 2, 2),
    ([0.15, 0.4, 0.45, 1.0], 1, 1),
    ([(i / 20) ** 2 for i in range(1, 21)], 2, 1),
    ([0.07 * i for i in range(1, 14)], 2, 2),
]


@pytest.mark.parametrize(("t", "sides", "spending"), AGREE)
def test_bounds_equal_spotify_confidence(monkeypatch, t, sides, spending):
    assert np.abs(ours(t, sides, spending) - oracle(monkeypatch, t, sides, spending)).max() < 1e-4


@pytest.mark.parametrize(
    ("t", "sides", "spending"),
    [
        (even(25), 2, "obrien_fleming"),
        (even(30), 1, 3),
        (even(60), 2, 1),
        (even(60), 1, "pocock"),
        (even(60), 2, "obrien_fleming"),
        (even(60, 0.5), 2, 3),
        (even(12, 0.6), 2, "obrien_fleming"),
    ],
)
def test_bounds_equal_spotify_confidence_within_its_own_tolerance(monkeypatch, t, sides, spending):
    """Many looks, and looks that spend little. The oracle stops its bisection once a look's
    spend is within 1e-7 of the target, which leaves a bound spending 1e-6 free to move by 0.04,
    and its trapezoids add up to a few 1e-4 in z over 60 looks. So each look agrees within
    3e-4 in z, or else its bound spends what ours does within that 1e-7 (plus 5e-8 slack)."""
    mine = ours(t, sides, spending)
    theirs = oracle(monkeypatch, t, sides, spending)

    def spend(b: np.ndarray, k: int) -> float:
        before = gs.crossing(t[:k], b[:k]) if k else 0.0
        return gs.crossing(t[: k + 1], b[: k + 1]) - before

    for k in np.flatnonzero(np.abs(mine - theirs) >= 3e-4):
        assert spend(theirs, k) == pytest.approx(spend(mine, k), abs=1.5e-7), k


def test_where_the_oracle_is_coarse_the_exact_normal_decides(monkeypatch):
    """Two close looks: the oracle's grid misses by 2e-3; the exact bivariate normal (scipy's
    Genz integration of P(Z1 < b1, Z2 >= b2), corr sqrt(t1 / t2)) agrees with ours."""
    t = [0.5, 0.51]
    mine = ours(t, 2, 1)
    level = 0.025
    b1 = norm.isf(level * t[0])
    r = math.sqrt(t[0] / t[1])
    both = multivariate_normal([0, 0], [[1, r], [r, 1]], abseps=1e-12, releps=1e-12)

    def excess(b2: float) -> float:
        return norm.cdf(b1) - both.cdf([b1, b2]) - level * (t[1] - t[0])

    exact = brentq(excess, 1.0, 6.0, xtol=1e-12)
    assert mine[0] == pytest.approx(b1, abs=1e-12)
    assert mine[1] == pytest.approx(exact, abs=2e-6)
    assert abs(oracle(monkeypatch, t, 2, 1)[1] - exact) > 1e-3


def test_published_obrien_fleming_and_pocock_types():
    """Lan-DeMets spending, 5 equal looks, two-sided 0.05 (0.025 a side): Jennison & Turnbull
    (2000) and gsDesign's sfLDOF / sfLDPocock print the bounds to 3-4 decimals."""
    obf = gs.bounds(even(5), 0.05, "obrien_fleming")
    assert obf == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=5e-4)
    pocock = gs.bounds(even(5), 0.05, "pocock")
    assert pocock == pytest.approx((2.4380, 2.4268, 2.4101, 2.3966, 2.3859), abs=1e-4)


@pytest.mark.parametrize("spending", gs.SPENDING)
@pytest.mark.parametrize("t", [even(5), even(25, 0.7), [0.001, 0.3, 0.31, 0.9]])
def test_crossing_at_no_drift_is_the_alpha_spent(t, spending):
    """Each side of a two-sided 0.05 design spends f(0.025, t_last) in all, by construction."""
    spent = gs.crossing(t, gs.bounds(t, 0.05, spending))
    assert spent == pytest.approx(LAN_DEMETS[spending](0.025, t[-1]), rel=1e-5)


def test_power_of_one_look_is_the_fixed_horizon_power():
    """One final look is the fixed test: scipy's normal gives the 80% drift and its power."""
    drift = norm.isf(0.025) + norm.ppf(0.8)
    assert gs.bounds([1.0]) == pytest.approx((norm.isf(0.025),), abs=1e-12)
    assert gs.crossing([1.0], gs.bounds([1.0]), drift) == pytest.approx(0.8, abs=1e-12)
    assert gs.required_drift([1.0], gs.bounds([1.0]), 0.8) == pytest.approx(drift, abs=1e-9)


def test_power_of_25_daily_looks_matches_a_monte_carlo():
    """25 O'Brien-Fleming looks at the fixed-horizon 80% drift: a few percent below 0.8.
    Checked against 200k simulated paths of independent increments (numpy, fixed seed)."""
    t = even(25)
    b = gs.bounds(t)
    drift = norm.isf(0.025) + norm.ppf(0.8)
    power = gs.crossing(t, b, drift)
    assert 0.74 < power < 0.79
    rng = np.random.default_rng(21)
    paths = 200_000
    dt = np.diff(np.array([0.0, *t]))
    score = np.cumsum(rng.normal(drift * dt, np.sqrt(dt), size=(paths, len(t))), axis=1)
    crossed = (score / np.sqrt(t) >= np.array(b)).any(axis=1).mean()
    assert power == pytest.approx(crossed, abs=4 * math.sqrt(0.2 / paths))
    assert gs.required_drift(t, b, power) == pytest.approx(drift, abs=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gs.bounds([]), "at least one look"),
        (lambda: gs.bounds([0.5, 0.4]), "strictly increasing"),
        (lambda: gs.bounds([0.5, 0.5]), "strictly increasing"),
        (lambda: gs.bounds([0.0, 0.5]), r"\(0, 1\]"),
        (lambda: gs.bounds([0.5, 1.2]), r"\(0, 1\]"),
        (lambda: gs.bounds([0.5], alpha=0.0), "alpha"),
        (lambda: gs.bounds([0.5], alpha=1.0), "alpha"),
        (lambda: gs.bounds([0.5], sides=3), "sides must be 1 or 2"),
        (lambda: gs.bounds([0.5], spending="haybittle"), "obrien_fleming, pocock"),
        (lambda: gs.spending_function("linear"), "unknown spending function 'linear'"),
        (lambda: gs.crossing([0.5, 1.0], [3.0]), "one bound per look"),
        (lambda: gs.required_drift([1.0], [1.96], 1.0), "power"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_look_spending_nothing_is_capped_and_finite():
    """O'Brien-Fleming at 1% of the information spends 1e-112: the bound is the cap, 8."""
    b = gs.bounds([0.01, 1.0])
    assert b[0] == gs.Z_CAP
    assert b[1] == pytest.approx(norm.isf(0.025), abs=1e-6)
