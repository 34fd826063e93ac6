"""Sample-ratio mismatch checked every hour, measured: silent on a correct split for a month,
and quicker to see a broken one than a daily fixed test.

    python -m bench.srm [--quick] [--seed 1]

Every simulated experiment is declared with a plan (``PUT /experiments/<name>``, its weights
included), its participants are tracked through the app (``POST /track`` batches, the app's
clock moved hour by hour: ``create_app(clock=...)``), and at the end of every hour its
counts are read back from Redis in one round trip for all of them
(``Experiments.counts``, what a watcher reads), the declared split taken from the stored
plan (``stats.expected_split``). Counting is ``exact``. Each hour's participants per
experiment are Poisson around ``per_day / 24``, assigned to variants at random with the
true shares. Each replicate is its own experiment, many run side by side in one Redis;
two processes (one per core) each drive their own redis-server.

Three tests look at the same counts:

- the always-valid test (:func:`gimel_core.stats.sequential_srm_p_value`), every hour, its
  running p-value passed from look to look, an alert once it is below ``SRM_ALPHA`` (0.1%);
- the same with the Dirichlet concentration of the paper's reference implementation
  (10,000), for comparison;
- the fixed chi-square (:func:`gimel_core.stats.srm_p_value`) once a day, at the end of each
  UTC day, an alert below ``SRM_ALPHA``.

The figures: A/A (declared split = true split), hourly for 30 days: the share of
experiments with any false alert, with its 95% Wilson interval (2 variants 50/50 at 200
participants a day, the hourly looks nearly one per participant, and 3 variants declared
1:1:2 at 2,000 a day); a 45/55 split on a declared 50/50 at 2,000 participants a day: hours
to the first alert, the median with its 95% order-statistic interval, the hour by which 90%
had alerted and the share found within a day, each test beside the others. The daily test's
one look at 24 hours is the stronger single look, so it finds more within the first day
(89% against 66%), but the rest wait a whole day more: the hourly test's median (20 hours)
and 90th percentile (36 against 48) come first. The full run took about 9 minutes on the
shared 2-core machine (the 2-variant A/A 5 of them); ``--quick`` (no 3-variant A/A) 10 to
25 seconds.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from flask import Flask
from flask.testing import FlaskClient

from gimel_core import create_app, defaults, stats
from gimel_core.embedded import EmbeddedRedis

from .group_sequential import median_interval
from .peeking import API_KEY, AUTH, SIMULATION_HEAD, START, simulation_row, wilson

HOUR = 3_600
BATCH = 10_000
"""Events per ``POST /track`` (the most the config allows: fewer requests, same path)."""
WORKERS = 2
R = TypeVar("R")
REFERENCE_CONCENTRATION = 10_000.0
"""The Dirichlet concentration ssrm-test (the paper's reference implementation) defaults to."""


@dataclass(frozen=True)
class Study:
    """One kind of simulated experiment, replicated."""

    name: str
    weights: tuple[float, ...]
    """The declared split (the plan's weights)."""
    shares: tuple[float, ...]
    """The true chance of each variant for a new participant."""
    per_day: int
    """Participants a day, all variants together (the mean: Poisson each hour)."""
    hours: int
    """Hours simulated at most; an experiment stops once every test has alerted."""
    wave: int = 250
    """Experiments side by side in one Redis."""
    rate: float = 0.0
    """The chance a participant converts on each goal, the same in every variant."""
    goals: tuple[str, ...] = ("signup",)

    @property
    def variants(self) -> list[str]:
        return [f"v{i}" for i in range(len(self.weights))]

    def plan(self) -> dict[str, Any]:
        return {
            "variants": self.variants,
            "control": self.variants[0],
            "goals": list(self.goals),
            "weights": dict(zip(self.variants, self.weights, strict=True)),
        }


@dataclass(frozen=True)
class Outcome:
    """One replicate: the hour (1-based, counted from the start) of each test's first alert,
    None if it never alerted."""

    sequential: int | None
    reference: int | None
    fixed: int | None


def bench_app(redis_url: str, clock: dict[str, float]) -> Flask:
    """The app every simulated experiment is declared and tracked through: exact counting,
    big batches, its clock ``clock["now"]`` (moved by the simulation)."""
    return create_app(
        {
            "redis_url": redis_url,
            "api_keys": (API_KEY,),
            "counting": "exact",
            "registration": "declared",
            "max_experiments": 100_000,
            "batch_max_events": BATCH,
            "batch_max_bytes": 6_000_000,
            "source_budget": 0,  # one client stands for every visitor
            "redis_timeout": 10.0,
        },
        clock=lambda: clock["now"],
    )


def declare(client: FlaskClient, study: Study, names: list[str]) -> None:
    """Each of ``names`` declared with the study's plan, through ``PUT /experiments/<name>``."""
    for name in names:
        answer = client.put(f"/experiments/{name}", json=study.plan(), headers=AUTH)
        assert answer.status_code in (200, 201), answer.get_json()


def track_hour(
    client: FlaskClient, study: Study, names: list[str], hour: int, rng: np.random.Generator
) -> list[int]:
    """One hour's participants of each of ``names`` (Poisson around ``per_day / 24``, each
    variant drawn with the true shares, each converting on each goal with the study's
    ``rate``), tracked through ``POST /track``; returns how many participants each got."""
    events: list[dict[str, str]] = []
    arrivals = rng.poisson(study.per_day / 24, len(names))
    for name, n in zip(names, arrivals, strict=True):
        split = rng.multinomial(n, study.shares)
        i = 0
        for variant, count in zip(study.variants, split, strict=True):
            one = {"experiment": name, "variant": variant, "event": "participate"}
            uuids = [f"{hour}.{i + j}" for j in range(count)]
            events += [{**one, "uuid": uuid} for uuid in uuids]
            for goal in study.goals if study.rate else ():
                converted = rng.random(count) < study.rate
                done = {**one, "event": goal}
                events += [{**done, "uuid": u} for u, c in zip(uuids, converted, strict=True) if c]
            i += count
    for start in range(0, len(events), BATCH):
        answer = client.post("/track", json=events[start : start + BATCH])
        assert answer.status_code == 200, answer.get_json()
    return [int(n) for n in arrivals]


def simulate(study: Study, replicates: int, seed: int, tag: str) -> list[Outcome]:
    """Replicates of ``study`` on a redis-server of their own, in waves side by side."""
    rng = np.random.default_rng(seed)
    clock = {"now": float(START)}
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = bench_app(server.url, clock)
            for first in range(0, replicates, study.wave):
                names = [f"{tag}-{i}" for i in range(first, min(replicates, first + study.wave))]
                outcomes += _wave(study, names, rng, app, clock)
        finally:
            server.stop()
    return outcomes


def _wave(
    study: Study, names: list[str], rng: np.random.Generator, app: Flask, clock: dict
) -> list[Outcome]:
    client = app.test_client()
    experiments = app.extensions["gimel"].experiments
    clock["now"] = float(START + 60)
    declare(client, study, names)
    sent = dict.fromkeys(names, 0)
    running = {name: {"sequential": 1.0, "reference": 1.0} for name in names}
    first: dict[str, dict[str, int]] = {name: {} for name in names}
    active = list(names)
    for hour in range(study.hours):
        clock["now"] = float(START + hour * HOUR + 60)
        for name, n in zip(active, track_hour(client, study, active, hour, rng), strict=True):
            sent[name] += n
        clock["now"] = float(START + (hour + 1) * HOUR)  # the look at the end of the hour
        for counts in experiments.counts(defaults.NAMESPACE, active):
            name = counts.name
            expected = stats.expected_split(counts.participants, counts.settings.weights)
            observed = [counts.participants.get(v, 0) for v in expected]
            weights = list(expected.values())
            assert sum(observed) == sent[name], (name, observed, sent[name])
            alerts = first[name]
            for test, concentration in (
                ("sequential", stats.SRM_CONCENTRATION),
                ("reference", REFERENCE_CONCENTRATION),
            ):
                p = stats.sequential_srm_p_value(
                    observed, weights, running[name][test], concentration
                )
                running[name][test] = running[name][test] if p is None else p
                if running[name][test] < stats.SRM_ALPHA:
                    alerts.setdefault(test, hour + 1)
            if (hour + 1) % 24 == 0:  # the end of a UTC day: the daily fixed test
                p = stats.srm_p_value(observed, weights)
                if p is not None and p < stats.SRM_ALPHA:
                    alerts.setdefault("fixed", hour + 1)
        active = [name for name in active if len(first[name]) < 3]
        if not active:
            break
    for name in names:
        assert client.delete(f"/experiments/{name}", headers=AUTH).status_code == 200
    return [
        Outcome(first[n].get("sequential"), first[n].get("reference"), first[n].get("fixed"))
        for n in names
    ]


def run(
    study: Study,
    replicates: int,
    seed: int,
    simulation: Callable[[Study, int, int, str], list[R]],
) -> tuple[list[R], float]:
    """All replicates, split over the cores, each run by ``simulation`` (this module's, or the
    watcher's); and the wall time taken."""
    started = time.perf_counter()
    shares = [replicates // WORKERS + (w < replicates % WORKERS) for w in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS) as pool:
        parts = [
            pool.submit(simulation, study, n, seed * 1_000 + w, f"{study.name}-{w}")
            for w, n in enumerate(shares)
        ]
        outcomes = [o for part in parts for o in part.result()]
    return outcomes, time.perf_counter() - started


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


def share_text(hits: int, n: int) -> str:
    """A share as printed, with its 95% Wilson interval."""
    low, high = wilson(hits, n)
    return f"{hits / n:.2%} [{low:.2%}, {high:.2%}]"


def hours_to_alert(values: list[float]) -> tuple[float, str]:
    """The median hours with its interval, the hours by which 90% alerted, and the share
    that alerted within the first day."""
    median, low, high = median_interval(values)
    ninetieth = sorted(values)[math.ceil(0.9 * len(values)) - 1]
    shown = ["never" if math.isinf(v) else f"{v:g} h" for v in (median, low, high, ninetieth)]
    within = sum(v <= 24 for v in values)
    return median, (
        f"{shown[0]} [{shown[1]}, {shown[2]}], 90% by {shown[3]}, "
        f"{share_text(within, len(values))} within a day"
    )


def hour_or_never(found: int | None) -> float:
    """An alert's hour, inf for none: what :func:`hours_to_alert` orders."""
    return math.inf if found is None else float(found)


QUICK = {"aa": 20, "aa3": 0, "mismatch": 60}
FULL = {"aa": 600, "aa3": 60, "mismatch": 600}
DAYS = 30


def measure(replicates: dict[str, int], seed: int = 1) -> Iterator[Figure]:
    """Every figure, with its replicates, interval, target and time, each as soon as it is
    measured (a study given no replicates is left out)."""
    for key, study, judged in (
        # 200 a day: about 8 participants between looks, close to a look at every one.
        ("aa", Study("aa", (1, 1), (0.5, 0.5), 200, DAYS * 24, wave=300), "interval"),
        ("aa3", Study("aa3", (1, 1, 2), (0.25, 0.25, 0.5), 2_000, DAYS * 24), "estimate"),
    ):
        if not replicates[key]:
            continue
        outcomes, s = run(study, replicates[key], seed, simulate)
        n = len(outcomes)
        hits = sum(o.sequential is not None for o in outcomes)
        daily_hits = sum(o.fixed is not None for o in outcomes)
        low, high = wilson(hits, n)
        split = "/".join(f"{w / sum(study.weights):.0%}" for w in study.weights)
        yield Figure(
            f"A/A, {len(study.weights)} variants declared {split} at {study.per_day:,} "
            f"participants a day, hourly checks for {DAYS} days: experiments with a false "
            "SRM alert (the daily fixed chi-square on the same counts: "
            f"{share_text(daily_hits, n)})",
            n,
            share_text(hits, n),
            "≤ 1%, upper ≤ 1%" if judged == "interval" else "≤ 1% (the estimate)",
            high <= 0.01 if judged == "interval" else hits / n <= 0.01,
            hits / n <= 0.01,
            s,
        )
    study = Study("mismatch", (1, 1), (0.45, 0.55), 2_000, 10 * 24, wave=300)
    outcomes, s = run(study, replicates["mismatch"], seed, simulate)
    n = len(outcomes)
    sequential = [hour_or_never(o.sequential) for o in outcomes]
    reference = [hour_or_never(o.reference) for o in outcomes]
    fixed = [hour_or_never(o.fixed) for o in outcomes]
    ours, ours_text = hours_to_alert(sequential)
    _, reference_text = hours_to_alert(reference)
    daily, fixed_text = hours_to_alert(fixed)
    _, _, ours_high = median_interval(sequential)
    _, daily_low, _ = median_interval(fixed)
    yield Figure(
        "45/55 on a declared 50/50, 2,000 participants a day: hours to the SRM alert, "
        "median [95% interval]: always-valid test checked hourly; beside it the daily fixed "
        "chi-square at p < 0.001, and the always-valid test with the reference "
        "implementation's concentration (10,000)",
        n,
        f"{ours_text}; daily chi-square {fixed_text}; concentration 10,000 {reference_text}",
        "faster than the daily chi-square",
        ours_high < daily_low,
        ours < daily,
        s,
    )


def simulation_main(
    doc: str, measure: Callable[..., Iterator[Figure]], quick: Any, full: Any
) -> None:
    """The command line of a simulation bench (this one, ``bench.watch``): its table, each
    row judged on its estimate with ``--quick``, then the time it all took."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    print(SIMULATION_HEAD)
    for f in measure(quick if args.quick else full, args.seed):
        ok = f.reached if args.quick else f.ok
        row = simulation_row(f.figure, f.replicates, f.measured, f.target, ok, f.seconds)
        print(row, flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def main() -> None:
    simulation_main(__doc__ or "", measure, QUICK, FULL)


if __name__ == "__main__":
    main()
