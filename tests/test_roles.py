"""Decisions from a plan: goals by role, one decision line, and the plan's power figures."""

from __future__ import annotations

from typing import Any

import pytest
from scipy.optimize import brentq
from statsmodels.stats.power import NormalIndPower

from gimel_core import plans
from gimel_core.analysis import analyse
from gimel_core.results import ExperimentCounts, Settings

PLAN: dict[str, Any] = {
    "variants": ["control", "red"],
    "goals": [
        {"name": "signup", "role": "primary"},
        {"name": "refund", "role": "guardrail", "direction": "decrease", "margin": 0.02},
        {"name": "click", "role": "secondary"},
    ],
}


def experiment(
    cells: dict[tuple[str, str], int],
    plan: dict[str, Any] | None = PLAN,
    analysis: str = "fixed",
    counting: str = "exact",
    elapsed_days: float | None = None,
) -> ExperimentCounts:
    declared = plans.parse(plan, 20, 50) if plan else None
    variants = declared.variants if declared else ("control", "red")
    goals = (
        declared.goal_names if declared else tuple(sorted({g for g, _ in cells} - {"participate"}))
    )
    return ExperimentCounts(
        name="checkout",
        counting=counting,
        variants=tuple(sorted(variants)),
        goals=tuple(sorted(goals)),
        counts=cells,
        settings=Settings(
            control=declared.control if declared else None,
            weights=declared.weights if declared else None,
            analysis=analysis,
            plan=declared,
        ),
        elapsed_days=elapsed_days,
    )


def cells(n: int = 10_000, **rates: tuple[int, int]) -> dict[tuple[str, str], int]:
    """Participants n per variant; each goal: (successes of control, successes of red)."""
    found = {("participate", "control"): n, ("participate", "red"): n}
    for goal, (control, red) in rates.items():
        found[goal, "control"], found[goal, "red"] = control, red
    return found


def test_goals_come_by_role_with_their_role_and_direction() -> None:
    result = analyse(experiment(cells(signup=(1000, 1000), refund=(100, 100), click=(5, 5))))
    assert [(g.goal, g.role, g.direction) for g in result.goals] == [
        ("signup", "primary", "increase"),
        ("refund", "guardrail", "decrease"),
        ("click", "secondary", "increase"),
    ]
    body = result.to_json()
    assert body["goals"][1]["role"] == "guardrail" and body["decision"]["kind"] == "keep_running"


def test_a_primary_win_ships() -> None:
    result = analyse(experiment(cells(signup=(1000, 1300), refund=(100, 100))))
    assert result.decision is not None
    assert result.decision.kind == "ship" and result.decision.variant == "red"
    assert result.decision.text.startswith("Ship red: red beats control on signup")
    refund = result.goals[1].results[1]
    assert refund.verdict is not None and refund.verdict.kind in ("safe", "wait")


def test_a_breached_guardrail_overrides_a_primary_win() -> None:
    result = analyse(experiment(cells(signup=(1000, 1300), refund=(100, 200))))
    refund = result.goals[1].results[1]
    assert refund.verdict is not None and refund.verdict.kind == "harm"
    assert "red harms refund" in refund.verdict.text and "2.0% margin" in refund.verdict.text
    assert result.decision is not None and result.decision.kind == "keep_control"
    assert result.decision.text.startswith(
        "Do not ship red: it wins on a primary goal but red harms"
    )


def test_a_guardrail_margin_tolerates_small_harm() -> None:
    """1% more refunds, precisely measured: within a 2% margin, beyond a 0.5% one."""
    data = cells(n=2_000_000, signup=(200_000, 260_000), refund=(1_000_000, 1_010_000))
    within = analyse(experiment(data))
    assert within.goals[1].results[1].verdict.kind == "safe"  # type: ignore[union-attr]
    assert within.decision.kind == "ship"  # type: ignore[union-attr]
    strict = {**PLAN, "goals": [PLAN["goals"][0], {**PLAN["goals"][1], "margin": 0.005}]}
    beyond = analyse(experiment(data, plan=strict))
    assert beyond.goals[1].results[1].verdict.kind == "harm"  # type: ignore[union-attr]
    assert beyond.decision.kind == "keep_control"  # type: ignore[union-attr]


def test_a_goal_where_lower_is_better_wins_by_decreasing() -> None:
    plan = {"variants": ["control", "red"], "goals": [{"name": "error", "direction": "decrease"}]}
    result = analyse(experiment(cells(error=(500, 300)), plan=plan))
    assert result.goals[0].results[1].verdict.kind == "win"  # type: ignore[union-attr]
    assert result.decision.kind == "ship"  # type: ignore[union-attr]
    worse = analyse(experiment(cells(error=(300, 500)), plan=plan))
    assert worse.decision.kind == "keep_control"  # type: ignore[union-attr]
    assert worse.decision.text.startswith("Keep control: control beats red on error")  # type: ignore[union-attr]


def test_secondary_goals_are_shown_not_decided_on() -> None:
    result = analyse(experiment(cells(signup=(1000, 1000), click=(1000, 1500))))
    click = result.goals[2].results[1]
    assert click.verdict is not None and click.verdict.kind == "win"
    assert result.decision is not None and result.decision.kind == "keep_running"


def test_a_sample_ratio_mismatch_comes_first() -> None:
    data = cells(signup=(1000, 1300))
    data["participate", "red"] = 11_000
    result = analyse(experiment(data))
    assert result.decision is not None and result.decision.kind == "check_split"


