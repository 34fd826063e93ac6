"""`python -m bench.aa`: A/A study of ``hll`` mode on real Redis HyperLogLogs.

Simulated experiments are counted exactly as Gimel counts them: every visitor's uuid is
PFADDed to its variant's participate HyperLogLog and, when it converts, to the goal's
HyperLogLog too (so a goal's uuids are a subset of its participants'). The counters are read
back with PFCOUNT, and :func:`gimel_core.analysis.analyse` computes the statistics as the app
does. Exact mode gets the true counts of the same visitors.

``python -m bench.aa --measure`` measures what :mod:`gimel_core.stats.counting_error` models:
the relative error of a Redis HyperLogLog count against its true cardinality, and the
correlation of a subset's and its superset's errors.

Members are random 128-bit hex strings (Redis hashes with a fixed seed: the same members give
the same counter, so every simulated experiment draws new ones), sent as raw RESP with many
members per PFADD: several million members a second into one redis-server.
"""

from __future__ import annotations

import argparse
import math
import queue
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from gimel_core import defaults
from gimel_core.analysis import analyse
from gimel_core.embedded import EmbeddedRedis
from gimel_core.results import ExperimentCounts, Settings
from gimel_core.vocabulary import Analysis

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_BULK_HEAD = np.frombuffer(b"$32\r\n", dtype=np.uint8)
_CRLF = np.frombuffer(b"\r\n", dtype=np.uint8)
CHUNK = 100_000
"""Most members in one PFADD."""


def members(rng: random.Random, count: int) -> np.ndarray:
    """``count`` random 32-hex-digit uuids, each already RESP-encoded: shape (count, 39)."""
    raw = np.frombuffer(rng.randbytes(16 * count), dtype=np.uint8).reshape(count, 16)
    out = np.empty((count, 39), dtype=np.uint8)
    out[:, 0:5] = _BULK_HEAD
    out[:, 5:37:2] = _HEX[raw >> 4]
    out[:, 6:37:2] = _HEX[raw & 15]
    out[:, 37:39] = _CRLF
    return out


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def pfadd(key: bytes, encoded: np.ndarray) -> Iterator[bytes]:
    """PFADD commands adding these RESP-encoded members to key, CHUNK members at most each."""
    for start in range(0, len(encoded), CHUNK):
        part = encoded[start : start + CHUNK]
        yield (
            b"*%d\r\n$5\r\nPFADD\r\n$%d\r\n%s\r\n"
            % (
                len(part) + 2,
                len(key),
                key,
            )
            + part.tobytes()
        )


class Pipe:
    """Raw commands on one socket, sent by a thread (so the next ones are built meanwhile),
    integer replies read in order."""

    def __init__(self, url: str) -> None:
        client = redis.Redis.from_url(url)
        kwargs = client.connection_pool.connection_kwargs
        client.close()
        self.sock = socket.create_connection((kwargs["host"], kwargs["port"]))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.sender = threading.Thread(target=self._send_loop, daemon=True)
        self.sender.start()
        self.pending = 0

    def _send_loop(self) -> None:
        try:
            while (commands := self.queue.get()) is not None:
                for command in commands:
                    self.sock.sendall(command)
        except BaseException as exc:  # reported by the next read
            self.error = exc

    def send(self, commands: Sequence[bytes]) -> None:
        if commands:
            self.queue.put(list(commands))
            self.pending += len(commands)

    def read(self, count: int) -> list[int]:
        """The next ``count`` replies, all integers."""
        replies = []
        for _ in range(count):
            line = self.reader.readline()
            if not line.startswith(b":"):
                raise RuntimeError(f"unexpected reply {line[:200]!r} ({self.error!r})")
            replies.append(int(line[1:]))
        self.pending -= count
        return replies

    def close(self) -> None:
        self.queue.put(None)
        self.sender.join()
        self.reader.close()
        self.sock.close()


def pfcount(key: bytes) -> bytes:
    return _command(b"PFCOUNT", key)


def delete(*keys: bytes) -> bytes:
    return _command(b"DEL", *keys)


# -- measuring the counting error ---------------------------------------------------------------

