"""Tracking throughput through the Lambda handler, and exact mode's memory per uuid.

Figures are measured side by side in one run against the same embedded redis-server, so
their ratios hold on a noisy machine even when absolute rates move.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from gimel_core.app import Gimel
from gimel_core.config import Config
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event

EVENT = Path(__file__).parent.parent / "tests" / "events" / "track_participate.json"
API_KEY = "bench-key-0123456789abcdef"


def _rate(count: int, run: Any) -> float:
    started = time.perf_counter()
    run(count)
    return count / (time.perf_counter() - started)


def handler_vs_pfadd(url: str, count: int = 20_000) -> dict[str, float]:
    """Events/s through handler.handler (warm, in-process) vs a plain redis-py PFADD loop."""
    os.environ.update(GIMEL_REDIS_URL=url, GIMEL_API_KEY=API_KEY, GIMEL_COUNTING="hll")
    import handler

    template = json.loads(EVENT.read_text())
    events = []
    for i in range(count):
        event = copy.deepcopy(template)
        event["queryStringParameters"]["uuid"] = f"uuid-{i}"
        event["multiValueQueryStringParameters"]["uuid"] = [f"uuid-{i}"]
        events.append(event)

    def through_handler(n: int) -> None:
        for event in events[:n]:
            assert handler.handler(event, None)["statusCode"] == 200

    client = redis.Redis.from_url(url)

    def pfadd_loop(n: int) -> None:
        for i in range(n):
            client.pfadd("bench:pfadd", f"uuid-{i}")

    through_handler(1000)  # warm up: script cached, connection open
    pfadd_loop(1000)
    handler_rate, pfadd_rate = [], []
    for _ in range(3):  # interleaved, best of three
        handler_rate.append(_rate(count, through_handler))
        pfadd_rate.append(_rate(count, pfadd_loop))
    return {
        "handler_events_per_s": max(handler_rate),
        "pfadd_per_s": max(pfadd_rate),
        "ratio": max(handler_rate) / max(pfadd_rate),
    }


def _batch_event(template: dict[str, Any], k: int, size: int) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event.update(
        httpMethod="POST", queryStringParameters=None, multiValueQueryStringParameters=None
    )
    event["headers"]["Content-Type"] = "application/json"
    event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    event["body"] = json.dumps(
        [
            {
                "experiment": f"batch {i % 4}",
                "variant": f"v{i % 3}",
                "event": "participate",
                "uuid": f"{k}-{i}",
                "namespace": "bench",
            }
            for i in range(size)
        ]
    )
    return event


def batch_vs_pipelined_pfadd(url: str, batches: int = 40, size: int = 500) -> dict[str, float]:
    """Events/s of POST /track batches through handler.handler vs pipelined PFADD batches."""
    os.environ.update(GIMEL_REDIS_URL=url, GIMEL_API_KEY=API_KEY, GIMEL_COUNTING="hll")
    import handler

    template = json.loads(EVENT.read_text())
    events = [_batch_event(template, k, size) for k in range(batches)]
    client = redis.Redis.from_url(url)

    def through_handler(n: int) -> None:
        for event in events[: n // size]:
            assert handler.handler(event, None)["statusCode"] == 200

    def pipelined(n: int) -> None:
        for k in range(n // size):
            pipe = client.pipeline(transaction=False)
            for i in range(size):
                pipe.pfadd(f"bench:pipelined:{i % 12}", f"{k}-{i}")
            pipe.execute()

    through_handler(size)
    pipelined(size)
    rates = [], []
    for _ in range(3):
        rates[0].append(_rate(batches * size, through_handler))
        rates[1].append(_rate(batches * size, pipelined))
    return {
        "batch_events_per_s": max(rates[0]),
        "pipelined_pfadd_per_s": max(rates[1]),
        "ratio": max(rates[0]) / max(rates[1]),
    }


def exact_bytes_per_uuid(url: str, count: int = 100_000) -> float:
    """Redis memory (INFO memory, used_memory) per uuid inside the de-dup window."""
    client = redis.Redis.from_url(url)
    client.flushall()
    counters = Gimel(url, Config(redis_url=url, counting="exact")).tracker
    counters.track(Event("alephbet", "mem", "v", "participate", "warm-up"))
    before = client.info("memory")["used_memory"]
    for i in range(count):
        counters.track(Event("alephbet", "mem", "v", "participate", f"{i:08d}-uuid-4c1e-9f7a"))
    after = client.info("memory")["used_memory"]
    return (after - before) / count


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            speed = handler_vs_pfadd(server.url)
            batch = batch_vs_pipelined_pfadd(server.url)
            memory = exact_bytes_per_uuid(server.url)
        finally:
            server.stop()
    print(f"handler.handler /track : {speed['handler_events_per_s']:9,.0f} events/s")
    print(f"redis-py PFADD loop    : {speed['pfadd_per_s']:9,.0f} /s")
    print(f"ratio                  : {speed['ratio']:9.2f}   (target >= 0.2)")
    print(
        f"POST /track batches    : {batch['batch_events_per_s']:9,.0f} events/s (target >= 50,000)"
    )
    print(f"pipelined PFADD        : {batch['pipelined_pfadd_per_s']:9,.0f} /s")
    print(f"ratio                  : {batch['ratio']:9.2f}   (target >= 0.3)")
    print(f"exact mode memory      : {memory:9.1f} B per uuid in window (target <= 66)")


if __name__ == "__main__":
    main()
