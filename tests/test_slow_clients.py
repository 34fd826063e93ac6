"""Slow clients do not lock others out of `gimel serve`, nor hold its threads or its stop.

500 connections each send a request line and then one header line every 2 s, never finishing
the headers (slowloris), for 30 s; meanwhile a health probe opens a new connection every 50 ms,
as a load balancer would, and each must be answered within 100 ms at p99. A server with a
connection cap (waitress: 100) or one thread per connection fails this at once; a server whose
idle timeout a trickle keeps resetting never frees the connections. `gimel serve` cuts a client
that has not sent its headers after ``serve.HEADER_TIMEOUT`` (10 s), so the 30 s hold sees every
slow connection cut and opened again twice, under load. Then SIGTERM must stop it promptly,
though the slow clients are still connected.

Slow bodies: connections each declare a 900 kB body and send one byte of it every 2 s. The
body is read on the event loop, not by an app thread, so probes are answered as promptly as
above, and each slow body is answered 408 and cut after ``gateway.BODY_TIMEOUT`` (10 s).
(Before: 8 of them took the 8 app threads; 6 probes were answered in 30 s.) Silent
connections, fresh or kept alive after a request, are cut after ``gateway.IDLE_TIMEOUT``
(10 s); a connection that keeps sending requests is not; 1,100 of them (granian's default
would serve 512 a worker) lock no one out.

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

from gimel_core.cli import gateway, serve
from tests.serving import GimelServe

SLOW_CLIENTS = 500
LINE_EVERY = 2.0  # seconds between two header lines of one slow client
HOLD = 30.0  # seconds the slow clients are kept connected
PROBE_EVERY = 0.05
P99_MS = 100.0
P50_MS = 20.0
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


SLOW_BODIES = 32  # 4 x the app threads of 2 workers
BYTE_EVERY = 2.0


@pytest.mark.slow
def test_slow_bodies_hold_no_thread_and_are_cut(tmp_path: Path) -> None:
    with GimelServe(tmp_path, "--workers", "2") as gimel:
        bodies = [_SlowBody(gimel.port) for _ in range(SLOW_BODIES)]
        threads = [threading.Thread(target=body.run, daemon=True) for body in bodies]
        try:
            for thread in threads:
                thread.start()
            latencies = sorted(_probe(gimel.port, gateway.BODY_TIMEOUT + 4))
            for thread in threads:
                thread.join(timeout=BYTE_EVERY * 3)
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            cut = sorted(body.cut_after for body in bodies)
            print(
                f"\n{SLOW_BODIES} slow bodies: {len(latencies)} probes, p50 {p50:.1f} ms,"
                f" p99 {p99:.1f} ms; each slow body cut after {cut[0]:.1f}-{cut[-1]:.1f} s"
            )
            # As prompt as without them (a busy 2-core box adds its own tail); before, most
            # probes timed out.
            assert p50 <= P50_MS and p99 <= 2.5 * P99_MS, f"worst {latencies[-5:]}"
            assert all(body.status == 408 for body in bodies), [b.status for b in bodies]
            assert gateway.BODY_TIMEOUT <= cut[0] and cut[-1] < gateway.BODY_TIMEOUT + 2
            assert min(body.sent for body in bodies) >= gateway.BODY_TIMEOUT / BYTE_EVERY - 1
        finally:
            for body in bodies:
                body.stopping.set()


@pytest.mark.slow
def test_sigterm_stops_promptly_with_slow_bodies_connected(tmp_path: Path) -> None:
    with GimelServe(tmp_path, "--workers", "2") as gimel:
        bodies = [_SlowBody(gimel.port) for _ in range(SLOW_BODIES)]
        threads = [threading.Thread(target=body.run, daemon=True) for body in bodies]
        try:
            for thread in threads:
                thread.start()
            time.sleep(BYTE_EVERY * 1.5)
            assert all(body.cut_after == 0 for body in bodies)  # all still sending
            began = time.monotonic()
            assert gimel.stop(signal.SIGTERM, timeout=serve.STOP_TIMEOUT + 10) == 0
            took = time.monotonic() - began
            print(f"\nSIGTERM with {SLOW_BODIES} slow bodies connected: stopped in {took:.2f} s")
            assert gimel.output().splitlines()[-1] == "Gimel stopped."
            assert "Killing worker" not in gimel.output()  # each worker stopped by itself
            assert took < serve.STOP_TIMEOUT
        finally:
            for body in bodies:
                body.stopping.set()
            for thread in threads:
                thread.join(timeout=BYTE_EVERY * 3)


class _SlowBody:
    """A POST /track declaring 900 kB, then sending one byte every BYTE_EVERY s: how long
    until the server closed it, with what status, after how many bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=2)
        head = "POST /track HTTP/1.1\r\nHost: gimel\r\nContent-Type: application/json\r\n"
        self.sock.sendall(f"{head}Content-Length: 900000\r\n\r\n".encode())
        self.began = time.monotonic()
        self.stopping = threading.Event()
        self.sent = 0
        self.cut_after = 0.0
        self.status = 0

    def run(self) -> None:
        answer = b""
        try:
            self.sock.settimeout(BYTE_EVERY)
            limit = self.began + gateway.BODY_TIMEOUT + 5
            while not self.stopping.is_set() and time.monotonic() < limit:
                try:
                    self.sock.sendall(b"[")
                    self.sent += 1
                    data = self.sock.recv(4096)  # waits BYTE_EVERY for an answer
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.cut_after = time.monotonic() - self.began
                    break
                answer += data
        finally:
            self.sock.close()
        if answer.startswith(b"HTTP/1.1 "):
            self.status = int(answer.split()[1])


