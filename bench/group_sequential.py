"""Group-sequential plans, measured: honest at every daily look, and decided in few participants.

    python -m bench.group_sequential [--quick] [--seed 1]

Every simulated experiment is declared with a plan (``PUT /experiments/<name>``), its visitors
are tracked through the app (``POST /track`` batches, the app's clock moved day by day:
``create_app(clock=...)``), and its decision (``decision.kind``) is read through
``GET /experiments/<name>`` every morning, after the clock has moved into the next day and
before that day's events, as a team opening its dashboard would. Looks are the closed days.
Counting is ``exact``; conversions are 10%. Each replicate is its own experiment, many run
side by side in one Redis and are deleted once settled; two processes (one per core) each
drive their own redis-server.

The figures (the group-sequential plan is ``{"planned_participants": N, "analysis":
"group_sequential"}`` with O'Brien-Fleming spending):

- A/A, planned, 80 visitors per arm a day, 25 daily looks to the planned 4,000: share with a
  ``ship`` or ``keep_control`` at any look; the same experiments run on to twice their size
  (50 looks: past the plan the final look's decision stands); and planned experiments whose
  days have gaps (30% of days without traffic, so without a look) and uneven traffic
  (40-120 visitors per arm on the others).
- A/A, unplanned (the confidence sequence, ``sequential``), 30 daily looks.
- Power: +5% relative on 10% at the fixed-horizon 80% size (``participants_needed`` of
  :mod:`gimel_core.stats.power`, about 58k per arm), planned at that size with 25 daily looks:
  share of runs that ship the variant by the planned size; and the median participants to
  that ``ship`` as a multiple of the fixed-horizon size, runs going on to 1.5 times the plan
  (one that never ships counts as never).
- A/A with 3 primary goals and 3 variants (2 challengers), 25 daily looks: share with a
  false ``ship``.

Each share has its 95% Wilson interval, the median its 95% order-statistic interval; replicate
counts are chosen so the interval is narrower than its gap to the target. The planned A/A
shares may reach the design's alpha (5%), so their target is the issue's: share at most 5% and
upper bound at most 6% (2,000 replicates). About 85M events; on the 2-core machine, shared,
the full run took about 45 minutes (planned A/A 4 min, with gaps 6 min, power over 20: there
Redis, keeping every uuid for the experiment's life, takes as much CPU as the app);
``--quick`` (what ``python -m bench`` runs), 4 to 5 minutes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gimel_core import create_app
from gimel_core.embedded import EmbeddedRedis
from gimel_core.stats.power import Design, participants_needed
from gimel_core.vocabulary import Analysis

from .peeking import API_KEY, AUTH, SIMULATION_HEAD, START, simulation_row, wilson

DAY = 86_400
RATE = 0.1
LIFT = 0.05
BATCH = 10_000
"""Events per ``POST /track`` (the most the config allows: fewer requests, same path)."""
WORKERS = 2
PLANNED = "group_sequential"
UNPLANNED = "sequential"
DECIDED = {"ship", "keep_control"}


def fixed_size() -> int:
    """Participants (both arms) the fixed-horizon test needs for 80% power on +5% of 10%."""
    needed = participants_needed(Design(mean=RATE, analysis=Analysis.FIXED), LIFT)
    assert needed is not None
    return needed


@dataclass(frozen=True)
class Study:
    """One kind of simulated experiment, replicated."""

    name: str
    variants: tuple[str, ...]
    goals: tuple[str, ...]
    lift: float
    """Relative lift of every challenger on every goal (0: A/A)."""
    planned: int | None
    """Planned participants over all variants; None: unplanned (confidence sequence)."""
    per_day: int
    """Visitors per variant on a day with traffic (the mean when ``uneven``)."""
    days: int
    """Calendar days simulated at most."""
    gaps: float = 0.0
    """Chance that a day has no traffic."""
    uneven: bool = False
    """Visitors per variant on a traffic day drawn from per_day / 2 to 3 per_day / 2."""
    wave: int = 500
    """Experiments side by side in one Redis."""

    def plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "variants": list(self.variants),
            "control": self.variants[0],
            "goals": list(self.goals),
        }
        if self.planned is None:
            return {**plan, "analysis": UNPLANNED}
        return {**plan, "planned_participants": self.planned, "analysis": PLANNED}

    def traffic(self, rng: np.random.Generator) -> list[int]:
        """Visitors per variant on each day."""
        out = []
        for _ in range(self.days):
            if rng.random() < self.gaps:
                out.append(0)
            elif self.uneven:
                out.append(int(rng.integers(self.per_day // 2, 3 * self.per_day // 2 + 1)))
            else:
                out.append(self.per_day)
        return out


@dataclass(frozen=True)
class Outcome:
    """One replicate: its first decision other than waiting, and when it came."""

    kind: str | None
    variant: str | None
    participants: int | None
    """Participants over all variants at the look that decided."""
    look: int | None
    """Looks (days with traffic) taken up to the deciding one."""


def simulate(study: Study, replicates: int, seed: int, tag: str) -> list[Outcome]:
    """Replicates of ``study`` on a redis-server of their own, in waves side by side."""
    rng = np.random.default_rng(seed)
    clock = {"now": float(START)}
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = create_app(
                {
                    "redis_url": server.url,
                    "api_keys": (API_KEY,),
                    "counting": "exact",
                    "registration": "declared",
                    "max_experiments": 100_000,
                    "batch_max_events": BATCH,
                    "batch_max_bytes": 6_000_000,
                    # A 10,000-event batch or a large experiment's delete can take longer
                    # than the default 0.4 s on two cores shared with the other server.
                    "redis_timeout": 10.0,
                },
                clock=lambda: clock["now"],
            )
            client = app.test_client()
            for first in range(0, replicates, study.wave):
                names = [f"{tag}-{i}" for i in range(first, min(replicates, first + study.wave))]
                outcomes += _wave(study, names, rng, client, clock)
        finally:
            server.stop()
    return outcomes


def _wave(
    study: Study, names: list[str], rng: np.random.Generator, client: Any, clock: dict
) -> list[Outcome]:
    # Each wave starts on day 0: an experiment declared on a later day would take every event
    # of the wave's earlier days as late, and none of them would close a day (a look).
    clock["now"] = float(START + 3_600)
    for name in names:
        answer = client.put(f"/experiments/{name}", json=study.plan(), headers=AUTH)
        assert answer.status_code in (200, 201), answer.get_json()
    traffic = {name: study.traffic(rng) for name in names}
    looks = dict.fromkeys(names, 0)
    found: dict[str, Outcome] = {}
    rates = [RATE] + [RATE * (1 + study.lift)] * (len(study.variants) - 1)
    for day in range(study.days + 1):
        clock["now"] = float(START + day * DAY + 3_600)
        if day:  # the morning look at yesterday, a closed day
            for name in [n for n in names if n not in found]:
                looks[name] += traffic[name][day - 1] > 0  # a day without traffic is no look
                answer = client.get(f"/experiments/{name}", headers=AUTH)
                assert answer.status_code == 200, answer.get_json()
                body = answer.get_json()
                decision = body["decision"]
                if decision["kind"] in DECIDED:
                    total = sum(body["participants"].values())
                    found[name] = Outcome(decision["kind"], decision["variant"], total, looks[name])
                    assert client.delete(f"/experiments/{name}", headers=AUTH).status_code == 200
        if day == study.days or len(found) == len(names):
            break
        events: list[dict[str, str]] = []
        for name in names:
            visitors = 0 if name in found else traffic[name][day]
            if not visitors:
                continue
            for variant, rate in zip(study.variants, rates, strict=True):
                one = {"experiment": name, "variant": variant}
                uuids = [f"{day}.{variant}.{i}" for i in range(visitors)]
                events += [{**one, "uuid": u, "event": "participate"} for u in uuids]
                for goal in study.goals:  # which visitors convert does not matter, how many do
                    converted = int(rng.binomial(visitors, rate))
                    events += [{**one, "uuid": u, "event": goal} for u in uuids[:converted]]
        for start in range(0, len(events), BATCH):
            answer = client.post("/track", json=events[start : start + BATCH])
            assert answer.status_code == 200, answer.get_json()
    for name in names:
        if name not in found:
            assert client.delete(f"/experiments/{name}", headers=AUTH).status_code == 200
    return [found.get(name, Outcome(None, None, None, None)) for name in names]


def run(study: Study, replicates: int, seed: int) -> tuple[list[Outcome], float]:
    """All replicates, split over the cores; and the wall time taken."""
    started = time.perf_counter()
    shares = [replicates // WORKERS + (w < replicates % WORKERS) for w in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS) as pool:
        parts = [
            pool.submit(simulate, study, n, seed * 1_000 + w, f"{study.name}-{w}")
            for w, n in enumerate(shares)
        ]
        outcomes = [o for part in parts for o in part.result()]
    return outcomes, time.perf_counter() - started


def median_interval(values: list[float], z: float = 1.959964) -> tuple[float, float, float]:
    """The median and its 95% distribution-free interval (order statistics, normal
    approximation to the binomial ranks); inf for values beyond every run."""
    ordered = sorted(values)
    n = len(ordered)
    low = max(0, math.floor(n / 2 - z * math.sqrt(n) / 2) - 1)
    high = min(n - 1, math.ceil(n / 2 + z * math.sqrt(n) / 2))
    return statistics.median(ordered), ordered[low], ordered[high]


def _times(multiple: float) -> str:
    return "never" if math.isinf(multiple) else f"{multiple:.2f}x"


@dataclass(frozen=True)
class Figure:
    figure: str
    replicates: int
    measured: str
    target: str
    ok: bool
    """The interval meets the target."""
    reached: bool
    """The estimate meets it (what a quick run, with its wide intervals, can check)."""
    seconds: float


def _share(
    label: str, hits: int, n: int, target: str, ok: Callable[[float, float, float], bool], s: float
) -> Figure:
    low, high = wilson(hits, n)
    measured = f"{hits / n:.1%} [{low:.1%}, {high:.1%}]"
    share = hits / n
    return Figure(label, n, measured, target, ok(share, low, high), ok(share, share, share), s)


def _at_most(limit: float) -> Callable[[float, float, float], bool]:
    return lambda share, low, high: high <= limit


def _planned_ok(share: float, low: float, high: float) -> bool:
    return share <= 0.05 and high <= 0.06


QUICK = {"daily": 200, "gaps": 200, "unplanned": 100, "power": 40, "goals": 150}
FULL = {"daily": 2_000, "gaps": 2_000, "unplanned": 1_500, "power": 800, "goals": 800}


PLANNED_AA = (
    "A/A, planned (group-sequential), 25 daily looks to the planned 4,000: false "
    "`ship` or `keep_control` at any look"
)


def planned_aa(replicates: int, seed: int) -> Figure:
    """The planned A/A figure alone, each experiment stopped at its plan (the 25th look):
    what ``--aa N`` runs, to narrow that figure's interval with more replicates."""
    aa = Study("daily", ("a", "b"), ("signup",), 0.0, 4_000, 80, 25)
    outcomes, s = run(aa, replicates, seed)
    hits = sum(o.kind in DECIDED for o in outcomes)
    return _share(PLANNED_AA, hits, len(outcomes), "≤ 5%, upper ≤ 6%", _planned_ok, s)


