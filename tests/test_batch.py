"""POST /track: batches of events, validated all-or-nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from helpers import original


def event(i: int, variant: str = "red", goal: str = "participate") -> dict[str, str]:
    return {"experiment": "batch", "variant": variant, "event": goal, "uuid": f"u{i}"}


@pytest.mark.parametrize("mode", ["hll", "exact"])
def test_a_batch_counts_like_single_events(make_app: Callable[..., Flask], mode: str) -> None:
    client = make_app(counting=mode).test_client()
    events = [event(i) for i in range(300)] + [event(i, goal="buy") for i in range(0, 300, 3)]
    events += [event(i) for i in range(10)]  # resent uuids count once
    events += [event(i, variant="blue") for i in range(80)]
    response = client.post("/track", json=events, headers={"Origin": "https://a.example"})
    assert response.status_code == 200
    assert response.get_json() == {"accepted": len(events)}
    assert response.headers["Access-Control-Allow-Origin"] == "*"

    exp = client.get("/experiments/batch", headers=AUTH).get_json()
    assert exp["counting"] == mode
    rows = {r["label"]: r for r in original(exp["goals"])[0]["results"]}
    if mode == "exact":
        assert rows == {
            "blue": {"label": "blue", "successes": 0, "trials": 80},
            "red": {"label": "red", "successes": 100, "trials": 300},
        }
    else:
        assert rows["red"]["trials"] == pytest.approx(300, rel=0.02)
        assert rows["red"]["successes"] == pytest.approx(100, rel=0.02)


def test_one_object_and_an_empty_array(client: FlaskClient) -> None:
    assert client.post("/track", json=event(1)).get_json() == {"accepted": 1}
    assert client.post("/track", json=[]).get_json() == {"accepted": 0}
    exp = client.get("/experiments/batch", headers=AUTH).get_json()
    assert exp["participants"] == {"red": 1}


def test_bad_events_are_all_listed_and_nothing_is_recorded(
    client: FlaskClient, raw_redis: redis.Redis
) -> None:
    events = [event(0), {**event(1), "uuid": ""}, "nope", event(3), {"experiment": "x" * 129}]
    response = client.post("/track", json=events)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "events"
    assert "3 of 5" in body["error"]
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "uuid"),
        (2, "event"),
        (4, "experiment"),
    ]
    assert "empty" in body["errors"][0]["error"]
    assert raw_redis.dbsize() == 0


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "JSON"),
        (b"\xff\xfe", 400, "JSON"),
        (b"[" * 600_000 + b"]" * 600_000, 413, "at most"),
        (b"[" * 5000 + b"]" * 5000, 400, "JSON"),
        (json.dumps([event(i) for i in range(501)]).encode(), 400, "at most 500 events"),
        (b'"just a string"', 400, "expected a JSON object"),
        (json.dumps([{**event(0), "uuid": "\ud800"}]).encode(), 400, "control"),
        (json.dumps([{**event(0), "variant": 7}]).encode(), 400, "string"),
    ],
)
def test_malformed_batches_are_refused(
    client: FlaskClient, raw_redis: redis.Redis, body: bytes, status: int, needle: str
) -> None:
    response = client.post("/track", data=body, content_type="application/json")
    assert response.status_code == status
    assert needle in json.dumps(response.get_json())
    assert raw_redis.dbsize() == 0


def test_limits_are_configurable(make_app: Callable[..., Flask], raw_redis: redis.Redis) -> None:
    client = make_app(batch_max_events=2, batch_max_bytes=1000).test_client()
    assert client.post("/track", json=[event(1), event(2)]).status_code == 200
    assert client.post("/track", json=[event(i) for i in range(3)]).status_code == 400
    big = client.post("/track", json=[{**event(1), "uuid": "u" * 128}] * 6)
    assert big.status_code == 413


def test_batches_work_on_extra_track_paths(make_app: Callable[..., Flask]) -> None:
    client = make_app(track_paths=("/track", "/collect")).test_client()
    assert client.post("/collect", json=[event(1), event(2)]).get_json() == {"accepted": 2}
    assert client.put("/collect").status_code == 405
