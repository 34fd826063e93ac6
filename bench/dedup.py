"""Exact mode for life: Redis bytes per uuid, and uuids re-sent days later counted once.

    python -m bench.dedup [--uuids 1000000] [--resent 10000]

Memory: ``--uuids`` uuids, each in 5 counters (``participate`` and 4 goals, so 5 records
each), written through the real Tracker in one declared experiment (a plan: its records never
expire, as in production) that remembers them for life;
``INFO memory`` (used_memory) before and after, as bench/track.py reads it (the tracker's
connection closed, the slow log emptied and no rewrite of the append-only file under way
first), divided by the uuids and by the records.

Re-sends: ``--resent`` uuids, each in the same 5 counters, tracked on day 0 and every event
sent again on days 1, 3 and 30 (the app's clock moved; Redis's own is not); the counts read
through ``GET /experiments/<name>`` after each. Also with a one-day window
(GIMEL_DEDUP_WINDOW=86400), where the day-3 re-send counts again, and in ``hll``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from flask import Flask

from gimel_core import create_app
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event
from gimel_core.storage.schema import DAY

from .track import redis_memory

API_KEY = "bench-key-0123456789abcdef"
AUTH = {"X-Api-Key": API_KEY}
NS = "alephbet"
GOALS = ("participate", "signup", "cart", "buy", "share")
"""The 5 counters every uuid is counted in."""
RESENT_ON = (1, 3, 30)
TARGET_PER_RECORD = 8.8
"""Bytes per record (one uuid in one counter) measured with one counter at 1M uuids: the
records of 5 counters should cost the same each, so 5 x that per uuid."""
TOLERANCE = 0.1
"""What the per-record figure may pass the target by (a reading's noise)."""
BATCH = 1_000
"""Uuids per Tracker call (5,000 events, one script call)."""
THREADS = 2


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _app(url: str, clock: Callable[[], float], **settings: Any) -> Flask:
    # A big call on a busy machine may pass the 0.4 s timeout: here that is no failure.
    config = {"redis_url": url, "api_keys": (API_KEY,), "redis_timeout": 30.0, **settings}
    return create_app(config, clock=clock)


def _send(app: Flask, experiment: str, uuids: range, prefix: str = "") -> int:
    """Each uuid in every counter, variant ``a`` or ``b``; how many events were new. Two
    threads, so that one builds its batch while Redis runs the other's (each call is atomic:
    they may interleave)."""
    tracker = app.extensions["gimel"].tracker

    def send(part: range) -> int:
        new = 0
        for first in part:
            batch = [
                Event(NS, experiment, "ab"[i % 2], goal, f"{prefix}{i:08d}-4c1e-9f7a-uuid")
                for i in range(first, min(first + BATCH, uuids.stop))
                for goal in GOALS
            ]
            new += tracker.track_many(batch).new
        return new

    starts = range(uuids.start, uuids.stop, BATCH)
    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(send, (starts[k::THREADS] for k in range(THREADS))))


def _counts(app: Flask, experiment: str) -> list[int]:
    """Participants, then each goal's conversions, over both variants, read through the API."""
    body = app.test_client().get(f"/experiments/{experiment}", headers=AUTH)
    found = body.get_json()
    goals = {g["goal"]: sum(r["successes"] for r in g["results"]) for g in found["goals"]}
    return [sum(found["participants"].values()), *(goals[g] for g in GOALS[1:])]


def bytes_per_uuid(url: str, uuids: int) -> dict[str, float]:
    """Redis memory of ``uuids`` uuids in 5 counters of one for-life exact experiment."""
    client = redis.Redis.from_url(url)
    client.flushall()
    others = len(client.client_list())
    clock = Clock()
    app = _app(url, clock, counting="exact", dedup_max_records=len(GOALS) * (uuids + 1))

    def used() -> int:
        app.extensions["gimel"].client.close()
        return redis_memory(client, others)

    plan = {"variants": ["a", "b"], "goals": list(GOALS[1:])}
    answer = app.test_client().put("/experiments/mem", json=plan, headers=AUTH)
    assert answer.status_code == 201, answer.get_json()
    _send(app, "mem", range(0, 1), prefix="warm-up")  # its counters
    before = used()
    started = time.perf_counter()
    new = _send(app, "mem", range(uuids))
    seconds = time.perf_counter() - started
    grown = used() - before
    assert new == len(GOALS) * uuids, new
    assert _counts(app, "mem") == [uuids + 1] * len(GOALS)
    client.close()
    return {
        "per_uuid": grown / uuids,
        "per_record": grown / (len(GOALS) * uuids),
        "events_per_s": len(GOALS) * uuids / seconds,
    }


def resent(url: str, uuids: int, **settings: Any) -> list[list[int]]:
    """Counts after day 0, then after every event is sent again on each of RESENT_ON."""
    redis.Redis.from_url(url).flushall()
    clock = Clock()
    app = _app(url, clock, **settings)
    start = clock.now
    _send(app, "resent", range(uuids))
    found = [_counts(app, "resent")]
    for day in RESENT_ON:
        clock.now = start + day * DAY
        _send(app, "resent", range(uuids))
        found.append(_counts(app, "resent"))
    app.extensions["gimel"].client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uuids", type=int, default=1_000_000)
    parser.add_argument("--resent", type=int, default=10_000)
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            started = time.perf_counter()
            memory = bytes_per_uuid(server.url, args.uuids)
            memory_s = time.perf_counter() - started
            started = time.perf_counter()
            life = resent(server.url, args.resent, counting="exact")
            window = resent(server.url, args.resent, counting="exact", dedup_window=DAY)
            hll = resent(server.url, args.resent, counting="hll")
            resent_s = time.perf_counter() - started
        finally:
            server.stop()
    n, counters = args.uuids, len(GOALS)
    ok = memory["per_record"] <= TARGET_PER_RECORD + TOLERANCE
    print(f"exact for life, {n:,} uuids x {counters} counters ({memory_s:.0f} s,")
    print(f"  {memory['events_per_s']:,.0f} events/s through the Tracker):")
    print(
        f"  Redis bytes per uuid   : {memory['per_uuid']:6.1f} B "
        f"(target <= {counters * (TARGET_PER_RECORD + TOLERANCE):.1f}: {counters} x per record)"
    )
    print(
        f"  Redis bytes per record : {memory['per_record']:6.1f} B "
        f"(target {TARGET_PER_RECORD} B, one counter's) {'met' if ok else 'MISSED'}"
    )
    print(
        f"re-sent after {', '.join(map(str, RESENT_ON))} days, {args.resent:,} uuids x "
        f"{counters} counters ({resent_s:.0f} s for the three runs);"
    )
    print("  counts after day 0 and each re-send (participants, then each goal):")
    expected = [[args.resent] * counters] * (1 + len(RESENT_ON))
    for name, found, target in [
        ("exact, for life      ", life, "counted once"),
        ("exact, 1-day window  ", window, "day 3 and 30 count again"),
        ("hll                  ", hll, "counted once, within its error"),
    ]:
        pairs = zip((0, *RESENT_ON), found, strict=True)
        days = "; ".join(f"day {d}: {c[0]:,}/{c[1]:,}" for d, c in pairs)
        print(f"  {name}: {days}  (target: {target})")
    met = life == expected
    print(f"  exact re-sends counted once: {'met' if met else 'MISSED'}")
    print(f"the run took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