def measure(replicates: dict[str, int], seed: int = 1) -> Iterator[Figure]:
    """Every figure of the table, with its replicates, interval, target and time, each as
    soon as it is measured."""
    aa = Study("daily", ("a", "b"), ("signup",), 0.0, 4_000, 80, 50)
    outcomes, s = run(aa, replicates["daily"], seed)
    n = len(outcomes)
    in_plan = sum(o.kind in DECIDED and (o.look or 0) <= 25 for o in outcomes)
    anywhere = sum(o.kind in DECIDED for o in outcomes)
    yield _share(PLANNED_AA, in_plan, n, "≤ 5%, upper ≤ 6%", _planned_ok, s)
    past = _share(
        "same experiments run on to 2x the plan (50 looks)",
        anywhere,
        n,
        "≤ 5%, upper ≤ 6%",
        _planned_ok,
        0.0,
    )
    yield replace(past, measured=f"{past.measured}; {anywhere - in_plan} past the plan")
    gaps = Study("gaps", ("a", "b"), ("signup",), 0.0, 4_000, 80, 60, gaps=0.3, uneven=True)
    outcomes, s = run(gaps, replicates["gaps"], seed)
    yield _share(
        "A/A, planned, days with gaps (30% without traffic) and uneven traffic, 60 days",
        sum(o.kind in DECIDED for o in outcomes),
        len(outcomes),
        "≤ 5%, upper ≤ 6%",
        _planned_ok,
        s,
    )
    unplanned = Study("unplanned", ("a", "b"), ("signup",), 0.0, None, 80, 30)
    outcomes, s = run(unplanned, replicates["unplanned"], seed)
    yield _share(
        "A/A, unplanned (confidence sequence), 30 daily looks",
        sum(o.kind in DECIDED for o in outcomes),
        len(outcomes),
        "≤ 5%",
        _at_most(0.05),
        s,
    )
    size = fixed_size()
    per_day = math.ceil(size / 2 / 25)
    power = Study("power", ("a", "b"), ("signup",), LIFT, size, per_day, 38, wave=60)
    outcomes, s = run(power, replicates["power"], seed)
    n = len(outcomes)
    shipped = [o for o in outcomes if o.kind == "ship" and o.variant == "b"]
    yield _share(
        f"power at the fixed-horizon 80% size ({size:,}), +5% on 10%, 25 daily looks: "
        "ships the variant by the plan",
        sum((o.look or 0) <= 25 for o in shipped),
        n,
        "≥ 75%",
        lambda share, low, high: low >= 0.75,
        s,
    )
    multiples = [o.participants / size if o.participants else math.inf for o in shipped]
    multiples += [math.inf] * (n - len(shipped))
    median, low, high = median_interval(multiples)
    yield Figure(
        "median participants to a correct `ship`, runs going on to 1.5x the plan "
        "(never: never), as a multiple of the fixed-horizon size",
        n,
        f"{_times(median)} [{_times(low)}, {_times(high)}]; "
        f"{sum((o.look or 0) > 25 for o in shipped)} shipped past the plan",
        "≤ 1.0x",
        high <= 1.0,
        median <= 1.0,
        0.0,
    )
    goals = Study("goals", ("a", "b", "c"), ("g1", "g2", "g3"), 0.0, 6_000, 80, 25)
    outcomes, s = run(goals, replicates["goals"], seed)
    yield _share(
        "A/A, 3 primary goals, 2 challengers, planned, 25 daily looks: false `ship`",
        sum(o.kind == "ship" for o in outcomes),
        len(outcomes),
        "≤ 5%",
        _at_most(0.05),
        s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates (python -m bench)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--aa", type=int, metavar="N", help="only the planned A/A figure, over N replicates"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(SIMULATION_HEAD)
    figures = (
        iter([planned_aa(args.aa, args.seed)])
        if args.aa
        else measure(QUICK if args.quick else FULL, args.seed)
    )
    for f in figures:
        row = simulation_row(f.figure, f.replicates, f.measured, f.target, f.ok, f.seconds)
        print(row, flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
