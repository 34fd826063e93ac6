"""Redis down or slow: 503 with Retry-After quickly, and recovery without a restart."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core.embedded import EmbeddedRedis
from helpers import track

pytestmark = pytest.mark.single_redis  # these stop and slow down the single server


def test_redis_down_gives_503_then_recovers(
    client: FlaskClient, redis_server: EmbeddedRedis
) -> None:
    assert track(client, "e", "v", "participate", "before").status_code == 200
    assert client.get("/health").status_code == 200

    redis_server.stop()
    try:
        started = time.monotonic()
        down = track(client, "e", "v", "participate", "during")
        elapsed = time.monotonic() - started
        assert down.status_code == 503
        assert down.headers["Retry-After"].isdigit()
        assert down.headers["Access-Control-Allow-Origin"] == "*"
        assert "unavailable" in down.get_json()["error"]
        assert elapsed < 1.5
        assert client.get("/health").status_code == 503
        assert client.get("/experiments", headers=AUTH).status_code == 503
        batch = client.post(
            "/track",
            json=[{"experiment": "e", "variant": "v", "event": "participate", "uuid": "b"}],
        )
        assert batch.status_code == 503
        assert batch.headers["Retry-After"].isdigit()
    finally:
        redis_server.start()  # same port, same data dir (append-only file)

    assert client.get("/health").status_code == 200
    assert track(client, "e", "v", "participate", "after").status_code == 200
    track(client, "e", "v", "g", "after")
    exp = client.get("/experiments/e", headers=AUTH).get_json()
    assert exp["goals"][0]["results"][0]["trials"] == 2


def test_slow_redis_gives_503_within_the_timeout(client: FlaskClient, redis_url: str) -> None:
    track(client, "e", "v", "participate", "warm")  # connection and script cached
    blocker = redis.Redis.from_url(redis_url)
    sleeper = threading.Thread(target=blocker.execute_command, args=("DEBUG", "SLEEP", "2"))
    sleeper.start()
    time.sleep(0.1)
    try:
        started = time.monotonic()
        response = track(client, "e", "v", "participate", "slow")
        elapsed = time.monotonic() - started
    finally:
        sleeper.join()
        blocker.close()
    assert response.status_code == 503
    assert elapsed < 1.5
    # and the client recovers once Redis answers again
    assert track(client, "e", "v", "participate", "later").status_code == 200
