"""`gimel serve`'s gateway: requests waiting together are taken together by one app thread,
their events counted in one round trip, and each answered as it would be alone."""

from __future__ import annotations

import collections
import json
import queue
import time
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from gimel_core.cli import gateway, serve
from gimel_core.storage.runner import Scripts
from helpers import track_url

pytestmark = pytest.mark.single_redis  # the hand-over between threads, not storage


class Protocol:
    """What granian's protocol is to the gateway: where an answer is sent, here kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.sent.append((status, headers, body))


def test_an_app_thread_takes_the_waiting_requests_together(make_app, monkeypatch) -> None:
    app = make_app()
    gate = gateway.Gateway(app, 1, 1000, serve._together(app))
    gate.requests, gate.answered = queue.SimpleQueue(), collections.deque()
    event = {"experiment": "g", "variant": "v", "event": "participate"}
    urls = [track_url(**event, uuid=f"u{i}") for i in range(5)]
    urls[2] = track_url(experiment="g", variant="v")  # fields missing
    paths = [*urls, "/health", urls[0]]
    now = time.monotonic()
    protocols = [Protocol() for _ in paths]
    for i, (path, protocol) in enumerate(zip(paths, protocols, strict=True)):
        queued = now - 10 if i == len(paths) - 1 else now  # the last waited too long
        gate.requests.put((object(), protocol, EnvironBuilder(path=path).get_environ(), queued))
    gate.requests.put(None)
    sent: list[list[str]] = []
    run = Scripts.run

    def recorded(self: Scripts, calls: Any) -> Any:
        sent.append([call.script for call in calls])
        return run(self, calls)

    monkeypatch.setattr(Scripts, "run", recorded)
    gate._work()  # returns at the None, once every request before it is answered

    statuses = [protocol.sent[0][0] for protocol in protocols]
    assert all(len(protocol.sent) == 1 for protocol in protocols)
    assert statuses == [200, 200, 400, 200, 200, 200, 503]
    assert json.loads(protocols[2].sent[0][2])["error"]  # its own error
    assert json.loads(protocols[5].sent[0][2])["status"] == "ok"  # /health, run by the app
    assert protocols[6].sent[0] == gateway.BUSY
    assert [calls for calls in sent if "track" in calls] == [["track"] * 4]  # one round trip
    assert [error for _, error in gate.answered] == [None] * len(paths)
    client = app.test_client()
    listed = client.get("/experiments/g", headers={"x-api-key": app.config["GIMEL"].api_keys[0]})
    assert listed.get_json()["participants"] == {"v": 4}
