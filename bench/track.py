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
        # A visitor each, from an address each: what is measured is counting, not the
        # per-source budget turning one address's events away.
        event["requestContext"]["identity"]["sourceIp"] = f"198.18.{i // 256 % 256}.{i % 256}"
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
    handler_rate, pfadd_rate, cpu = [], [], []
    for _ in range(3):  # interleaved, best of three
        started = time.process_time()  # this process only: not redis-server's
        handler_rate.append(_rate(count, through_handler))
        cpu.append((time.process_time() - started) / count * 1e6)
        pfadd_rate.append(_rate(count, pfadd_loop))
    return {
        "handler_events_per_s": max(handler_rate),
        "pfadd_per_s": max(pfadd_rate),
        "ratio": max(handler_rate) / max(pfadd_rate),
        "cpu_us": min(cpu),
    }


def _get_event(template: dict[str, Any], i: int, **query: str) -> dict[str, Any]:
    """A ``GET /track`` of a visitor of its own, from an address of its own, with ``query``."""
    event = copy.deepcopy(template)
    event["queryStringParameters"].update(query, uuid=f"uuid-{i}")
    event["multiValueQueryStringParameters"] = {
        k: [v] for k, v in event["queryStringParameters"].items()
    }
    event["requestContext"]["identity"]["sourceIp"] = f"198.19.{i // 256 % 256}.{i % 256}"
    return event


def value_vs_binary(url: str, count: int = 10_000) -> dict[str, float]:
    """CPU per event through handler.handler of a value event (``value`` and ``total`` on a
    value goal) and of a binary one, same exact-mode experiment: this process's CPU, and
    redis-server's (``INFO cpu``; nothing else uses it meanwhile)."""
    os.environ.update(GIMEL_REDIS_URL=url, GIMEL_API_KEY=API_KEY, GIMEL_COUNTING="hll")
    import handler

    plan = {
        "variants": ["a", "b"],
        "control": "a",
        "goals": ["signup", {"name": "purchase", "type": "value"}],
    }
    # Declared exact here: a value goal needs it (the handler counts new ones as hll).
    gimel = Gimel(url, Config(redis_url=url, counting="exact", redis_timeout=30.0))
    gimel.experiments.declare("alephbet", "cost", plan)
    template = json.loads(EVENT.read_text())
    one = {"experiment": "cost", "variant": "b"}
    kinds = {
        "binary": {**one, "event": "signup"},
        "value": {**one, "event": "purchase", "value": "12.5", "total": "30"},
    }
    events = {
        kind: [_get_event(template, k * 10 * count + i, **query) for i in range(4 * count)]
        for k, (kind, query) in enumerate(kinds.items())
    }
    client = redis.Redis.from_url(url)

    def redis_cpu() -> float:
        cpu = client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    cpu: dict[str, list[float]] = {"binary": [], "value": [], "binary_redis": [], "value_redis": []}
    for round_ in range(4):  # the first warms up (script cached, connection open); best of 3
        for kind in kinds:
            started, server = time.process_time(), redis_cpu()
            for event in events[kind][round_ * count : (round_ + 1) * count]:
                assert handler.handler(event, None)["statusCode"] == 200
            if round_:
                cpu[kind].append((time.process_time() - started) / count * 1e6)
                cpu[f"{kind}_redis"].append((redis_cpu() - server) / count * 1e6)
    client.close()
    body = gimel.experiments.experiment("alephbet", "cost").to_json()
    gimel.client.close()
    for goal in body["goals"]:  # every event counted, none dropped
        (row,) = (r for r in goal["results"] if r["label"] == "b")
        assert row["successes"] == 4 * count, (goal["goal"], row)
    best = {key: min(values) for key, values in cpu.items()}
    total = {kind: best[kind] + best[f"{kind}_redis"] for kind in kinds}
    return {
        **best,
        "ratio": best["value"] / best["binary"],
        "total_ratio": total["value"] / total["binary"],
    }


