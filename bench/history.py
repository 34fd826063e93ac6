"""What history costs: Redis bytes per experiment per day, and the history endpoint.

    python -m bench.history [--days 90]

One experiment of 3 variants x 4 goals (plus participation: 15 counters) receives visitors
on each of 90 simulated days (the app's clock moved day by day), in each counting mode. The
history hash's size is read with ``MEMORY USAGE`` and divided by the days it holds; then
``GET /experiments/<name>/history`` is timed in-process (the median of repeated calls, with
their min and max; recorded days' results are computed once per process, so also with every
cache emptied first, as on the first look of a day) and its Redis round trips are counted.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import redis

from gimel_core import create_app, keys
from gimel_core.embedded import EmbeddedRedis

from .dashboard import counted_round_trips
from .spread import shown, spread, timed_ms

API_KEY = "bench-key-0123456789abcdef"
START = 1_796_083_200  # a UTC midnight
VARIANTS = ("control", "red", "blue")
GOALS = ("signup", "cart", "buy", "share")
CALLS = 30


def measure(counting: str, days: int = 90, visitors: int = 40) -> dict[str, float]:
    clock = {"now": float(START)}
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = create_app(
                {"redis_url": server.url, "api_keys": (API_KEY,), "counting": counting},
                clock=lambda: clock["now"],
            )
            client = app.test_client()
            for day in range(days + 1):  # the last day's first event records day `days - 1`
                clock["now"] = float(START + day * 86_400 + 3_600)
                events: list[dict[str, Any]] = []
                for variant in VARIANTS:
                    for i in range(visitors if day < days else 1):
                        one = {"experiment": "exp", "variant": variant, "uuid": f"{day}-{i}"}
                        events.append({**one, "event": "participate"})
                        events += [
                            {**one, "event": goal}
                            for g, goal in enumerate(GOALS)
                            if i % (g + 2) == 0
                        ]
                assert client.post("/track", json=events).status_code == 200
            raw = redis.Redis.from_url(server.url)
            size = raw.memory_usage(keys.history("alephbet", "exp"), samples=0)
            recorded = raw.hlen(keys.history("alephbet", "exp"))
            raw.close()
            headers = {"x-api-key": API_KEY}
            url = "/experiments/exp/history"
            body = client.get(url, headers=headers).get_json()  # warm
            # What is timed is the whole shape: every day, variant and goal.
            assert len(body["points"]) == days + 1, len(body["points"])
            for point in body["points"]:
                assert sorted(point["participants"]) == sorted(VARIANTS), point["date"]
                shape = {g["goal"]: len(g["results"]) for g in point["goals"]}
                assert shape == dict.fromkeys(GOALS, len(VARIANTS)), (point["date"], shape)
            with counted_round_trips() as calls:
                assert client.get(url, headers=headers).status_code == 200
            warm = timed_ms(lambda: client.get(url, headers=headers), CALLS)
            # As on the first look of a day: nothing computed yet.
            forget = app.extensions["gimel"].caches.clear
            cold = timed_ms(lambda: client.get(url, headers=headers), CALLS // 3, forget)
            app.extensions["gimel"].client.close()
        finally:
            server.stop()
    return {
        "bytes_per_day": size / recorded,
        "days": recorded,
        **spread("history_ms", warm),
        **spread("history_cold_ms", cold),
        "round_trips": calls[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    for counting in ("hll", "exact"):
        found = measure(counting, args.days)
        print(
            f"{counting}: {found['bytes_per_day']:.0f} B of history per day ({found['days']:.0f}"
            f" days, 15 counters); GET history in-process "
            f"{shown(found, 'history_ms', unit=' ms')} (target <= 10 ms), with nothing cached "
            f"{shown(found, 'history_cold_ms', unit=' ms')}; {found['round_trips']:.0f} round"
            " trip(s)"
        )


if __name__ == "__main__":
    main()
