"""The watcher, measured: hourly checks that stay quiet on A/A experiments for a month, see a
broken split sooner than a daily test, and a pass over 1,000 experiments in little time.

    python -m bench.watch [--quick] [--seed 1]

Every simulated experiment is declared with a plan and tracked through the app as
:mod:`bench.srm` does (``PUT /experiments/<name>``, ``POST /track`` batches, the app's clock
moved hour by hour: :func:`bench.srm.track_hour`), counting ``exact``. At the end of every
simulated hour a real :class:`gimel_core.watch.Watcher` makes one pass over every experiment
in that Redis (no destination: the alerts are announced and kept, nothing is sent), and at
the end of every day what it announced is read back with ``Watcher.log`` (what ``GET
/experiments/<name>/alerts`` answers): the first ``decided`` alert and the first ``srm`` one,
each at the hour it was made. The daily fixed chi-square (:func:`gimel_core.stats.srm_p_value`
at p < 0.001) is taken on the same counts at the end of each day, for comparison. Two
processes (one per core) each drive their own redis-server.

The figures, each share with its 95% Wilson interval:

- A/A, 2 variants 50/50 at 300 participants a day, 10% converting on the one goal, declared
  with no size (the default sequential analysis), for 30 days (about 4,500 per arm at the
  end): the share of experiments with any ``decided`` alert that ships a variant or keeps
  the control (target: at most 5%, upper bound at most 6%), and, on the same experiments,
  the share with any ``srm`` alert (target: at most 1%);
- a 45/55 split on a declared 50/50 at 2,000 participants a day: hours to the watcher's SRM
  alert, median with its 95% order-statistic interval, beside the daily fixed chi-square;
- a pass over 100 and 1,000 declared experiments (2 or 3 variants, 2 or 3 goals, three days
  of history, every one changed since the last pass, as each hour's pass finds them): its
  wall time and this process's CPU time, and its Redis round trips per chunk of
  :data:`gimel_core.watch.CHUNK` experiments (every ``send_packed_command``: one per command
  or pipeline).

The A/A share of false decisions measured 6.20% [5.22%, 7.34%] of 2,000 runs (``--seed 3``)
while a look counted from the first participants on: the confidence sequence's guarantee is
asymptotic, and hourly looks read it on a handful of conversions. With a look counting only
once both arms have 100 participants and 25 conversions
(:data:`gimel_core.defaults.MIN_CONVERSIONS`), the same runs measured 4.35% [3.54%, 5.33%]
(1,076 s in all on the 2-core machine).
``--quick`` takes about a minute and a half.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gimel_core import defaults, stats, watch
from gimel_core.embedded import EmbeddedRedis
from gimel_core.vocabulary import AlertKind, DecisionKind
from gimel_core.watch import Watcher

from .dashboard import counted_round_trips
from .group_sequential import median_interval
from .peeking import AUTH, START, wilson
from .srm import (
    HOUR,
    Figure,
    Study,
    bench_app,
    declare,
    hour_or_never,
    hours_to_alert,
    run,
    share_text,
    simulation_main,
    track_hour,
)

DAYS = 30
FALSE_DECISIONS = frozenset({DecisionKind.SHIP, DecisionKind.KEEP_CONTROL})


@dataclass(frozen=True)
class Outcome:
    """One replicate: the hour (1-based, from the start) of the watcher's first false
    ``decided`` alert, of its first ``srm`` alert, and of the daily chi-square's first
    p < 0.001; None: never."""

    decided: int | None
    srm: int | None
    fixed: int | None


def simulate(study: Study, replicates: int, seed: int, tag: str) -> list[Outcome]:
    """Replicates of ``study`` side by side on a redis-server of their own, a watcher pass
    every hour; an experiment stops (and is deleted) once its SRM was seen by both tests."""
    rng = np.random.default_rng(seed)
    clock = {"now": float(START + 60)}
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = bench_app(server.url, clock)
            client = app.test_client()
            experiments = app.extensions["gimel"].experiments
            watcher = Watcher(experiments)
            names = [f"{tag}-{i}" for i in range(replicates)]
            declare(client, study, names)
            first: dict[str, dict[str, int]] = {name: {} for name in names}
            active = list(names)
            for hour in range(study.hours):
                clock["now"] = float(START + hour * HOUR + 60)
                track_hour(client, study, active, hour, rng)
                clock["now"] = float(START + (hour + 1) * HOUR)  # the pass at the end of the hour
                report = watcher.run()
                assert not report.errors, report.line()
                if (hour + 1) % 24 and hour + 1 < study.hours:
                    continue
                for counts in experiments.counts(defaults.NAMESPACE, active):
                    expected = stats.expected_split(counts.participants, counts.settings.weights)
                    observed = [counts.participants.get(v, 0) for v in expected]
                    p = stats.srm_p_value(observed, list(expected.values()))
                    if p is not None and p < stats.SRM_ALPHA:
                        first[counts.name].setdefault("fixed", hour + 1)
                for name in active:
                    _announced(watcher, name, first[name])
                done = [n for n in active if "srm" in first[n] and "fixed" in first[n]]
                for name in done:
                    assert client.delete(f"/experiments/{name}", headers=AUTH).status_code == 200
                active = [name for name in active if name not in done]
                if not active:
                    break
        finally:
            server.stop()
    return [Outcome(f.get("decided"), f.get("srm"), f.get("fixed")) for f in first.values()]


def _announced(watcher: Watcher, name: str, first: dict[str, int]) -> None:
    """The hours of the first false decision and the first SRM alert the watcher announced."""
    for alert in watcher.log(defaults.NAMESPACE, name)["alerts"]:
        hour = (alert["created"] - START) // HOUR
        if alert["kind"] == AlertKind.SRM:
            first.setdefault("srm", hour)
        elif alert["kind"] == AlertKind.DECIDED and alert["decision"] in FALSE_DECISIONS:
            first.setdefault("decided", hour)


PASS_SIZES = (100, 1_000)
PASSES = 3
"""Passes timed at each size, an hour apart (the median is printed)."""


def pass_figures(experiments: int, days: int = 3, per_day: int = 120, seed: int = 1) -> Pass:
    """Passes over ``experiments`` declared experiments with ``days`` of history, each an
    hour after the last, every experiment changed in between (nothing cached)."""
    rng = np.random.default_rng(seed)
    clock = {"now": float(START + 60)}
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder).start()
        try:
            app = bench_app(server.url, clock)
            client = app.test_client()
            studies = [_realistic(e, per_day) for e in range(experiments)]
            for study in studies:
                answer = client.put(f"/experiments/{study.name}", json=_plan(study), headers=AUTH)
                assert answer.status_code in (200, 201), answer.get_json()
            watcher = Watcher(app.extensions["gimel"].experiments)
            seconds, cpu, round_trips = [], [], []
            for hour in range(days * 24 + PASSES):
                clock["now"] = float(START + hour * HOUR + 60)
                for group in _alike(studies):
                    track_hour(client, group[0], [s.name for s in group], hour, rng)
                clock["now"] = float(START + (hour + 1) * HOUR)
                if hour == days * 24 - 1:
                    watcher.run()  # the pass before: what the watcher remembers, scripts loaded
                if hour < days * 24:
                    continue
                with counted_round_trips() as calls:
                    started, used = time.perf_counter(), time.process_time()
                    report = watcher.run()
                    seconds.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - used)
                round_trips.append(calls[0])
                assert not report.errors and report.experiments == experiments, report.line()
        finally:
            server.stop()
    return Pass(experiments, statistics.median(seconds), statistics.median(cpu), max(round_trips))


@dataclass(frozen=True)
class Pass:
    experiments: int
    seconds: float
    """The median pass's wall time."""
    cpu: float
    """The median pass's CPU time in this process (redis-server's not included)."""
    round_trips: int
    """The most any pass made."""

    @property
    def chunks(self) -> int:
        return math.ceil(self.experiments / watch.CHUNK)