def test_no_difference_once_the_planned_size_is_reached() -> None:
    data = cells(signup=(1000, 1010))
    running = analyse(experiment(data, plan={**PLAN, "planned_participants": 40_000}))
    assert running.decision.kind == "keep_running"  # type: ignore[union-attr]
    reached = analyse(experiment(data, plan={**PLAN, "planned_participants": 20_000}))
    assert reached.decision.kind == "no_difference"  # type: ignore[union-attr]
    assert reached.decision.text == (  # type: ignore[union-attr]
        "No difference on signup at the planned 20,000 participants: keep control"
    )


def test_undeclared_experiments_decide_on_every_goal() -> None:
    result = analyse(experiment(cells(signup=(1000, 1300)), plan=None))
    assert result.goals[0].role == "primary"
    assert result.decision is not None and result.decision.kind == "ship"
    assert result.planning is None


# -- planning figures -------------------------------------------------------------------------


def statsmodels_mde(rate: float, per_arm: float, power: float = 0.8) -> float:
    """The relative lift a two-sided 5% z-test on the relative uplift detects with ``power``
    at ``per_arm`` participants per arm (statsmodels' normal power of the one tail that
    matters, alpha/2). The uplift's delta-method variance, (v1 + v0 (1 + lift)^2) / (n p0^2),
    is statsmodels' standardized effect with that sum as twice the pooled variance."""

    def gap(lift: float) -> float:
        p1 = rate * (1 + lift)
        pooled = (p1 * (1 - p1) + rate * (1 - rate) * (1 + lift) ** 2) / 2
        effect = (p1 - rate) / pooled**0.5
        found = NormalIndPower().power(effect, per_arm, 0.025, alternative="larger")
        return float(found) - power

    return float(brentq(gap, 1e-6, 5.0, xtol=1e-12))


def test_the_mde_at_the_planned_size_matches_statsmodels() -> None:
    plan = {**PLAN, "planned_participants": 20_000, "mde": 0.1}
    result = analyse(experiment(cells(signup=(1000, 1000)), plan=plan, elapsed_days=2.0))
    planning = result.planning
    assert planning is not None and planning.goal == "signup"
    assert planning.mde == pytest.approx(statsmodels_mde(0.1, 10_000), rel=1e-6)
    # The declared 10% is below that MDE: less power at the planned size, more participants
    # needed (the first size statsmodels gives 80% power at), and the days to get them.
    p1 = 0.11
    effect = (p1 - 0.1) / ((p1 * (1 - p1) + 0.1 * 0.9 * 1.1**2) / 2) ** 0.5
    expected = NormalIndPower().power(effect, 10_000, 0.05, alternative="two-sided")
    assert planning.power == pytest.approx(expected, rel=1e-9)
    solved = NormalIndPower().solve_power(effect, power=0.8, alpha=0.025, alternative="larger")
    assert planning.needed is not None and abs(planning.needed / 2 - solved) <= 1
    assert planning.days_remaining == pytest.approx((planning.needed - 20_000) * 2 / 20_000)


def test_days_remaining_at_the_observed_rate() -> None:
    """5,000 participants in 2 days: 15,000 more at 2,500 a day is 6 days."""
    plan = {**PLAN, "planned_participants": 20_000}
    data = cells(n=2_500, signup=(250, 250))
    result = analyse(experiment(data, plan=plan, elapsed_days=2.0))
    assert result.planning is not None and result.planning.needed == 20_000
    assert result.planning.days_remaining == pytest.approx(6.0)
    assert result.decision is not None
    assert result.decision.text.endswith("about 6 days to the 20,000 participants the plan needs")


def test_sequential_analysis_and_hll_counting_need_more() -> None:
    plan = {**PLAN, "planned_participants": 20_000, "mde": 0.1}
    data = cells(signup=(1000, 1000))
    fixed = analyse(experiment(data, plan=plan)).planning
    sequential = analyse(experiment(data, plan=plan, analysis="sequential")).planning
    hll = analyse(experiment(data, plan=plan, counting="hll")).planning
    assert fixed and sequential and hll
    assert fixed.mde and sequential.mde and hll.mde and fixed.needed and sequential.needed
    assert sequential.mde > fixed.mde and hll.mde > fixed.mde
    assert sequential.needed > fixed.needed
    assert hll.needed is None or hll.needed > fixed.needed


def test_planning_without_a_control_rate_is_unknown() -> None:
    plan = {**PLAN, "planned_participants": 20_000}
    result = analyse(experiment(cells(n=0, signup=(0, 0)), plan=plan))
    assert result.planning is None
    assert result.decision is not None and result.decision.kind == "keep_running"


def test_a_win_waits_for_a_guardrail_that_looks_harmed() -> None:
    """Refunds up 30%, 50 against 65: not significant yet, but past the 2% margin already."""
    result = analyse(experiment(cells(signup=(1000, 1300), refund=(50, 65))))
    refund = result.goals[1].results[1]
    assert refund.verdict is not None and refund.verdict.kind == "wait"
    assert "harm not ruled out yet (from " in refund.verdict.text
    assert result.decision is not None and result.decision.kind == "keep_running"
    assert result.decision.text == (
        "Keep running: red wins on a primary goal, but its harm to refund is not ruled out "
        "yet (30.0% worse so far)"
    )
    # An estimate within the margin does not hold the win.
    fine = analyse(experiment(cells(signup=(1000, 1300), refund=(50, 50))))
    assert fine.decision is not None and fine.decision.kind == "ship"


def test_the_decision_quotes_names_as_they_are() -> None:
    """A variant named with a capital is not lowercased in the decision line."""
    plan = {"variants": ["Control", "Red"], "goals": ["signup"]}
    data = {("participate", "Control"): 10_000, ("participate", "Red"): 10_000}
    data.update({("signup", "Control"): 1000, ("signup", "Red"): 1300})
    result = analyse(experiment(data, plan=plan))
    assert result.decision is not None
    assert result.decision.text.startswith("Ship Red: Red beats Control on signup")
