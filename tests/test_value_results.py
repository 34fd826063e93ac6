"""Value goals and CUPED in the results, checked figure by figure against independent sources.

Counts are built directly (:class:`ExperimentCounts` with its sums filled, as storage reads
them) and analysed; every figure of a row is compared with GrowthBook's ``gbstats`` 0.8.0
(``SampleMeanStatistic`` and ``RegressionAdjustedStatistic`` under ``TwoSidedTTest`` and
``SequentialTwoSidedTTest``, relative difference: tests/test_means.py calls it the same way),
the mean's interval with scipy's Student t, the chance to beat with scipy's normal, Holm with
statsmodels' ``multipletests``, and the group-sequential bound with its closed form (scipy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from flask import Flask
from gbstats.frequentist.tests import TwoSidedTTest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from test_means import _adjusted, gbstats_result
from test_openapi import conforms

from conftest import AUTH
from gimel_core import plans
from gimel_core.analysis import analyse, analyse_history
from gimel_core.cache import Caches
from gimel_core.results import ExperimentCounts, ExperimentResult, Settings, VariantResult
from gimel_core.stats.means import Sums

TOLERANCE = 1e-9
TODAY = 20_000
"""A UTC day number: the counts are read on it."""


def _gap(ours: float | None, theirs: float) -> float:
    assert ours is not None
    return abs(ours - theirs) / max(1.0, abs(theirs))


def plan(
    goals: list[Any] | None = None, covariate: str | None = "orders", **more: Any
) -> plans.Plan:
    body: dict[str, Any] = {
        "variants": ["control", "red"],
        "goals": goals or [{"name": "revenue", "type": "value", "cap": 1000}],
        **more,
    }
    if covariate:
        body["covariate"] = covariate
    return plans.parse(body, 20, 50)


def draw(
    seed: int, n: int, lift: float = 0.0, rho: float = 0.7, rate: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """n participants: a log-normal revenue (0 for those who did not buy) and a pre-period
    covariate correlated with it."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    x = np.exp(0.5 + 0.8 * z)
    noise = rng.standard_normal(n)
    buys = rng.random(n) < rate
    y = np.exp(1.0 + 0.8 * (rho * z + math.sqrt(1 - rho * rho) * noise)) * buys * (1 + lift)
    return y, x


def sums(y: np.ndarray, x: np.ndarray) -> Sums:
    return Sums(
        len(y),
        float(y.sum()),
        float((y * y).sum()),
        float(x.sum()),
        float((x * x).sum()),
        float((x * y).sum()),
    )


