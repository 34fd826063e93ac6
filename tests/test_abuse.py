"""The public endpoint under abuse: caps, allowlists, bots, sizes, cross-origin reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from conftest import API_KEY, AUTH
from gimel_core import defaults, keys
from helpers import track

BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"


def meta(client: FlaskClient) -> dict:
    return client.get("/experiments", headers=AUTH).get_json()[0]["meta"]


def test_inventing_variants_and_goals_stops_at_the_caps(
    make_app: Callable[..., Flask], raw_redis: redis.Redis
) -> None:
    client = make_app(max_variants=3, max_goals=2).test_client()
    statuses = [track(client, "e", f"v{i}", "participate", f"u{i}").status_code for i in range(50)]
    assert statuses == [200] * 3 + [422] * 47
    refused = track(client, "e", "v99", "participate", "u")
    assert refused.get_json() == {
        "error": "not counted: at most 3 variants in experiment 'e' (GIMEL_MAX_VARIANTS)",
        "field": "variant",
    }
    goals = [track(client, "e", "v0", f"g{i}", "u0").status_code for i in range(10)]
    assert goals == [200] * 2 + [422] * 8
    assert track(client, "e", "v1", "g1", "u1").status_code == 200  # known names still count

    exp = client.get("/experiments/e", headers=AUTH).get_json()
    assert sorted(exp["participants"]) == ["v0", "v1", "v2"]
    assert [g["goal"] for g in exp["goals"]] == ["g0", "g1"]
    assert meta(client)["dropped"] == {"goals": 8, "variants": 48}
    assert len(raw_redis.keys("gimel:{*:hll:*")) == 3 + 2 * 1 + 1  # nothing past the caps


def test_one_batch_repeating_names_past_the_caps_drops_every_repeat(
    make_app: Callable[..., Flask], raw_redis: redis.Redis
) -> None:
    """The events of one experiment in a batch are counted by one script call, which decides
    each name once: a name past a cap stays past it for every event that repeats it."""
    client = make_app(max_variants=2, max_goals=1).test_client()
    names = [
        ("v0", "participate"),
        ("v1", "participate"),
        ("v2", "participate"),  # a third variant
        ("v2", "participate"),
        ("v0", "g0"),
        ("v0", "g1"),  # a second goal
        ("v1", "g1"),
        ("v1", "g0"),
    ]
    batch = [
        {"experiment": "e", "variant": v, "event": g, "uuid": f"u{i}"}
        for i, (v, g) in enumerate(names)
    ]
    answer = client.post("/track", json=batch).get_json()
    assert answer["accepted"] == 4
    assert sorted(d["field"] for d in answer["dropped"]) == ["event", "event", "variant", "variant"]
    exp = client.get("/experiments/e", headers=AUTH).get_json()
    assert exp["participants"] == {"v0": 1, "v1": 1}
    assert [(g["goal"], sorted(r["label"] for r in g["results"])) for g in exp["goals"]] == [
        ("g0", ["v0", "v1"])
    ]
    assert meta(client)["dropped"] == {"goals": 2, "variants": 2}
    assert len(raw_redis.keys("gimel:{*:hll:*")) == 2 + 2  # nothing past the caps


def test_the_experiment_cap_holds_per_namespace(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_experiments=keys.SHARDS).test_client()  # one per registry shard
    names = [f"exp-{i}" for i in range(60)]
    statuses = {n: track(client, n, "v", "participate", "u").status_code for n in names}
    first_per_shard = {}
    for n in names:
        first_per_shard.setdefault(keys.shard(n), n)
    assert {n for n, status in statuses.items() if status == 200} == set(first_per_shard.values())
    assert set(statuses.values()) == {200, 422}
    listed = client.get("/experiments", headers=AUTH).get_json()
    assert len(listed) - 1 == len(first_per_shard) <= keys.SHARDS
    assert listed[0]["meta"]["dropped"] == {"experiments": 60 - len(first_per_shard)}


def test_the_namespace_cap(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_namespaces=2).test_client()
    assert track(client, "e", "v", "participate", "u", namespace="a").status_code == 200
    assert track(client, "e", "v", "participate", "u", namespace="b").status_code == 200
    refused = track(client, "e", "v", "participate", "u", namespace="c")
    assert refused.status_code == 422
    assert refused.get_json()["field"] == "namespace"
    # a fresh process knows "a" is admitted and "c" is not
    again = make_app(max_namespaces=2).test_client()
    assert track(again, "e", "v", "participate", "u2", namespace="a").status_code == 200
    assert track(again, "e", "v", "participate", "u2", namespace="c").status_code == 422


def test_allowlists(make_app: Callable[..., Flask], raw_redis: redis.Redis) -> None:
    client = make_app(
        allowed_namespaces=frozenset({"shop"}), allowed_experiments=frozenset({"button"})
    ).test_client()
    assert track(client, "button", "v", "participate", "u", namespace="shop").status_code == 200
    other_ns = track(client, "button", "v", "participate", "u", namespace="blog")
    assert other_ns.status_code == 422 and other_ns.get_json()["field"] == "namespace"
    other_exp = track(client, "banner", "v", "participate", "u", namespace="shop")
    assert other_exp.status_code == 422 and other_exp.get_json()["field"] == "experiment"
    batch = client.post(
        "/track",
        json=[
            {
                "experiment": "button",
                "variant": "v",
                "event": "participate",
                "uuid": "b1",
                "namespace": "shop",
            },
            {
                "experiment": "banner",
                "variant": "v",
                "event": "participate",
                "uuid": "b2",
                "namespace": "shop",
            },
        ],
    )
    assert batch.status_code == 200
    assert batch.get_json()["accepted"] == 1
    assert [d["field"] for d in batch.get_json()["dropped"]] == ["experiment"]
    listed = client.get("/experiments?namespace=shop", headers=AUTH).get_json()
    assert [e["experiment"] for e in listed[1:]] == ["button"]
    assert listed[0]["meta"]["dropped"] == {"allowlist": 3}


SCRIPTS = [
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Python-urllib/3.12",
    "python-httpx/0.27.0",
    "Python/3.12 aiohttp/3.9.5",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Java/17.0.10",
    "Apache-HttpClient/4.5.14 (Java/17.0.10)",
    "axios/1.7.2",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "node",
    "undici",
    "HTTPie/3.2.2",
    "GuzzleHttp/7",
    "libwww-perl/6.72",
    "PostmanRuntime/7.37.3",
    "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.22621.2506",
]
"""The agents command-line tools and HTTP libraries send unless told otherwise."""
BROWSERS = [
    BROWSER,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
]


@pytest.mark.parametrize("agent", [BOT, "facebookexternalhit/1.1", *SCRIPTS])
def test_bots_are_answered_200_and_not_counted(client: FlaskClient, agent: str) -> None:
    url = "/track?experiment=e&variant=v&event=participate&uuid=u"
    response = client.get(url, headers={"User-Agent": agent})
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "counted": False}
    batch = client.post(
        "/track",
        json=[{"experiment": "e", "variant": "v", "event": "participate", "uuid": "b"}] * 3,
        headers={"User-Agent": agent},
    )
    assert batch.get_json() == {"accepted": 0, "filtered": 3}
    assert (
        client.get(
            "/track?experiment=e&variant=v&event=g&uuid=u", headers={"User-Agent": BROWSER}
        ).status_code
        == 200
    )
    listed = client.get("/experiments", headers=AUTH).get_json()
    assert listed[0]["meta"]["filtered"] == 4
    assert listed[1]["participants"] == {"v": 0}  # only the browser's goal event is there


def test_browsers_are_counted(client: FlaskClient) -> None:
    for i, agent in enumerate(BROWSERS):
        answer = client.get(
            f"/track?experiment=e&variant=v&event=participate&uuid=u{i}",
            headers={"User-Agent": agent},
        )
        assert answer.get_json() == {"ok": True}, agent
    listed = client.get("/experiments", headers=AUTH).get_json()
    assert listed[0]["meta"]["filtered"] == 0
    assert listed[1]["participants"] == {"v": len(BROWSERS)}


def test_a_pattern_with_capitals_still_ignores_case(make_app: Callable[..., Flask]) -> None:
    client = make_app(bot_pattern="MyMonitor/").test_client()
    url = "/track?experiment=e&variant=v&event=participate&uuid=u"
    assert client.get(url, headers={"User-Agent": "mymonitor/2"}).get_json()["counted"] is False
    assert client.get(url, headers={"User-Agent": BOT}).get_json() == {"ok": True}


def test_the_bot_pattern_is_configurable(make_app: Callable[..., Flask]) -> None:
    client = make_app(bot_pattern="").test_client()
    url = "/track?experiment=e&variant=v&event=participate&uuid=u"
    assert client.get(url, headers={"User-Agent": BOT}).get_json() == {"ok": True}


def test_oversized_query_strings_are_refused(client: FlaskClient, raw_redis: redis.Redis) -> None:
    response = client.get(
        "/track?experiment=e&variant=v&event=participate&uuid=u&pad=" + "x" * 9000
    )
    assert response.status_code == 414
    assert "longer than 8192" in response.get_json()["error"]
    assert raw_redis.dbsize() == 0


def test_data_is_not_readable_cross_origin_unless_configured(
    make_app: Callable[..., Flask],
) -> None:
    origin = {"Origin": "https://evil.example"}
    closed = make_app().test_client()
    assert (
        "Access-Control-Allow-Origin"
        not in closed.get("/experiments", headers={**AUTH, **origin}).headers
    )
    opened = make_app(cors_origins=("https://admin.example",)).test_client()
    good = opened.get("/experiments", headers={**AUTH, "Origin": "https://admin.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert "Origin" in good.headers["Vary"]
    preflight = opened.options(
        "/experiments/e",
        headers={"Origin": "https://admin.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert preflight.status_code == 200
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"]
    assert (
        "Access-Control-Allow-Origin"
        not in opened.get("/experiments", headers={**AUTH, **origin}).headers
    )


def test_keys_are_never_logged_and_refusals_carry_no_data(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    track(client, "secret-experiment", "v", "participate", "u")
    wrong = client.get("/experiments", headers={"x-api-key": "not-the-key-000000000"})
    missing = client.get("/experiments")
    assert (wrong.status_code, missing.status_code) == (403, 401)
    for response in (wrong, missing):
        assert "secret-experiment" not in response.get_data(as_text=True)
    client.get("/experiments", headers=AUTH)
    assert API_KEY not in caplog.text
    assert "not-the-key" not in caplog.text


def test_only_the_start_of_a_huge_user_agent_is_matched(client: FlaskClient) -> None:
    """A 250 KB User-Agent must not cost a regex scan of 250 KB on every request."""
    url = "/track?experiment=e&variant=v&event=participate&uuid=u"
    bound = defaults.BOT_AGENT_CHARS
    early = "Mozilla/5.0 Googlebot/2.1 " + "a" * 250_000
    late = "Mozilla/5.0 " + "a" * bound + " Googlebot/2.1 " + "a" * 250_000
    assert client.get(url, headers={"User-Agent": early}).get_json() == {
        "ok": True,
        "counted": False,
    }
    # a marker past the bound is not looked at: the huge agent is counted as a browser
    assert client.get(url, headers={"User-Agent": late}).get_json() == {"ok": True}
