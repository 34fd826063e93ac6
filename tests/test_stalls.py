"""A Redis stall under load: `gimel serve` still answers every request within about a second.

128 connections send ``/track`` GETs as fast as they are answered while the embedded Redis
is frozen for 5 s (``DEBUG SLEEP``). Every request must be answered 200 or 503 with
``Retry-After`` within :data:`BOUND` seconds: a request no app thread could start within
``gateway.QUEUE_TIMEOUT`` is answered 503 at once instead of waiting for Redis, and one that
reaches Redis gives up after the Redis timeout. (Before: the requests queued behind the 8
threads, each holding one for the Redis timeout, so most waited out the whole stall.)

Loopback only, a fixed number of connections, every wait bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from gimel_core import defaults
from gimel_core.cli import gateway
from tests.serving import GimelServe

CONNECTIONS = 128
STALL = 5.0  # seconds Redis sleeps
SLACK = 0.5
"""Seconds of scheduling on a loaded two-core machine (both workers, the event loop, Redis and
128 clients share it): the answers of one instant wait for their turn."""
BOUND = gateway.QUEUE_TIMEOUT + 2 * defaults.REDIS_TIMEOUT + SLACK
"""Seconds within which every request must be answered: the gateway's own bound (see
``gateway.QUEUE_TIMEOUT``), with the slack; far below the stall's."""
HOST = "127.0.0.1"
EVENT = {"experiment": "stall", "variant": "v", "event": "participate"}


@pytest.mark.slow
def test_every_request_is_answered_quickly_while_redis_stalls_under_load(
    tmp_path: Path,
) -> None:
    assert BOUND < STALL / 2
    with GimelServe(tmp_path, "--workers", "2") as gimel:
        stalled = threading.Thread(target=_stall, args=(gimel.redis_port(), STALL))
        answers = asyncio.run(_load(gimel.port, stalled))
    during = [a for a in answers if a.started >= answers[0].stall_began]
    statuses = {a.status for a in answers}
    slowest = max(answers, key=lambda a: a.elapsed)
    refused = [a for a in during if a.status == 503]
    print(
        f"\nRedis stalled {STALL:.0f} s under {CONNECTIONS} connections: {len(answers)} requests"
        f" ({len(during)} during the stall, {len(refused)} x 503),"
        f" slowest {slowest.elapsed:.3f} s ({slowest.status})"
    )
    assert statuses <= {200, 503}, statuses
    assert all(a.retry_after for a in answers if a.status == 503)
    assert slowest.elapsed < BOUND, sorted(a.elapsed for a in answers)[-10:]
    assert len(refused) > CONNECTIONS  # the stall was felt, every connection answered
    assert sum(a.status == 200 for a in answers if a.started > answers[0].stall_ended) > 0


class _Answer:
    __slots__ = ("started", "elapsed", "status", "retry_after", "stall_began", "stall_ended")

    def __init__(self, started: float, elapsed: float, status: int, retry_after: bool) -> None:
        self.started = started
        self.elapsed = elapsed
        self.status = status
        self.retry_after = retry_after
        self.stall_began = 0.0
        self.stall_ended = 0.0


def _stall(port: int, seconds: float) -> None:
    client = redis.Redis(port=port, socket_timeout=seconds + 10)
    try:
        client.execute_command("DEBUG", "SLEEP", seconds)
    finally:
        client.close()


async def _load(port: int, stalled: threading.Thread) -> list[_Answer]:
    """CONNECTIONS kept-alive connections sending requests back to back: 1 s of warm-up,
    then the stall, then 1 s after it. Every answer, the first carrying the stall's times."""
    answers: list[_Answer] = []
    stop = asyncio.Event()

    async def connection(n: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            i = 0
            while not stop.is_set():
                i += 1
                query = urlencode(EVENT | {"uuid": f"{n}-{i}"})
                began = time.monotonic()
                writer.write(f"GET /track?{query} HTTP/1.1\r\nHost: gimel\r\n\r\n".encode())
                status, headers = await asyncio.wait_for(_response(reader), 30)
                elapsed = time.monotonic() - began
                answers.append(_Answer(began, elapsed, status, "retry-after" in headers))
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection(n)) for n in range(CONNECTIONS)]
    try:
        await asyncio.sleep(1)
        began = time.monotonic()
        stalled.start()
        await asyncio.to_thread(stalled.join, STALL + 10)
        ended = time.monotonic()
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        task.result()  # a connection that failed fails the test
    answers.sort(key=lambda a: a.started)
    answers[0].stall_began, answers[0].stall_ended = began, ended
    return answers


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers
