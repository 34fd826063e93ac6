"""Power, MDE, participants needed and days remaining: checked against statsmodels' power
functions (fixed design) and GrowthBook's published fixture (fixed and sequential)."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import pytest
from statsmodels.stats.power import NormalIndPower

from gimel_core.stats import power as pw
from gimel_core.stats.counting_error import equivalent_rse
from gimel_core.stats.power import Design
from gimel_core.stats.sequential import sequential_uplift

Z = NormalDist().inv_cdf(0.975)

# GrowthBook's published fixture, packages/shared/test/power.test.ts of growthbook/growthbook
# (at 626bef34ea397534bac45c85b4c5889c34c70ecf), "calculates power correctly" and the three
# tests after it: a mean metric, 5% lift, 400,000 users over 3 variations, two-sided alpha
# 0.05, sequential tuning N* = 5000. Values as published, to 5 decimals.
FIXTURE_MEAN = 10.0
FIXTURE_VARIANCE = 3909.9997749994377
FIXTURE = {
    ("fixed", "power"): 0.52144,
    ("sequential", "power"): 0.20596,
    ("fixed", "mde"): 0.07027,
    ("sequential", "mde"): 0.12821,
}

# The same file, "checks power" and "checks sequential power": 4,500 users a week over 3
# variations, weeks 1 to 9, each week's pair (click_through_rate: binomial, rate 0.1, lift 0.05;
# revenue: mean 0.1, sd sqrt(0.5), lift 0.3). GrowthBook gives a binomial metric the control's
# variance p (1 - p) in both arms, so it is passed here as a variance.
WEEKLY = {
    ("fixed", "power"): [
        0.073, 0.17053, 0.0965, 0.29389, 0.1204, 0.41122, 0.14458, 0.51749, 0.16895,
        0.61037, 0.19342, 0.68938, 0.21791, 0.75513, 0.24235, 0.80886, 0.26666, 0.85213,
    ],
    ("fixed", "mde"): [
        0.36767, 1.26769, 0.24505, 0.71941, 0.19525, 0.54299, 0.16673, 0.4506, 0.14774,
        0.39208, 0.13394, 0.35099, 0.12336, 0.32018, 0.11491, 0.29603, 0.10796, 0.27647,
    ],
    ("sequential", "power"): [
        0.05936, 0.09832, 0.06912, 0.14992, 0.07849, 0.19972, 0.08761, 0.24784, 0.09657,
        0.29426, 0.10541, 0.33888, 0.11415, 0.38165, 0.12282, 0.42249, 0.13142, 0.46136,
    ],
    ("sequential", "mde"): [
        0.65545, 4.33868, 0.4112, 1.51846, 0.32394, 1.04943, 0.27607, 0.84084, 0.24484,
        0.71862, 0.22241, 0.63663, 0.20532, 0.577, 0.19172, 0.53123, 0.18058, 0.49473,
    ],
}  # fmt: skip
WEEKLY_METRICS = [(0.1, 0.1 * 0.9, 0.05), (0.1, 0.5, 0.3)]  # (mean, variance, lift)


def close5(value: float | None, published: float) -> bool:
    """Equal to a figure published to 5 decimals (its rounding interval, float slack)."""
    return value is not None and abs(value - published) <= 5e-6 + 1e-12


@pytest.mark.parametrize("analysis", ["fixed", "sequential"])
def test_growthbook_fixture(analysis: str) -> None:
    design = Design(FIXTURE_MEAN, FIXTURE_VARIANCE, variants=3, analysis=analysis, tuning=5000)
    assert close5(pw.power(design, 0.05, 400_000), FIXTURE[analysis, "power"])
    assert close5(pw.mde(design, 400_000, 0.8), FIXTURE[analysis, "mde"])


@pytest.mark.parametrize("analysis", ["fixed", "sequential"])
def test_growthbook_weekly_fixture(analysis: str) -> None:
    powers, mdes = [], []
    for week in range(1, 10):
        for mean, variance, lift in WEEKLY_METRICS:
            design = Design(mean, variance, variants=3, analysis=analysis)
            powers.append(pw.power(design, lift, 4500 * week))
            mdes.append(pw.mde(design, 4500 * week))
    for got, published in zip(powers, WEEKLY[analysis, "power"], strict=True):
        assert close5(got, published), (got, published)
    for got, published in zip(mdes, WEEKLY[analysis, "mde"], strict=True):
        assert close5(got, published), (got, published)


# Fixed design against statsmodels' z-test power. Our test statistic is (r_hat - 1) / se with
# se^2 = (v1 / n + v0 (1 + lift)^2 / n) / m0^2 (the delta method), so its mean under the
# alternative is lift / se = (m1 - m0) / sqrt((v1 + v0 (1 + lift)^2) / 2) * sqrt(n / 2): a
# two-sample z-test of n per arm with standardized effect size (m1 - m0) / sd, sd^2 the mean
# of the variant's variance and the control's scaled by (1 + lift)^2. NormalIndPower's power
# at that effect size, nobs1 = n and ratio = 1 is the same normal approximation, both tails.
RATES = [0.01, 0.05, 0.2, 0.5, 0.9]
LIFTS = [0.01, 0.05, 0.2, -0.03, -0.3]
PER_ARM = [200, 20_000, 500_000]


def effect_size(rate: float, lift: float) -> float:
    """The standardized effect size of our statistic's mean (above), a binomial goal."""
    rate1 = rate * (1.0 + lift)
    pooled = (rate1 * (1.0 - rate1) + rate * (1.0 - rate) * (1.0 + lift) ** 2) / 2.0
    return abs(rate1 - rate) / math.sqrt(pooled)


