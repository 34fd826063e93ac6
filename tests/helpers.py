"""Small helpers shared by tests."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from gimel_core.storage.schema import DAY

PUBLIC = {
    ("GET", "/track"),
    ("OPTIONS", "/track"),
    ("POST", "/track"),
    ("GET", "/health"),
    ("GET", "/"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/{asset}"),
    ("GET", "/dashboard/v/{version}/{asset}"),
    ("GET", "/openapi.json"),
}
"""serverless.yml's public routes (method, path): what visitors and the dashboard page call."""
PRIVATE = {
    ("GET", "/experiments"),
    ("GET", "/experiments/{name}"),
    ("PUT", "/experiments/{name}"),
    ("PATCH", "/experiments/{name}"),
    ("DELETE", "/experiments/{name}"),
    ("POST", "/experiments/{name}/reset"),
    ("GET", "/experiments/{name}/history"),
    ("GET", "/experiments/{name}/alerts"),
    ("DELETE", "/delete"),
}
"""serverless.yml's routes behind the API key (API Gateway checks it, then the app)."""


def track_url(**fields: str) -> str:
    """A /track URL exactly as Alephbet builds it (form-encoded, '+' for spaces)."""
    fields.setdefault("namespace", "alephbet")
    return "/track?" + urlencode(fields)


def track(client: FlaskClient, experiment: str, variant: str, event: str, uuid: str, **extra: str):
    return client.get(
        track_url(experiment=experiment, variant=variant, event=event, uuid=uuid, **extra)
    )


def snapshot(raw_redis: Any) -> dict[bytes, Any]:
    """Every key and its value, to see that nothing was written (a HyperLogLog by its count:
    reading one may rewrite its cached cardinality)."""
    found: dict[bytes, Any] = {}
    for key in raw_redis.keys("*"):
        kind = raw_redis.type(key)
        if kind == b"hash":
            found[key] = raw_redis.hgetall(key)
        elif kind == b"set":
            found[key] = raw_redis.smembers(key)
        elif kind == b"zset":
            found[key] = raw_redis.zrange(key, 0, -1, withscores=True)
        else:
            value = raw_redis.get(key)
            found[key] = raw_redis.pfcount(key) if value.startswith(b"HYLL") else value
    return found


ORIGINAL_ROW = ("label", "successes", "trials")


def original(goals: list[dict]) -> list[dict]:
    """Only the fields of the original Gimel results JSON (statistics are tested apart)."""
    return [
        {"goal": g["goal"], "results": [{k: r[k] for k in ORIGINAL_ROW} for r in g["results"]]}
        for g in goals
    ]


CHROMIUM = os.environ.get("GIMEL_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium: the browser tests never download a browser of their own."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no phoning home
    "--disable-component-update",
    "--disable-sync",
]


def browser_unavailable(reason: str) -> None:
    """Skip a browser test, or fail it when CI says a browser must be there."""
    if os.environ.get("GIMEL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (GIMEL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("the playwright package is not installed")
    executable = shutil.which(CHROMIUM)
    if executable is None:
        browser_unavailable(
            f"no chromium at {CHROMIUM} (apt-get install chromium, or set GIMEL_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serving(app: Any, request_handler: Any = None) -> Iterator[str]:
    """An app over real HTTP (threaded Werkzeug server) on a free port; yields host:port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=request_handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


START = 1_796_083_200  # 2026-12-01T00:00:00Z
"""A fixed UTC midnight for tests that move the clock."""


class Clock:
    """The app's clock, moved by the test (the create_app(clock=...) seam)."""

    def __init__(self) -> None:
        self.now = float(START + 9 * 3600)

    def __call__(self) -> float:
        return self.now

    def day(self, n: int, hour: int = 9) -> None:
        self.now = float(START + n * DAY + hour * 3600)
