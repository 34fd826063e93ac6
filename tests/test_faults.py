"""Faults with real processes: Redis killed under load, Redis answering slowly, and a crash.

- A real ``gimel serve`` process (waitress, embedded Redis, exact counting) takes events
  from several HTTP senders while its redis-server is SIGKILLed and, later, started again
  on the same port and data folder: no 500 ever, 503 while Redis is down, 200 again once it
  is back, the same Gimel process throughout, and every event acknowledged more than
  ``SAFE_AGE`` (2 s) before the kill is still counted (append-only file).
- A TCP proxy between the app and Redis holds every reply back longer than the timeout:
  every request ends with 503 in bounded time, and once the proxy stops delaying, requests
  succeed again without a restart, with exact counts. (That a new connection keeps the
  documented ``timeout * (retries + 1)`` is an xfail test: see its reason.)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from flask import Flask

from conftest import API_KEY, AUTH
from gimel_core import defaults, keys
from gimel_core.dedup import record, seen_buckets
from gimel_core.embedded import EmbeddedRedis
from helpers import serving
from tests.serving import GimelServe

# -- helpers --------------------------------------------------------------------------------


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw else None


@dataclass
class Sent:
    uuid: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)


@dataclass
class Senders:
    """Threads sending /track GETs, one new uuid each, until stopped; every answer kept."""

    host: str
    experiment: str
    threads: int = 4
    pause_after_503: float = 0.02
    sent: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Senders:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Sent]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return sorted(self.sent, key=lambda s: s.ended)

    def _run(self, n: int) -> None:
        conn = http.client.HTTPConnection(self.host, timeout=10)
        i = 0
        try:
            while not self._stop.is_set():
                uuid = f"s{n}-{i}"
                i += 1
                query = urlencode(
                    {"experiment": self.experiment, "variant": "v", "event": "participate"}
                    | {"uuid": uuid}
                )
                started = time.monotonic()
                try:
                    conn.request("GET", "/track?" + query)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    status = 0
                    conn.close()  # reconnects on the next request
                ended = time.monotonic()
                with self._lock:
                    self.sent.append(Sent(uuid, started, ended, status))
                if status == 503:
                    time.sleep(self.pause_after_503)
        finally:
            conn.close()


# -- Redis SIGKILLed under load, behind a real `gimel serve` ---------------------------------

NS, EXP = defaults.NAMESPACE, "crash"
SAFE_AGE = 2.0
"""Events acknowledged longer than this before a SIGKILL must survive it. With
``appendfsync everysec``, Redis writes each event to the append-only file before answering
(so a process crash loses nothing), except while the previous second's fsync is still
running on a busy disk: then it answers first and postpones the write, for at most about
2 s (``flushAppendOnlyFile`` in aof.c). Once, on a loaded machine, 12 events acknowledged
within 1.5 s of the kill were lost; in every other run, none."""


@dataclass
class KillRun:
    sent: list[Sent]
    killed_at: float
    restart_called: float
    restarted: float
    alive_after: bool
    counted: set[str]  # uuids whose de-dup record survived
    count: int  # the exact participate count
    final_count: int  # after re-sending every event not acknowledged with 200
    log: str
    redis_log: str


def _redis_pid(port: int) -> int:
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _counted(port: int, uuids: list[str]) -> tuple[set[str], int]:
    """Uuids whose exact de-dup record is in Redis, and the stored participate count."""
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        window = int(client.hget(keys.meta(NS, EXP), "window") or 0)
        members: set[bytes] = set()
        for bucket in seen_buckets(window, time.time()):
            size = keys.seen_size(NS, EXP, bucket).encode()
            for key in client.scan_iter(match=keys.seen(NS, EXP, bucket) + ":*"):
                members |= client.smembers(key) if key != size else set()
        field_ = keys.counts_field(defaults.PARTICIPATE, "v")
        count = int(client.hget(keys.counts(NS, EXP), field_) or 0)
    finally:
        client.close()
    return {
        u for u in uuids if record(defaults.PARTICIPATE, "v", u).member.encode() in members
    }, count


@pytest.fixture(scope="module")
def kill_run(tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    """Send for 3.5 s, SIGKILL redis-server, 1.5 s down, start it again, send 1.5 s more."""
    data_dir = tmp_path_factory.mktemp("gimel-serve")
    restarted_store: EmbeddedRedis | None = None
    senders: Senders | None = None
    serve = GimelServe(data_dir, env={"GIMEL_COUNTING": "exact", "GIMEL_API_KEY": API_KEY})
    host = f"127.0.0.1:{serve.port}"
    log_path = serve.log_path
    try:
        serve.ready()
        redis_port = int((data_dir / "redis.port").read_text())
        redis_pid = _redis_pid(redis_port)

        senders = Senders(host, EXP).start()
        time.sleep(SAFE_AGE + 1.5)
        killed_at = time.monotonic()
        os.kill(redis_pid, signal.SIGKILL)
        time.sleep(1.5)
        restart_called = time.monotonic()
        restarted_store = EmbeddedRedis(data_dir, port=redis_port).start()  # same port, AOF
        restarted = time.monotonic()
        time.sleep(1.5)
        sent = senders.stop()

        alive_after = serve.process.poll() is None
        uuids = [s.uuid for s in sent]
        counted, count = _counted(redis_port, uuids)
        # What Alephbet does with a 503: keeps the event queued and sends it again.
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            for s in sent:
                if s.status != 200:
                    query = urlencode(
                        {"experiment": EXP, "variant": "v", "event": "participate", "uuid": s.uuid}
                    )
                    assert request(conn, "GET", "/track?" + query)[0] == 200
            status, body = request(conn, "GET", f"/experiments/{EXP}", headers=AUTH)
        finally:
            conn.close()
        assert status == 200
        final_count = body["participants"]["v"]
        return KillRun(
            sent=sent,
            killed_at=killed_at,
            restart_called=restart_called,
            restarted=restarted,
            alive_after=alive_after,
            counted=counted,
            count=count,
            final_count=final_count,
            log=log_path.read_text(errors="replace"),
            redis_log=(data_dir / "redis.log").read_text(errors="replace"),
        )
    finally:
        if senders is not None:
            senders.stop()  # (again: harmless) never leave a sender running
        serve.stop(timeout=15)
        if restarted_store is not None:
            restarted_store.stop()


@pytest.mark.slow
def test_no_500_while_redis_is_killed_and_restarted_under_load(kill_run: KillRun) -> None:
    statuses = {s.status for s in kill_run.sent}
    assert statuses <= {200, 503}, kill_run.log[-2000:]  # never a 500, never a dropped socket
    assert kill_run.alive_after  # the same Gimel process served before, during and after
    assert kill_run.log.count("Gimel is listening") == 1


@pytest.mark.slow
def test_503_while_redis_is_down(kill_run: KillRun) -> None:
    down = [
        s
        for s in kill_run.sent
        if s.started > kill_run.killed_at + 0.2 and s.ended < kill_run.restart_called
    ]
    slowest = max(s.ended - s.started for s in down)
    print(f"\nRedis down: {len(down)} requests, all 503, slowest {slowest:.3f} s")
    assert len(down) >= 10
    assert {s.status for s in down} == {503}
    assert slowest < 1.5


@pytest.mark.slow
def test_200_again_once_redis_is_back_without_restarting_gimel(kill_run: KillRun) -> None:
    before = [s for s in kill_run.sent if s.ended < kill_run.killed_at]
    after = [s for s in kill_run.sent if s.started > kill_run.restarted]
    assert len(before) > 100 and {s.status for s in before} == {200}
    assert len(after) > 50 and {s.status for s in after} == {200}


@pytest.mark.slow
def test_sigkill_loses_no_event_acknowledged_more_than_two_seconds_before(
    kill_run: KillRun,
) -> None:
    acked = [s for s in kill_run.sent if s.status == 200]
    old = [s.uuid for s in acked if s.ended < kill_run.killed_at - SAFE_AGE]
    last_second = [s.uuid for s in acked if kill_run.killed_at - 1 <= s.ended < kill_run.killed_at]
    after = [s.uuid for s in acked if s.started > kill_run.restart_called]
    assert len(old) > 100
    # every event acknowledged more than SAFE_AGE before the kill
    assert set(old) <= kill_run.counted, kill_run.redis_log[-3000:]
    assert set(after) <= kill_run.counted
    # the count and the de-dup records were written by one script, so they agree
    assert kill_run.count == len(kill_run.counted)
    # Once every event not acknowledged is sent again (as Alephbet does after a 503), each
    # uuid counts exactly once: only acknowledged events lost in the crash are missing.
    lost = [s for s in acked if s.uuid not in kill_run.counted]
    assert kill_run.final_count == len({s.uuid for s in kill_run.sent}) - len(lost)
    oldest_lost = max((kill_run.killed_at - s.ended for s in lost), default=0.0)
    print(
        f"\nSIGKILL: {len(set(last_second) & kill_run.counted)}/{len(last_second)} events "
        f"acknowledged in the last second before the kill survived, all {len(old)} older than "
        f"{SAFE_AGE} s; {len(lost)} acknowledged events lost in all"
        + (f", the oldest acknowledged {oldest_lost:.2f} s before the kill" if lost else "")
    )


# -- Redis answering slowly: a delaying TCP proxy between the app and Redis -----------------


class DelayingProxy:
    """A TCP proxy to Redis that, while ``delay`` is set, holds every reply back that long.

    Commands go through at once (Redis runs them); only the answers are late, as with an
    overloaded server or a congested network.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # accept() wakes up to see close()
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                downstream, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            downstream.settimeout(None)
            with self._lock:
                if self._closing.is_set():
                    downstream.close()
                    upstream.close()
                    return
                self._pairs.append((downstream, upstream))
            self._spawn(self._pump, downstream, upstream, False)
            self._spawn(self._pump, upstream, downstream, True)

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if replies and self.delay:
                    self._closing.wait(self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:  # one side gone: end both directions (the other pump wakes up and ends)
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closing.set()
            pairs, threads = list(self._pairs), list(self._threads)
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=10)
        self.listener.close()
        for pair in pairs:
            for sock in pair:
                sock.close()