CHECKPOINTS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
CHECKPOINTS_LARGE = (500_000, 1_000_000, 2_000_000)
FRACTIONS = (0.01, 0.05, 0.2, 0.5, 0.8)


@dataclass
class Observation:
    """One HyperLogLog counted at one cardinality, with its nested subsets."""

    true: int
    estimate: int
    subsets: list[tuple[float, int, int]]  # (fraction, true, estimate)


def measure_runs(
    pipe: Pipe,
    runs: int,
    checkpoints: Sequence[int],
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 1,
) -> list[Observation]:
    """``runs`` independent streams of uuids into one HyperLogLog, and into nested subsets of
    it (a uuid joins the subset of fraction f when its uniform draw is below f), each counted
    at every checkpoint."""
    out: list[Observation] = []
    keys = [b"measure:all", *(b"measure:sub:%g" % f for f in fractions)]
    previous: tuple[int, list[int], list[list[int]]] | None = None
    for run in range(runs):
        rng = random.Random(f"measure-{seed}-{run}")
        draws = np.random.default_rng([seed, run])
        truths: list[list[int]] = []
        done = sent = 0
        sub_counts = [0] * len(fractions)
        reply_index: list[int] = []  # which replies are the PFCOUNTs
        for checkpoint in checkpoints:
            commands: list[bytes] = []
            encoded = members(rng, checkpoint - done)
            u = draws.random(len(encoded))
            commands.extend(pfadd(keys[0], encoded))
            for i, f in enumerate(fractions):
                chosen = encoded[u < f]
                sub_counts[i] += len(chosen)
                if len(chosen):
                    commands.extend(pfadd(keys[1 + i], chosen))
            done = checkpoint
            for key in keys:
                reply_index.append(sent + len(commands))
                commands.append(pfcount(key))
            truths.append([checkpoint, *sub_counts])
            if checkpoint == checkpoints[-1]:
                commands.append(delete(*keys))
            pipe.send(commands)
            sent += len(commands)
            if previous is not None and checkpoint >= 1_000:  # the last run is done by now
                out.extend(_observations(pipe.read(previous[0]), *previous[1:], fractions))
                previous = None
        if previous is not None:
            out.extend(_observations(pipe.read(previous[0]), *previous[1:], fractions))
        previous = (sent, reply_index, truths)
    if previous is not None:
        out.extend(_observations(pipe.read(previous[0]), *previous[1:], fractions))
    return out


def _observations(
    replies: list[int],
    reply_index: list[int],
    truths: list[list[int]],
    fractions: Sequence[float],
) -> Iterator[Observation]:
    counts = [replies[i] for i in reply_index]
    width = 1 + len(fractions)
    for c, truth in enumerate(truths):
        row = counts[c * width : (c + 1) * width]
        subsets = list(zip(fractions, truth[1:], row[1:], strict=True))
        yield Observation(truth[0], row[0], subsets)


