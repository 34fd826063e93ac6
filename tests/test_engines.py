"""The engines teams deploy on: whichever ``GIMEL_TEST_ENGINE`` names (Redis 6.2, Redis 7,
Valkey 8), single node and cluster, and over TLS only where the engine has TLS, which with
cluster mode is how ElastiCache Serverless serves. Each test first checks the server really
is the engine claimed, so a misconfigured run cannot pass on another one."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from conftest import AUTH, ENGINE
from gimel_core.errors import ConfigError
from gimel_core.store import connect
from helpers import original, track
from tests.serving import GimelServe

pytestmark = pytest.mark.tls

VERSION_FIELD = {"redis6": "redis_version", "redis7": "redis_version", "valkey8": "valkey_version"}
VERSION_PREFIX = {"redis6": "6.2.", "redis7": "7.", "valkey8": "8."}

PLAN = {"variants": ["blue", "red"], "control": "blue", "goals": [{"name": "signup"}]}


def servers(raw_redis: Any) -> list[dict[str, Any]]:
    """INFO server of the single server, or of every master of the cluster."""
    if isinstance(raw_redis.__dict__.get("cluster"), RedisCluster):
        return list(raw_redis.info("server", target_nodes=RedisCluster.PRIMARIES).values())
    return [raw_redis.info("server")]


def rows(client: FlaskClient, name: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/experiments/{name}", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return {
        goal["goal"]: {row["label"]: (row["successes"], row["trials"]) for row in goal["results"]}
        for goal in original(response.get_json()["goals"])
    }


def test_every_server_is_the_engine_claimed(redis_url: str, raw_redis: Any) -> None:
    found = servers(raw_redis)
    assert len(found) == (3 if "cluster" in redis_url else 1)
    for info in found:
        version = str(info.get(VERSION_FIELD[ENGINE.name], ""))
        assert version.startswith(VERSION_PREFIX[ENGINE.name]), info
        assert (info.get("server_name") == "valkey") == (ENGINE.name == "valkey8"), info
        assert info["executable"] == ENGINE.server or ENGINE.name == "redis6", info


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_tls_servers_listen_on_tls_only_and_gimel_trusts_only_the_given_ca(
    request: pytest.FixtureRequest, kind: str
) -> None:
    if not ENGINE.tls:
        pytest.skip(f"{ENGINE.name}'s build has no TLS")
    server = request.getfixturevalue(f"tls_redis_{'server' if kind == 'single' else 'cluster'}")
    nodes = server.nodes if kind == "cluster" else [server]
    for node in nodes:
        with redis.Redis.from_url(node.url) as one:
            config = one.config_get("*port")
            assert config["port"] == "0" and config["tls-port"] == str(node.port), config
            tls_cluster = one.config_get("tls-cluster")["tls-cluster"]
            assert tls_cluster == ("yes" if kind == "cluster" else "no")
    trusted = connect(server.url, timeout=2)
    assert trusted.ping()
    trusted.close()
    # Without the test CA the certificate is refused: the CA in the URL is what Gimel trusts.
    # (A cluster client reads the slots when it is made, a single one when first used.)
    with pytest.raises((redis.ConnectionError, RedisClusterException), match="certificate"):
        with connect(server.url.split("?")[0], timeout=2) as untrusted:
            untrusted.ping()


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_tracking_results_history_reset_and_delete(
    make_app: Callable[..., Flask], counting: str
) -> None:
    client = make_app(counting=counting).test_client()
    for i in range(30):
        assert track(client, "button", "red", "participate", f"r{i}").status_code == 200
        assert track(client, "button", "blue", "participate", f"b{i}").status_code == 200
    for i in range(0, 30, 3):
        track(client, "button", "red", "signup", f"r{i}")
    track(client, "button", "red", "participate", "r0")  # a re-sent event counts once
    found = rows(client, "button")
    if counting == "exact":
        assert found["signup"] == {"blue": (0, 30), "red": (10, 30)}
    else:  # HyperLogLog: within its error at this size
        assert found["signup"]["red"][1] == pytest.approx(30, abs=1)
        assert found["signup"]["red"][0] == pytest.approx(10, abs=1)

    listed = client.get("/experiments", headers=AUTH).get_json()
    assert [exp["experiment"] for exp in listed[1:]] == ["button"]
    points = client.get("/experiments/button/history", headers=AUTH).get_json()["points"]
    assert points and points[-1]["participants"]["red"] == pytest.approx(30, abs=1)

    assert client.post("/experiments/button/reset", headers=AUTH).status_code == 200
    assert rows(client, "button") in ({}, {"signup": {"blue": (0, 0), "red": (0, 0)}})
    assert client.delete("/experiments/button", headers=AUTH).status_code == 200
    assert client.get("/experiments/button", headers=AUTH).status_code == 404


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_a_declared_plan_and_a_batch(make_app: Callable[..., Flask], counting: str) -> None:
    client = make_app(counting=counting).test_client()
    put = client.put("/experiments/checkout", json=PLAN, headers=AUTH)
    assert put.status_code == 201, put.get_json()
    batch = [
        {"experiment": "checkout", "variant": variant, "event": event, "uuid": f"{variant}{i}"}
        for variant in ("blue", "red", "green")  # green is not in the plan: dropped
        for i in range(40)
        for event in (["participate", "signup"] if i % 4 == 0 else ["participate"])
    ]
    answer = client.post("/track", json=batch)
    assert answer.status_code == 200, answer.get_json()
    found = rows(client, "checkout")
    assert set(found["signup"]) == {"blue", "red"}
    if counting == "exact":
        assert found["signup"] == {"blue": (10, 40), "red": (10, 40)}
    dropped = client.get("/experiments", headers=AUTH).get_json()[0]["meta"]["dropped"]
    assert sum(dropped.values()) > 0, dropped


def test_gimel_serve_reaches_the_engine_through_its_url(redis_url: str, tmp_path: Path) -> None:
    """The process a team runs, configured only by GIMEL_REDIS_URL (with its CA query)."""
    with GimelServe(tmp_path, env={"GIMEL_REDIS_URL": redis_url}) as serve:
        events = [
            {"experiment": "served", "variant": "red", "event": event, "uuid": f"u{i}"}
            for i in range(25)
            for event in (["participate", "signup"] if i < 5 else ["participate"])
        ]
        post = urllib.request.Request(
            f"{serve.base}/track",
            data=json.dumps(events).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "Mozilla/5.0"},
        )
        with urllib.request.urlopen(post, timeout=10) as answer:
            assert json.load(answer) == {"accepted": 30}
        read = urllib.request.Request(
            f"{serve.base}/experiments/served", headers={"x-api-key": serve.api_key()}
        )
        with urllib.request.urlopen(read, timeout=10) as answer:
            goals = original(json.load(answer)["goals"])
        assert not (tmp_path / "redis.port").exists()  # no embedded Redis: the URL's
    assert goals[0]["results"] == [{"label": "red", "successes": 5, "trials": 25}]


def test_a_cluster_url_refuses_a_query_it_would_ignore() -> None:
    with pytest.raises(ConfigError, match="ssl_ca_certs.*not ssl_cert_reqs"):
        connect("rediss+cluster://127.0.0.1:7000,127.0.0.1:7001?ssl_cert_reqs=none")
