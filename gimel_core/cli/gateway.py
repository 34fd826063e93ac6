"""What stands between granian and the WSGI app in each `gimel serve` worker.

granian's WSGI interface hands a request to a Python thread once its headers are complete and
lets the app read the body from that thread, with no time limit: a client trickling its body
holds the thread for as long as it likes. So `gimel serve` runs granian's asynchronous
interface (RSGI) instead and :class:`Gateway` adapts it: the body is read on the event loop
(a slow client costs a coroutine, never a thread) within :data:`BODY_TIMEOUT`, and only a
complete request is queued for one of the app's threads. A request that could not start
within :data:`QUEUE_TIMEOUT` (every thread waiting on a stalled Redis) is answered 503 without
reaching Redis. :class:`IdleReaper` closes connections on which the client sends nothing:
granian's header timeout starts with a request's first byte, so a connection that never
sends one was kept for ever.

The hand-over to the app's threads is what this costs on every request, so it is kept to one
wake-up each way that matters: a request goes on a :class:`queue.SimpleQueue` read by the
app's threads, and the thread that ran the app sends the answer itself
(``protocol.response_bytes`` is safe from any thread), so the client does not wait for the
event loop to wake. The request's coroutine must still outlive its answer (granian answers
500 for one that ends unanswered); the loop ends the answered ones in batches, whenever a
request arrives and every :data:`FINISH_EVERY` seconds, rather than being woken for each.
(A ``ThreadPoolExecutor`` with ``run_in_executor`` woke the loop for every answer and halved
the requests a worker serves.)

Under load, requests wait in that queue while the threads work; an app thread takes the one it
waited for and those queued behind it (at most :data:`TOGETHER`), and Gimel counts their events
in one round trip to Redis (``TrackEndpoint.respond_together``: still one script call, one
source budget and one answer per request), answering each once Redis has replied.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import defaults

BODY_TIMEOUT = 10
"""Seconds a client has to send a request's body once its headers are in."""

IDLE_TIMEOUT = 10
"""Seconds a connection may stay silent both ways (before its first request, between two
requests on a kept-alive connection, or a client that stopped reading its answer) before it is
closed."""

QUEUE_TIMEOUT = 0.5
"""Seconds a complete request may wait for a free app thread: one that waited longer is
answered 503 as soon as a thread takes it, without going to Redis. The threads are then stuck
on a stalled Redis, each for at most the Redis timeout, so every client is answered within
about QUEUE_TIMEOUT + 2 x GIMEL_REDIS_TIMEOUT seconds, whatever the load."""

FINISH_EVERY = 0.02
"""Seconds between two rounds of the loop ending the coroutines of answered requests."""

RETRY_AFTER = str(defaults.RETRY_AFTER)

CLOSE = ("Connection", "close")
FIRST = asyncio.FIRST_COMPLETED

Answer = tuple[int, list[tuple[str, str]], bytes]
Request = tuple["asyncio.Future[None]", Any, dict[str, Any], float]
"""What the loop hands an app thread: the future to end once answered, granian's protocol to
answer on, the environ, and when it was queued."""
Together = Callable[[list[dict[str, Any]]], list[Answer | None]]
"""The app's answers to requests taken together (None: one the app must run alone)."""

TOGETHER = 32
"""Most requests an app thread takes at once: the one it waited for and those queued behind it.
The app counts their events in one round trip to Redis, and each is answered once Redis has
replied, so nothing acknowledged is lost and none waits for a request that arrived later."""


def _json(status: int, error: str, *headers: tuple[str, str]) -> Answer:
    """An answer of the gateway's own, as the app words its errors; readable by a page on any
    origin (a browser's tracking call sees the status, not a network error)."""
    body = json.dumps({"error": error}).encode()
    plain = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("Access-Control-Allow-Origin", "*"),
    ]
    return status, [*plain, *headers], body


BUSY = _json(503, "the server is busy, retry later", ("Retry-After", RETRY_AFTER))