def error_tables(observations: Sequence[Observation]) -> str:
    """Markdown: the relative error per cardinality, and the measured variance of
    log(subset) - log(superset) beside the model's (gimel_core.stats.counting_error)."""
    from gimel_core.stats.counting_error import hll_relative_error, rate_variance

    by_n: dict[int, list[Observation]] = {}
    for o in observations:
        by_n.setdefault(o.true, []).append(o)
    lines = [
        "| cardinality | streams | sd of log(count / true) | its standard error | mean | model |",
        "|---|---|---|---|---|---|",
    ]
    for n, group in sorted(by_n.items()):
        e = np.log(np.array([o.estimate for o in group]) / n)
        sd = float(e.std(ddof=1))
        lines.append(
            f"| {n:,} | {len(e):,} | {100 * sd:.3f}% | {100 * sd / math.sqrt(2 * len(e)):.3f}% "
            f"| {100 * float(e.mean()):+.3f}% | {100 * hll_relative_error(n):.3f}% |"
        )
    lines += [
        "",
        "| participants | fraction | streams | measured Var(log s - log n) | its standard error "
        "| model | measured / model | correlation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, group in sorted(by_n.items()):
        for k, f in enumerate(f for f, _, _ in group[0].subsets):
            rows = [o for o in group if o.subsets[k][1] > 0]
            if len(rows) < 50:
                continue
            e_n = np.log(np.array([o.estimate for o in rows]) / n)
            e_s = np.log(np.array([o.subsets[k][2] / o.subsets[k][1] for o in rows]))
            var = float(np.var(e_s - e_n, ddof=1))
            model = float(np.mean([rate_variance(o.subsets[k][1], n, "hll") for o in rows]))
            corr = float(np.corrcoef(e_s, e_n)[0, 1])
            se = var * math.sqrt(2 / len(rows))
            lines.append(
                f"| {n:,} | {f:g} | {len(rows):,} | {var:.3e} | {se:.1e} | {model:.3e} "
                f"| {var / model:.2f} | {corr:+.3f} |"
            )
    return "\n".join(lines)


def measure(small: int, large: int, big: int) -> list[Observation]:
    """The measurement behind counting_error: ``small`` streams to 200k, ``large`` to 2M, and
    ``big`` more from 200k to 2M with the 0.2 subset only."""
    observations: list[Observation] = []
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data, extra_args=["--appendonly", "no"]).start()
        pipe = Pipe(server.url)
        try:
            for runs, checkpoints, fractions, seed in (
                (small, CHECKPOINTS, FRACTIONS, 1),
                (large, CHECKPOINTS + CHECKPOINTS_LARGE, FRACTIONS, 2),
                (big, (200_000, *CHECKPOINTS_LARGE), (0.2,), 3),
            ):
                if runs:
                    print(f"{runs} streams to {checkpoints[-1]:,}...", file=sys.stderr, flush=True)
                    observations += measure_runs(pipe, runs, checkpoints, fractions, seed)
        finally:
            pipe.close()
            server.stop()
    return observations


# -- the A/A study ------------------------------------------------------------------------------

GOAL = "signup"
ARMS = ("control", "b")


@dataclass
class Replicate:
    """One simulated experiment: per arm (control, b) the true and the counted numbers."""

    true: tuple[int, int, int, int]  # successes, trials of control; successes, trials of b
    hll: tuple[int, int, int, int]


def _arm_commands(
    rng: random.Random, draws: np.random.Generator, prefix: bytes, n: int, rate: float
) -> tuple[list[bytes], int]:
    """PFADDs of one arm as Gimel writes them: every uuid into participate, the converted
    ones into the goal too. Returns the commands and the true number of conversions."""
    encoded = members(rng, n)
    converted = encoded[draws.random(n) < rate]
    commands = [
        *pfadd(prefix + b":participate", encoded),
        *pfadd(prefix + b":" + GOAL.encode(), converted),
    ]
    return commands, len(converted)


def simulate(
    pipe: Pipe, n: int, replicates: int, rate: float, lift: float, seed: int
) -> list[Replicate]:
    """``replicates`` experiments of n participants per arm, the control converting at
    ``rate`` and b at ``rate * (1 + lift)``, each on new uuids, counted by real HyperLogLogs."""
    out: list[Replicate] = []
    previous: tuple[int, tuple[int, int, int, int]] | None = None
    for r in range(replicates):
        rng = random.Random(f"aa-{seed}-{n}-{rate}-{lift}-{r}")
        draws = np.random.default_rng([seed, n, r, round(rate * 1e6), round(lift * 1e6)])
        sent = 0
        true: list[int] = []
        keys: list[bytes] = []
        for arm, arm_rate in zip(ARMS, (rate, rate * (1.0 + lift)), strict=True):
            prefix = b"aa:%d:%s" % (r % 2, arm.encode())
            commands, successes = _arm_commands(rng, draws, prefix, n, arm_rate)
            pipe.send(commands)
            sent += len(commands)
            true += [successes, n]
            keys += [prefix + b":" + GOAL.encode(), prefix + b":participate"]
            if previous is not None:  # its counts are ready by now
                out.append(_replicate(pipe, *previous))
                previous = None
        pipe.send([*(pfcount(k) for k in keys), delete(*keys)])
        previous = (sent, (true[0], true[1], true[2], true[3]))
    if previous is not None:
        out.append(_replicate(pipe, *previous))
    return out


def _replicate(pipe: Pipe, sent: int, true: tuple[int, int, int, int]) -> Replicate:
    replies = pipe.read(sent + 5)
    s0, n0, s1, n1 = replies[sent : sent + 4]
    return Replicate(true, (s0, n0, s1, n1))


