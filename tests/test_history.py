"""History: each experiment's cumulative counts at the end of every UTC day it received events."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core.cli import main
from helpers import START, Clock, original, track

DAY = 86_400


def date(n: int) -> str:
    return datetime.fromtimestamp(START + n * DAY, UTC).date().isoformat()


def history(client: FlaskClient, name: str) -> Any:
    response = client.get(f"/experiments/{name}/history", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def cumulative(point: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (goal["goal"], row["label"]): (row["successes"], row["trials"])
        for goal in point["goals"]
        for row in goal["results"]
    }


# (day, variant, visitors, of whom signed up): small counts, which HyperLogLogs hold exactly.
TRAFFIC = [(0, "a", 10, 2), (0, "b", 10, 3), (1, "a", 5, 1), (1, "b", 7, 4), (3, "b", 4, 4)]


def seed(client: FlaskClient, clock: Clock, name: str = "exp") -> dict[int, dict]:
    """Tracks TRAFFIC day by day; returns the true cumulative counts at the end of each day."""
    seen: dict[str, list[int]] = {"a": [0, 0], "b": [0, 0]}
    truth: dict[int, dict] = {}
    for day, variant, visitors, converted in TRAFFIC:
        clock.day(day)
        for i in range(visitors):
            uuid = f"{variant}-{day}-{i}"
            assert track(client, name, variant, "participate", uuid).status_code == 200
            if i < converted:
                assert track(client, name, variant, "signup", uuid).status_code == 200
        seen[variant][0] += converted
        seen[variant][1] += visitors
        truth[day] = {("signup", v): (s, n) for v, (s, n) in seen.items()}
    return truth


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_a_point_per_active_day_then_now(make_app: Callable[..., Flask], counting: str) -> None:
    clock = Clock()
    client = make_app(counting=counting, clock=clock).test_client()
    truth = seed(client, clock)
    body = history(client, "exp")
    assert body["experiment"] == "exp" and body["interval"] == "day"
    assert body["analysis"] == "sequential"
    # Day 0 and day 1 were closed by a later event; day 3 is today, so it is "now".
    assert [p["date"] for p in body["points"]] == [date(0), date(1), date(3)]
    for point, day in zip(body["points"], [0, 1, 3], strict=True):
        assert cumulative(point) == truth[day]
        assert point["participants"] == {v: n for (_, v), (_, n) in truth[day].items()}
    # The last point is exactly what /experiments says now, in the same shape.
    now = client.get("/experiments/exp", headers=AUTH).get_json()
    assert now["created"] == START + 9 * 3600  # the app's clock, not the machine's
    assert body["points"][-1]["goals"] == now["goals"]
    assert set(body["points"][0]["goals"][0]["results"][1]) == set(now["goals"][0]["results"][1])

    # Days without events add no point; "now" moves to today with the same counts.
    clock.day(6)
    later = history(client, "exp")
    assert [p["date"] for p in later["points"]] == [date(0), date(1), date(6)]
    assert cumulative(later["points"][-1]) == truth[3]


def test_the_answer_is_the_history_as_json_its_recorded_days_encoded_once(
    make_app: Callable[..., Flask],
) -> None:
    clock = Clock()
    app = make_app(clock=clock)
    client = app.test_client()
    seed(client, clock)
    experiments = app.extensions["gimel"].experiments

    def answer() -> bytes:
        response = client.get("/experiments/exp/history", headers=AUTH)
        assert response.status_code == 200
        return response.get_data()

    first = answer()
    assert first == json.dumps(experiments.history("alephbet", "exp").to_json()).encode()
    kept = [entry[2] for entry in app.extensions["gimel"].caches.past._items.values()]
    assert [list(k) for k in kept] == [["past"]]  # the two recorded days, encoded
    assert answer() == first
    # A new day recorded: new recorded days, encoded anew.
    clock.day(4)
    assert track(client, "exp", "a", "participate", "late").status_code == 200
    later = answer()
    assert later == json.dumps(experiments.history("alephbet", "exp").to_json()).encode()
    assert [p["date"] for p in json.loads(later)["points"]] == [date(d) for d in (0, 1, 3, 4)]


def test_the_interval_narrows_and_the_running_values_never_loosen(
    make_app: Callable[..., Flask],
) -> None:
    clock = Clock()
    client = make_app(counting="exact", clock=clock).test_client()
    for day in range(6):
        clock.day(day)
        for variant, rate in (("control", 0.15), ("red", 0.3)):
            for i in range(200):
                uuid = f"{variant}-{day}-{i}"
                one = {"experiment": "grow", "variant": variant, "uuid": uuid}
                events = [{**one, "event": "participate"}]
                if i < rate * 200:
                    events.append({**events[0], "event": "signup"})
                assert client.post("/track", json=events).status_code == 200
    points = history(client, "grow")["points"]
    assert len(points) == 6
    reds = [p["goals"][0]["results"][1] for p in points]
    assert all(r["label"] == "red" for r in reds)
    widths = [r["uplift_ci"][1] - r["uplift_ci"][0] for r in reds]
    assert widths == sorted(widths, reverse=True)  # more data, a narrower interval
    running = [r["running_uplift_ci"] for r in reds]
    for before, after in zip(running, running[1:], strict=False):
        assert after[0] >= before[0] and after[1] <= before[1]
    p_values = [r["running_p_value"] for r in reds]
    assert p_values == sorted(p_values, reverse=True)
    assert all(r["running_p_value"] <= r["p_value"] for r in reds)
    # Enough evidence by the end: red's interval excludes 0 and the verdict follows.
    assert reds[-1]["running_uplift_ci"][0] > 0
    assert reds[-1]["verdict"]["kind"] == "win"


def test_the_running_values_start_at_the_first_look_with_enough_evidence(
    make_app: Callable[..., Flask],
) -> None:
    """A look counts toward the running values only once both arms have 100 participants and
    25 conversions: an A/A test read every hour was otherwise called on a handful of
    conversions more often than its 5%."""
    clock = Clock()
    client = make_app(counting="exact", clock=clock).test_client()
    # Day 0: red 2 conversions against the control's 20, of 120 each: far apart, on too few;
    # day 1: 40 more participants in each, 30 more conversions in red, none in the control.
    plan = {"control": (120, 20, 40, 0), "red": (120, 2, 40, 30)}
    for day in range(2):
        clock.day(day)
        for variant, shape in plan.items():
            n, converted = shape[2 * day], shape[2 * day + 1]
            for i in range(n):
                one = {"experiment": "few", "variant": variant, "uuid": f"{variant}-{day}-{i}"}
                events = [{**one, "event": "participate"}]
                events += [{**one, "event": "signup"}] if i < converted else []
                assert client.post("/track", json=events).status_code == 200
    first, second = (p["goals"][0]["results"][1] for p in history(client, "few")["points"])
    assert first["p_value"] < 0.05  # the look alone would have decided...
    assert first["running_p_value"] is None and first["running_uplift_ci"] is None
    assert first["verdict"]["kind"] == "wait"  # ...but 2 conversions are not evidence
    # Red has 32 of 160, the control still 20: waiting.
    assert (second["successes"], second["trials"]) == (32, 160)
    assert second["running_p_value"] is None
    clock.day(2)
    for i in range(10):
        one = {"experiment": "few", "variant": "control", "uuid": f"control-2-{i}"}
        events = [{**one, "event": "participate"}, {**one, "event": "signup"}]
        assert client.post("/track", json=events).status_code == 200
    # 30 of 170 in the control: the first look with enough. The running values are its own,
    # not the smaller p-value of the look before.
    now = history(client, "few")["points"][-1]["goals"][0]
    assert [(r["successes"], r["trials"]) for r in now["results"]] == [(30, 170), (32, 160)]
    now = now["results"][1]
    assert now["running_p_value"] == now["p_value"] > first["p_value"]
    assert now["running_uplift_ci"] == now["uplift_ci"]


def test_reset_clears_the_history_and_delete_removes_it(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    clock = Clock()
    client = make_app(counting="exact", clock=clock).test_client()
    seed(client, clock)
    assert raw_redis.keys("*:history")
    reset = client.post("/experiments/exp/reset", headers=AUTH).get_json()
    assert reset["reset_at"] == START + 3 * DAY + 9 * 3600
    assert [p["date"] for p in history(client, "exp")["points"]] == [date(3)]
    clock.day(4)
    track(client, "exp", "a", "participate", "after-reset")
    clock.day(5)
    track(client, "exp", "a", "participate", "later")
    points = history(client, "exp")["points"]
    assert [p["date"] for p in points] == [date(4), date(5)]
    assert points[0]["participants"] == {"a": 1, "b": 0}
    assert client.delete("/experiments/exp", headers=AUTH).status_code == 200
    # History, counts, names, settings: all gone. (De-dup buckets of days the test's clock
    # left behind expire on Redis's own clock, which the test does not move.)
    assert [k for k in raw_redis.keys("*}:exp:*") if b":seen:" not in k] == []


def test_unknown_experiment_and_names_ending_in_history(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    missing = client.get("/experiments/nothing/history", headers=AUTH)
    assert missing.status_code == 404 and "nothing" in missing.get_json()["error"]
    assert client.get("/experiments/nothing/history").status_code == 401
    track(client, "a/history", "v", "participate", "u")
    # /experiments/<name>/history is the history of <name>: here of "a/history"...
    own = history(client, "a/history")  # GET /experiments/a/history/history
    assert own["experiment"] == "a/history"
    # ...while /experiments/a/history asks for the history of "a", which does not exist;
    # the experiment "a/history" itself is read with ?scope=.
    assert client.get("/experiments/a/history", headers=AUTH).status_code == 404
    scoped = client.get("/experiments?scope=a/history", headers=AUTH).get_json()
    assert original(scoped[1]["goals"]) == [] and scoped[1]["participants"] == {"v": 1}


@pytest.mark.single_redis
def test_cli_prints_the_history(
    make_app: Callable[..., Flask], redis_url: str, tmp_path: Any
) -> None:
    clock = Clock()
    client = make_app(counting="exact", clock=clock).test_client()
    truth = seed(client, clock)
    runner = CliRunner()
    args = ["results", "exp", "--history", "--redis-url", redis_url]
    as_json = runner.invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert as_json.exit_code == 0
    assert [p["date"] for p in json.loads(as_json.output)["points"]][:2] == [date(0), date(1)]
    as_csv = runner.invoke(main, [*args, "--format", "csv"], catch_exceptions=False)
    lines = as_csv.output.splitlines()
    assert lines[0].startswith("date,goal,variant,trials,successes")
    assert any(line.startswith(f"{date(1)},signup,b,17,7,") for line in lines[1:])
    assert truth[1][("signup", "b")] == (7, 17)
    table = runner.invoke(main, args, catch_exceptions=False).output
    assert "history by UTC day" in table and date(0) in table and date(1) in table
    bad = runner.invoke(main, ["results", "--history", "--redis-url", redis_url])
    assert bad.exit_code != 0 and "--history needs an EXPERIMENT" in bad.output