SILENT = 50


@pytest.mark.slow
def test_silent_connections_are_cut(tmp_path: Path) -> None:
    """SILENT fresh connections that send nothing and SILENT that send one request and then
    stay silent are all cut after IDLE_TIMEOUT; one sending a request every 2 s is not."""
    with GimelServe(tmp_path, "--workers", "2") as gimel:
        socks: list[socket.socket] = []
        busy = http.client.HTTPConnection(HOST, gimel.port, timeout=2)
        try:
            began = time.monotonic()
            for i in range(2 * SILENT):
                sock = socket.create_connection((HOST, gimel.port), timeout=2)
                socks.append(sock)
                if i % 2:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gimel\r\n\r\n")
                    assert b"200 OK" in sock.recv(4096)
            cut: list[float] = []
            busy_answers = 0
            end = began + gateway.IDLE_TIMEOUT + 4
            while time.monotonic() < end and len(cut) < len(socks):
                busy.request("GET", "/health")  # the same connection, every 2 s
                response = busy.getresponse()
                response.read()
                busy_answers += response.status == 200
                for sock in socks:
                    if sock.fileno() != -1 and _closed_by_server(sock):
                        cut.append(time.monotonic() - began)
                        sock.close()
                time.sleep(2)
            print(
                f"\n{len(socks)} silent connections: {len(cut)} cut, after"
                f" {min(cut, default=0):.1f}-{max(cut, default=0):.1f} s;"
                f" the busy one answered {busy_answers} times"
            )
            assert len(cut) == len(socks)
            assert gateway.IDLE_TIMEOUT - 1 <= min(cut) and max(cut) < gateway.IDLE_TIMEOUT + 4
            assert busy_answers >= (gateway.IDLE_TIMEOUT + 2) / 2  # never cut
        finally:
            busy.close()
            for sock in socks:
                sock.close()


MANY_SILENT = 1100  # more than granian's default connections per worker (512) x 2 workers


@pytest.mark.slow
def test_more_silent_connections_than_granian_takes_by_default_lock_no_one_out(
    tmp_path: Path,
) -> None:
    with _open_files(MANY_SILENT + 500), GimelServe(tmp_path, "--workers", "2") as gimel:
        socks: list[socket.socket] = []
        try:
            for _ in range(MANY_SILENT):
                socks.append(socket.create_connection((HOST, gimel.port), timeout=2))
            time.sleep(0.5)  # all accepted
            latencies = sorted(_probe(gimel.port, 2))
            print(f"\n{MANY_SILENT} silent connections: probes' worst {latencies[-1]:.1f} ms")
            assert latencies[-1] <= 5 * P99_MS  # before: none answered until they were cut
        finally:
            for sock in socks:
                sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (no data expected on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
