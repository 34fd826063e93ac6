"""Slow clients do not lock others out of `gimel serve`.

500 connections each send a request line and then one header line every 2 s, never finishing
the headers (slowloris), for 30 s; meanwhile a health probe opens a new connection every 50 ms,
as a load balancer would, and each must be answered within 100 ms at p99. A server with a
connection cap (waitress: 100) or one thread per connection fails this at once; a server whose
idle timeout a trickle keeps resetting never frees the connections. `gimel serve` cuts a client
that has not sent its headers after ``serve.HEADER_TIMEOUT`` (10 s), so the 30 s hold sees every
slow connection cut and opened again twice, under load. Then SIGTERM must stop it promptly,
though the slow clients are still connected.

Loopback only, a fixed number of sockets, every loop bounded in time, everything closed in
``finally``.
"""

from __future__ import annotations

import http.client
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gimel_core.cli import serve
from tests.serving import GimelServe

SLOW_CLIENTS = 500
LINE_EVERY = 2.0  # seconds between two header lines of one slow client
HOLD = 30.0  # seconds the slow clients are kept connected
PROBE_EVERY = 0.05
P99_MS = 100.0
HOST = "127.0.0.1"


@pytest.mark.slow
def test_slow_clients_do_not_lock_out_ordinary_requests(tmp_path: Path) -> None:
    assert serve.HEADER_TIMEOUT * 2 < HOLD  # the hold outlasts the server's cut, twice
    with _open_files(SLOW_CLIENTS + 500), GimelServe(tmp_path, "--workers", "2") as gimel:
        port = gimel.port
        trickle = _Trickle(port)
        thread = threading.Thread(target=trickle.run, daemon=True)
        try:
            trickle.open_all()
            thread.start()
            latencies = _probe(port, HOLD)
            trickle.stopping.set()
            thread.join(timeout=LINE_EVERY * 3)
            # The slow clients were really there: connected, trickling, all along.
            assert trickle.open_at_each_round
            assert min(trickle.open_at_each_round) >= 0.9 * SLOW_CLIENTS
            assert trickle.lines_sent >= 0.9 * SLOW_CLIENTS * (HOLD / LINE_EVERY - 1)
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99)]
            assert p99 <= P99_MS, f"p99 {p99:.0f} ms, worst {latencies[-5:]}"
            assert len(latencies) >= HOLD / PROBE_EVERY / 2
            assert trickle.reopened >= SLOW_CLIENTS  # the server cut them, after its timeout
            # Stopping is not held up by clients that never finish a request.
            began = time.monotonic()
            assert gimel.stop(signal.SIGTERM, timeout=serve.STOP_TIMEOUT + 10) == 0
            assert gimel.output().splitlines()[-1] == "Gimel stopped."
            assert time.monotonic() - began < serve.STOP_TIMEOUT + 5  # then workers are killed
        finally:
            trickle.stopping.set()
            if thread.ident is not None:
                thread.join(timeout=LINE_EVERY * 3)
            trickle.close()


class _Trickle:
    """SLOW_CLIENTS connections, each sending one header line every LINE_EVERY seconds; one
    that the server closed is opened again (the same socket slot, so never more than
    SLOW_CLIENTS at once)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket | None] = [None] * SLOW_CLIENTS
        self.stopping = threading.Event()
        self.lines_sent = 0
        self.reopened = 0
        self.open_at_each_round: list[int] = []

    def open_all(self) -> None:
        for i in range(SLOW_CLIENTS):
            self.sockets[i] = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=2)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gimel\r\n")
        return sock

    def run(self) -> None:
        began = time.monotonic()
        gap = LINE_EVERY / SLOW_CLIENTS
        line = 0
        while not self.stopping.is_set() and time.monotonic() - began < HOLD + LINE_EVERY:
            line += 1
            for i in range(SLOW_CLIENTS):
                wait = began + (line - 1) * LINE_EVERY + i * gap - time.monotonic()
                if wait > 0 and self.stopping.wait(wait):
                    return
                self._send(i, f"X-Slow-{line}: {i}\r\n".encode())
            self.open_at_each_round.append(sum(s is not None for s in self.sockets))

    def _send(self, i: int, data: bytes) -> None:
        sock = self.sockets[i]
        try:
            if sock is None:
                raise OSError
            sock.sendall(data)
            self.lines_sent += 1
            return
        except OSError:
            if sock is not None:
                sock.close()
        self.sockets[i] = None
        try:
            self.sockets[i] = self._connect()
            self.reopened += 1
        except OSError:
            pass  # retried on its next line

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def _probe(port: int, seconds: float) -> list[float]:
    """GET /health on a new connection every PROBE_EVERY s: each answer's time in ms (a
    failure or a time-out counts as infinitely slow)."""
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            ok = False
        finally:
            connection.close()
        elapsed = (time.monotonic() - began) * 1000
        latencies.append(elapsed if ok else float("inf"))
        time.sleep(max(0.0, PROBE_EVERY - elapsed / 1000))
    return latencies


@contextmanager
def _open_files(needed: int) -> Iterator[None]:
    """This process (and the server it starts) may hold ``needed`` more descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"the open-files hard limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
