"""Group-sequential plans through the API: what a look is, when it decides, and bad plans.

Events go through ``POST /track`` on a real Redis, the app's clock moved day by day (the clock
seam), results are read through ``GET /experiments/<name>``. The bounds themselves are checked
against spotify-confidence in tests/test_group_sequential.py; here the first look's bound is
checked against its closed form with scipy, the repeated confidence interval against the
delta-method standard error computed independently with numpy, and Holm's adjustment against
statsmodels' ``multipletests``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from conftest import AUTH
from gimel_core.stats import group_sequential, power
from gimel_core.vocabulary import Analysis

START = 1_796_083_200 + 3_600  # 01:00 UTC on a day
DAY = 86_400
EXP = "checkout"


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now

    def day(self, n: int) -> None:
        self.now = float(START + n * DAY)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(make_app: Callable[..., Flask], clock: Clock) -> FlaskClient:
    return make_app(clock=clock, counting="exact").test_client()


def declare(client: FlaskClient, **plan: Any) -> Any:
    body = {"variants": ["a", "b"], "goals": ["signup"], **plan}
    return client.put(f"/experiments/{EXP}", json=body, headers=AUTH)


def send(client: FlaskClient, tag: str, cells: dict[str, tuple[int, int]], goal: str = "signup"):
    """``cells``: variant -> (participants, of whom convert), each a new uuid."""
    events = []
    for variant, (n, converted) in cells.items():
        for i in range(n):
            uuid = f"{tag}-{variant}-{i}"
            one = {"experiment": EXP, "variant": variant, "uuid": uuid}
            events.append({**one, "event": "participate"})
            if i < converted:
                events.append({**one, "event": goal})
    for first in range(0, len(events), 500):
        answer = client.post("/track", json=events[first : first + 500])
        assert answer.status_code == 200, answer.get_json()


def results(client: FlaskClient) -> Any:
    answer = client.get(f"/experiments/{EXP}", headers=AUTH)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def row(body: Any, label: str = "b", goal: str = "signup") -> Any:
    found = next(g for g in body["goals"] if g["goal"] == goal)
    return next(r for r in found["results"] if r["label"] == label)


def obrien_fleming_first_bound(t: float, alpha: float = 0.05) -> float:
    """One look at fraction t, each side at alpha/2: the Lan-DeMets O'Brien-Fleming type spends
    2 - 2 Phi(z_{1 - alpha/4} / sqrt t) there (Lan & DeMets 1983), whose upper quantile is the
    bound (scipy)."""
    spent = 2.0 - 2.0 * norm.cdf(norm.ppf(1.0 - alpha / 4.0) / math.sqrt(t))
    return float(norm.isf(spent))


def log_ratio_se(s1: int, n1: int, s0: int, n0: int) -> tuple[float, float]:
    """The log rate ratio and its delta-method standard error (Katz et al. 1978), computed
    here with numpy."""
    p1, p0 = np.float64(s1) / n1, np.float64(s0) / n0
    var = (1 - p1) / (n1 * p1) + (1 - p0) / (n0 * p0)
    return float(np.log(p1 / p0)), float(np.sqrt(var))


def test_a_sized_plan_is_analysed_group_sequentially_and_nothing_decides_before_a_day_closes(
    client: FlaskClient, clock: Clock
) -> None:
    assert declare(client, planned_participants=4000).status_code == 201
    send(client, "d0", {"a": (600, 60), "b": (600, 150)})  # a huge effect, but today's
    body = results(client)
    assert body["analysis"] == body["method"] == Analysis.GROUP_SEQUENTIAL
    assert body["looks"]["dates"] == [] and body["looks"]["next_look"] == "2026-12-01"
    assert body["decision"]["kind"] == "keep_running"
    assert "first look at the end of 2026-12-01" in body["decision"]["text"]
    b = row(body)
    assert b["uplift"] == pytest.approx(1.5)  # the estimate follows the counts...
    assert b["uplift_ci"] is None and b["bound"] is None and b["verdict"]["kind"] == "wait"

    clock.day(1)  # ...the next morning, the closed day is the first look
    body = results(client)
    t = 1200 / 4000
    assert body["looks"]["dates"] == ["2026-12-01"] and body["looks"]["fractions"] == [t]
    assert body["looks"]["bounds"][0] == pytest.approx(obrien_fleming_first_bound(t), abs=1e-4)
    b = row(body)
    log_ratio, se = log_ratio_se(150, 600, 60, 600)
    bound = b["bound"]
    assert bound == pytest.approx(obrien_fleming_first_bound(t), abs=1e-4)
    ends = [np.expm1(log_ratio - bound * se), np.expm1(log_ratio + bound * se)]
    assert b["uplift_ci"] == pytest.approx(ends, rel=1e-9)
    assert b["p_value"] == pytest.approx(2 * norm.sf(log_ratio / se), rel=1e-6)
    assert b["p_value_adjusted"] is None and b["running_p_value"] is None
    assert log_ratio / se > bound  # so it ships at that look
    assert body["decision"]["kind"] == "ship" and body["decision"]["variant"] == "b"
    assert "group-sequential bound" in body["decision"]["text"]


def test_a_day_without_events_is_no_look_and_the_final_look_stands(
    client: FlaskClient, clock: Clock
) -> None:
    assert declare(client, planned_participants=2000).status_code == 201
    send(client, "d0", {"a": (400, 40), "b": (400, 41)})
    clock.day(2)  # no event on day 1: its close is no look
    send(client, "d2", {"a": (400, 40), "b": (400, 40)})
    clock.day(3)
    send(client, "d3", {"a": (300, 30), "b": (300, 30)})  # reaches 2,200 of 2,000
    clock.day(4)
    body = results(client)
    looks = body["looks"]
    assert looks["dates"] == ["2026-12-01", "2026-12-03", "2026-12-04"]
    assert looks["fractions"] == [0.4, 0.8, 1.0] and looks["final"] is True
    assert looks["next_look"] is None
    expected = group_sequential.bounds((0.4, 0.8, 1.0), 0.05, "obrien_fleming", 2)
    assert looks["bounds"] == pytest.approx(list(expected))
    assert body["decision"]["kind"] == "no_difference"
    assert "final look" in body["decision"]["text"]

    # Past the plan nothing is tested again: a later effect moves the estimate, not the verdict.
    send(client, "d4", {"a": (1000, 50), "b": (1000, 300)})
    clock.day(5)
    later = results(client)
    assert later["looks"] == looks
    assert row(later)["uplift"] > 1.0 and row(later)["verdict"]["kind"] == "even"
    assert later["decision"]["kind"] == "no_difference"


def test_an_mde_plan_counts_toward_the_fixed_horizon_size_at_the_first_looks_rate(
    client: FlaskClient, clock: Clock
) -> None:
    assert declare(client, mde=0.2).status_code == 201
    send(client, "d0", {"a": (500, 50), "b": (500, 55)})
    clock.day(1)
    body = results(client)
    # The size the gimel_core.stats.power module gives for a fixed design (itself equal to
    # statsmodels' NormalIndPower: tests/test_power.py).
    size = power.participants_needed(power.Design(mean=0.1, analysis=Analysis.FIXED), 0.2)
    assert body["looks"]["planned"] == size
    assert body["looks"]["fractions"] == [1000 / size]
    assert body["planning"]["goal"] == "signup"


def test_holm_runs_across_every_primary_goal(make_app: Callable[..., Flask]) -> None:
    client = make_app(counting="exact", analysis="fixed").test_client()
    goals = ["signup", "buy", "share"]
    body = {"variants": ["a", "b"], "goals": goals, "analysis": "fixed"}
    assert client.put(f"/experiments/{EXP}", json=body, headers=AUTH).status_code == 201
    send(client, "s", {"a": (1000, 100), "b": (1000, 130)}, "signup")  # p about 0.03
    send(client, "p", {"a": (1000, 100), "b": (1000, 105)}, "buy")
    send(client, "h", {"a": (1000, 100), "b": (1000, 95)}, "share")
    found = results(client)
    raw = [row(found, goal=g)["p_value"] for g in goals]
    assert 0.01 < raw[0] < 0.05
    holm = multipletests(raw, method="holm")[1]
    adjusted = [row(found, goal=g)["p_value_adjusted"] for g in goals]
    assert adjusted == pytest.approx(list(holm), rel=1e-12)
    assert adjusted[0] > 0.05 and row(found)["verdict"]["kind"] != "win"
    assert found["decision"]["kind"] == "keep_running"

    # The same counts with signup the only primary goal: a win, and a ship.
    body["goals"] = ["signup", {"name": "buy", "role": "secondary"}, "share"]
    body["goals"][2] = {"name": "share", "role": "secondary"}
    assert client.put(f"/experiments/{EXP}", json=body, headers=AUTH).status_code == 200
    alone = results(client)
    assert row(alone)["p_value_adjusted"] == pytest.approx(raw[0])
    assert alone["decision"]["kind"] == "ship" and "Holm" not in alone["decision"]["text"]


def test_the_decision_line_names_the_correction(make_app: Callable[..., Flask]) -> None:
    client = make_app(counting="exact").test_client()
    body = {"variants": ["a", "b", "c"], "goals": ["signup", "buy"], "analysis": "fixed"}
    assert client.put(f"/experiments/{EXP}", json=body, headers=AUTH).status_code == 201
    send(client, "s", {"a": (2000, 200), "b": (2000, 320), "c": (2000, 200)}, "signup")
    found = results(client)
    assert found["decision"]["kind"] == "ship"
    assert "Holm across 4 comparisons (2 primary goals x 2 variants)" in found["decision"]["text"]


def test_group_sequential_holm_tests_each_primary_comparison_at_its_level(
    client: FlaskClient, clock: Clock
) -> None:
    body = {"variants": ["a", "b"], "goals": ["signup", "buy"], "planned_participants": 4000}
    assert client.put(f"/experiments/{EXP}", json=body, headers=AUTH).status_code == 201
    send(client, "s", {"a": (1000, 100), "b": (1000, 110)}, "signup")
    clock.day(1)
    found = results(client)
    (t,) = found["looks"]["fractions"]
    half = group_sequential.bounds((t,), 0.025, "obrien_fleming", 2)[0]
    assert row(found)["bound"] == pytest.approx(half)  # two comparisons: alpha / 2 each
    assert half > found["looks"]["bounds"][0]


@pytest.mark.parametrize(
    ("plan", "field", "words"),
    [
        ({"spending": "linear", "planned_participants": 4000}, "spending", "obrien_fleming"),
        ({"analysis": "group_sequential"}, "analysis", "planned_participants or mde"),
        ({"planned_participants": 150}, "planned_participants", "at least 200"),
        ({"analysis": "fixed", "spending": "pocock"}, "spending", "group_sequential"),
        ({"spending": "pocock"}, "spending", "group_sequential"),
    ],
)
def test_a_plan_no_look_can_decide_on_is_a_400_naming_the_field(
    client: FlaskClient, plan: dict[str, Any], field: str, words: str
) -> None:
    answer = declare(client, **plan)
    assert answer.status_code == 400
    found = answer.get_json()
    fields = [found.get("field")] + [e.get("field") for e in found.get("errors", [])]
    assert field in fields, found
    assert words in str(found)
    assert client.get(f"/experiments/{EXP}", headers=AUTH).status_code == 404  # nothing written


def test_pocock_spending_is_declared_and_used(client: FlaskClient, clock: Clock) -> None:
    assert declare(client, planned_participants=4000, spending="pocock").status_code == 201
    send(client, "d0", {"a": (500, 50), "b": (500, 52)})
    clock.day(1)
    looks = results(client)["looks"]
    assert looks["spending"] == "pocock"
    expected = group_sequential.bounds((0.25,), 0.05, "pocock", 2)
    assert looks["bounds"] == pytest.approx(list(expected))
    assert looks["bounds"][0] < obrien_fleming_first_bound(0.25)  # Pocock spends earlier


def test_the_planning_figures_follow_the_method(make_app: Callable[..., Flask]) -> None:
    """The same counts and plan under each method: the group-sequential design needs a little
    more than the fixed horizon (its final bound is above z) and much less than the confidence
    sequence, whose interval is about 1.5 times as wide at this size."""
    mdes = {}
    for analysis in ("fixed", "group_sequential", "sequential"):
        clock = Clock()
        client = make_app(clock=clock, counting="exact").test_client()
        name = f"{EXP}-{analysis}"
        plan = {"variants": ["a", "b"], "goals": ["signup"], "planned_participants": 20_000}
        plan["analysis"] = analysis
        assert client.put(f"/experiments/{name}", json=plan, headers=AUTH).status_code == 201
        events = [
            {"experiment": name, "variant": v, "uuid": f"{v}{i}", "event": e}
            for v in "ab"
            for i in range(1000)
            for e in (("participate", "signup") if i < 100 else ("participate",))
        ]
        for first in range(0, len(events), 500):
            assert client.post("/track", json=events[first : first + 500]).status_code == 200
        clock.day(1)
        found = client.get(f"/experiments/{name}", headers=AUTH).get_json()
        assert found["method"] == analysis
        mdes[analysis] = found["planning"]["mde"]
    assert mdes["fixed"] < mdes["group_sequential"] < 1.1 * mdes["fixed"]
    assert mdes["group_sequential"] < mdes["sequential"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"spending": "pocock"}, "spending"),  # Pocock's bound at t = 0.25 is 2.37: a ship
        ({"planned_participants": 5000}, "planned_participants"),  # the look becomes final
        ({"analysis": "fixed"}, "analysis"),
        ({"goals": ["signup", {"name": "buy", "role": "secondary"}]}, "primary goals"),
    ],
)
def test_a_design_that_took_a_look_cannot_change_until_a_reset(
    client: FlaskClient, clock: Clock, change: dict[str, Any], field: str
) -> None:
    """|z| = 2.41 missed the O'Brien-Fleming bound 4.33 at the first look: a plan changed
    after it would test the same counts again under other bounds (or another family)."""
    plan = {"goals": ["signup", "buy"], "planned_participants": 20_000}
    assert declare(client, **plan).status_code == 201
    assert declare(client, **plan, spending="pocock").status_code == 200  # no look yet: free
    assert declare(client, **plan).status_code == 200
    send(client, "d0", {"a": (2500, 250), "b": (2500, 310)})
    clock.day(1)
    before = results(client)
    assert before["looks"]["dates"] == ["2026-12-01"] and row(before)["verdict"]["kind"] == "wait"

    answer = declare(client, **{**plan, **change})
    assert answer.status_code == 409, answer.get_json()
    assert answer.get_json()["field"] == field and "reset" in answer.get_json()["error"]
    dry = client.put(
        f"/experiments/{EXP}?dry_run=true",
        json={"variants": ["a", "b"], **plan, **change},
        headers=AUTH,
    )
    assert dry.status_code == 409
    after = results(client)
    assert after["plan"] == before["plan"] and after["decision"]["kind"] == "keep_running"
    assert declare(client, **plan, description="what changed").status_code == 200  # not design

    assert client.post(f"/experiments/{EXP}/reset", headers=AUTH).status_code == 200
    assert declare(client, **{**plan, **change}).status_code == 200  # a new design, new counts


def test_a_final_look_is_not_reopened_by_a_larger_plan(client: FlaskClient, clock: Clock) -> None:
    assert declare(client, planned_participants=2000).status_code == 201
    send(client, "d0", {"a": (1000, 100), "b": (1000, 100)})
    clock.day(1)
    assert results(client)["decision"]["kind"] == "no_difference"
    answer = declare(client, planned_participants=40_000)
    assert answer.status_code == 409 and answer.get_json()["field"] == "planned_participants"
    assert results(client)["decision"]["kind"] == "no_difference"


def test_an_mde_plan_waits_for_a_closed_day_where_the_control_converts(
    client: FlaskClient, clock: Clock
) -> None:
    assert declare(client, mde=0.2).status_code == 201
    send(client, "d0", {"a": (300, 0), "b": (300, 30)})  # the control has no rate yet
    clock.day(1)
    body = results(client)
    assert body["looks"]["planned"] is None and body["looks"]["dates"] == []
    assert body["decision"]["kind"] == "keep_running"
    assert "first closed day where a converts" in body["decision"]["text"]
