"""A full or evicting Redis is visible: /health and `gimel check` read every master's
eviction policy and memory, and a write probe tells whether Redis takes writes.

Measured before: with ``noeviction`` full, /health answered 200 while /track got 503; with
``allkeys-lru`` de-dup records were evicted silently. Each test sets the real server (or
one master of the real cluster) into that state and puts it back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from flask import Flask
from test_openapi import conforms

from gimel_core.cli import main
from helpers import track

Check = Callable[[str], tuple[int, str]]
"""`gimel check --redis-url URL`: its exit code and its Redis line."""

SETTINGS = ("maxmemory", "maxmemory-policy", "min-replicas-to-write", "min-replicas-max-lag")


@pytest.fixture
def masters(redis_url: str) -> Iterator[list[redis.Redis]]:
    """A plain client of each master (one for a single server), whose settings are put back."""
    scheme, _, rest = redis_url.partition("://")
    if scheme == "redis+cluster":
        ports = [int(node.rpartition(":")[2]) for node in rest.split(",")]
        clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
    else:
        clients = [redis.Redis.from_url(redis_url, socket_timeout=5)]
    saved = [{name: c.config_get(name)[name] for name in SETTINGS} for c in clients]
    yield clients
    for client, settings in zip(clients, saved, strict=True):
        for name, value in settings.items():
            client.config_set(name, value)
        client.flushall()
        client.close()


@pytest.fixture
def check(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Check:
    """`gimel check --redis-url` in an empty folder: exit code, and its Redis line."""
    monkeypatch.chdir(tmp_path)
    return _check


def _check(redis_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--redis-url", redis_url], catch_exceptions=False)
    line = next(line for line in result.output.splitlines() if "Redis (keeps the counts)" in line)
    return result.exit_code, line


def fill(client: redis.Redis) -> int:
    """Give ``client`` 2 MB more room, then write until it refuses: keys written. It is then
    held full (its limit a little under what it uses), so that a buffer freed since cannot
    let the next small write through."""
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 2_000_000)
    for i in range(10_000):
        try:
            client.set(f"filler:{i}", "x" * 10_000)
        except redis.exceptions.OutOfMemoryError:
            client.config_set("maxmemory", client.info("memory")["used_memory"] - 1_000_000)
            return i
    raise AssertionError("Redis never refused a write")


def test_noeviction_with_room_is_ok(
    make_app: Callable[..., Flask], masters: list[redis.Redis], redis_url: str, check: Check
) -> None:
    for client in masters:
        client.config_set("maxmemory", "100mb")
    assert conforms(make_app().test_client().get("/health"), "/health") == {"status": "ok"}
    code, line = check(redis_url)
    assert code == 0, line
    assert line.startswith("ok") and "maxmemory-policy noeviction" in line
    assert "of maxmemory 100.0 MiB" in line


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_evicting_policy_fails_check_and_degrades_health(
    make_app: Callable[..., Flask],
    masters: list[redis.Redis],
    redis_url: str,
    check: Check,
    policy: str,
) -> None:
    """On a cluster only the last master evicts: every master is read."""
    masters[-1].config_set("maxmemory-policy", policy)
    code, line = check(redis_url)
    assert code == 1
    assert line.startswith("FAIL") and f"maxmemory-policy is {policy}" in line
    assert "CONFIG SET maxmemory-policy noeviction" in line
    health = make_app().test_client().get("/health")
    assert health.status_code == 200  # writes are taken: stay in the load balancer's rotation
    assert conforms(health, "/health") == {
        "status": "degraded",
        "problems": ["Redis may evict counts (maxmemory-policy is not noeviction)"],
    }


def test_a_full_redis_turns_health_red(
    make_app: Callable[..., Flask], masters: list[redis.Redis], redis_url: str, check: Check
) -> None:
    """The measured state: noeviction, full, /track refused; /health must say so."""
    client = make_app().test_client()
    assert client.get("/health").status_code == 200
    if len(masters) == 1:
        assert fill(masters[0]) > 0
        assert track(client, "e", "v", "participate", "u1").status_code == 503
    else:
        masters[1].config_set("maxmemory", "1")  # one master of three full
    health = make_app().test_client().get("/health")  # a new app: no memory read cached
    assert health.status_code == 503
    assert health.headers["Retry-After"].isdigit()
    body = conforms(health, "/health")
    full = "Redis refuses writes: it is full (maxmemory reached, policy noeviction)"
    assert body == {"error": full}
    code, line = check(redis_url)
    assert code == 1
    assert "refuses writes: it is full" in line and "Raise maxmemory" in line
    print(f"\nfull Redis: /health {health.status_code} {body}")


@pytest.mark.single_redis
def test_too_few_replicas_turns_health_red(
    make_app: Callable[..., Flask], masters: list[redis.Redis], redis_url: str, check: Check
) -> None:
    """min-replicas-to-write with no replica: Redis refuses every write (NOREPLICAS)."""
    masters[0].config_set("min-replicas-to-write", 1)
    masters[0].config_set("min-replicas-max-lag", 10)
    health = make_app().test_client().get("/health")
    assert health.status_code == 503
    assert "too few replicas" in health.get_json()["error"]
    assert check(redis_url)[0] == 1


@pytest.mark.single_redis
def test_health_reads_memory_at_most_once_a_second(
    make_app: Callable[..., Flask], masters: list[redis.Redis]
) -> None:
    """Public and unauthenticated: 50 probes cost 50 small writes and one INFO, not 50."""
    client = make_app().test_client()
    masters[0].config_resetstat()
    for _ in range(50):
        assert client.get("/health").status_code == 200
    stats = masters[0].info("commandstats")
    assert stats["cmdstat_info"]["calls"] <= 2  # one, or two if a second passed meanwhile
    assert stats["cmdstat_set"]["calls"] == 50
