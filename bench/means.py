"""Value goals and CUPED, measured on real Redis: honest A/A rates, the variance the covariate
removes, and the power it adds.

    python -m bench.means [--quick] [--seed 1]

Every simulated experiment is declared with a plan through ``Experiments.declare`` (a value
goal ``revenue``, the covariate ``orders``, the fixed analysis: Welch's t), its visitors are
tracked through ``Tracker.track_many`` in batches of 500 (each visitor's ``participate``
carries the covariate; each purchase its value, the visitor's running total before it and
the covariate, under a uuid of its own as Alephbet sends non-unique goals), and its results
are read with ``Experiments.experiment`` (what ``GET /experiments/<name>`` answers), then it
is deleted. Counting is ``exact``. Two processes (one per core) each drive their own
redis-server and run their replicates one after the other.

The visitors: 30% buy, 1 to 3 purchases each (equally likely), each lognormal with mean log 3
and sd log 1; per visitor the total has mean 19.9 and sd 47.7, and 70% of visitors have 0.
The covariate is built from the visitor's total without the treatment, y0:
``x = rho (y0 - E y) / sd y + sqrt(1 - rho^2) z`` with z standard normal and the population
moments of y computed (:func:`visitor_moments`), so corr(x, y0) = rho = 0.7 exactly whatever
the law of y, and skewed y stays skewed. A treatment multiplies each purchase by 1 + lift;
x, from y0, is untouched by it (it is a pre-experiment number).

The figures, each share with its 95% Wilson interval:

- A/A at 2,000 and 20,000 visitors per arm: share of experiments with the value goal's
  ``p_value`` below 0.05, and with ``adjusted.p_value`` below 0.05 (target: at most 5%,
  upper bound at most 6.5%);
- the same experiments: the adjusted uplift's variance across runs over the unadjusted one's
  (95% bootstrap interval), and ``1 - adjusted.variance_reduction`` averaged: both should be
  1 - rho^2 = 0.51 within 0.05;
- power at 2,000 per arm for a +15% uplift of every purchase: share with p < 0.05 and the
  uplift above 0, unadjusted and CUPED-adjusted, beside the model's (:func:`model_power`,
  the delta-method variances gbstats uses, with the pooled slope).

Runs. A value event costs about 25 µs of CPU here, 14 in redis-server (track.lua) and 11 in
redis-py packing the script's arguments; the two shared cores count 33,000 to 50,000 events a
second as the machine's other load allows. The full run (1,000 runs at 2,000 per arm, 1,000 at
20,000, 500 power runs: about 75M events) takes about 25 minutes: at a 5% share, 1,000 runs
put the 95% upper bound at 6.4%, under the 6.5% target; 500 would put it at 7.3%.
``--quick`` (what ``python -m bench`` runs: 200 A/A runs at 2,000 per arm, 100 power runs)
takes about a minute.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gimel_core.app import Gimel
from gimel_core.config import Config
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event
from gimel_core.vocabulary import Mode, Registration

from .peeking import SIMULATION_HEAD, simulation_row, wilson

BUYERS = 0.3
PURCHASES = (1, 2, 3)
"""Purchases per buyer, equally likely."""
MU, SIGMA = 3.0, 1.0
"""Each purchase: lognormal with this mean and sd of its log."""
RHO = 0.7
"""Correlation of the covariate with the visitor's total."""
LIFT = 0.15
POWER_N = 2_000
ALPHA = 0.05
BATCH = 500
WORKERS = 2
NAMESPACE = "bench"
GOAL = "revenue"
COVARIATE = "orders"
ARMS = ("control", "b")
PLAN = {
    "variants": list(ARMS),
    "control": ARMS[0],
    "goals": [{"name": GOAL, "type": "value"}],
    "covariate": COVARIATE,
    "analysis": "fixed",
}


