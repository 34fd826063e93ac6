"""Fixtures: one real redis-server per test session, emptied before every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from gimel_core import create_app
from gimel_core.embedded import EmbeddedRedis

API_KEY = "test-key-0123456789abcdef"
AUTH = {"x-api-key": API_KEY}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_app(redis_url: str) -> Callable[..., Flask]:
    """Build an app on the test Redis; keyword arguments override Config fields."""

    def make(**overrides: Any) -> Flask:
        settings: dict[str, Any] = {"redis_url": redis_url, "api_keys": (API_KEY,)}
        settings.update(overrides)
        return create_app(settings)

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The test app over real HTTP on a free loopback port; yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()