SLOW_TIMEOUT = 0.25
"""GIMEL_REDIS_TIMEOUT of the slow-Redis load test; the proxy delays every reply 4 times that."""
MARGIN = 0.6
"""Seconds allowed on top of the Redis time: HTTP, Flask, 8 threads on a busy 2-core CI box."""
ATTEMPTS = defaults.REDIS_RETRIES + 1


def _redis_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _calls(n: int, i: int) -> tuple[str, str, Any, dict[str, str] | None, list[str]]:
    """The i-th request of sender n: method, path, body, headers, uuids it carries."""
    fields = {"experiment": "slow", "variant": "v", "event": "participate"}
    uuids = [f"s{n}-{i}-{j}" for j in range(3)]
    calls: list[tuple[str, str, Any, dict[str, str] | None, list[str]]] = [
        ("GET", "/track?" + urlencode(fields | {"uuid": uuids[0]}), None, None, uuids[:1]),
        ("POST", "/track", [fields | {"uuid": u} for u in uuids], None, uuids),
        ("GET", "/health", None, None, []),
        ("GET", "/experiments/slow", None, AUTH, []),
        ("GET", "/experiments", None, AUTH, []),
    ]
    return calls[(n + i) % len(calls)]


@pytest.mark.single_redis  # one proxy in front of one server (a cluster redirects by address)
def test_slow_redis_gives_503_to_every_request_then_recovers_without_restart(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    """8 senders x 6 requests (track GET, batch POST, health, results) while every reply
    is 1 s late: each gets 503 in bounded time; then Redis is prompt again and the same
    process answers 200, with exact counts once the refused events are sent again.

    The bound is 2 x timeout per attempt: a connection the pool has not health-checked yet
    spends a retried PING inside each attempt (see the xfail test below).
    """
    proxy = DelayingProxy(_redis_port(redis_url))
    try:
        app = make_app(redis_url=proxy.url, redis_timeout=SLOW_TIMEOUT, counting="exact")
        counters = app.extensions["gimel"]
        bound = 2 * SLOW_TIMEOUT * ATTEMPTS + MARGIN
        fields = {"experiment": "slow", "variant": "v", "event": "participate"}
        with serving(app) as host:
            conn = http.client.HTTPConnection(host, timeout=30)
            try:
                assert request(conn, "GET", "/track?" + urlencode(fields | {"uuid": "w"}))[0] == 200
                proxy.delay = SLOW_TIMEOUT * 4
                timings: list[tuple[str, int, float, Any]] = []
                refused: set[str] = {"w"}
                lock = threading.Lock()

                def sender(n: int) -> None:
                    own = http.client.HTTPConnection(host, timeout=30)
                    try:
                        for i in range(6):
                            method, path, body, headers, uuids = _calls(n, i)
                            started = time.monotonic()
                            status, answer = request(own, method, path, body, headers)
                            elapsed = time.monotonic() - started
                            with lock:
                                timings.append((f"{method} {path[:24]}", status, elapsed, answer))
                                refused.update(uuids)
                    finally:
                        own.close()

                senders = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
                for thread in senders:
                    thread.start()
                for thread in senders:
                    thread.join(timeout=60)
                slowest = max(t[2] for t in timings)
                print(f"\nslow Redis: {len(timings)} requests, slowest {slowest:.3f} s")
                assert len(timings) == 48
                assert {t[1] for t in timings} == {503}, [t for t in timings if t[1] != 503]
                assert all("unavailable" in t[3]["error"] for t in timings)
                assert slowest < bound, sorted(timings, key=lambda t: -t[2])[:5]

                # Redis answers promptly again: the same process serves 200s at once.
                proxy.delay = 0
                started = time.monotonic()
                assert request(conn, "GET", "/health")[0] == 200
                assert time.monotonic() - started < bound
                # A late answer never reached a later request (each timed-out connection is
                # dropped): once every refused event is sent again, each counts exactly once.
                for uuid in sorted(refused):
                    query = urlencode(fields | {"uuid": uuid})
                    assert request(conn, "GET", "/track?" + query)[0] == 200
                status, body = request(conn, "GET", "/experiments/slow", headers=AUTH)
                assert status == 200
                assert body["participants"] == {"v": len(refused)}
                assert app.extensions["gimel"] is counters
            finally:
                conn.close()
    finally:
        proxy.close()


@pytest.mark.single_redis
def test_slow_redis_503_within_timeout_times_attempts_on_a_new_connection(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    """README: 503 'within about a second'; store.connect: 'within about timeout * (1 +
    REDIS_RETRIES)'. A new process (a Lambda cold start) facing a slow Redis must keep it."""
    proxy = DelayingProxy(_redis_port(redis_url))
    proxy.delay = 2.0
    try:
        app = make_app(redis_url=proxy.url)  # default timeout, a new client: no connection yet
        client = app.test_client()
        bound = app.config["GIMEL"].redis_timeout * ATTEMPTS + 0.4
        event = {"experiment": "cold", "variant": "v", "event": "participate", "uuid": "u"}
        for send in (
            lambda: client.get("/track?" + urlencode(event)),
            lambda: client.post("/track", json=[event]),
        ):
            started = time.monotonic()
            response = send()
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert elapsed < bound, f"503 after {elapsed:.2f} s, more than {bound:.2f} s"
    finally:
        proxy.close()
