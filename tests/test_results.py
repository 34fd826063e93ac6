"""Results and delete: the API key, scope, single experiment, atomic delete."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import quote

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from conftest import API_KEY, AUTH
from gimel_core import keys
from helpers import original, track

PRIVATE = [
    ("GET", "/experiments"),
    ("GET", "/experiments/e"),
    ("DELETE", "/experiments/e"),
    ("DELETE", "/delete?experiment=e"),
]


@pytest.mark.parametrize(("method", "path"), PRIVATE)
def test_data_endpoints_need_the_key(client: FlaskClient, method: str, path: str) -> None:
    track(client, "e", "v", "participate", "u")

    missing = client.open(path, method=method)
    assert missing.status_code == 401
    assert "x-api-key" in missing.get_json()["error"]
    wrong = client.open(path, method=method, headers={"x-api-key": API_KEY[:-1] + "X"})
    assert wrong.status_code == 403
    assert "e" not in wrong.get_json()
    right = client.open(path, method=method, headers=AUTH)
    assert right.status_code == 200


@pytest.mark.parametrize(("method", "path"), PRIVATE)
def test_with_no_key_configured_data_endpoints_are_closed(
    make_app: Callable[..., Flask], method: str, path: str
) -> None:
    client = make_app(api_keys=()).test_client()
    response = client.open(path, method=method, headers={"x-api-key": ""})
    assert response.status_code == 403
    assert "GIMEL_API_KEY" in response.get_json()["error"]


def test_any_of_several_keys_works(make_app: Callable[..., Flask]) -> None:
    client = make_app(api_keys=("first-key-0123456789", "second-key-0123456789")).test_client()
    assert (
        client.get("/experiments", headers={"x-api-key": "second-key-0123456789"}).status_code
        == 200
    )
    assert (
        client.get("/experiments", headers={"x-api-key": "third-key-0123456789"}).status_code == 403
    )


def test_scope_and_namespace(client: FlaskClient) -> None:
    for name in ["a", "b", "c"]:
        track(client, name, "v", "participate", "u")
        track(client, name, "v", "goal", "u")
    track(client, "a", "v", "participate", "u", namespace="other")

    scoped = client.get("/experiments?scope=c,a,missing", headers=AUTH).get_json()
    assert scoped[0] == {"meta": {"scope": "c,a,missing", "filtered": 0, "dropped": {}}}
    assert [e["experiment"] for e in scoped[1:]] == ["c", "a", "missing"]
    assert scoped[3]["goals"] == []

    other = client.get("/experiments?namespace=other", headers=AUTH).get_json()
    assert [e["experiment"] for e in other[1:]] == ["a"]
    assert other[1]["goals"] == []

    single = client.get("/experiments/b", headers=AUTH).get_json()
    assert single["experiment"] == "b"
    assert original(single["goals"]) == [
        {"goal": "goal", "results": [{"label": "v", "successes": 1, "trials": 1}]}
    ]


@pytest.mark.parametrize("mode", ["hll", "exact"])
@pytest.mark.parametrize("route", ["/experiments/{}", "/delete?experiment={}"])
def test_delete_removes_every_key_and_nothing_else(
    make_app: Callable[..., Flask], raw_redis: redis.Redis, mode: str, route: str
) -> None:
    client = make_app(counting=mode).test_client()
    name = "to go: {x} 🎉"
    track(client, "stays", "v", "participate", "u")
    kept = set(raw_redis.keys("*"))
    for variant in ["red", "blue"]:
        for event in ["participate", "click", "buy"]:
            track(client, name, variant, event, "u")

    response = client.delete(route.format(quote(name)), headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["deleted"] == name
    assert set(raw_redis.keys("*")) == kept
    assert client.get(f"/experiments/{quote(name)}", headers=AUTH).status_code == 404
    assert [e["experiment"] for e in client.get("/experiments", headers=AUTH).get_json()[1:]] == [
        "stays"
    ]


@pytest.mark.parametrize("mode", ["hll", "exact"])
def test_events_during_delete_leave_no_orphaned_counter(
    make_app: Callable[..., Flask], raw_redis: redis.Redis, mode: str
) -> None:
    app = make_app(counting=mode)
    writer, deleter = app.test_client(), app.test_client()
    stop = threading.Event()

    def keep_tracking() -> None:
        i = 0
        while not stop.is_set():
            # New variants and goals keep appearing: the keys a delete must not miss.
            track(writer, "busy", f"v{i % 7}", f"g{i % 5}", f"u{i}")
            i += 1

    thread = threading.Thread(target=keep_tracking)
    thread.start()
    try:
        for _ in range(30):
            status = deleter.delete("/experiments/busy", headers=AUTH).status_code
            assert status in (200, 404)
    finally:
        stop.set()
        thread.join()

    # Every key of the experiment belongs to a live, listed experiment, or none exists.
    exp_keys = {k for k in raw_redis.keys("*") if b":busy:" in k}
    if exp_keys:
        assert raw_redis.exists(keys.meta("alephbet", "busy"))
        assert raw_redis.sismember(keys.experiment_registry("alephbet", "busy"), "busy")
    deleter.delete("/experiments/busy", headers=AUTH)
    assert not {k for k in raw_redis.keys("*") if b":busy:" in k}


def test_dashboard_is_served_with_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for asset, mimetype in [("main.js", "text/javascript"), ("app.css", "text/css")]:
        response = client.get(f"/dashboard/{asset}")
        assert response.status_code == 200 and response.mimetype == mimetype
    assert client.get("/dashboard/../api.py").status_code == 404
    assert client.get("/dashboard/secret.py").status_code == 404
