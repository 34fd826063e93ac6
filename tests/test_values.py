"""Value goals and a covariate: the per-variant sums track.lua keeps beside the counts.

Expected sums are worked out by hand in each test from the events it sends (the contract:
a visitor's capped total before and after each event, its square, the clipped covariate).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import keys
from helpers import track

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