def _batch_event(template: dict[str, Any], k: int, size: int) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event.update(
        httpMethod="POST", queryStringParameters=None, multiValueQueryStringParameters=None
    )
    event["headers"]["Content-Type"] = "application/json"
    event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    # A backend relaying its visitors' events sends the key: not one source's budget.
    event["headers"]["x-api-key"] = API_KEY
    event["multiValueHeaders"]["x-api-key"] = [API_KEY]
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


EXACT_SIZES = (10_000, 100_000, 1_000_000)
"""Uuids in one de-dup bucket at which exact mode's memory is measured."""

EXACT_TARGET = 16.0
"""Most bytes of Redis per uuid in the window, at every size."""


def exact_bytes_per_uuid(url: str, sizes: tuple[int, ...] = EXACT_SIZES) -> dict[int, float]:
    """Redis memory (INFO memory, used_memory) per uuid inside the de-dup window, at each size.

    The delta from after a first event, which created the experiment and its counter: what
    the uuids' de-dup records cost, and nothing of the counts. Events go through the real
    Tracker in batches of 1,000 (one script call each) at one fixed time, so every record
    lands in one bucket. Before each reading the tracker's connection is closed (and gone
    from the server) and the slow log emptied: neither client buffers nor the arguments the
    slow log keeps of long script calls (a bounded 128 of them) are records.
    """
    client = redis.Redis.from_url(url)
    client.flushall()
    others = len(client.client_list())  # this one, and any an earlier measurement left open
    now = time.time()
    # A batch on a busy machine may pass the 0.4 s timeout: here that is no failure.
    config = Config(redis_url=url, counting="exact", redis_timeout=30.0)
    gimel = Gimel(url, config, clock=lambda: now)
    tracker = gimel.tracker

    def used() -> int:
        gimel.client.close()
        deadline = time.monotonic() + 10
        while len(client.client_list()) > others and time.monotonic() < deadline:
            time.sleep(0.01)
        client.slowlog_reset()
        return int(client.info("memory")["used_memory"])

    tracker.track(Event("alephbet", "mem", "v", "participate", "warm-up"))
    before, done = used(), 0
    found: dict[int, float] = {}
    for size in sorted(sizes):
        while done < size:
            batch = [
                Event("alephbet", "mem", "v", "participate", f"{i:08d}-uuid-4c1e-9f7a")
                for i in range(done, min(size, done + 1000))
            ]
            assert tracker.track_many(batch).new == len(batch)
            done += len(batch)
        found[size] = (used() - before) / size
    client.close()
    return found


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            speed = handler_vs_pfadd(server.url)
            batch = batch_vs_pipelined_pfadd(server.url)
            cost = value_vs_binary(server.url)
            memory = exact_bytes_per_uuid(server.url)
        finally:
            server.stop()
    print(f"handler.handler /track : {speed['handler_events_per_s']:9,.0f} events/s")
    print(f"redis-py PFADD loop    : {speed['pfadd_per_s']:9,.0f} /s")
    print(f"ratio                  : {speed['ratio']:9.2f}   (target >= 0.3)")
    print(f"CPU per event          : {speed['cpu_us']:9.0f} µs (target <= 300)")
    print(
        f"POST /track batches    : {batch['batch_events_per_s']:9,.0f} events/s (target >= 50,000)"
    )
    print(f"pipelined PFADD        : {batch['pipelined_pfadd_per_s']:9,.0f} /s")
    print(f"ratio                  : {batch['ratio']:9.2f}   (target >= 0.6)")
    print(
        f"CPU, value / binary    : {cost['value']:.0f} / {cost['binary']:.0f} µs, ratio "
        f"{cost['ratio']:.2f} (target <= 1.10); with redis-server's "
        f"{cost['value_redis']:.0f} / {cost['binary_redis']:.0f} µs, {cost['total_ratio']:.2f}"
    )
    for size, per_uuid in memory.items():
        print(f"exact mode memory      : {per_uuid:9.1f} B per uuid in window at {size:,} uuids")
    print(
        f"exact mode memory      : {max(memory.values()):9.1f} B per uuid at worst "
        f"(target <= {EXACT_TARGET:.0f})"
    )


if __name__ == "__main__":
    main()
