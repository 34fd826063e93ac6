"""handler.watch, the watch function EventBridge runs, with EventBridge's scheduled event,
against a real Redis and a real receiver on loopback.

The deployed function on the emulator: tests/test_emulated_deploy.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from receivers import Receiver

from conftest import API_KEY, AUTH
from gimel_core import notify
from helpers import track

SECRET = "watch-secret-0123456789abcdef0123456789"
PLAN = {
    "variants": ["blue", "red"],
    "goals": ["signup"],
    "analysis": "fixed",
    "planned_participants": 2,
}
"""Declared with a size its first two participants reach: at that size the fixed analysis
decides (no difference), and the size is reached: two alerts, in that order."""
KINDS = ["decided", "size_reached"]
SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-01T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/gimel-dev-watch"],
    "detail": {},
}
"""What an EventBridge schedule sends (AWS's documented example): the watcher ignores it."""


@dataclass
class Context:
    """The part of Lambda's context object the watch function reads."""

    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def watch_handler(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, receiver: Callable[..., Receiver]
) -> Iterator[tuple[ModuleType, Receiver]]:
    webhook = receiver()
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("GIMEL_WEBHOOK_URL", webhook.url + "/alerts")
    monkeypatch.setenv("GIMEL_WEBHOOK_SECRET", SECRET)
    sys.modules.pop("handler", None)
    module = importlib.import_module("handler")
    client = module.app.test_client()
    answer = client.put("/experiments/sized", json=PLAN, headers=AUTH)
    assert answer.status_code == 201, answer.get_json()
    for variant, uuid in (("blue", "u1"), ("red", "u2")):
        assert track(client, "sized", variant, "participate", uuid).status_code == 200
    yield module, webhook
    sys.modules.pop("handler", None)


def report(handler: ModuleType, remaining_ms: int) -> dict[str, Any]:
    answer: dict[str, Any] = handler.watch(SCHEDULED, Context(remaining_ms))
    json.dumps(answer)  # what Lambda returns to its caller must be JSON
    return answer


def test_a_scheduled_event_runs_one_pass_that_delivers_each_alert_once(
    watch_handler: tuple[ModuleType, Receiver],
) -> None:
    handler, webhook = watch_handler
    first = report(handler, 300_000)
    assert (first["experiments"], first["alerts"], first["delivered"]) == (1, 2, 2)
    assert first["line"].startswith("watched 1 experiments")
    assert [json.loads(r.body)["kind"] for r in webhook.received] == KINDS
    for received in webhook.received:
        assert received.path == "/alerts"
        assert notify.verify(SECRET, received.body, received.headers[notify.SIGNATURE_HEADER])
        assert json.loads(received.body)["experiment"] == "sized"

    again = report(handler, 300_000)
    assert (again["experiments"], again["alerts"], again["delivered"]) == (1, 0, 0)
    assert len(webhook.received) == 2


def test_no_delivery_starts_in_the_last_seconds_of_the_functions_time(
    watch_handler: tuple[ModuleType, Receiver],
) -> None:
    """Lambda's remaining time is the pass's deadline: too little left, and the alert is
    saved, sent by the next invocation."""
    handler, webhook = watch_handler
    short = report(handler, int(handler.LAST_DELIVERY * 1000) - 1)
    assert (short["alerts"], short["delivered"]) == (2, 0)
    assert webhook.received == []
    later = report(handler, 300_000)
    assert (later["alerts"], later["delivered"]) == (0, 2)
    assert [json.loads(r.body)["kind"] for r in webhook.received] == KINDS


def test_a_pass_that_cannot_reach_redis_fails_the_invocation(
    watch_handler: tuple[ModuleType, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """So Lambda counts an error (and EventBridge's asynchronous call is retried)."""
    handler, webhook = watch_handler
    sys.modules.pop("handler", None)
    monkeypatch.setenv("GIMEL_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    unreachable = importlib.import_module("handler")
    with pytest.raises(RuntimeError, match="watched 0 experiments"):
        unreachable.watch(SCHEDULED, Context(300_000))
    assert webhook.received == []
