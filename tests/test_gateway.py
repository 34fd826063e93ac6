"""`gimel serve`'s gateway: requests waiting together are taken together by one app thread,
their events counted in one round trip, and each answered as it would be alone."""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from conftest import API_KEY
from gimel_core.cli import gateway, serve
from gimel_core.errors import StoreUnavailable
from gimel_core.storage.runner import Scripts
from helpers import track_url
from tests.serving import GimelServe

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


BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize("reachable", [True, False], ids=["Redis answers", "Redis out of reach"])
def test_the_bots_among_requests_taken_together_cost_one_round_trip(
    make_app, monkeypatch, reachable: bool
) -> None:
    """Each round trip to a stalled Redis is a timeout that every request of the batch waits:
    a batch's bots are tallied in one, after its events, and in none when the events' own
    could not reach Redis (their answers are already 503)."""
    app = make_app()
    endpoint = app.wsgi_app
    event = {"experiment": "g", "variant": "v", "event": "participate"}
    environs = [
        EnvironBuilder(
            path=track_url(**event, uuid=f"u{i}"),
            headers={"User-Agent": BOT if i % 4 else "Mozilla/5.0 (X11; Linux x86_64)"},
        ).get_environ()
        for i in range(12)
    ]
    tallies: list[int] = []
    tally = endpoint.tracker.count_filtered
    monkeypatch.setattr(endpoint.tracker, "count_filtered", lambda n: tallies.append(n) or tally(n))
    if not reachable:

        def stalled(*args: Any) -> Any:
            raise StoreUnavailable("Redis timed out")

        monkeypatch.setattr(endpoint.tracker, "track_each", stalled)
    answers = endpoint.respond_together(environs)
    assert [answer.code for answer in answers] == [200 if reachable else 503, 200, 200, 200] * 3
    assert tallies == ([9] if reachable else [])


SENDERS = 16
EACH = 60


def test_concurrent_requests_each_get_their_own_answer_and_count_exactly(tmp_path: Path) -> None:
    """Many kept-alive connections at once on `gimel serve` (2 workers), each sending counted,
    repeated, refused and off-plan events: whichever requests were taken together, every one
    gets its own answer, and the counts are the ground truth."""
    env = {"GIMEL_COUNTING": "exact", "GIMEL_API_KEY": API_KEY}
    event = {"experiment": "busy", "event": "participate"}
    expected: dict[tuple[int, int], tuple[int, bytes]] = {}
    uuids = set()
    for sender in range(SENDERS):
        for k in range(EACH):
            kind = k % 4
            if kind == 3:
                expected[sender, k] = (400, b"uuid")
            elif kind == 2:
                expected[sender, k] = (200, b'"counted": false')
            else:
                expected[sender, k] = (200, b'{"ok": true}')
                uuids.add((sender, k // 8, "ab"[sender % 2]))

    def url(sender: int, k: int) -> str:
        one = {**event, "variant": "ab"[sender % 2]}
        if k % 4 == 3:
            return track_url(**one)  # no uuid: 400
        extra = {"value": "5"} if k % 4 == 2 else {}  # a value on participate: not counted
        return track_url(**one, uuid=f"u{sender}-{k // 8}", **extra)

    answers: dict[tuple[int, int], tuple[int, bytes]] = {}
    with GimelServe(tmp_path, "--workers", "2", env=env) as gimel:
        start = threading.Barrier(SENDERS)

        def send(sender: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", gimel.port, timeout=30)
            try:
                start.wait(timeout=30)
                for k in range(EACH):
                    conn.request("GET", url(sender, k))
                    response = conn.getresponse()
                    answers[sender, k] = (response.status, response.read())
            finally:
                conn.close()

        threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        listed = http.client.HTTPConnection("127.0.0.1", gimel.port, timeout=30)
        try:
            listed.request("GET", "/experiments/busy", headers={"x-api-key": API_KEY})
            body = json.loads(listed.getresponse().read())
        finally:
            listed.close()
    assert len(answers) == SENDERS * EACH
    for key, (status, part) in expected.items():
        assert answers[key][0] == status and part in answers[key][1], (key, answers[key])
    assert body["participants"] == {
        v: sum(1 for *_, variant in uuids if variant == v) for v in "ab"
    }


def test_a_client_still_downloading_its_answer_is_not_cut_as_idle() -> None:
    """A client on a slow link sends nothing while its answer comes in: the connection is
    idle only once nothing goes either way (then it is cut)."""
    listener = socket.create_server(("127.0.0.1", 0))
    reaper = gateway.IdleReaper(listener.getsockname()[1], idle=0.5, every=0.1).start()
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    parts, part = 30, b"x" * 100

    def answer() -> None:  # six times the idle time, a part every 0.1 s
        with contextlib.suppress(OSError):  # cut: the client sees it
            for _ in range(parts):
                served.sendall(part)
                time.sleep(0.1)

    sending = threading.Thread(target=answer)
    try:
        sending.start()
        client.settimeout(5)
        received = b""
        while len(received) < parts * len(part) and (data := client.recv(65536)):
            received += data
        assert len(received) == parts * len(part)  # not cut while the answer went out
        assert client.recv(65536) == b""  # then silent both ways: cut, within seconds
        assert reaper.closed == 1
    finally:
        reaper.stopping.set()
        sending.join()
        for sock in (client, served, listener):
            sock.close()


def test_a_body_cut_short_of_its_content_length_is_refused(tmp_path: Path) -> None:
    """A client that closes its side before the body it announced has come sent another
    request than it meant: answered 400, nothing counted."""
    body = b'{"experiment": "half", "variant": "b", "event": "participate", "uuid": "h1"}'
    with GimelServe(tmp_path, "--workers", "1") as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            head = b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            sock.sendall(head % (len(body) + 50) + body)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while data := sock.recv(65536):
                answer += data
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 400 Bad Request", answer
        assert b"ended after" in rest
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
        try:
            connection.request("POST", "/track", body, {"Content-Type": "application/json"})
            assert json.loads(connection.getresponse().read()) == {"accepted": 1}  # whole
            key = {"X-Api-Key": served.api_key()}
            connection.request("GET", "/experiments/half", headers=key)
            assert json.loads(connection.getresponse().read())["participants"] == {"b": 1}
        finally:
            connection.close()