def visitor_moments() -> tuple[float, float]:
    """Mean and variance of one visitor's total (0 for those who do not buy)."""
    m = math.exp(MU + SIGMA**2 / 2)  # one purchase: mean
    v = math.exp(2 * MU + SIGMA**2) * (math.exp(SIGMA**2) - 1)  # and variance
    share = BUYERS / len(PURCHASES)
    mean = sum(share * k * m for k in PURCHASES)
    second = sum(share * (k * v + (k * m) ** 2) for k in PURCHASES)
    return mean, second - mean * mean


@dataclass(frozen=True)
class Arm:
    """One arm's visitors: per visitor its covariate; per purchase its visitor, its amount
    (treated) and the visitor's total before it."""

    covariate: np.ndarray
    owner: np.ndarray
    amount: np.ndarray
    before: np.ndarray

    @property
    def totals(self) -> np.ndarray:
        return np.bincount(self.owner, weights=self.amount, minlength=len(self.covariate))


def arm(rng: np.random.Generator, n: int, lift: float = 0.0, rho: float = RHO) -> Arm:
    """n visitors, each purchase multiplied by 1 + lift, x correlated rho with the untreated
    total."""
    bought = rng.random(n) < BUYERS
    k = np.where(bought, rng.choice(PURCHASES, n), 0)
    owner = np.repeat(np.arange(n), k)
    amount = rng.lognormal(MU, SIGMA, owner.size)
    y0 = np.bincount(owner, weights=amount, minlength=n)
    mean, variance = visitor_moments()
    x = rho * (y0 - mean) / math.sqrt(variance) + math.sqrt(1 - rho * rho) * rng.standard_normal(n)
    amount *= 1.0 + lift
    # The running total before each purchase: purchases are grouped by visitor (np.repeat).
    earlier = np.cumsum(amount) - amount
    first = np.repeat(np.cumsum(k) - k, k)
    return Arm(x, owner, amount, earlier - earlier[first])


def events(name: str, variant: str, data: Arm) -> list[Event]:
    """What the snippet sends for these visitors: participate with the covariate, and each
    purchase with its value, the running total before it and the covariate."""
    x = data.covariate.tolist()
    out = [
        Event(NAMESPACE, name, variant, "participate", f"{variant}.{i}", covariate=c)
        for i, c in enumerate(x)
    ]
    out += [
        Event(
            NAMESPACE,
            name,
            variant,
            GOAL,
            f"{variant}.{i}.{j}",
            value=value,
            total=before,
            covariate=x[i],
        )
        for j, (i, value, before) in enumerate(
            zip(data.owner.tolist(), data.amount.tolist(), data.before.tolist(), strict=True)
        )
    ]
    return out


@dataclass(frozen=True)
class Outcome:
    """One experiment's row of ``b`` on the value goal, as the results answer it."""

    p_value: float
    uplift: float
    adjusted_p_value: float
    adjusted_uplift: float
    variance_reduction: float


def experiment(gimel: Gimel, name: str, n: int, lift: float, rng: np.random.Generator) -> Outcome:
    """Declare, track and read one experiment; then delete it."""
    gimel.experiments.declare(NAMESPACE, name, PLAN)
    arms = [arm(rng, n), arm(rng, n, lift)]
    sent = [
        e for variant, data in zip(ARMS, arms, strict=True) for e in events(name, variant, data)
    ]
    for start in range(0, len(sent), BATCH):
        batch = sent[start : start + BATCH]
        tally = gimel.tracker.track_many(batch)
        assert tally.new == len(batch), (tally, len(batch))
    body = gimel.experiments.experiment(NAMESPACE, name).to_json()
    gimel.experiments.delete(NAMESPACE, name)
    (goal,) = body["goals"]
    rows = {row["label"]: row for row in goal["results"]}
    for variant, data in zip(ARMS, arms, strict=True):  # the sums came through whole
        row, mean = rows[variant], float(data.totals.mean())
        assert row["trials"] == n and math.isclose(row["mean"], mean, rel_tol=1e-9), (row, mean)
    row = rows[ARMS[1]]
    adjusted = row["adjusted"]
    return Outcome(
        row["p_value"],
        row["uplift"],
        adjusted["p_value"],
        adjusted["uplift"],
        adjusted["variance_reduction"],
    )