class Gateway:
    """An RSGI application running the WSGI ``app`` on ``threads`` threads of its own."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        threads: int,
        max_body: int,
        together: Together | None = None,
    ) -> None:
        self.app = app
        self.together = together
        self.threads = threads
        self.max_body = max_body
        # Made in each worker by __rsgi_init__: threads and futures do not survive a fork.
        self.loop: asyncio.AbstractEventLoop
        self.stopped: asyncio.Future[None]
        self.requests: queue.SimpleQueue[Request | None]
        self.answered: collections.deque[tuple[asyncio.Future[None], BaseException | None]]
        self.workers: list[threading.Thread]

    # RSGI: granian calls these in each worker, with its event loop.
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stopped = loop.create_future()
        self.requests = queue.SimpleQueue()
        self.answered = collections.deque()
        self.workers = [
            threading.Thread(target=self._work, name=f"gimel-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()
        loop.call_soon(self._finish_every)

        def stop(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(self._stop)

        # granian stops the worker from its own handler, which still runs: the loop learns of
        # the signal through its wake-up descriptor, whatever Python-level handler is set.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)

    def _stop(self) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        for _ in self.workers:
            self.requests.put(None)
        for worker in self.workers:
            worker.join()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        self._finish()
        headers = scope.headers
        if scope.http_version.startswith("1") and not (
            "content-length" in headers or "transfer-encoding" in headers
        ):
            body = b""  # HTTP/1 without either header: no body
        else:
            reading: asyncio.Future[Any] = asyncio.ensure_future(self._body(scope, protocol))
            await asyncio.wait([reading, self.stopped], timeout=BODY_TIMEOUT, return_when=FIRST)
            if not reading.done():
                reading.cancel()
                if self.stopped.done():
                    stopping = "the server is stopping, retry later"
                    answer = _json(503, stopping, ("Retry-After", RETRY_AFTER), CLOSE)
                else:
                    late = f"the request body did not arrive within {BODY_TIMEOUT} s"
                    answer = _json(408, late, CLOSE)
                protocol.response_bytes(*answer)
                return
            body = reading.result()
            declared = headers.get("content-length", "")
            if declared.isdigit() and len(body) < int(declared) <= self.max_body:
                # The client closed its side early: what came is not the request it announced.
                short = f"the request body ended after {len(body)} of its {declared} bytes"
                protocol.response_bytes(*_json(400, short, CLOSE))
                return
        answered = self.loop.create_future()
        self.requests.put((answered, protocol, _environ(scope, body), time.monotonic()))
        await answered

    async def _body(self, scope: Any, protocol: Any) -> bytes:
        """The body, or its first ``max_body + 1`` bytes: the app answers a longer one 413
        (and one whose Content-Length says so, unread)."""
        declared = scope.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return b""
        chunks = []
        size = 0
        async for chunk in protocol:
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:
                break
        return b"".join(chunks)

    def _finish(self) -> None:
        """Ends the coroutines of the requests the app's threads have answered (on the loop)."""
        answered = self.answered
        while answered:
            future, error = answered.popleft()
            if future.done():
                continue  # cancelled: the server is stopping
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)  # granian logs it (and answers 500 if unanswered)

    def _finish_every(self) -> None:
        self._finish()
        self.loop.call_later(FINISH_EVERY, self._finish_every)

    def _work(self) -> None:
        """An app thread: runs and answers requests until it takes a None, with those already
        waiting when it takes one (at most :data:`TOGETHER`) if the app counts together."""
        stopping = False
        while not stopping and (request := self.requests.get()) is not None:
            batch = [request]
            while self.together is not None and len(batch) < TOGETHER:
                try:
                    waiting = self.requests.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    stopping = True
                    break
                batch.append(waiting)
            self._answer(batch)

    def _answer(self, batch: list[Request]) -> None:
        answers: list[Answer | None] = [None] * len(batch)
        if len(batch) > 1:
            assert self.together is not None
            now = time.monotonic()
            fresh = [i for i, (*_, queued) in enumerate(batch) if now - queued <= QUEUE_TIMEOUT]
            try:
                together = self.together([batch[i][2] for i in fresh])
                for i, answer in zip(fresh, together, strict=True):
                    answers[i] = answer
            except BaseException as exc:  # the app's, raised in each request's coroutine
                for answered, *_ in batch:
                    self.answered.append((answered, exc))
                return
        for (answered, protocol, environ, queued), answer in zip(batch, answers, strict=True):
            error = None
            try:
                protocol.response_bytes(*(answer or self._run(environ, queued)))
            except BaseException as exc:  # the app's, raised in its coroutine
                error = exc
            self.answered.append((answered, error))

    def _run(self, environ: dict[str, Any], queued: float) -> Answer:
        if time.monotonic() - queued > QUEUE_TIMEOUT:
            return BUSY  # the threads are stuck (on a stalled Redis): spare it the wait
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = headers

        chunks = self.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return answer["status"], answer["headers"], data


