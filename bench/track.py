"""Tracking throughput through the Lambda handler, and exact mode's memory per uuid.

Figures are measured side by side in one run against the same embedded redis-server, so
their ratios hold on a noisy machine even when absolute rates move.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

from gimel_core.app import Gimel
from gimel_core.config import Config
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event

from .spread import shown, spread

EVENT = Path(__file__).parent.parent / "tests" / "events" / "track_participate.json"
API_KEY = "bench-key-0123456789abcdef"


def _rate(count: int, run: Callable[[], object]) -> float:
    """``count`` over the seconds ``run`` takes."""
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def handler_vs_pfadd(url: str, count: int = 10_000, rounds: int = 5) -> dict[str, float]:
    """Events/s through handler.handler (warm, in-process) vs a plain redis-py PFADD loop, and
    this process's CPU per handled event, over ``rounds`` rounds of ``count`` each."""
    os.environ.update(GIMEL_REDIS_URL=url, GIMEL_API_KEY=API_KEY, GIMEL_COUNTING="hll")
    import handler

    template = json.loads(EVENT.read_text())

    def visitors(first: int, n: int) -> list[dict[str, Any]]:
        """Events of ``n`` new visitors: a round re-sending earlier ones would time de-dup."""
        events = []
        for i in range(first, first + n):
            event = copy.deepcopy(template)
            event["queryStringParameters"]["uuid"] = f"uuid-{i}"
            event["multiValueQueryStringParameters"]["uuid"] = [f"uuid-{i}"]
            # From an address each: what is measured is counting, not the per-source budget
            # turning one address's events away.
            event["requestContext"]["identity"]["sourceIp"] = f"198.18.{i // 256 % 256}.{i % 256}"
            events.append(event)
        return events

    def through_handler(events: list[dict[str, Any]]) -> None:
        for event in events:
            assert handler.handler(event, None)["statusCode"] == 200

    client = redis.Redis.from_url(url)

    def pfadd_loop(first: int, n: int) -> None:
        for i in range(first, first + n):
            client.pfadd("bench:pfadd", f"uuid-{i}")

    through_handler(visitors(0, 1000))  # warm up: script cached, connection open
    pfadd_loop(0, 1000)
    handler_rate, pfadd_rate, ratio, cpu = [], [], [], []
    for round_ in range(rounds):  # interleaved: a slow moment slows the round's both loops
        first = 1000 + round_ * count
        events = visitors(first, count)
        started = time.process_time()  # this process only: not redis-server's
        handler_rate.append(_rate(count, partial(through_handler, events)))
        cpu.append((time.process_time() - started) / count * 1e6)
        pfadd_rate.append(_rate(count, partial(pfadd_loop, first, count)))
        ratio.append(handler_rate[-1] / pfadd_rate[-1])
    client.close()
    return (
        spread("handler_events_per_s", handler_rate)
        | spread("pfadd_per_s", pfadd_rate)
        | spread("ratio", ratio)
        | spread("cpu_us", cpu)
    )


def _get_event(template: dict[str, Any], i: int, **query: str) -> dict[str, Any]:
    """A ``GET /track`` of a visitor of its own, from an address of its own, with ``query``."""
    event = copy.deepcopy(template)
    event["queryStringParameters"].update(query, uuid=f"uuid-{i}")
    event["multiValueQueryStringParameters"] = {
        k: [v] for k, v in event["queryStringParameters"].items()
    }
    event["requestContext"]["identity"]["sourceIp"] = f"198.19.{i // 256 % 256}.{i % 256}"
    return event


def value_vs_binary(
    url: str, count: int = 4_000, rounds: int = 8, turn: int = 250
) -> dict[str, float]:
    """CPU per event through handler.handler of a value event (``value`` and ``total`` on a
    value goal) and of a binary one, same exact-mode experiment: this process's CPU, and
    redis-server's (``INFO cpu``; nothing else uses it meanwhile), over ``rounds`` rounds
    of ``count`` events of each kind after one to warm up. Within a round the two kinds take
    turns of ``turn`` events (a fraction of a second each), which goes first alternating: a
    machine that slows down or speeds up moves both alike, and each round's ratio is taken
    within it."""
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
        kind: [
            _get_event(template, k * 10 * rounds * count + i, **query)
            for i in range((rounds + 1) * count)
        ]
        for k, (kind, query) in enumerate(kinds.items())
    }
    client = redis.Redis.from_url(url)

    def redis_cpu() -> float:
        cpu = client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    cpu: dict[str, list[float]] = {"binary": [], "value": [], "binary_redis": [], "value_redis": []}
    for round_ in range(rounds + 1):  # the first warms up (script cached, connection open)
        spent = dict.fromkeys(cpu, 0.0)
        order = sorted(kinds, reverse=round_ % 2 == 1)
        for start in range(round_ * count, (round_ + 1) * count, turn):
            for kind in order:
                server = redis_cpu()  # INFO's own cost in this process: outside the turn
                started = time.process_time()
                for event in events[kind][start : min(start + turn, (round_ + 1) * count)]:
                    assert handler.handler(event, None)["statusCode"] == 200
                spent[kind] += time.process_time() - started
                spent[f"{kind}_redis"] += redis_cpu() - server
        if round_:
            for key, seconds in spent.items():
                cpu[key].append(seconds / count * 1e6)
    client.close()
    body = gimel.experiments.experiment("alephbet", "cost").to_json()
    gimel.client.close()
    for goal in body["goals"]:  # every event counted, none dropped
        (row,) = (r for r in goal["results"] if r["label"] == "b")
        assert row["successes"] == (rounds + 1) * count, (goal["goal"], row)
    total = {
        kind: [a + b for a, b in zip(cpu[kind], cpu[f"{kind}_redis"], strict=True)]
        for kind in kinds
    }
    figures: dict[str, float] = {}
    for key, values in cpu.items():
        figures |= spread(key, values)
    # Each round's value over its binary, the two taken in turns within it.
    figures |= spread("ratio", [v / b for v, b in zip(cpu["value"], cpu["binary"], strict=True)])
    ratios = [v / b for v, b in zip(total["value"], total["binary"], strict=True)]
    return figures | spread("total_ratio", ratios)


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