def analysed(counts: tuple[int, int, int, int], counting: str) -> tuple[float, bool]:
    """The app's p-value of b against the control, and whether its uplift interval holds 0."""
    s0, n0, s1, n1 = counts
    stored = ExperimentCounts(
        name="aa",
        counting=counting,
        variants=ARMS,
        goals=(GOAL,),
        counts={
            (defaults.PARTICIPATE, ARMS[0]): n0,
            (defaults.PARTICIPATE, ARMS[1]): n1,
            (GOAL, ARMS[0]): s0,
            (GOAL, ARMS[1]): s1,
        },
        settings=Settings(analysis=Analysis.FIXED),  # the fixed-horizon test at one look
    )
    row = next(r for r in analyse(stored).goals[0].results if r.label == ARMS[1])
    assert row.p_value is not None and row.uplift_ci is not None
    low, high = row.uplift_ci
    return row.p_value, low <= 0.0 <= high


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson interval of a binomial proportion k / n (for the bench's own rates)."""
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def ks_uniform(values: Sequence[float]) -> tuple[float, float]:
    """One-sample Kolmogorov-Smirnov test of values against Uniform(0, 1): (D, p-value).

    The p-value is the asymptotic Kolmogorov distribution with Stephens' small-sample
    correction, lambda = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D (accurate to ~1% for n >= 20).
    """
    x = sorted(values)
    n = len(x)
    d = max(max((i + 1) / n - v, v - i / n) for i, v in enumerate(x))
    root = math.sqrt(n)
    lam = (root + 0.12 + 0.11 / root) * d
    if lam < 0.2:
        return d, 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return d, min(1.0, max(0.0, total))


@dataclass
class SizeResult:
    n: int
    replicates: int
    rate: float
    fpr_hll: float
    fpr_hll_ci: tuple[float, float]
    fpr_exact: float
    fpr_exact_ci: tuple[float, float]
    ks_hll: float
    ks_exact: float
    coverage_hll: float
    seconds: float


def aa(pipe: Pipe, n: int, replicates: int, rate: float = 0.2, seed: int = 0) -> SizeResult:
    """The A/A study at n per arm: false-positive rates, KS uniformity, uplift CI coverage."""
    t = time.perf_counter()
    reps = simulate(pipe, n, replicates, rate, 0.0, seed)
    hll = [analysed(r.hll, "hll") for r in reps]
    exact = [analysed(r.true, "exact") for r in reps]
    k_hll = sum(p < 0.05 for p, _ in hll)
    k_exact = sum(p < 0.05 for p, _ in exact)
    return SizeResult(
        n=n,
        replicates=replicates,
        rate=rate,
        fpr_hll=k_hll / replicates,
        fpr_hll_ci=wilson_interval(k_hll, replicates),
        fpr_exact=k_exact / replicates,
        fpr_exact_ci=wilson_interval(k_exact, replicates),
        ks_hll=ks_uniform([p for p, _ in hll])[1],
        ks_exact=ks_uniform([p for p, _ in exact])[1],
        coverage_hll=sum(c for _, c in hll) / replicates,
        seconds=time.perf_counter() - t,
    )


@dataclass
class PowerResult:
    n: int
    lift: float
    replicates: int
    hll: float
    hll_ci: tuple[float, float]
    exact: float
    exact_ci: tuple[float, float]
    seconds: float


def power(
    pipe: Pipe, n: int, replicates: int, lift: float = 0.03, rate: float = 0.2, seed: int = 0
) -> PowerResult:
    """Share of experiments with a true relative lift that reach p < 0.05, hll and exact."""
    t = time.perf_counter()
    reps = simulate(pipe, n, replicates, rate, lift, seed)
    k_hll = sum(analysed(r.hll, "hll")[0] < 0.05 for r in reps)
    k_exact = sum(analysed(r.true, "exact")[0] < 0.05 for r in reps)
    return PowerResult(
        n,
        lift,
        replicates,
        k_hll / replicates,
        wilson_interval(k_hll, replicates),
        k_exact / replicates,
        wilson_interval(k_exact, replicates),
        time.perf_counter() - t,
    )


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def interval(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def run(
    plan: Sequence[tuple[int, int]],
    power_replicates: int,
    power_n: int = 200_000,
    rate: float = 0.2,
    seed: int = 0,
) -> tuple[list[SizeResult], PowerResult | None]:
    """The A/A study at every (n per arm, replicates) of the plan, and the power at +3%."""
    sizes: list[SizeResult] = []
    found: PowerResult | None = None
    with tempfile.TemporaryDirectory() as data:
        # No append-only file: it would log every PFADD with all its members.
        server = EmbeddedRedis(data, extra_args=["--appendonly", "no"]).start()
        pipe = Pipe(server.url)
        try:
            for n, replicates in plan:
                print(f"A/A at {n:,} per arm x {replicates}...", file=sys.stderr, flush=True)
                sizes.append(aa(pipe, n, replicates, rate, seed))
            if power_replicates:
                print(f"power at {power_n:,} per arm...", file=sys.stderr, flush=True)
                found = power(pipe, power_n, power_replicates, 0.03, rate, seed)
        finally:
            pipe.close()
            server.stop()
    return sizes, found


def table(sizes: Sequence[SizeResult], found: PowerResult | None) -> str:
    lines = [
        "| figure | measured (hll) | exact mode, same visitors | target | |",
        "|---|---|---|---|---|",
    ]
    for r in sizes:
        ok = 0.04 <= r.fpr_hll <= 0.06
        lines.append(
            f"| A/A false-positive rate at p < 0.05, {r.n:,} per arm, {pct(r.rate)} base rate "
            f"({r.replicates:,} experiments) | {pct(r.fpr_hll)} {interval(r.fpr_hll_ci)} | "
            f"{pct(r.fpr_exact)} {interval(r.fpr_exact_ci)} | 4-6% | "
            f"{'met' if ok else 'MISSED'} |"
        )
        lines.append(
            f"| A/A p-values uniform (KS p), {r.n:,} per arm | {r.ks_hll:.3f} | "
            f"{r.ks_exact:.3f} | > 0.01 | {'met' if r.ks_hll > 0.01 else 'MISSED'} |"
        )
        lines.append(
            f"| A/A uplift interval holds 0, {r.n:,} per arm | {pct(r.coverage_hll)} | | 95% | |"
        )
    if found is not None:
        lines.append(
            f"| power at +{found.lift:.0%} relative lift, {found.n:,} per arm "
            f"({found.replicates:,} experiments) | {pct(found.hll)} {interval(found.hll_ci)} | "
            f"{pct(found.exact)} {interval(found.exact_ci)} | reported | |"
        )
    return "\n".join(lines)


DEFAULT_PLAN = ((2_000, 5_000), (20_000, 5_000), (200_000, 2_000), (1_000_000, 800))
SHORT_PLAN = ((20_000, 1_000), (200_000, 200))


def short() -> list[SizeResult]:
    """A quick A/A run for ``python -m bench`` (~30 s): 20k and 200k per arm."""
    sizes, _ = run(SHORT_PLAN, power_replicates=0)
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aa", description=__doc__)
    parser.add_argument(
        "--sizes",
        default=",".join(f"{n}:{r}" for n, r in DEFAULT_PLAN),
        help="participants per arm and replicates, as n:replicates,... (default: %(default)s)",
    )
    parser.add_argument("--power", type=int, default=1_000, help="replicates of the power run")
    parser.add_argument("--rate", type=float, default=0.2, help="base conversion rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--measure",
        metavar="RUNS",
        help="measure the HyperLogLog error instead: streams to 200k, to 2M, and from 200k "
        "to 2M with one subset (counting_error's table: 3000,300,600; ~9 minutes)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.measure:
        small, large, big = (int(x) for x in args.measure.split(","))
        print(error_tables(measure(small, large, big)))
        print(f"\n{time.perf_counter() - started:.0f} s", file=sys.stderr)
        return
    plan = [tuple(int(x) for x in part.split(":")) for part in args.sizes.split(",")]
    sizes, found = run([(n, r) for n, r in plan], args.power, rate=args.rate, seed=args.seed)
    print(table(sizes, found))
    print(f"\n{time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