@pytest.mark.parametrize(("rate", "lift"), list(itertools.product(RATES, LIFTS)))
def test_fixed_power_is_statsmodels(rate: float, lift: float) -> None:
    if rate * (1.0 + lift) >= 1.0:
        return
    design = Design(rate, analysis="fixed")
    for n in PER_ARM:
        expected = NormalIndPower().power(effect_size(rate, lift), n, 0.05, ratio=1.0)
        assert pw.power(design, lift, 2 * n) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # More variants: the same per-arm sizes, one variant against the control.
    design3 = Design(rate, analysis="fixed", variants=4)
    expected = NormalIndPower().power(effect_size(rate, lift), 20_000, 0.01, ratio=1.0)
    assert pw.power(Design(rate, variants=4, alpha=0.01, analysis="fixed"), lift, 80_000) == (
        pytest.approx(expected, rel=1e-9)
    )
    assert pw.power(design3, lift, 80_000) == pytest.approx(pw.power(design, lift, 40_000))


# The MDE and the participants needed are defined by the chance of a significant result in
# the effect's own direction, statsmodels' one-sided power at alpha / 2 ("larger").
@pytest.mark.parametrize(("rate", "n"), list(itertools.product(RATES, PER_ARM)))
@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_fixed_mde_is_statsmodels(rate: float, n: int, target: float) -> None:
    """At our MDE, statsmodels' power is the target; its own solution agrees to its tolerance."""
    solved = NormalIndPower().solve_power(
        None, nobs1=n, alpha=0.025, power=target, alternative="larger"
    )
    design = Design(rate, analysis="fixed")
    for direction, sign in (("increase", 1.0), ("decrease", -1.0)):
        found = pw.mde(design, 2 * n, target, direction)
        if found is None:
            # Out of reach only where the rate cannot move that far.
            limit = 1.0 / rate - 1.0 if sign > 0 else 1.0
            assert effect_size(rate, sign * limit * (1 - 1e-9)) < solved
            continue
        es = effect_size(rate, sign * found)
        at_mde = NormalIndPower().power(es, n, 0.025, alternative="larger")
        assert at_mde == pytest.approx(target, abs=1e-9)
        # solve_power's root finder stops within about 1e-6 of the effect size.
        assert es == pytest.approx(solved, abs=5e-6)


@pytest.mark.parametrize(("rate", "lift"), list(itertools.product(RATES, LIFTS)))
def test_participants_needed_is_statsmodels(rate: float, lift: float) -> None:
    if rate * (1.0 + lift) >= 1.0:
        return
    es = effect_size(rate, lift)
    solved = NormalIndPower().solve_power(es, None, 0.025, power=0.8, alternative="larger")
    needed = pw.participants_needed(Design(rate, analysis="fixed"), lift, 0.8)
    assert needed is not None
    # The fewest whole participants over the two variants: statsmodels' power is 0.8 or more
    # at needed / 2 per variant, less one participant earlier.
    power_at = NormalIndPower().power(es, needed / 2, 0.025, alternative="larger")
    power_before = NormalIndPower().power(es, (needed - 1) / 2, 0.025, alternative="larger")
    assert power_before < 0.8 <= power_at + 1e-12
    assert needed / 2 == pytest.approx(solved, rel=1e-6, abs=1.0)


@pytest.mark.parametrize("analysis", ["fixed", "sequential"])
@pytest.mark.parametrize("counting", [None, "hll"])
@pytest.mark.parametrize("tuning", [1000, 5000, 50_000])
def test_standard_error_is_that_of_the_reported_interval(
    analysis: str, counting: str | None, tuning: int
) -> None:
    """z times the planned standard error is the half-width Gimel's sequential statistic reports
    at those counts (fixed: the same variance, without the padding)."""
    design = Design(0.2, analysis=analysis, tuning=tuning, counting=counting)
    s1, s0, n = 21_000, 20_000, 100_000
    rse = equivalent_rse(s1, n, s0, n, counting)
    look = sequential_uplift(s1, n, s0, n, tuning=tuning, rse=rse)
    assert look is not None
    se = pw.standard_error(design, 0.05, 2 * n)
    assert se is not None
    if analysis == "sequential":
        assert Z * se == pytest.approx((look.ci[1] - look.ci[0]) / 2, rel=1e-12)
    else:
        assert se * se == pytest.approx(look.variance, rel=1e-12)


