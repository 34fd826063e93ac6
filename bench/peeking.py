"""Peeking, measured: A/A experiments looked at every day for 30 simulated days.

    python -m bench.peeking [--experiments 300] [--days 30] [--visitors 80] [--rate 0.1]

Every experiment has two arms with the same conversion rate, so any "significant" difference
is a false positive. Each simulated day, visitors are tracked through the app (``POST /track``,
the app's clock moved day by day: ``create_app(clock=...)``) and the results are read through
``GET /experiments``, as a team opening its dashboard every morning would; an experiment
counts as a false winner if any day's p-value was below 0.05. The same visitors are counted
twice, in an experiment analysed with the fixed-horizon test and in its twin analysed
sequentially, so the two methods see identical counts. Both counting modes are run.

The fixed-horizon share is expected far above 5% (that is the peeking problem); the
sequential share must be at most 5%. Each share is printed with its 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from typing import Any

from gimel_core import create_app
from gimel_core.embedded import EmbeddedRedis

API_KEY = "bench-key-0123456789abcdef"
AUTH = {"x-api-key": API_KEY}
START = 1_796_083_200  # a UTC midnight
ALPHA = 0.05
BATCH = 500


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


SIMULATION_HEAD = (
    "| figure | replicates | measured [95% interval] | target | | time |\n|---|---|---|---|---|---|"
)
"""The head of a simulation's table (bench.group_sequential, bench.means, bench.srm)."""


def simulation_row(
    figure: str, replicates: int, measured: str, target: str, ok: bool, seconds: float
) -> str:
    """One row of that table; no seconds: the figure comes from the runs of the row above."""
    took = f"{seconds:.0f} s" if seconds else "(same runs)"
    met = "met" if ok else "MISSED"
    return f"| {figure} | {replicates:,} | {measured} | {target} | {met} | {took} |"


def run(
    counting: str, experiments: int, days: int, visitors: int, rate: float, seed: int
) -> dict[str, Any]:
    """Shares of A/A experiments ever declared significant, fixed vs sequential."""
    rng = random.Random(seed)
    clock = {"now": float(START)}
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = create_app(
                {
                    "redis_url": server.url,
                    "api_keys": (API_KEY,),
                    "counting": counting,
                    "max_experiments": 100_000,
                },
                clock=lambda: clock["now"],
            )
            client = app.test_client()
            ever = {"fixed": set(), "sequential": set()}
            started = time.perf_counter()
            for day in range(days):
                clock["now"] = float(START + day * 86_400 + 3_600)
                events = []
                for e in range(experiments):
                    for arm in ("a", "b"):
                        for i in range(visitors):
                            uuid = f"{e}-{arm}-{day}-{i}"
                            converted = rng.random() < rate
                            for twin in (f"fixed-{e}", f"sequential-{e}"):
                                one = {"experiment": twin, "variant": arm, "uuid": uuid}
                                events.append({**one, "event": "participate"})
                                if converted:
                                    events.append({**one, "event": "signup"})
                for start in range(0, len(events), BATCH):
                    answer = client.post("/track", json=events[start : start + BATCH])
                    assert answer.status_code == 200, answer.get_json()
                if day == 0:  # the twins analysed with the fixed-horizon test
                    for e in range(experiments):
                        patched = client.patch(
                            f"/experiments/fixed-{e}", json={"analysis": "fixed"}, headers=AUTH
                        )
                        assert patched.status_code == 200
                listing = client.get("/experiments", headers=AUTH).get_json()
                for exp in listing[1:]:
                    method = exp["analysis"]
                    for goal in exp["goals"]:
                        for row in goal["results"]:
                            p = row["p_value_adjusted"]
                            if p is not None and p < ALPHA:
                                ever[method].add(exp["experiment"])
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    out: dict[str, Any] = {"elapsed_s": elapsed}
    for method, names in ever.items():
        low, high = wilson(len(names), experiments)
        out[method] = (len(names) / experiments, low, high)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--visitors", type=int, default=80, help="per arm per day")
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"| counting | analysis | A/A experiments ever significant (looked at daily for "
        f"{args.days} days, {args.visitors} visitors per arm per day) | target |"
    )
    print("|---|---|---|---|")
    for counting in ("exact", "hll"):
        found = run(counting, args.experiments, args.days, args.visitors, args.rate, args.seed)
        for method, target in (("fixed", "far above 5%"), ("sequential", "≤ 5%")):
            share, low, high = found[method]
            print(
                f"| {counting} | {method} | {share:.1%} [{low:.1%}, {high:.1%}] of "
                f"{args.experiments} | {target} |"
            )
        print(f"  ({counting}: {found['elapsed_s']:.0f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
