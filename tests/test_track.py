"""Tracking: Alephbet's wire format, de-duplication in both modes, CORS, odd names."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from helpers import original, track, track_url

MODES = ["hll", "exact"]


@pytest.fixture(params=MODES)
def mode_client(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(counting=request.param).test_client()


def test_results_have_the_original_json_shape(client: FlaskClient) -> None:
    # Two visitors on red, one on blue; red converts once on "signup", blue once on "buy".
    for variant, uuid in [("red", "u1"), ("red", "u2"), ("blue", "u3")]:
        assert track(client, "button", variant, "participate", uuid).status_code == 200
    track(client, "button", "red", "signup", "u1")
    track(client, "button", "blue", "buy", "u3")

    body = client.get("/experiments", headers=AUTH).get_json()

    # Every field of the original is there, unchanged; added fields come after them.
    assert list(body[1])[:2] == ["experiment", "goals"]
    assert body[1]["counting"] == "hll"
    assert [
        body[0],
        {"experiment": body[1]["experiment"], "goals": original(body[1]["goals"])},
    ] == [
        {"meta": {"scope": None, "filtered": 0, "dropped": {}}},
        {
            "experiment": "button",
            "goals": [
                {
                    "goal": "buy",
                    "results": [
                        {"label": "blue", "successes": 1, "trials": 1},
                        {"label": "red", "successes": 0, "trials": 2},
                    ],
                },
                {
                    "goal": "signup",
                    "results": [
                        {"label": "blue", "successes": 0, "trials": 1},
                        {"label": "red", "successes": 1, "trials": 2},
                    ],
                },
            ],
        },
    ]


def test_track_answers_cors_for_any_origin_and_is_never_cached(client: FlaskClient) -> None:
    response = client.get(
        track_url(experiment="e", variant="v", event="participate", uuid="u"),
        headers={"Origin": "https://shop.example"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"] == "no-store"

    preflight = client.options(
        "/track",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]


def test_resent_uuid_counts_once(mode_client: FlaskClient) -> None:
    for _ in range(5):
        track(mode_client, "e", "red", "participate", "same-uuid")
        track(mode_client, "e", "red", "click", "same-uuid")
    track(mode_client, "e", "red", "participate", "other-uuid")

    [meta, exp] = mode_client.get("/experiments", headers=AUTH).get_json()
    assert original(exp["goals"]) == [
        {"goal": "click", "results": [{"label": "red", "successes": 1, "trials": 2}]}
    ]


def test_same_uuid_from_many_threads_at_once_counts_once(mode_client: FlaskClient) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        for i in range(20):
            for event in ("participate", "goal"):
                statuses.append(track(mode_client, "race", "v", event, f"u{i}").status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 320
    exp = mode_client.get("/experiments/race", headers=AUTH).get_json()
    assert original(exp["goals"])[0]["results"] == [{"label": "v", "successes": 20, "trials": 20}]


@pytest.mark.slow
def test_exact_counts_are_exact_past_hll_precision(make_app: Callable[..., Flask]) -> None:
    client = make_app(counting="exact").test_client()
    counters = client.application.extensions["gimel"].tracker
    from gimel_core.events import Event

    for i in range(3000):
        counters.track(Event("alephbet", "big", "v", "participate", f"user-{i}"))
        counters.track(Event("alephbet", "big", "v", "buy", f"user-{i}"))
        if i % 3 == 0:
            counters.track(Event("alephbet", "big", "v", "participate", f"user-{i}"))
    exp = client.get("/experiments/big", headers=AUTH).get_json()
    assert exp["counting"] == "exact"
    assert original(exp["goals"])[0]["results"] == [
        {"label": "v", "successes": 3000, "trials": 3000}
    ]


def test_dedup_window_expires(make_app: Callable[..., Flask]) -> None:
    import time

    client = make_app(counting="exact", dedup_window=1).test_client()
    track(client, "w", "v", "participate", "u")
    track(client, "w", "v", "participate", "u")
    time.sleep(2.2)  # past window + one bucket
    track(client, "w", "v", "participate", "u")
    track(client, "w", "v", "g", "u")
    exp = client.get("/experiments/w", headers=AUTH).get_json()
    assert exp["goals"][0]["results"][0]["trials"] == 2


def test_counting_mode_is_recorded_per_experiment(make_app: Callable[..., Flask]) -> None:
    hll = make_app(counting="hll").test_client()
    track(hll, "first-hll", "v", "participate", "u1")
    exact = make_app(counting="exact").test_client()
    track(exact, "first-hll", "v", "participate", "u2")
    track(exact, "first-hll", "v", "participate", "u2")
    track(exact, "first-exact", "v", "participate", "u1")
    track(hll, "first-exact", "v", "participate", "u3")

    body = {e["experiment"]: e for e in hll.get("/experiments", headers=AUTH).get_json()[1:]}
    assert body["first-hll"]["counting"] == "hll"
    assert body["first-exact"]["counting"] == "exact"
    for name in body:
        track(exact, name, "v", "g", "u1")
    body = {e["experiment"]: e for e in hll.get("/experiments", headers=AUTH).get_json()[1:]}
    assert body["first-hll"]["goals"][0]["results"][0]["trials"] == 2
    assert body["first-exact"]["goals"][0]["results"][0]["trials"] == 2


NASTY = [
    "a:b",
    "a:b:c",
    "{tag}",
    "}{",
    "with space",
    "plus+sign",
    "100%",
    "%3A",
    "emoji 🎉🧪",
    "עברית",
    "x" * 128,
    "a&b=c",
]


@pytest.mark.parametrize("mode", MODES)
def test_names_with_separators_braces_and_unicode_never_collide(
    make_app: Callable[..., Flask], mode: str
) -> None:
    client = make_app(counting=mode).test_client()
    # Each experiment gets a distinct number of participants: any collision would mix them.
    for n, name in enumerate(NASTY, start=1):
        for i in range(n):
            assert track(client, name, name, "participate", f"u{i}").status_code == 200
        track(client, name, name, name, "u0")

    listing = client.get("/experiments", headers=AUTH).get_json()[1:]
    assert sorted(e["experiment"] for e in listing) == sorted(NASTY)
    for n, name in enumerate(NASTY, start=1):
        [exp] = [e for e in listing if e["experiment"] == name]
        assert original(exp["goals"]) == [
            {"goal": name, "results": [{"label": name, "successes": 1, "trials": n}]}
        ]


def test_keys_of_one_experiment_share_a_cluster_slot(client: FlaskClient, raw_redis) -> None:
    from redis.crc import key_slot

    for name in ["a:b", "{x}", "🎉"]:
        track(client, name, "v:{1}", "participate", "u")
        track(client, name, "w", "g{", "u")
    slots: dict[str, set[int]] = {}
    for key in raw_redis.keys("gimel:{*"):  # the per-experiment keys, not the global ones
        slots.setdefault(key.split(b"}")[0].decode(), set()).add(key_slot(key))
    assert len(slots) == 3
    assert all(len(s) == 1 for s in slots.values())


@pytest.mark.single_redis
def test_redis_url_schemes_are_accepted(make_app: Callable[..., Flask], redis_url: str) -> None:
    client = make_app(redis_url=redis_url.replace("/0", "/3")).test_client()
    assert track(client, "e", "v", "participate", "u").status_code == 200
    assert redis.Redis.from_url(redis_url.replace("/0", "/3")).dbsize() > 0
