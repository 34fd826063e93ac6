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
from helpers import snapshot, track, track_url

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