def batch_vs_pipelined_pfadd(
    url: str, batches: int = 40, size: int = 500, rounds: int = 5
) -> dict[str, float]:
    """Events/s of POST /track batches through handler.handler vs pipelined PFADD batches."""
    os.environ.update(GIMEL_REDIS_URL=url, GIMEL_API_KEY=API_KEY, GIMEL_COUNTING="hll")
    import handler

    template = json.loads(EVENT.read_text())
    client = redis.Redis.from_url(url)

    def through_handler(events: list[dict[str, Any]]) -> None:
        for event in events:
            assert handler.handler(event, None)["statusCode"] == 200

    def pipelined(first: int, n: int) -> None:
        for k in range(first, first + n):
            pipe = client.pipeline(transaction=False)
            for i in range(size):
                pipe.pfadd(f"bench:pipelined:{i % 12}", f"{k}-{i}")
            pipe.execute()

    through_handler([_batch_event(template, -1, size)])  # warm up
    pipelined(-1, 1)
    ours, theirs = [], []
    for round_ in range(rounds):  # interleaved, as in handler_vs_pfadd; new visitors each
        first = round_ * batches
        events = [_batch_event(template, first + k, size) for k in range(batches)]
        ours.append(_rate(batches * size, partial(through_handler, events)))
        theirs.append(_rate(batches * size, partial(pipelined, first, batches)))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    client.close()
    return (
        spread("batch_events_per_s", ours)
        | spread("pipelined_pfadd_per_s", theirs)
        | spread("ratio", ratios)
    )


def _source(i: int) -> str:
    """The ``i``-th address's source as Gimel's own hash makes it: 16 hex digits, uniform."""
    return hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest()


REDIS_CPU_TARGET = 20.0
"""Most µs of Redis CPU inside a tracked event's ``EVALSHA``, the median of each shape."""

FLOOR_SCRIPT = """
local settings = redis.call('HMGET', KEYS[1], 'counting', 'window', 'day', 'plan')
local spent = redis.call('HGET', KEYS[2], ARGV[2])
local added = redis.call('PFADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], (tonumber(spent) or 0) + added)
return added
"""
"""The least a script counting a declared experiment's event does, and nothing else: read the
experiment's settings, read and write its source's budget, PFADD (``floor``)."""