def _realistic(e: int, per_day: int) -> Study:
    """The ``e``-th experiment of the pass: 2 or 3 variants, 2 or 3 goals, 5% converting."""
    variants = 2 + e % 2
    goals = ("signup", "purchase", "errors")[: 2 + e % 3 // 2]
    even = (1 / variants,) * variants
    return Study(f"pass-{e}", (1,) * variants, even, per_day, 0, rate=0.05, goals=goals)


def _plan(study: Study) -> dict[str, Any]:
    """The study's plan with a primary goal, a secondary one and maybe a guardrail."""
    plan = study.plan()
    plan["goals"][1:] = [
        {"name": "purchase", "role": "secondary"},
        {"name": "errors", "role": "guardrail", "direction": "decrease"},
    ][: len(study.goals) - 1]
    return plan


def _alike(studies: list[Study]) -> list[list[Study]]:
    """The studies grouped by their variants and goals (one ``track_hour`` each)."""
    groups: dict[tuple[int, tuple[str, ...]], list[Study]] = {}
    for study in studies:
        groups.setdefault((len(study.weights), study.goals), []).append(study)
    return list(groups.values())


AA = Study("aa", (1, 1), (0.5, 0.5), 300, DAYS * 24, rate=0.1)
"""300 participants a day, 10% converting: about 4,500 per arm after 30 days."""
MISMATCH = Study("mismatch", (1, 1), (0.45, 0.55), 2_000, 10 * 24)
QUICK = {"aa": 40, "mismatch": 60}
FULL = {"aa": 2000, "mismatch": 600}


def measure(replicates: dict[str, int], seed: int = 1) -> Iterator[Figure]:
    """Every figure, each as soon as it is measured."""
    outcomes, s = run(AA, replicates["aa"], seed, simulate)
    n = len(outcomes)
    decided = sum(o.decided is not None for o in outcomes)
    low, high = wilson(decided, n)
    yield Figure(
        f"A/A, 2 variants 50/50 at {AA.per_day} participants a day, {AA.rate:.0%} converting,"
        f" declared with no size (sequential analysis), a watcher pass every hour for {DAYS}"
        " days: experiments with a false `decided` alert (`ship` or `keep_control`)",
        n,
        share_text(decided, n),
        "≤ 5%, upper ≤ 6%",
        decided / n <= 0.05 and high <= 0.06,
        decided / n <= 0.05,
        s,
    )
    srm = sum(o.srm is not None for o in outcomes)
    fixed = sum(o.fixed is not None for o in outcomes)
    yield Figure(
        "the same A/A experiments (split correct): experiments with a false `srm` alert from"
        f" the hourly watcher (the daily fixed chi-square at p < 0.001: {share_text(fixed, n)})",
        n,
        share_text(srm, n),
        "≤ 1%",
        srm / n <= 0.01,
        srm / n <= 0.01,
        0.0,
    )
    outcomes, s = run(MISMATCH, replicates["mismatch"], seed, simulate)
    ours = [hour_or_never(o.srm) for o in outcomes]
    daily = [hour_or_never(o.fixed) for o in outcomes]
    ours_median, ours_text = hours_to_alert(ours)
    daily_median, daily_text = hours_to_alert(daily)
    yield Figure(
        "45/55 on a declared 50/50, 2,000 participants a day: hours to the watcher's `srm`"
        " alert (a pass every hour), median [95% interval]; beside it the daily fixed"
        " chi-square at p < 0.001",
        len(outcomes),
        f"{ours_text}; daily chi-square {daily_text}",
        "faster than the daily chi-square",
        median_interval(ours)[2] < median_interval(daily)[1],
        ours_median < daily_median,
        s,
    )
    started = time.perf_counter()
    small, large = (pass_figures(n, seed=seed) for n in PASS_SIZES)
    per_chunk = (large.round_trips - small.round_trips) / (large.chunks - small.chunks)
    yield Figure(
        f"a watcher pass over {large.experiments:,} declared experiments (2-3 variants, 2-3"
        f" goals, 3 days of history, all changed since the last pass; no destination), and"
        f" over {small.experiments}: wall time and this process's CPU time (median of"
        f" {PASSES}); Redis round trips, per chunk of {watch.CHUNK}",
        PASSES,
        f"{large.seconds:.2f} s, {large.cpu:.2f} s of CPU ({small.seconds:.2f} s, "
        f"{small.cpu:.2f} s at {small.experiments}); "
        f"{large.round_trips} round trips at {large.experiments:,}, {small.round_trips} at "
        f"{small.experiments}: {per_chunk:g} per chunk, "
        f"plus {small.round_trips - per_chunk * small.chunks:g}",
        f"≤ 2 s; O(experiments / {watch.CHUNK}) round trips",
        large.seconds <= 2 and large.round_trips <= large.chunks * small.round_trips,
        large.seconds <= 2 and large.round_trips <= large.chunks * small.round_trips,
        time.perf_counter() - started,
    )


def main() -> None:
    simulation_main(__doc__ or "", measure, QUICK, FULL)


if __name__ == "__main__":
    main()
