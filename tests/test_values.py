"""Value goals and a covariate: the per-variant sums track.lua keeps beside the counts.

Expected sums are worked out by hand in each test from the events it sends (the contract:
a visitor's capped total before and after each event, its square, the clipped covariate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import keys
from gimel_core.storage import schema
from gimel_core.storage.plan import kept_fields
from gimel_core.vocabulary import Moment
from helpers import START, Clock, snapshot, track, track_url

NS = "alephbet"
PLAN = {
    "variants": ["a", "b"],
    "goals": ["signup", {"name": "revenue", "type": "value", "cap": 100}],
    "covariate": {"name": "orders", "cap": 10},
}


def put(client: FlaskClient, body: Any, name: str = "shop", **query: str) -> Any:
    return client.put(f"/experiments/{name}", json=body, headers=AUTH, query_string=query)


def counts(raw_redis: Any, name: str = "shop") -> dict[str, str]:
    """The counts hash, as text: what track.lua wrote."""
    return {k.decode(): v.decode() for k, v in raw_redis.hgetall(keys.counts(NS, name)).items()}


def sums(raw_redis: Any, name: str = "shop") -> dict[str, float]:
    return {k: float(v) for k, v in counts(raw_redis, name).items()}


def post(client: FlaskClient, *events: dict[str, Any]) -> Any:
    return client.post("/track", data=json.dumps(list(events)), content_type="application/json")


def item(variant: str, goal: str, uuid: str, name: str = "shop", **numbers: Any) -> dict:
    return {"experiment": name, "variant": variant, "event": goal, "uuid": uuid, **numbers}


@pytest.fixture
def exact(make_app: Callable[..., Flask]) -> FlaskClient:
    client = make_app(counting="exact").test_client()
    assert put(client, PLAN).status_code == 201
    return client


def test_sums_after_a_known_sequence_of_events(exact: FlaskClient, raw_redis: Any) -> None:
    # Participants of a: u1 with 3 orders, u2 with 25 (clipped to the cap, 10), u3 none sent.
    for uuid, extra in [("u1", {"covariate": "3"}), ("u2", {"covariate": "25"}), ("u3", {})]:
        assert track(exact, "shop", "a", "participate", uuid, **extra).get_json() == {"ok": True}
    # u1 buys three times, sending its running total before each purchase: a fresh uuid each.
    for i, (value, total) in enumerate([("12.5", "0"), ("20.25", "12.5"), ("30", "32.75")]):
        answer = track(
            exact, "shop", "a", "revenue", f"u1-buy{i}", value=value, total=total, covariate="3"
        )
        assert answer.get_json() == {"ok": True}
    # (each with the covariate: a value event's xy takes the covariate it carries)
    # u2 buys 90 then 50 (POST, JSON numbers): its total passes the cap, 100, on the second.
    answer = post(
        exact,
        item("a", "revenue", "u2-buy0", value=90, total=0, covariate=25),
        item("a", "revenue", "u2-buy1", value="50", total="90", covariate=25),
    )
    assert answer.get_json() == {"accepted": 2}
    # Re-sent (a browser retrying): the same uuid adds nothing, count nor sums.
    assert track(exact, "shop", "a", "revenue", "u1-buy1", value="20.25", total="12.5").status_code
    assert post(exact, item("a", "revenue", "u2-buy1", value=50, total=90, covariate=25)).json
    # Binary goal: u1 signs up (covariate 3), u3 too (none sent: 0).
    track(exact, "shop", "a", "signup", "u1", covariate="3")
    track(exact, "shop", "a", "signup", "u3")

    u1 = 12.5 + 20.25 + 30  # 62.75, below the cap
    assert sums(raw_redis) == {
        "participate:a": 3,
        "participate:a:x": 3 + 10 + 0,
        "participate:a:x2": 9 + 100 + 0,
        "revenue:a": 5,
        "revenue:a:y": u1 + 100,
        # each visitor's total squared once: (v1 + v2 + v3)^2, not v1^2 + v2^2 + v3^2
        "revenue:a:y2": u1**2 + 100**2,
        # u2's covariate is clipped to 10 there too
        "revenue:a:xy": 3 * u1 + 10 * 100,
        "signup:a": 2,
        "signup:a:xy": 3,
    }


def test_the_results_read_the_sums(exact: FlaskClient, raw_redis: Any) -> None:
    track(exact, "shop", "b", "participate", "v1", covariate="2")
    track(exact, "shop", "b", "revenue", "v1-0", value="7", covariate="2")
    experiments = exact.application.extensions["gimel"].experiments
    (read,) = experiments.counts(NS, ["shop"])
    sums_b = read.sums("revenue", "b")
    assert (sums_b.n, sums_b.sum_y, sums_b.sum_y2) == (1, 7.0, 49.0)
    assert (sums_b.sum_x, sums_b.sum_x2, sums_b.sum_xy) == (2.0, 4.0, 14.0)


def test_track_lua_reads_each_event_in_the_order_schema_gives() -> None:
    lua = resources.files("gimel_core.storage").joinpath("track.lua").read_text("utf-8")
    unpacked = re.findall(r"local ([\w, ]+) = unpack\(ARGV, i, i \+ stride - 1\)", lua)
    assert unpacked[-1].split(", ") == list(schema.TrackEventArgv._fields)
    assert f"local TRACK_STRIDE = {len(schema.TrackEventArgv._fields)}\n" in schema.PRELUDE


# -- bad input --------------------------------------------------------------------------

BAD_NUMBERS = [
    ("value", "abc"),
    ("value", "NaN"),
    ("value", "nan"),
    ("value", "inf"),
    ("value", "-Infinity"),
    ("value", "0x10"),
    ("value", ""),
    ("value", "1_000"),
    ("value", " 12"),
    ("value", "１２"),  # fullwidth digits, which float() would take
    ("value", "1e308"),  # finite, but past MAX_VALUE
    ("value", "1e400"),
    ("covariate", "inf"),
    ("covariate", "-2e12"),
]


@pytest.mark.parametrize(("field", "text"), BAD_NUMBERS)
def test_a_number_that_is_not_a_bounded_decimal_is_a_400_naming_it(
    exact: FlaskClient, raw_redis: Any, field: str, text: str
) -> None:
    track(exact, "shop", "a", "participate", "u1", covariate="2")
    before = snapshot(raw_redis)
    numbers = {"value": "5", "total": "0", field: text}
    answer = exact.get(
        track_url(experiment="shop", variant="a", event="revenue", uuid="u1-0", **numbers)
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert f"'{field}'" in answer.get_json()["error"]
    assert snapshot(raw_redis) == before


def test_a_decimal_past_the_length_limit_is_told_so(exact: FlaskClient, raw_redis: Any) -> None:
    # A well-formed decimal of 101 characters: its fault is its length, not its syntax.
    before = snapshot(raw_redis)
    long = "0." + "1" * 99
    answer = track(exact, "shop", "a", "revenue", "u1-0", value=long)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "value"
    assert "at most 100 characters" in answer.get_json()["error"]
    assert snapshot(raw_redis) == before
    assert track(exact, "shop", "a", "revenue", "u1-1", value=long[:-1]).get_json() == {"ok": True}


def test_a_total_without_a_value_is_a_400(exact: FlaskClient, raw_redis: Any) -> None:
    before = snapshot(raw_redis)
    answer = track(exact, "shop", "a", "revenue", "u1-0", total="5")
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "total"
    assert snapshot(raw_redis) == before


def test_a_batch_reports_each_bad_number_by_index_and_writes_nothing(
    exact: FlaskClient, raw_redis: Any
) -> None:
    before = snapshot(raw_redis)
    body = (
        "["
        + ",".join(
            json.dumps(item("a", "revenue", f"u{i}", **numbers))[:-1] + extra + "}"
            for i, (numbers, extra) in enumerate(
                [
                    ({"value": 5}, ""),  # fine
                    ({}, ', "value": NaN'),  # JSON as Python's parser lets it through
                    ({}, ', "value": 1e400'),
                    ({"value": 10**400}, ""),
                    ({"value": True}, ""),
                    ({"value": "abc"}, ""),
                    ({"total": 3}, ""),
                    ({"value": 1, "total": -1e13}, ""),
                    ({"covariate": [1]}, ""),
                ]
            )
        )
        + "]"
    )
    answer = exact.post("/track", data=body, content_type="application/json")
    assert answer.status_code == 400
    errors = [(e["index"], e["field"]) for e in answer.get_json()["errors"]]
    assert errors == [
        (1, "value"),
        (2, "value"),
        (3, "value"),
        (4, "value"),
        (5, "value"),
        (6, "total"),
        (7, "total"),
        (8, "covariate"),
    ]
    assert snapshot(raw_redis) == before


def without_abuse(raw_redis: Any) -> dict[bytes, Any]:
    found = snapshot(raw_redis)
    found.pop(keys.abuse().encode(), None)
    return found


def dropped(raw_redis: Any) -> dict[str, int]:
    return {
        k.decode(): int(v)
        for k, v in raw_redis.hgetall(keys.abuse()).items()
        if k.startswith(b"dropped:")
    }


# (goal, the numbers sent, the tally it goes under): what the plan does not take, each alone.
OFF_PLAN = [
    ("signup", {"value": "5"}, "value"),  # a value on a binary goal
    ("participate", {"value": "5"}, "value"),
    ("revenue", {}, "value"),  # a value goal's event without a value
    ("revenue", {"value": "-5", "total": "10"}, "value"),  # not declared negative
    ("revenue", {"value": "5", "total": "-1"}, "value"),  # a total below 0
    ("participate", {"covariate": "3"}, "covariate"),  # no covariate declared
]


@pytest.mark.parametrize(("goal", "numbers", "reason"), OFF_PLAN)
def test_numbers_off_the_plan_are_answered_not_counted_and_tallied(
    make_app: Callable[..., Flask],
    raw_redis: Any,
    goal: str,
    numbers: dict[str, str],
    reason: str,
) -> None:
    client = make_app(counting="exact").test_client()
    assert put(client, {**PLAN, "covariate": None}).status_code == 201
    track(client, "shop", "a", "participate", "u1")
    track(client, "shop", "a", "revenue", "u1-0", value="7")
    before = without_abuse(raw_redis)
    assert counts(raw_redis)  # something counted already, which must not change

    answer = track(client, "shop", "a", goal, "u2-0", **numbers)

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["ok"] is True and body["counted"] is False
    assert body["dropped"].startswith("not counted: ")
    assert without_abuse(raw_redis) == before
    assert dropped(raw_redis) == {f"dropped:{reason}": 1}
    results = client.get("/experiments", headers=AUTH).get_json()
    assert results[0]["meta"]["dropped"] == {reason: 1}


def test_a_batch_lists_the_events_off_the_plan_and_counts_the_rest(
    exact: FlaskClient, raw_redis: Any
) -> None:
    answer = post(
        exact,
        item("a", "participate", "u1", covariate=3),
        item("a", "signup", "u1", value=5),
        item("a", "revenue", "u1-0", value=-5),
        item("a", "revenue", "u1-1", value=5),
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["accepted"] == 2
    assert [d["field"] for d in body["dropped"]] == ["value", "value"]
    assert all(d["error"].startswith("not counted: ") for d in body["dropped"])
    assert dropped(raw_redis) == {"dropped:value": 2}
    assert sums(raw_redis)["revenue:a:y"] == 5
    assert "signup:a" not in counts(raw_redis)


@pytest.mark.parametrize("mode", ["hll", "exact"])
def test_numbers_in_an_undeclared_experiment_are_not_counted_and_create_nothing(
    make_app: Callable[..., Flask], raw_redis: Any, mode: str
) -> None:
    client = make_app(counting=mode).test_client()
    track(client, "other", "a", "participate", "u1")  # the namespace is known
    before = snapshot(raw_redis)
    answer = track(client, "open", "a", "buy", "u1", value="5")
    assert answer.get_json()["counted"] is False
    answer = track(client, "open", "a", "participate", "u1", covariate="5")
    assert answer.get_json()["counted"] is False
    after = snapshot(raw_redis)
    assert after.pop(keys.abuse().encode()) == {b"dropped:value": b"1", b"dropped:covariate": b"1"}
    assert after == before
    # Beside an event without numbers, the experiment is created and only that one counts.
    answer = post(
        client, item("a", "participate", "u1", name="open"), item("a", "buy", "u1", "open", value=5)
    )
    assert answer.get_json()["accepted"] == 1
    listing = client.get("/experiments", headers=AUTH).get_json()
    assert [(e["experiment"], e["participants"]) for e in listing[1:]] == [
        ("open", {"a": 1}),
        ("other", {"a": 1}),
    ]


# -- plans --------------------------------------------------------------------------------


def test_value_goals_and_covariates_are_refused_on_hll_experiments(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    hll = make_app(counting="hll").test_client()
    for dry_run in ("true", "false"):  # a dry run predicts the same answer
        answer = put(hll, PLAN, dry_run=dry_run)
        assert answer.status_code == 400
        body = answer.get_json()
        assert [e["field"] for e in body["errors"]] == ["goals[1].type", "covariate"]
        assert "new experiments count (GIMEL_COUNTING) in hll mode" in body["error"]
        assert "added twice" in body["error"]
    assert not raw_redis.keys("*")
    # An experiment traffic created in hll mode stays hll under an exact default.
    track(hll, "shop", "a", "participate", "u1")
    exact = make_app(counting="exact").test_client()
    for body in ({**PLAN, "covariate": None}, {**PLAN, "goals": ["signup"]}):
        for dry_run in ("true", "false"):
            answer = put(exact, body, dry_run=dry_run)
            assert answer.status_code == 400
            assert "this experiment counts in hll mode" in answer.get_json()["error"]
    assert put(exact, {**PLAN, "goals": ["signup"], "covariate": None}).status_code == 200


CHANGES = [
    ("goals[1].type", {"goals": ["signup", "revenue"]}),
    ("goals[1].cap", {"goals": ["signup", {"name": "revenue", "type": "value", "cap": 50}]}),
    ("goals[1].negative", {"goals": ["signup", {**PLAN["goals"][1], "negative": True}]}),
    ("goals[0].type", {"goals": [{"name": "signup", "type": "value"}, PLAN["goals"][1]]}),
    ("covariate", {"covariate": {"name": "orders", "cap": 20}}),
    ("covariate", {"covariate": None}),
]


@pytest.mark.parametrize(("field", "change"), CHANGES)
def test_what_the_sums_mean_cannot_change_once_counted_until_a_reset(
    exact: FlaskClient, raw_redis: Any, field: str, change: dict[str, Any]
) -> None:
    changed = {**PLAN, **change}
    assert put(exact, changed, dry_run="true").status_code == 200  # nothing counted yet
    track(exact, "shop", "a", "participate", "u1")
    before = snapshot(raw_redis)
    for dry_run in ("true", "false"):
        answer = put(exact, changed, dry_run=dry_run)
        assert answer.status_code == 409
        assert answer.get_json()["field"] == field
        assert "reset the experiment" in answer.get_json()["error"]
    assert snapshot(raw_redis) == before
    assert put(exact, PLAN).status_code == 200  # the same plan again: no change
    assert exact.post("/experiments/shop/reset", headers=AUTH).status_code == 200
    assert put(exact, changed).status_code == 200


def test_a_first_plan_cannot_give_sums_to_a_goal_counted_without(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(counting="exact").test_client()
    track(client, "shop", "a", "participate", "u1")
    track(client, "shop", "a", "revenue", "u1")  # counted as a plain (binary) goal
    answer = put(client, {**PLAN, "covariate": None})
    assert answer.status_code == 409
    assert answer.get_json()["field"] == "goals[1].type"
    # A value goal nothing counted yet is declared freely.
    plan = {**PLAN, "goals": ["revenue", {"name": "spend", "type": "value"}], "covariate": None}
    assert put(client, plan).status_code == 200


def test_a_plan_that_comes_to_sum_values_is_read_whole_by_tracking_and_back(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    # track.lua checks a plan that sums nothing by its names alone (Meta.NAMES): declaring a
    # value goal or a covariate later must make it read the goals and covariate again.
    client = make_app(counting="exact").test_client()
    plain = {"variants": ["a", "b"], "goals": ["signup", "revenue"]}
    assert put(client, plain).status_code == 201
    assert track(client, "shop", "a", "revenue", "u1", value="5").get_json()["counted"] is False
    assert (
        track(client, "shop", "a", "participate", "u1", covariate="2").get_json()["counted"]
        is False
    )
    assert put(client, PLAN).status_code == 200  # revenue counted nothing yet
    assert track(client, "shop", "a", "revenue", "u1", value="5").get_json() == {"ok": True}
    assert track(client, "shop", "a", "participate", "u1", covariate="2").get_json() == {"ok": True}
    assert sums(raw_redis)[keys.moment_field("revenue", "a", Moment.Y)] == 5
    assert sums(raw_redis)[keys.moment_field("participate", "a", Moment.X)] == 2
    # And back: a plan summing nothing again (before any sum) is checked by its names.
    assert put(client, plain, name="other").status_code == 201
    assert put(client, {**PLAN, "covariate": None}, name="other").status_code == 200
    assert put(client, plain, name="other").status_code == 200
    answer = track(client, "other", "a", "revenue", "u1", value="5")
    assert answer.get_json()["counted"] is False
    assert track(client, "other", "a", "revenue", "u2").get_json() == {"ok": True}


def test_dropping_undeclared_names_keeps_the_sums_of_kept_ones(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    client = make_app(counting="exact").test_client()
    track(client, "shop", "a", "participate", "u1")
    track(client, "shop", "junk", "participate", "u2")
    # Sums public traffic cannot write (an undeclared experiment keeps none), written as
    # track.lua would have, to see which go with their names.
    counts_key = keys.counts(NS, "shop")
    for goal, variant in [("participate", "a"), ("participate", "junk")]:
        for moment in ("x", "x2"):
            raw_redis.hset(counts_key, keys.moment_field(goal, variant, moment), "1.5")
    plan = {"variants": ["a", "b"], "goals": ["signup"]}
    predicted = put(client, plan, drop_undeclared="true", dry_run="true")
    assert predicted.status_code == 200
    assert put(client, plan, drop_undeclared="true").status_code == 200
    assert counts(raw_redis) == {
        "participate:a": "1",
        "participate:a:x": "1.5",
        "participate:a:x2": "1.5",
    }
    assert set(kept_fields(["a"], ["g"])) == {
        keys.counts_field(goal, "a") for goal in ("participate", "g")
    } | {keys.moment_field(goal, "a", m) for goal in ("participate", "g") for m in Moment}


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_reset_and_delete_remove_the_sums_with_the_counts_hash(
    exact: FlaskClient, raw_redis: Any, action: str
) -> None:
    track(exact, "shop", "a", "participate", "u1", covariate="4")
    track(exact, "shop", "a", "revenue", "u1-0", value="9")
    counts_key = keys.counts(NS, "shop")
    # The sums are fields of the counts hash (no key of their own), which clear.lua removes whole.
    assert set(counts(raw_redis)) == {
        "participate:a",
        "participate:a:x",
        "participate:a:x2",
        "revenue:a",
        "revenue:a:y",
        "revenue:a:y2",
        "revenue:a:xy",
    }
    assert {k for k in raw_redis.keys("*") if b":counts" in k} == {counts_key.encode()}
    if action == "reset":
        assert exact.post("/experiments/shop/reset", headers=AUTH).status_code == 200
    else:
        assert exact.delete("/experiments/shop", headers=AUTH).status_code == 200
    assert not raw_redis.exists(counts_key)
    if action == "reset":  # counting again starts from nothing
        track(exact, "shop", "a", "revenue", "u1-1", value="2")
        assert sums(raw_redis) == {
            "revenue:a": 1,
            "revenue:a:y": 2,
            "revenue:a:y2": 4,
            "revenue:a:xy": 0,  # no covariate sent: x = 0
        }


def test_a_value_goal_adds_two_fields_per_variant_to_a_binary_goals(
    exact: FlaskClient, raw_redis: Any
) -> None:
    plan = {**PLAN, "covariate": None}
    assert put(exact, plan).status_code == 200
    for variant in ("a", "b"):
        for i in range(3):
            uuid = f"{variant}{i}"
            track(exact, "shop", variant, "participate", uuid)
            track(exact, "shop", variant, "signup", uuid)
            track(exact, "shop", variant, "revenue", f"{uuid}-0", value="4.5")
    fields = counts(raw_redis)
    for variant in ("a", "b"):
        binary = [f for f in fields if f.startswith(f"signup:{variant}")]
        valued = [f for f in fields if f.startswith(f"revenue:{variant}")]
        assert len(binary) == 1
        assert len(valued) == len(binary) + 2
    assert len(fields) == 2 * (1 + 1 + 3)


# -- history ------------------------------------------------------------------------------

DAY = 86_400


def test_a_history_snapshot_keeps_every_digit_of_the_sums(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    clock = Clock()
    client = make_app(counting="exact", clock=clock).test_client()
    assert put(client, PLAN).status_code == 201
    track(client, "shop", "a", "participate", "u1", covariate="0.1")
    for i, (value, total) in enumerate([("0.1", "0"), ("0.2", "0.1"), ("1234567.891", "0.3")]):
        track(client, "shop", "a", "revenue", f"u1-{i}", value=value, total=total, covariate="0.1")
    day_end = counts(raw_redis)
    clock.now += DAY  # the next event crosses into a new UTC day: yesterday is snapshotted
    track(client, "shop", "b", "participate", "u2")

    (snapshot_,) = raw_redis.hvals(keys.history(NS, "shop"))
    stored = json.loads(snapshot_)
    summed = {f: v for f, v in day_end.items() if f.count(":") == 2}
    assert len(summed) == 5
    assert {f: stored[f] for f in summed} == summed  # the same text: no digit lost
    assert all(isinstance(stored[f], str) for f in summed)
    assert stored["revenue:a"] == 3  # counts stay numbers
    # What the results read back for that day is the same double.
    experiments = client.application.extensions["gimel"].experiments
    (read,) = experiments.counts(NS, ["shop"])
    day = int(START + 9 * 3600) // DAY
    assert read.history_moments[day][("revenue", "a", "y2")] == float(day_end["revenue:a:y2"])


def test_answers_to_numbers_conform_to_the_document(exact: FlaskClient) -> None:
    from test_openapi import conforms

    url = track_url(experiment="shop", variant="a", event="revenue", uuid="u1-0")
    assert conforms(exact.get(url + "&value=12.5&total=0&covariate=2"), "/track") == {"ok": True}
    off = conforms(exact.get(url.replace("revenue", "signup") + "&value=1"), "/track")
    assert off["counted"] is False
    assert conforms(exact.get(url + "&value=NaN"), "/track")["field"] == "value"
    batch = [item("a", "revenue", "u2-0", value="1.5"), item("a", "signup", "u2", value=1)]
    answer = conforms(exact.post("/track", json=batch), "/track", "POST")
    assert answer["dropped"][0]["field"] == "value"
    nulls = item("a", "participate", "u3", value=None, total=None, covariate=None)
    assert conforms(exact.post("/track", json=nulls), "/track", "POST") == {"accepted": 1}
    listing = exact.get("/experiments", headers=AUTH).get_json()
    assert listing[0]["meta"]["dropped"] == {"value": 2}