def redis_cpu_per_event(
    url: str, count: int = 5_000, rounds: int = 4
) -> dict[str, dict[str, list[float]]]:
    """redis-server's CPU per tracked event, over ``count`` events a round, in the steady
    state: each event a new visitor's from an address of its own, of an experiment seen
    before, today, of names it holds, in each shape (hll and exact, open and declared). Two
    figures per shape and round, the shapes interleaved (a noisy machine moves them all
    alike): ``script``, the time Redis spent inside the event's ``EVALSHA`` (``INFO
    commandstats``, which counts the commands the script runs inside it); ``server``, its
    whole CPU (``INFO cpu``, user + sys: reading each command, the reply, the AOF). And
    ``floor``: the time inside an ``EVALSHA`` of :data:`FLOOR_SCRIPT`, in the same rounds,
    for a new visitor from an address of its own each time: what this server takes for those
    four calls alone."""
    now = time.time()
    plan = {"variants": ["a", "b"], "control": "a", "goals": ["signup"]}
    client = redis.Redis.from_url(url)
    trackers = {}
    for counting in ("hll", "exact"):
        config = Config(redis_url=url, counting=counting, redis_timeout=30.0)
        for registration in ("open", "declared"):
            gimel = Gimel(url, config, clock=lambda: now)
            shape = f"{counting} {registration}"
            if registration == "declared":
                gimel.experiments.declare("alephbet", shape, plan)
            trackers[shape] = gimel.tracker
    goals = ("participate", "signup")

    def burst(shape: str, first: int, n: int) -> None:
        for i in range(first, first + n):
            event = Event("alephbet", shape, "ab"[i % 2], goals[i // 2 % 2], f"uuid-{i}")
            trackers[shape].track(event, source=_source(i))

    def redis_cpu() -> float:
        cpu = client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    floor = client.script_load(FLOOR_SCRIPT)
    floor_keys = ("{floor}:meta", "{floor}:sources", "{floor}:hll")
    client.hset(floor_keys[0], mapping={"counting": "hll", "window": 0, "day": 1, "plan": "{}"})

    def floor_burst(first: int, n: int) -> None:
        for i in range(first, first + n):
            client.evalsha(floor, len(floor_keys), *floor_keys, f"uuid-{i}", _source(i))

    for shape in trackers:
        burst(shape, 0, 200)  # created, names and counters held: the steady state
    floor_burst(0, 200)
    found: dict[str, dict[str, list[float]]] = {"script": {}, "server": {}, "floor": {}}
    for round_ in range(rounds):
        client.config_resetstat()
        floor_burst(200 + round_ * count, count)
        calls = client.info("commandstats")["cmdstat_evalsha"]
        assert calls["calls"] == count, calls
        found["floor"].setdefault("floor", []).append(calls["usec"] / count)
        for shape in trackers:
            client.config_resetstat()
            started = redis_cpu()
            burst(shape, 200 + round_ * count, count)
            server = (redis_cpu() - started) / count * 1e6
            evalsha = client.info("commandstats")["cmdstat_evalsha"]
            assert evalsha["calls"] == count, evalsha  # one call an event, nothing else
            found["server"].setdefault(shape, []).append(server)
            found["script"].setdefault(shape, []).append(evalsha["usec"] / count)
    client.close()
    return found


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
    slow log keeps of long script calls (a bounded 128 of them) are records
    (:func:`redis_memory`).
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
        return redis_memory(client, others)

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


def redis_memory(client: redis.Redis, others: int) -> int:
    """``used_memory`` once only what is stored is left in it: the measured app's connections
    gone from the server (down to ``others``), the slow log emptied, and no rewrite of the
    append-only file under way (one keeps every write made meanwhile in a buffer, counted in
    ``used_memory``: 10 MB more at 1M uuids, read while one ran)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        persistence = client.info("persistence")
        busy = persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]
        if not busy and len(client.client_list()) <= others:
            break
        time.sleep(0.01)
    client.slowlog_reset()
    return int(client.info("memory")["used_memory"])


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            speed = handler_vs_pfadd(server.url)
            batch = batch_vs_pipelined_pfadd(server.url)
            cost = value_vs_binary(server.url)
            redis_cpu = redis_cpu_per_event(server.url)
            memory = exact_bytes_per_uuid(server.url)
        finally:
            server.stop()
    print("median of the rounds (min, max)")
    print(f"handler.handler /track : {shown(speed, 'handler_events_per_s', '{:,.0f}', '/s')}")
    print(f"redis-py PFADD loop    : {shown(speed, 'pfadd_per_s', '{:,.0f}', '/s')}")
    print(f"ratio                  : {shown(speed, 'ratio', '{:.2f}')} (target >= 0.6)")
    print(f"CPU per event          : {shown(speed, 'cpu_us', '{:.0f}', ' µs')} (target <= 100)")
    print(
        f"POST /track batches    : {shown(batch, 'batch_events_per_s', '{:,.0f}', '/s')}"
        " (target >= 50,000)"
    )
    print(f"pipelined PFADD        : {shown(batch, 'pipelined_pfadd_per_s', '{:,.0f}', '/s')}")
    print(f"ratio                  : {shown(batch, 'ratio', '{:.2f}')} (target >= 0.8)")
    print(
        f"CPU, value / binary    : {shown(cost, 'value', '{:.0f}')} / "
        f"{shown(cost, 'binary', '{:.0f}')} µs, ratio {shown(cost, 'ratio', '{:.2f}')}"
        " (target <= 1.10)"
    )
    print(
        f"  with redis-server's  : {shown(cost, 'value_redis', '{:.0f}')} / "
        f"{shown(cost, 'binary_redis', '{:.0f}')} µs, ratio "
        f"{shown(cost, 'total_ratio', '{:.2f}')} (target <= 1.10)"
    )
    for shape, times in redis_cpu["script"].items():
        low, mid, high = min(times), statistics.median(times), max(times)
        print(
            f"EVALSHA per event      : {shape:14} {low:.0f} / {mid:.0f} / {high:.0f} µs"
            f" min / median / max (target <= {REDIS_CPU_TARGET:.0f}); redis-server's CPU"
            f" {statistics.median(redis_cpu['server'][shape]):.0f} µs"
        )
    floor = redis_cpu["floor"]["floor"]
    print(
        f"EVALSHA, the floor     : {min(floor):.0f} / {statistics.median(floor):.0f} /"
        f" {max(floor):.0f} µs, a script of the four calls alone (FLOOR_SCRIPT)"
    )
    for size, per_uuid in memory.items():
        print(f"exact mode memory      : {per_uuid:9.1f} B per uuid in window at {size:,} uuids")
    print(
        f"exact mode memory      : {max(memory.values()):9.1f} B per uuid at worst "
        f"(target <= {EXACT_TARGET:.0f})"
    )


if __name__ == "__main__":
    main()