GRID = list(itertools.product([0.02, 0.2, 0.6], [0.02, 0.1], [4_000, 100_000, 2_000_000]))


@pytest.mark.parametrize(("rate", "lift", "n"), GRID)
def test_sequential_needs_more(rate: float, lift: float, n: int) -> None:
    fixed, sequential = Design(rate, analysis="fixed"), Design(rate, analysis="sequential")
    assert pw.standard_error(sequential, lift, n) > pw.standard_error(fixed, lift, n)  # type: ignore[operator]
    sequential_power, fixed_power = pw.power(sequential, lift, n), pw.power(fixed, lift, n)
    assert sequential_power is not None and fixed_power is not None
    assert sequential_power < fixed_power or sequential_power == fixed_power == 1.0
    assert pw.mde(sequential, n) > pw.mde(fixed, n)  # type: ignore[operator]
    assert pw.participants_needed(sequential, lift) > pw.participants_needed(fixed, lift)  # type: ignore[operator]


@pytest.mark.parametrize(("rate", "lift", "n"), GRID)
@pytest.mark.parametrize("analysis", ["fixed", "sequential"])
def test_hll_counting_error_costs_power(rate: float, lift: float, n: int, analysis: str) -> None:
    exact, hll = Design(rate, analysis=analysis), Design(rate, analysis=analysis, counting="hll")
    exact_power, hll_power = pw.power(exact, lift, n), pw.power(hll, lift, n)
    assert exact_power is not None and hll_power is not None
    assert hll_power < exact_power
    assert pw.mde(hll, n) > pw.mde(exact, n)  # type: ignore[operator]
    # Exact counts carry no counting error: the same figures as no counting mode at all.
    counted = Design(rate, analysis=analysis, counting="exact")
    assert pw.power(counted, lift, n) == exact_power
    assert pw.mde(counted, n) == pw.mde(exact, n)
    needed = pw.participants_needed(hll, lift)
    if needed is not None:
        assert needed > pw.participants_needed(exact, lift)  # type: ignore[operator]


def test_hll_floor_puts_small_effects_out_of_reach() -> None:
    """The counting error does not shrink with participants: its standard error alone (that of
    the largest counts measured) exceeds what 80% power at a 0.5% lift allows."""
    hll = Design(0.2, analysis="fixed", counting="hll")
    floor = pw.standard_error(hll, 0.005, pw.MAX_PARTICIPANTS)
    assert floor is not None and 0.005 / floor < Z + NormalDist().inv_cdf(0.8)
    assert pw.participants_needed(hll, 0.005) is None
    assert pw.participants_needed(Design(0.2, analysis="fixed"), 0.005) is not None
    # The MDE stays above the floor however large the experiment.
    assert pw.mde(hll, pw.MAX_PARTICIPANTS) > 2.8 * floor  # type: ignore[operator]


def detection(design: Design, lift: float, n: float) -> float:
    """Chance of a significant result in the effect's own direction."""
    se = pw.standard_error(design, lift, n)
    assert se is not None
    return NormalDist().cdf(abs(lift) / se - Z)


@pytest.mark.parametrize("design", [Design(0.05), Design(0.3, counting="hll"), Design(0.3)])
@pytest.mark.parametrize("lift", [0.03, 0.2, -0.1])
def test_participants_needed_is_the_fewest(design: Design, lift: float) -> None:
    needed = pw.participants_needed(design, lift, 0.9)
    if needed is None:
        return
    assert detection(design, lift, needed) >= 0.9 - 1e-12
    assert detection(design, lift, needed - 1) < 0.9
    assert pw.power(design, lift, needed) >= 0.9  # type: ignore[operator]


def test_mde_reaches_the_target_power() -> None:
    for design, direction in itertools.product(
        [Design(0.05), Design(0.3, counting="hll"), Design(0.7, variants=3)],
        ["increase", "decrease"],
    ):
        found = pw.mde(design, 50_000, 0.8, direction)
        assert found is not None and found > 0
        lift = found if direction == "increase" else -found
        assert detection(design, lift, 50_000) == pytest.approx(0.8, abs=1e-9)
        assert pw.power(design, lift, 50_000) == pytest.approx(0.8, abs=1e-5)


