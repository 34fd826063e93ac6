"""Fixtures: a real redis-server and a real three-master cluster, started once, emptied per test."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from redis.cluster import RedisCluster

from gimel_core import create_app
from gimel_core.cache import Caches
from gimel_core.embedded import EmbeddedRedis, redis_binary
from gimel_core.store import connect
from helpers import serving

# CI (.ci/run sets CI) draws the same examples on every run (`CI=1 pytest` draws them too);
# elsewhere each run explores new ones. A shared 2-core CI machine must not fail on timing.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

API_KEY = "test-key-0123456789abcdef"
AUTH = {"x-api-key": API_KEY}


def cluster_port() -> int:
    """A port whose cluster bus (port + 10000) is free too, both below the kernel's
    ephemeral range (32768-60999 on Linux), where client sockets would take them."""
    import random
    import socket

    for _ in range(1000):
        port = random.randrange(20000, 22768)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterProcess:
    """Three masters started from the same redis-server binary, joined by redis-cli."""

    def __init__(self, base: Path) -> None:
        cluster_args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
        self.nodes = [
            EmbeddedRedis(base / f"node{i}", port=cluster_port(), extra_args=cluster_args)
            for i in range(3)
        ]

    def start(self) -> RedisClusterProcess:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()  # no node left running (nor a Popen warning) when one fails
            raise
        subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(self._ok(node) for node in self.nodes):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.1)
        return self

    @staticmethod
    def _ok(node: EmbeddedRedis) -> bool:
        info = redis.Redis(port=node.port).execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def flush(self) -> None:
        for node in self.nodes:
            redis.Redis(port=node.port).flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on Redis runs on a single server and on a three-master cluster."""
    if "redis_url" in metafunc.fixturenames:
        single_only = metafunc.definition.get_closest_marker("single_redis") is not None
        kinds = ["single"] if single_only else ["single", "cluster"]
        metafunc.parametrize("redis_url", kinds, indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> str:
    if request.param == "cluster":
        cluster: RedisClusterProcess = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


class WholeCluster:
    """A cluster client whose KEYS and DBSIZE cover every master, like a single server's."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster

    def keys(self, pattern: str = "*") -> list[bytes]:
        return list(self.cluster.keys(pattern, target_nodes=RedisCluster.PRIMARIES))

    def dbsize(self) -> int:
        return int(self.cluster.dbsize(target_nodes=RedisCluster.PRIMARIES))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[Any]:
    """A plain client of the test store (on the cluster, one that sees every master)."""
    client = connect(redis_url, timeout=5)
    yield WholeCluster(client) if isinstance(client, RedisCluster) else client
    client.close()  # no socket left for the garbage collector to warn about


@pytest.fixture
def make_app(redis_url: str) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test Redis; keyword arguments override Config fields, ``clock``
    gives the app its time (Unix seconds) and ``caches`` what it keeps (its own by default)."""
    made: list[Flask] = []

    def make(
        clock: Callable[[], float] = time.time, caches: Caches | None = None, **overrides: Any
    ) -> Flask:
        settings: dict[str, Any] = {"redis_url": redis_url, "api_keys": (API_KEY,)}
        settings.update(overrides)
        made.append(create_app(settings, clock=clock, caches=caches))
        return made[-1]

    yield make
    for app in made:  # close every connection now, not whenever the collector gets to it
        app.extensions["gimel"].client.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The test app over real HTTP on a free loopback port; yields its base URL."""
    with serving(app) as address:
        yield f"http://{address}"