def cells_of(
    arms: dict[str, dict[str, Sums]], declared: plans.Plan
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], float]]:
    """Counts and sums as storage keeps them: goal -> variant -> that goal's sums (a binary
    goal's sum_y its conversions); the participants and covariate from the first goal."""
    counts: dict[tuple[str, str], int] = {}
    moments: dict[tuple[str, str, str], float] = {}
    for goal, by_variant in arms.items():
        declared_goal = declared.goal(goal)
        valued = declared_goal is not None and declared_goal.valued
        for variant, s in by_variant.items():
            counts["participate", variant] = s.n
            moments["participate", variant, "x"] = s.sum_x
            moments["participate", variant, "x2"] = s.sum_x2
            if valued:
                counts[goal, variant] = int(s.sum_y > 0) * max(1, s.n // 3)  # value events
                moments[goal, variant, "y"] = s.sum_y
                moments[goal, variant, "y2"] = s.sum_y2
            else:
                counts[goal, variant] = round(s.sum_y)
            moments[goal, variant, "xy"] = s.sum_xy
    return counts, moments


def experiment(
    arms: dict[str, dict[str, Sums]],
    declared: plans.Plan,
    analysis: str = "fixed",
    tuning: int = 5000,
    history: tuple[tuple[int, dict[str, dict[str, Sums]]], ...] = (),
) -> ExperimentCounts:
    counts, moments = cells_of(arms, declared)
    days = tuple((day, *cells_of(cells, declared)) for day, cells in history)
    return ExperimentCounts(
        name="checkout",
        counting="exact",
        variants=declared.variants,
        goals=tuple(sorted(declared.goal_names)),
        counts=counts,
        settings=Settings(
            control=declared.control,
            analysis=analysis,
            sequential_tuning=tuning,
            plan=declared,
        ),
        moments=moments,
        history=tuple((day, c) for day, c, _ in days),
        history_moments={day: m for day, _, m in days},
        last_day=TODAY,
        today=TODAY,
    )


def row(result: ExperimentResult, goal: str = "revenue", label: str = "red") -> VariantResult:
    found = next(g for g in result.goals if g.goal == goal)
    return next(r for r in found.results if r.label == label)


def pair(seed: int, n: int, n0: int, lift: float, rho: float = 0.7) -> tuple[Sums, Sums]:
    return sums(*draw(seed, n, lift, rho)), sums(*draw(seed + 1000, n0, 0.0, rho))


TABLES = [pair(seed, n, n0, lift) for seed, (n, n0, lift) in enumerate(
    [(50, 40, 0.0), (200, 200, 0.1), (1_000, 900, -0.05), (5_000, 5_000, 0.03), (30, 3_000, 0.5),
     (20_000, 19_000, 0.02), (8, 12, 0.2), (600, 600, 0.0)]
)]  # fmt: skip


# -- a value goal's row ----------------------------------------------------------------------


@pytest.mark.parametrize("arm,control", TABLES)
def test_value_row_equals_gbstats_fixed(arm: Sums, control: Sums) -> None:
    result = analyse(
        experiment({"revenue": {"red": arm, "control": control}}, plan(covariate=None))
    )
    assert result.goals[0].type == "value" and result.covariate is None
    red, base = row(result), row(result, label="control")
    theirs = gbstats_result(arm, control, cuped=False, tuning=None)
    assert theirs.error_message is None
    assert red.trials == arm.n and red.sum == arm.sum_y and red.conversion_rate is None
    assert _gap(red.mean, arm.sum_y / arm.n) <= 1e-15 and _gap(base.mean, control.mean) <= 1e-15
    assert _gap(red.uplift, theirs.expected) <= TOLERANCE
    assert red.uplift_ci is not None
    assert _gap(red.uplift_ci[0], theirs.ci[0]) <= TOLERANCE
    assert _gap(red.uplift_ci[1], theirs.ci[1]) <= TOLERANCE
    assert _gap(red.p_value, theirs.p_value) <= TOLERANCE
    assert red.p_value_adjusted == red.p_value  # one comparison: nothing to adjust
    # The chance to beat: the normal posterior of the uplift (flat prior), scipy's normal.
    chance = scipy_stats.norm.cdf(theirs.expected / theirs.uplift.stddev)
    assert _gap(red.chance_to_beat_control, chance) <= TOLERANCE
    # The mean's 95% interval: Student t with n - 1 degrees of freedom (scipy).
    sd = math.sqrt((arm.sum_y2 - arm.sum_y**2 / arm.n) / (arm.n - 1))
    low, high = scipy_stats.t.interval(0.95, arm.n - 1, arm.sum_y / arm.n, sd / math.sqrt(arm.n))
    assert red.ci is not None
    assert _gap(red.ci[0], low) <= TOLERANCE and _gap(red.ci[1], high) <= TOLERANCE
    assert red.adjusted is None and red.verdict is not None


@pytest.mark.parametrize("tuning", [1_000, 5_000, 50_000])
def test_value_row_equals_gbstats_sequential(tuning: int) -> None:
    for arm, control in TABLES:
        counts = experiment(
            {"revenue": {"red": arm, "control": control}}, plan(covariate=None), "sequential",
            tuning,
        )  # fmt: skip
        result = analyse(counts)
        red, base = row(result), row(result, label="control")
        theirs = gbstats_result(arm, control, cuped=False, tuning=tuning)
        assert red.uplift_ci is not None
        assert _gap(red.uplift_ci[0], theirs.ci[0]) <= TOLERANCE
        assert _gap(red.uplift_ci[1], theirs.ci[1]) <= TOLERANCE
        assert _gap(red.p_value, theirs.p_value) <= TOLERANCE
        # The one look is the running one once both arms have the minimum evidence.
        enough = min(arm.n, control.n) >= 100 and min(red.successes, base.successes) >= 25
        assert red.running_uplift_ci == (red.uplift_ci if enough else None)
        assert red.running_p_value == (red.p_value if enough else None)


def test_sequential_running_values_over_the_days_of_a_value_goal() -> None:
    """The running interval is the intersection of each day's gbstats interval, the running
    p-value their least: the days' sums are read from the history."""
    y1, x1 = draw(1, 6_000, 0.08)
    y0, x0 = draw(2, 6_000)
    days = [(TODAY - 2, 2_000), (TODAY - 1, 4_000)]
    history = tuple(
        (day, {"revenue": {"red": sums(y1[:k], x1[:k]), "control": sums(y0[:k], x0[:k])}})
        for day, k in days
    )
    now = {"revenue": {"red": sums(y1, x1), "control": sums(y0, x0)}}
    red = row(analyse(experiment(now, plan(covariate=None), "sequential", 2_000, history)))
    looks = [gbstats_result(*arms, cuped=False, tuning=2_000) for arms in (
        (sums(y1[:k], x1[:k]), sums(y0[:k], x0[:k])) for k in (2_000, 4_000, 6_000)
    )]  # fmt: skip
    low, high = max(t.ci[0] for t in looks), min(t.ci[1] for t in looks)
    assert low < high and red.running_uplift_ci is not None
    assert _gap(red.running_uplift_ci[0], low) <= TOLERANCE
    assert _gap(red.running_uplift_ci[1], high) <= TOLERANCE
    assert _gap(red.running_p_value, min(t.p_value for t in looks)) <= TOLERANCE
    assert _gap(red.p_value, looks[-1].p_value) <= TOLERANCE


# -- CUPED -----------------------------------------------------------------------------------


def _check_adjusted(red: VariantResult, arm: Sums, control: Sums, tuning: int | None) -> None:
    theirs = gbstats_result(arm, control, cuped=True, tuning=tuning)
    plain = gbstats_result(arm, control, cuped=False, tuning=tuning)
    assert theirs.error_message is None and red.adjusted is not None
    adjusted = red.adjusted
    assert _gap(adjusted.uplift, theirs.expected) <= TOLERANCE
    assert adjusted.uplift_ci is not None
    assert _gap(adjusted.uplift_ci[0], theirs.ci[0]) <= TOLERANCE
    assert _gap(adjusted.uplift_ci[1], theirs.ci[1]) <= TOLERANCE
    assert _gap(adjusted.p_value, theirs.p_value) <= TOLERANCE
    assert adjusted.p_value_adjusted == adjusted.p_value
    chance = scipy_stats.norm.cdf(theirs.expected / theirs.uplift.stddev)
    assert _gap(adjusted.chance_to_beat_control, chance) <= TOLERANCE
    reduction = 1.0 - theirs.uplift.stddev**2 / plain.uplift.stddev**2
    assert _gap(adjusted.variance_reduction, reduction) <= TOLERANCE


@pytest.mark.parametrize("tuning", [None, 2_000])
def test_cuped_figures_of_a_value_goal_equal_gbstats(tuning: int | None) -> None:
    analysis = "fixed" if tuning is None else "sequential"
    reductions = []
    for arm, control in TABLES:
        counts = experiment(
            {"revenue": {"red": arm, "control": control}}, plan(), analysis, tuning or 5000
        )
        result = analyse(counts)
        red, base = row(result), row(result, label="control")
        _check_adjusted(red, arm, control, tuning)
        # The adjusted means: gbstats' statistics once its test has set the pooled theta.
        theirs, theirs_control = _adjusted(arm), _adjusted(control)
        TwoSidedTTest(theirs_control, theirs)
        assert red.adjusted is not None and base.adjusted is not None
        # Gimel centres them on the pooled covariate mean (the uplift's difference is unchanged).
        shift = theirs.theta * (arm.sum_x + control.sum_x) / (arm.n + control.n)
        assert _gap(red.adjusted.mean, theirs.mean + shift) <= TOLERANCE
        assert _gap(base.adjusted.mean, theirs_control.mean + shift) <= TOLERANCE
        assert base.adjusted.uplift is None and base.adjusted.p_value is None
        reductions.append(red.adjusted.variance_reduction or 0.0)
    assert max(reductions) > 0.1  # the covariate does remove variance here


def binary_sums(seed: int, n: int, rate: float, rho: float = 0.6) -> Sums:
    """n participants converting (0/1) with a chance that grows with their covariate."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(2.0, n).astype(float)
    chance = np.clip(rate * (1 + rho * (x - 2.0) / 2.0), 0, 1)
    y = (rng.random(n) < chance).astype(float)
    return sums(y, x)


@pytest.mark.parametrize("tuning", [None, 3_000])
def test_a_binary_goal_gets_cuped_figures_of_its_0_1_sums(tuning: int | None) -> None:
    """gbstats' RegressionAdjustedStatistic on the 0/1 values' sums (sum of squares = sum)."""
    declared = plan([{"name": "signup"}])
    for seed in range(5):
        arm, control = binary_sums(seed, 4_000, 0.12), binary_sums(seed + 50, 4_100, 0.1)
        analysis = "fixed" if tuning is None else "sequential"
        counts = experiment({"signup": {"red": arm, "control": control}}, declared, analysis,
                            tuning or 5000)  # fmt: skip
        result = analyse(counts)
        assert result.goals[0].type == "binary"
        red = row(result, "signup")
        assert red.conversion_rate == arm.sum_y / arm.n and red.mean is None and red.sum is None
        _check_adjusted(red, arm, control, tuning)


# -- verdicts, Holm and the decision ---------------------------------------------------------


def strong_covariate(lift: float, seed: int = 7) -> tuple[Sums, Sums]:
    """y = x + a little noise + a lift: most of y's variance is the covariate's. Both arms
    have the same covariates, so the unadjusted difference is the lift and the noise's alone
    (what randomization gives on average), and its p-value does not swing with the seed."""
    x = np.random.default_rng(seed).gamma(2.0, 10.0, 3_000)
    out = []
    for i, shift in enumerate((lift, 0.0)):
        y = x + np.random.default_rng(seed + 1 + i).normal(0.0, 3.0, 3_000) + shift
        out.append(sums(y, x))
    return out[0], out[1]


def test_the_adjusted_p_value_decides_and_the_line_says_so() -> None:
    arm, control = strong_covariate(0.6)
    adjusted = analyse(experiment({"revenue": {"red": arm, "control": control}}, plan()))
    red = row(adjusted)
    assert red.adjusted is not None and red.adjusted.p_value is not None
    assert 0.1 < (red.p_value or 0) < 0.3 and red.adjusted.p_value < 0.001
    assert red.verdict is not None and red.verdict.kind == "win"
    assert adjusted.decision is not None and adjusted.decision.kind == "ship"
    assert adjusted.decision.text.endswith("; CUPED-adjusted for orders")
    assert adjusted.covariate is not None and adjusted.covariate.name == "orders"
    assert "count with orders = 0" in adjusted.covariate.note
    plain = analyse(experiment({"revenue": {"red": arm, "control": control}}, plan(covariate=None)))
    assert row(plain).verdict is not None and row(plain).verdict.kind == "even"  # type: ignore[union-attr]
    assert plain.decision is not None and plain.decision.kind == "keep_running"


def test_holm_across_primary_goals_corrects_the_adjusted_p_values() -> None:
    """Two primary goals, three variants: statsmodels' Holm over the four adjusted p-values."""
    declared = plans.parse(
        {
            "variants": ["control", "red", "blue"],
            "goals": [{"name": "revenue", "type": "value"}, {"name": "spend", "type": "value"}],
            "covariate": "orders",
        },
        20,
        50,
    )
    arms = {
        "revenue": dict(zip(("red", "control"), strong_covariate(0.6), strict=True))
        | {"blue": strong_covariate(0.2, 40)[0]},
        "spend": dict(zip(("red", "control"), strong_covariate(0.1, 90), strict=True))
        | {"blue": strong_covariate(0.0, 60)[0]},
    }
    # Every goal's participants and covariate are the same visitors': take revenue's.
    for goal in ("spend",):
        for v in arms[goal]:
            r, s = arms["revenue"][v], arms[goal][v]
            arms[goal][v] = Sums(r.n, s.sum_y, s.sum_y2, r.sum_x, r.sum_x2, s.sum_xy)
    result = analyse(experiment(arms, declared))
    rows = [row(result, g, v) for g in ("revenue", "spend") for v in ("blue", "red")]
    p = [r.adjusted.p_value for r in rows]  # type: ignore[union-attr]
    expected = multipletests(p, method="holm")[1]
    for r, q in zip(rows, expected, strict=True):
        assert r.adjusted is not None and _gap(r.adjusted.p_value_adjusted, float(q)) <= 1e-12
    plain = multipletests([r.p_value for r in rows], method="holm")[1]
    for r, q in zip(rows, plain, strict=True):
        assert _gap(r.p_value_adjusted, float(q)) <= 1e-12
    assert result.decision is not None
    assert "Holm across 4 comparisons" in result.decision.text
    assert "CUPED-adjusted for orders" in result.decision.text


def test_group_sequential_verdict_of_a_value_goal_against_the_bound() -> None:
    """One closed look at t = participants / planned: the O'Brien-Fleming bound in closed form
    (Lan & DeMets 1983, scipy), z the log ratio of the means over its delta-method standard
    error computed with numpy."""
    planned = 40_000
    declared = plan(covariate=None, planned_participants=planned, analysis="group_sequential")
    for lift, crosses in ((0.25, True), (0.0, False)):
        y1, x1 = draw(11, 6_000, lift)
        y0, x0 = draw(12, 6_000)
        counts = experiment(
            {"revenue": {"red": sums(y1, x1), "control": sums(y0, x0)}},
            declared,
            "group_sequential",
        )
        counts = replace(counts, last_day=TODAY - 1)  # yesterday's counts: a closed look
        result = analyse(counts)
        red = row(result)
        z = math.log(y1.mean() / y0.mean()) / math.sqrt(
            y1.var(ddof=1) / (len(y1) * y1.mean() ** 2)
            + y0.var(ddof=1) / (len(y0) * y0.mean() ** 2)
        )
        t = 12_000 / planned
        spent = 2.0 - 2.0 * scipy_stats.norm.cdf(scipy_stats.norm.ppf(1 - 0.05 / 4) / math.sqrt(t))
        bound = float(scipy_stats.norm.isf(spent))
        assert result.method == "group_sequential" and red.bound is not None
        assert abs(red.bound - bound) < 1e-6
        assert _gap(red.p_value, 2 * scipy_stats.norm.sf(abs(z))) <= TOLERANCE
        assert (abs(z) >= bound) == crosses
        assert red.verdict is not None
        assert red.verdict.kind == ("win" if crosses else "wait"), red.verdict.text
        assert result.planning is None  # a mean is no rate to plan from


def test_group_sequential_with_a_covariate_decides_on_the_adjusted_z() -> None:
    planned = 20_000
    declared = plan(planned_participants=planned, analysis="group_sequential")
    arm, control = strong_covariate(0.6)
    counts = replace(
        experiment({"revenue": {"red": arm, "control": control}}, declared, "group_sequential"),
        last_day=TODAY - 1,
    )
    red = row(analyse(counts))
    assert red.adjusted is not None and red.adjusted.p_value is not None
    assert red.p_value is not None and red.p_value > 0.05 and red.adjusted.p_value < 1e-4
    assert red.verdict is not None and red.verdict.kind == "win"
    assert red.adjusted.uplift_ci is not None and red.adjusted.uplift_ci[0] > 0


# -- caches and degenerate data --------------------------------------------------------------


def test_the_same_counts_with_other_sums_give_other_results() -> None:
    caches = Caches()
    arm, control = TABLES[3]
    first = experiment({"revenue": {"red": arm, "control": control}}, plan(), "sequential")
    doubled = Sums(arm.n, 2 * arm.sum_y, 4 * arm.sum_y2, arm.sum_x, arm.sum_x2, 2 * arm.sum_xy)
    second = experiment({"revenue": {"red": doubled, "control": control}}, plan(), "sequential")
    assert first.counts == second.counts and first.moments != second.moments
    a, b = row(analyse(first, caches)), row(analyse(second, caches))
    assert b.mean == pytest.approx(2 * (a.mean or 0.0)) and a.uplift != b.uplift
    assert a.adjusted != b.adjusted
    assert row(analyse(second)) == b  # what a cold process computes
    # The history's sums too: the same days' counts with other sums are other days.
    history = ((TODAY - 1, {"revenue": {"red": arm, "control": control}}),)
    other = ((TODAY - 1, {"revenue": {"red": doubled, "control": control}}),)
    now = {"revenue": {"red": doubled, "control": control}}
    one, _ = analyse_history(experiment(now, plan(), "sequential", history=history), TODAY, caches)
    two, _ = analyse_history(experiment(now, plan(), "sequential", history=other), TODAY, caches)
    assert row(one[0][1]).mean != row(two[0][1]).mean
    cold, _ = analyse_history(experiment(now, plan(), "sequential", history=other), TODAY)
    assert two == cold


DEGENERATE = {
    "no participants": (Sums(0, 0.0, 0.0), Sums(0, 0.0, 0.0)),
    "all zero": (Sums(100, 0.0, 0.0), Sums(100, 0.0, 0.0)),
    "one participant": (Sums(1, 5.0, 25.0, 1.0, 1.0, 5.0), Sums(1, 3.0, 9.0, 2.0, 4.0, 6.0)),
    "control mean 0": (Sums(100, 250.0, 1_900.0, 80.0, 300.0, 400.0), Sums(100, 0.0, 0.0)),
}


@pytest.mark.parametrize("analysis", ["fixed", "sequential"])
@pytest.mark.parametrize("arms", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_data_gives_nulls_never_nan(arms: tuple[Sums, Sums], analysis: str) -> None:
    arm, control = arms
    result = analyse(experiment({"revenue": {"red": arm, "control": control}}, plan(), analysis))
    body = json.dumps(result.to_json(), allow_nan=False)  # raises on NaN or infinity
    red = row(result)
    assert red.p_value is None and red.uplift_ci is None and red.chance_to_beat_control is None
    assert red.adjusted is not None and red.adjusted.p_value is None
    assert red.verdict is not None and red.verdict.kind == "wait"
    assert ExperimentResult.from_json(json.loads(body)) == result
    if arm.n == 0:
        assert red.mean is None and red.ci is None


def test_results_json_round_trips_with_the_new_fields() -> None:
    arm, control = TABLES[1]
    result = analyse(experiment({"revenue": {"red": arm, "control": control}}, plan()))
    body = result.to_json()
    goal = body["goals"][0]
    assert goal["type"] == "value"
    red = next(r for r in goal["results"] if r["label"] == "red")
    assert set(red["adjusted"]) == {
        "mean", "uplift", "uplift_ci", "p_value", "p_value_adjusted", "chance_to_beat_control",
        "variance_reduction",
    }  # fmt: skip
    assert red["sum"] == arm.sum_y and red["conversion_rate"] is None
    assert body["covariate"]["name"] == "orders"
    assert ExperimentResult.from_json(json.loads(json.dumps(body))) == result


# -- end to end: events through /track, results through GET /experiments/<name> --------------


def test_tracked_values_and_covariate_show_in_the_results(make_app: Callable[..., Flask]) -> None:
    """40 visitors per arm send their covariate with participate and with each purchase
    (running total before it, as the snippet keeps it); two purchases for some. The row's
    figures are those of the visitors' totals, computed here, and gbstats' on their sums."""
    client = make_app(counting="exact").test_client()
    body = {
        "variants": ["a", "b"],
        "goals": ["signup", {"name": "revenue", "type": "value", "cap": 100}],
        "covariate": "orders",
        "analysis": "fixed",
    }
    assert client.put("/experiments/shop", json=body, headers=AUTH).status_code == 201
    totals: dict[str, list[float]] = {"a": [], "b": []}
    covariates: dict[str, list[float]] = {"a": [], "b": []}
    converted: dict[str, list[float]] = {"a": [], "b": []}
    events: list[dict[str, Any]] = []
    for variant, lift in (("a", 0.0), ("b", 4.0)):
        for i in range(40):
            uuid, orders = f"{variant}{i}", float(i % 7)
            one = {"experiment": "shop", "variant": variant, "uuid": uuid}
            events.append({**one, "event": "participate", "covariate": orders})
            total = 0.0
            purchases = [3.0 * orders + lift + i % 3] if i % 4 else []
            if i % 8 == 1:
                purchases.append(5.5)  # a second purchase: the total goes with it
            for k, value in enumerate(purchases):
                events.append(
                    {**one, "uuid": f"{uuid}-{k}", "event": "revenue", "value": value,
                     "total": total, "covariate": orders}
                )  # fmt: skip
                total += value
            if i % 3 == 0:
                events.append({**one, "event": "signup", "covariate": orders})
            totals[variant].append(min(total, 100.0))
            covariates[variant].append(orders)
            converted[variant].append(float(i % 3 == 0))
    answer = client.post("/track", json=events)
    assert answer.status_code == 200 and answer.get_json() == {"accepted": len(events)}

    result = conforms(client.get("/experiments/shop", headers=AUTH), "/experiments/{name}")
    assert result["covariate"]["name"] == "orders"
    assert "count with orders = 0" in result["covariate"]["note"]
    goals = {g["goal"]: g for g in result["goals"]}
    assert (goals["revenue"]["type"], goals["signup"]["type"]) == ("value", "binary")
    rows = {r["label"]: r for r in goals["revenue"]["results"]}
    arms = {v: sums(np.array(totals[v]), np.array(covariates[v])) for v in ("a", "b")}
    for v in ("a", "b"):
        assert rows[v]["trials"] == 40 and rows[v]["conversion_rate"] is None
        assert rows[v]["successes"] == sum(1 for e in events if e["variant"] == v and
                                           e["event"] == "revenue")  # fmt: skip
        assert _gap(rows[v]["sum"], sum(totals[v])) <= 1e-12
        assert _gap(rows[v]["mean"], sum(totals[v]) / 40) <= 1e-12
        assert rows[v]["adjusted"] is not None and rows[v]["adjusted"]["mean"] is not None
    theirs = gbstats_result(arms["b"], arms["a"], cuped=False, tuning=None)
    assert _gap(rows["b"]["uplift"], theirs.expected) <= TOLERANCE
    assert _gap(rows["b"]["p_value"], theirs.p_value) <= TOLERANCE
    adjusted = gbstats_result(arms["b"], arms["a"], cuped=True, tuning=None)
    assert _gap(rows["b"]["adjusted"]["p_value"], adjusted.p_value) <= TOLERANCE
    assert rows["b"]["adjusted"]["variance_reduction"] > 0.3  # revenue follows the orders
    assert rows["a"]["adjusted"]["uplift"] is None  # the control: its mean alone
    signup = {r["label"]: r for r in goals["signup"]["results"]}
    binary = {v: sums(np.array(converted[v]), np.array(covariates[v])) for v in ("a", "b")}
    theirs = gbstats_result(binary["b"], binary["a"], cuped=True, tuning=None)
    assert theirs.error_message is None
    assert _gap(signup["b"]["adjusted"]["uplift"], theirs.expected) <= TOLERANCE
    assert signup["b"]["sum"] is None and signup["b"]["conversion_rate"] == 14 / 40