def test_mde_out_of_reach_below_growthbooks_bound() -> None:
    """For a mean metric an MDE exists only from n > v (z_{1-alpha/2} + z_power)^2 / m^2 per
    variant (GrowthBook's power documentation): the control's noise grows with the effect."""
    z = Z + NormalDist().inv_cdf(0.8)
    bound = FIXTURE_VARIANCE * z * z / FIXTURE_MEAN**2
    design = Design(FIXTURE_MEAN, FIXTURE_VARIANCE, variants=3, analysis="fixed")
    assert pw.mde(design, 3 * bound * 0.999) is None
    assert pw.mde(design, 3 * bound * 1.01) is not None


def test_days_remaining() -> None:
    assert pw.days_remaining(10_000, 2_500, 5) == 15.0
    assert pw.days_remaining(1_000, 300, 2.5) == pytest.approx(700 / 120)
    assert pw.days_remaining(10_000, 10_000, 5) == 0.0
    assert pw.days_remaining(10_000, 12_000, 5) == 0.0
    assert pw.days_remaining(None, 100, 5) is None
    assert pw.days_remaining(10_000, 0, 5) is None
    assert pw.days_remaining(10_000, 100, 0) is None


def test_outlook_is_its_parts() -> None:
    design = Design(0.1, counting="hll")
    out = pw.outlook(design, 200_000, 0.1, 30_000, 6)
    assert out.mde == pw.mde(design, 200_000)
    assert out.power == pw.power(design, 0.1, 200_000)
    assert out.needed == pw.participants_needed(design, 0.1)
    assert out.needed is not None
    assert out.days_remaining == pytest.approx((out.needed - 30_000) / 5_000)
    decrease = pw.outlook(design, 200_000, 0.1, 30_000, 6, direction="decrease")
    assert decrease.power == pw.power(design, -0.1, 200_000)
    assert decrease.mde == pw.mde(design, 200_000, direction="decrease")
    # Without a declared MDE, toward the planned size; without either, nothing to count to.
    assert pw.outlook(design, 200_000, None, 50_000, 5) == pw.Outlook(
        pw.mde(design, 200_000), None, 200_000, 15.0
    )
    assert pw.outlook(design, None, None, 50_000, 5) == pw.Outlook(None, None, None, None)


def test_no_statistic_is_none() -> None:
    for rate in (0.0, 1.0, -0.1, 1.5):
        design = Design(rate)
        assert pw.power(design, 0.05, 10_000) is None
        assert pw.mde(design, 10_000) is None
        assert pw.participants_needed(design, 0.05) is None
    design = Design(0.4)
    assert pw.power(design, 0.05, 0) is None
    assert pw.power(design, 0.05, 1) is None  # fewer than one participant per variant
    assert pw.mde(design, 0) is None
    assert pw.power(design, 1.6, 10_000) is None  # a rate above 1
    assert pw.power(design, 1.5, 10_000) is not None  # a rate of exactly 1
    assert pw.participants_needed(design, 0.0) is None
    assert pw.power(design, 0.0, 10_000) == pytest.approx(0.05)
    assert pw.power(Design(0.4, analysis="fixed"), 0.0, 10_000) == pytest.approx(0.05)


def test_shares() -> None:
    """Unequal splits: the arms' sizes are what counts."""
    even = Design(0.2, analysis="fixed")
    assert pw.power(Design(0.2, shares=(0.5, 0.5), analysis="fixed"), 0.05, 10_000) == (
        pytest.approx(pw.power(even, 0.05, 10_000))
    )
    # 3 variants at (0.25, 0.25, 0.5): each variant with a control twice its size.
    uneven = Design(0.2, variants=3, shares=(0.25, 0.5), analysis="fixed")
    rate1 = 0.2 * 1.05
    se = math.sqrt((rate1 * (1 - rate1) / 2_500 + 0.16 * 1.05**2 / 5_000) / 0.04)
    assert pw.standard_error(uneven, 0.05, 10_000) == pytest.approx(se, rel=1e-12)
    assert Design(0.2, variants=3, shares=(1 / 3, 2 / 3)).arms(9) == pytest.approx((3, 6))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"analysis": "bayesian"},
        {"tuning": 0},
        {"variants": 1},
        {"variance": -1.0},
        {"variance": 0.2, "counting": "hll"},
        {"shares": (0.6, 0.6)},
        {"shares": (0.5, 0.5000001)},
        {"shares": (0.0, 0.5)},
    ],
)
def test_invalid_design(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Design(0.2, **kwargs)  # type: ignore[arg-type]


def test_invalid_target() -> None:
    with pytest.raises(ValueError):
        pw.mde(Design(0.2), 10_000, 0.04)
    with pytest.raises(ValueError):
        pw.participants_needed(Design(0.2), 0.05, 1.0)
    with pytest.raises(ValueError):
        pw.mde(Design(0.2), 10_000, direction="sideways")
    with pytest.raises(ValueError):
        pw.outlook(Design(0.2), None, 0.05, 100, 1, direction="sideways")