def simulate(n: int, lift: float, replicates: int, seed: list[int], tag: str) -> list[Outcome]:
    """Replicates on a redis-server of their own."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder, extra_args=["--appendonly", "no"]).start()
        try:
            config = Config(
                redis_url=server.url,
                counting=Mode.EXACT,
                registration=Registration.DECLARED,
                redis_timeout=30.0,
            )
            gimel = Gimel(server.url, config)
            return [experiment(gimel, f"{tag}-{r}", n, lift, rng) for r in range(replicates)]
        finally:
            server.stop()


def run(n: int, lift: float, replicates: int, seed: int) -> tuple[list[Outcome], float]:
    """All replicates, split over the cores; and the wall time taken."""
    started = time.perf_counter()
    shares = [replicates // WORKERS + (w < replicates % WORKERS) for w in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS) as pool:
        parts = [
            pool.submit(simulate, n, lift, k, [seed, n, round(lift * 1e6), w], f"{n}-{lift}-{w}")
            for w, k in enumerate(shares)
        ]
        outcomes = [o for part in parts for o in part.result()]
    return outcomes, time.perf_counter() - started


def model_power(n: int, lift: float, adjusted: bool, rho: float = RHO) -> float:
    """Power of the two-sided 5% test to find the lift with the right sign, n per arm: the
    normal approximation with the delta-method variance of the relative uplift (adjusted:
    residuals of the pooled slope, as gbstats' regression adjustment)."""
    mean, variance = visitor_moments()
    scale = 1.0 + lift
    var0, var1 = variance, scale * scale * variance
    if adjusted:
        cov0 = rho * math.sqrt(variance)  # x has variance 1
        cov1 = scale * cov0
        slope = (cov0 + cov1) / 2
        var0 += slope * slope - 2 * slope * cov0
        var1 += slope * slope - 2 * slope * cov1
    se = math.sqrt((var1 + scale * scale * var0) / n) / mean
    return NormalDist().cdf(lift / se - NormalDist().inv_cdf(1 - ALPHA / 2))


def bootstrap_ratio(
    adjusted: np.ndarray, unadjusted: np.ndarray, rng: np.random.Generator, draws: int = 2_000
) -> tuple[float, float, float]:
    """var(adjusted) / var(unadjusted) across runs, with its 95% percentile bootstrap."""
    ratio = float(np.var(adjusted, ddof=1) / np.var(unadjusted, ddof=1))
    picks = rng.integers(0, len(adjusted), (draws, len(adjusted)))
    ratios = np.var(adjusted[picks], axis=1, ddof=1) / np.var(unadjusted[picks], axis=1, ddof=1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return ratio, float(low), float(high)


@dataclass(frozen=True)
class Figure:
    figure: str
    replicates: int
    measured: str
    target: str
    ok: bool
    seconds: float


def _share(hits: int, n: int) -> tuple[float, float, float, str]:
    low, high = wilson(hits, n)
    return hits / n, low, high, f"{hits / n:.1%} [{low:.1%}, {high:.1%}]"


def _false_positives(label: str, hits: int, n: int, quick: bool, seconds: float) -> Figure:
    share, _, high, measured = _share(hits, n)
    if quick:  # too few runs for the interval: the estimate, within 3.3 binomial SE of 5%
        slack = 3.3 * math.sqrt(ALPHA * (1 - ALPHA) / n)
        return Figure(label, n, measured, "5% ± 3.3 SE (quick)", share <= ALPHA + slack, seconds)
    return Figure(
        label, n, measured, "≤ 5%, upper ≤ 6.5%", share <= ALPHA and high <= 0.065, seconds
    )


@dataclass(frozen=True)
class Runs:
    aa: dict[int, int]
    """Replicates of the A/A study at each size (visitors per arm)."""
    power: int


QUICK = Runs({2_000: 200}, 100)
FULL = Runs({2_000: 1_000, 20_000: 1_000}, 500)


def measure(quick: bool, seed: int = 1, only: Runs | None = None) -> Iterator[Figure]:
    """Every figure, with its replicates, interval, target and time, each once measured.
    Quick: fewer runs, each figure judged on its estimate. ``only``: these runs instead (more
    replicates of one study, under another seed)."""
    runs = only or (QUICK if quick else FULL)
    rng = np.random.default_rng(seed)
    target_ratio = 1 - RHO * RHO
    for n, k in runs.aa.items():
        print(f"A/A at {n:,} per arm x {k:,}...", file=sys.stderr, flush=True)
        outcomes, s = run(n, 0.0, k, seed)
        k = len(outcomes)
        per_s = k * 2 * n * (1 + BUYERS * 2) / s
        yield _false_positives(
            f"A/A, value goal (lognormal, 70% zeros), {n:,} per arm: p < 0.05 (Welch t)",
            sum(o.p_value < ALPHA for o in outcomes),
            k,
            quick,
            s,
        )
        yield _false_positives(
            f"A/A, same experiments, CUPED-adjusted (covariate rho = {RHO}): p < 0.05",
            sum(o.adjusted_p_value < ALPHA for o in outcomes),
            k,
            quick,
            0.0,
        )
        ratio, low, high = bootstrap_ratio(
            np.array([o.adjusted_uplift for o in outcomes]),
            np.array([o.uplift for o in outcomes]),
            rng,
        )
        reported = float(np.mean([1 - o.variance_reduction for o in outcomes]))
        # A variance across runs of a skewed metric is itself wide (sd about 0.045 at 200
        # runs): the full run judges its interval and estimate, a quick one the reported mean.
        ok = abs(reported - target_ratio) <= 0.05
        if not quick:
            ok = ok and low <= target_ratio <= high and abs(ratio - target_ratio) <= 0.05
        yield Figure(
            f"variance of the adjusted uplift over the unadjusted, across the {n:,}-per-arm"
            " runs [bootstrap 95%]; 1 - `adjusted.variance_reduction` as reported, averaged"
            f" ({per_s:,.0f} events/s)",
            k,
            f"{ratio:.3f} [{low:.3f}, {high:.3f}]; {reported:.3f}",
            f"1 - rho² = {target_ratio:.2f}: "
            + (
                "the reported within 0.05 (quick)" if quick else "in the interval, both within 0.05"
            ),
            ok,
            0.0,
        )
    k = runs.power
    if not k:
        return
    print(f"power at {POWER_N:,} per arm x {k:,}...", file=sys.stderr, flush=True)
    outcomes, s = run(POWER_N, LIFT, k, seed)
    plain = _share(sum(o.p_value < ALPHA and o.uplift > 0 for o in outcomes), k)
    cuped = _share(sum(o.adjusted_p_value < ALPHA and o.adjusted_uplift > 0 for o in outcomes), k)
    expected = model_power(POWER_N, LIFT, False), model_power(POWER_N, LIFT, True)
    if quick:
        ok = cuped[0] > plain[0]
    else:  # each interval holds the model's value, and CUPED's lies above the other
        ok = plain[1] <= expected[0] <= plain[2] and cuped[1] <= expected[1] <= cuped[2]
        ok = ok and cuped[1] > plain[2]
    yield Figure(
        f"power, +{LIFT:.0%} on every purchase, {POWER_N:,} per arm: p < 0.05 and the uplift"
        " above 0, unadjusted; CUPED-adjusted",
        k,
        f"{plain[3]}; {cuped[3]}",
        f"model {expected[0]:.1%}; {expected[1]:.1%}, CUPED above",
        ok,
        s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates (python -m bench)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--aa",
        metavar="N:K",
        help="only the A/A study at N visitors per arm, K runs (more replicates: another --seed)",
    )
    args = parser.parse_args()
    only = None
    if args.aa:
        n, k = (int(part) for part in args.aa.split(":"))
        only = Runs({n: k}, 0)
    started = time.perf_counter()
    print(SIMULATION_HEAD)
    for f in measure(args.quick, args.seed, only):
        row = simulation_row(f.figure, f.replicates, f.measured, f.target, f.ok, f.seconds)
        print(row, flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