def _environ(scope: Any, body: bytes) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an RSGI request, as granian's WSGI interface builds it."""
    server_host, _, server_port = scope.server.rpartition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # RSGI gives the path percent-decoded as text; WSGI wants its bytes as latin-1.
        "PATH_INFO": scope.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.query_string.encode("utf-8").decode("latin-1"),
        "SERVER_NAME": server_host.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    headers = scope.headers
    for name in headers.keys():
        value = ",".join(headers.get_all(name))
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


# -- idle connections -----------------------------------------------------------------------

_TCP_ESTABLISHED = 1
_TCP_INFO = struct.Struct("B" * 8 + "I" * 24)
"""The start of Linux's ``struct tcp_info``: 8 bytes of state and options, then 32-bit
fields of which ``tcpi_last_data_sent`` and ``tcpi_last_data_recv`` (milliseconds since data
last left and arrived) are the 10th and the 12th."""
_LAST_DATA_SENT = 8 + 9
_LAST_DATA_RECV = 8 + 11


class IdleReaper:
    """Closes the connections of this process, accepted on ``port``, on which nothing has gone
    either way for :data:`IDLE_TIMEOUT` seconds: the client sent nothing, and no answer went
    out to it (a client downloading a large answer over a slow link sends nothing meanwhile;
    one that stopped reading lets nothing more go out).

    The HTTP side keeps a silent connection open for ever; the kernel knows when data last
    arrived on each socket and when it last left (``TCP_INFO``), so a thread looks every
    second at this process's sockets and shuts down the silent ones, which the server then
    drops as closed by the client. It works on a duplicate of each descriptor, so a socket
    closed and its number reused meanwhile is never touched: the duplicate still names the old
    one. Linux only (elsewhere it does nothing)."""

    def __init__(self, port: int, idle: float = IDLE_TIMEOUT, every: float = 1.0) -> None:
        self.port = port
        self.idle_ms = idle * 1000
        self.every = every
        self.stopping = threading.Event()
        self.closed = 0

    def start(self) -> IdleReaper:
        if hasattr(socket, "TCP_INFO") and os.path.isdir("/proc/self/fd"):
            threading.Thread(target=self._run, name="gimel-idle", daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            self.sweep()

    def sweep(self) -> None:
        for name in os.listdir("/proc/self/fd"):
            try:
                if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    continue
                fd = os.dup(int(name))
            except OSError:
                continue  # closed meanwhile
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                continue
            with sock:
                self._cut_if_silent(sock)

    def _cut_if_silent(self, sock: socket.socket) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        if sock.type != socket.SOCK_STREAM:
            return
        try:
            if sock.getsockname()[1] != self.port:
                return  # a client socket of this process (Redis), or another listener
            info = _TCP_INFO.unpack(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))
            silent = min(info[_LAST_DATA_RECV], info[_LAST_DATA_SENT])
            if info[0] == _TCP_ESTABLISHED and silent > self.idle_ms:
                sock.shutdown(socket.SHUT_RDWR)
                self.closed += 1
        except OSError:
            return
