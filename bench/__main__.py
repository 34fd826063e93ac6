"""`python -m bench` (or `make bench`): every figure with its target, measured in one run.

Prints a Markdown table, ready for the README. Ratios are measured side by side against the
same redis-server, so they hold on a noisy machine; absolute rates move with the machine. A
time or a rate is the median of repeated rounds, printed with their min and max, so the
table says how noisy its run was.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile

from gimel_core.embedded import EmbeddedRedis

from . import (
    aa,
    dashboard,
    dedup,
    deploy,
    group_sequential,
    history,
    load,
    means,
    servers,
    track,
    watch,
)
from .spread import shown

RATE, RATIO, US = "{:,.0f}", "{:.2f}", "{:.0f}"
"""How rates, ratios and microseconds (or whole milliseconds) are printed."""

ZIP = "Lambda zip size, packaged from this tree"

LEGEND = "A time or a rate: the median of repeated rounds, their (min, max) beside it."


def missing() -> list[str]:
    """What the run needs beyond the test extra, checked before a minute is spent measuring.
    The sls CLI is not among them: the zip row installs it (`npm ci`) or says why it could not."""
    needs = []
    if shutil.which("wrk") is None:
        needs.append("wrk, the HTTP load generator (apt-get install wrk)")
    if shutil.which(dashboard.CHROMIUM) is None:
        needs.append(
            f"chromium at {dashboard.CHROMIUM} (apt-get install chromium, or set GIMEL_CHROMIUM)"
        )
    return needs


def main() -> None:
    if needs := missing():
        sys.exit("python -m bench needs:\n" + "\n".join(f"  - {need}" for need in needs))
    rows: list[tuple[str, str, str, bool]] = []

    def row(figure: str, measured: str, target: str, ok: bool) -> None:
        rows.append((figure, measured, target, ok))
        print(f"  measured: {figure}: {measured}", file=sys.stderr, flush=True)

    print("tracking through handler.handler...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            single = track.handler_vs_pfadd(server.url)
            batch = track.batch_vs_pipelined_pfadd(server.url)
            cost = track.value_vs_binary(server.url)
            redis_cpu = track.redis_cpu_per_event(server.url)
            memory = track.exact_bytes_per_uuid(server.url)
        finally:
            server.stop()
    row(
        "single events through `handler.handler`, and ratio to a redis-py PFADD loop; CPU time"
        " of this process per event",
        f"{shown(single, 'handler_events_per_s', RATE, '/s')} vs "
        f"{shown(single, 'pfadd_per_s', RATE, '/s')}, ratio {shown(single, 'ratio', RATIO)}; "
        f"{shown(single, 'cpu_us', US, ' µs')}",
        "ratio ≥ 0.6; ≤ 100 µs",
        single["ratio"] >= 0.6 and single["cpu_us"] <= 100,
    )
    row(
        "batches of 500 through `POST /track`, and ratio to pipelined PFADD",
        f"{shown(batch, 'batch_events_per_s', RATE, ' events/s')} vs "
        f"{shown(batch, 'pipelined_pfadd_per_s', RATE, '/s')}, "
        f"ratio {shown(batch, 'ratio', RATIO)}",
        "≥ 50,000/s, ratio ≥ 0.8",
        batch["batch_events_per_s"] >= 50_000 and batch["ratio"] >= 0.8,
    )
    row(
        "CPU per `GET /track` through `handler.handler`, a value event (`value`, `total`) over"
        " a binary one, same `exact` experiment; with redis-server's CPU (`INFO cpu`) added",
        f"{shown(cost, 'value', US)} / {shown(cost, 'binary', US)} µs, ratio "
        f"{shown(cost, 'ratio', RATIO)}; {cost['value'] + cost['value_redis']:.0f} / "
        f"{cost['binary'] + cost['binary_redis']:.0f} µs, "
        f"ratio {shown(cost, 'total_ratio', RATIO)}",
        "≤ 1.10, both",
        cost["ratio"] <= 1.10 and cost["total_ratio"] <= 1.10,
    )
    script = {shape: sorted(times) for shape, times in redis_cpu["script"].items()}
    server = {shape: statistics.median(cpus) for shape, cpus in redis_cpu["server"].items()}
    floor = sorted(redis_cpu["floor"]["floor"])
    row(
        "Redis CPU per tracked event, steady state, 4 × 5,000 events of each shape: inside its"
        " `EVALSHA` (`INFO commandstats`) min / median / max; redis-server's whole CPU"
        " (`INFO cpu`: reading the command, the reply, the AOF), median; beside them, the floor"
        " on this server: a script of only the four calls a declared `hll` event needs (read"
        " the settings, read and write the source's budget, `PFADD`)",
        "; ".join(
            f"{shape} {c[0]:.0f} / {statistics.median(c):.0f} / {c[-1]:.0f} µs"
            f" ({server[shape]:.0f} µs)"
            for shape, c in script.items()
        )
        + f"; floor {floor[0]:.0f} / {statistics.median(floor):.0f} / {floor[-1]:.0f} µs",
        f"≤ {track.REDIS_CPU_TARGET:.0f} µs inside `EVALSHA`, median of each",
        all(statistics.median(c) <= track.REDIS_CPU_TARGET for c in script.values()),
    )
    print("results and dashboard (100 x 3 x 4)...", file=sys.stderr, flush=True)
    dash = dashboard.measure()
    row(
        "results for 100 experiments × 3 variants × 4 goals, one page: Redis round trips, time"
        " in-process (of which redis-server's, inside the page's script calls); nothing"
        " computed yet",
        f"{dash['results_round_trips']:.0f} round trips, {shown(dash, 'results_ms', unit=' ms')}"
        f" (Redis {dash['results_redis_ms']:.1f} ms); {shown(dash, 'results_cold_ms', unit=' ms')}",
        "≤ 4, ≤ 5 ms; ≤ 20 ms",
        dash["results_round_trips"] <= 4
        and dash["results_ms"] <= 5
        and dash["results_cold_ms"] <= 20,
    )
    row(
        "the summary the dashboard loads first (`view=summary`), same data: time in-process (of"
        " which redis-server's); nothing computed yet",
        f"{shown(dash, 'summary_ms', unit=' ms')} (Redis {dash['summary_redis_ms']:.1f} ms);"
        f" {shown(dash, 'summary_cold_ms', unit=' ms')}",
        "≤ 3 ms; ≤ 10 ms",
        dash["summary_ms"] <= 3 and dash["summary_cold_ms"] <= 10,
    )
    row(
        "dashboard first paint in headless Chromium for that data (every card, from summaries),"
        " opened again in the same browser; requests the server answered",
        f"{shown(dash, 'load_ms', US, ' ms')}; {dash['load_requests']} requests",
        "≤ 500 ms",
        dash["load_ms"] <= 500,
    )
    print("history, 90 days x 3 variants x 4 goals...", file=sys.stderr, flush=True)
    for counting in ("hll", "exact"):
        days = history.measure(counting, days=90)
        row(
            f"`{counting}`: Redis bytes of history per experiment per day (15 counters)",
            f"{days['bytes_per_day']:.0f} B",
            "O(counters)",
            True,
        )
        row(
            f"`{counting}`: `GET /experiments/<name>/history`, 90 days × 3 × 4: time in-process"
            "; nothing cached; Redis round trips",
            f"{shown(days, 'history_ms', unit=' ms')}; {shown(days, 'history_cold_ms', unit=' ms')}"
            f"; {days['round_trips']:.0f} round trip",
            "≤ 10 ms; none; 1",
            days["history_ms"] <= 10 and days["round_trips"] == 1,
        )
    print("gimel serve under wrk, 3 rounds of 4 s...", file=sys.stderr, flush=True)
    served = load.run(seconds=4, rounds=3)
    row(
        "`gimel serve` under wrk (16 connections, loopback, one worker per core): /track req/s,"
        " errors, p99, CPU of its processes per request",
        servers.describe(served),
        "≥ 15,000/s, 0 errors, p99 ≤ 10 ms, ≤ 80 µs",
        served["requests_per_s"] >= 15_000
        and served["errors"] == 0
        and served["p99_ms"] <= 10
        and served["cpu_us"] <= 80,
    )
    print("servers side by side, 3 s each, 3 rounds...", file=sys.stderr, flush=True)
    side_by_side = servers.compare(seconds=3, rounds=3)
    figures = servers.summary(side_by_side)
    ours = figures[servers.GIMEL]
    for name, by_connections in figures.items():
        measured = "; ".join(servers.describe(by_connections[c]) for c in servers.CONNECTIONS)
        connections = " and ".join(str(c) for c in servers.CONNECTIONS)
        figure = f"{name}, /track at {connections} connections (`python -m bench.servers`)"
        if name == servers.GIMEL:
            target = "≥ 15,000/s, 0 errors, p99 ≤ 10 ms; 0 errors"
            ok = ours[16]["requests_per_s"] >= 15_000 and ours[16]["errors"] == 0
            ok = ok and ours[16]["p99_ms"] <= 10 and ours[256]["errors"] == 0
        elif name == servers.NOOP:
            figure = f"{name} (the ceiling), at {connections} connections"
            target, ok = "none: the ceiling", True
        else:
            target = "below `gimel serve` at each"
            ok = all(
                by_connections[c]["requests_per_s"] < ours[c]["requests_per_s"]
                for c in servers.CONNECTIONS
            )
        row(figure, measured, target, ok)
    fraction = servers.gimel_fraction(side_by_side)
    row(
        "Gimel's /track rate over the no-op app's, same server (16 connections), each round's"
        " pair: Gimel's own cost per request",
        shown(fraction, "fraction", "{:.3f}"),
        "≥ 0.35",
        fraction["fraction"] >= 0.35,
    )
    worst = max(memory.values())
    row(
        "`exact` mode Redis memory per uuid in the window (`INFO memory`), at "
        + ", ".join(f"{n:,}" for n in memory)
        + " uuids; the worst",
        ", ".join(f"{b:.1f} B" for b in memory.values()) + f"; {worst:.1f} B",
        f"≤ {track.EXACT_TARGET:.0f} B",
        worst <= track.EXACT_TARGET,
    )
    print("exact mode for life: 1M uuids x 5 counters, re-sends...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(data).start()
        try:
            life = dedup.bytes_per_uuid(server.url, 1_000_000)
            resent = dedup.resent(server.url, 10_000, counting="exact")
        finally:
            server.stop()
    counters = len(dedup.GOALS)
    row(
        f"`exact` mode for the experiment's life: Redis bytes per uuid at 1M uuids x {counters}"
        " counters (`INFO memory`), and per record",
        f"{life['per_uuid']:.1f} B; {life['per_record']:.1f} B",
        f"≤ {dedup.TARGET_PER_RECORD:.1f} B per record",
        life["per_record"] <= dedup.TARGET_PER_RECORD + dedup.TOLERANCE,
    )
    days = ", ".join(str(d) for d in dedup.RESENT_ON)
    row(
        f"`exact` mode: participants of 10,000 uuids re-sent after {days} days",
        ", ".join(f"{found[0]:,}" for found in resent),
        "10,000 each time: counted once",
        all(found == [10_000] * counters for found in resent),
    )
    print("A/A study on real HyperLogLogs (short)...", file=sys.stderr, flush=True)
    short = aa.short()
    row(
        "`hll` A/A false-positive rate at p < 0.05, 20k per arm × 1,000 and 200k × 200, "
        "exact mode on the same visitors (short; the full study: `python -m bench.aa`)",
        ", ".join(f"{aa.pct(r.fpr_hll)} (exact {aa.pct(r.fpr_exact)})" for r in short),
        "within 5% ± 3.3 binomial SE",
        all(abs(r.fpr_hll - 0.05) <= 3.3 * (0.05 * 0.95 / r.replicates) ** 0.5 for r in short),
    )
    print("group-sequential decisions, simulated (quick)...", file=sys.stderr, flush=True)
    for f in group_sequential.measure(group_sequential.QUICK):
        runs = f"{f.replicates:,} runs" + (f", {f.seconds:.0f} s" if f.seconds else "")
        figure = (
            f"{f.figure} ({runs}; quick, the estimate judged: `python -m bench.group_sequential`)"
        )
        row(figure, f.measured, f.target, f.reached)
    print("value goals and CUPED, simulated (quick)...", file=sys.stderr, flush=True)
    for f in means.measure(quick=True):
        runs = f"{f.replicates:,} runs" + (f", {f.seconds:.0f} s" if f.seconds else "")
        figure = f"{f.figure} ({runs}; quick, the estimate judged: `python -m bench.means`)"
        row(figure, f.measured, f.target, f.ok)
    print("the watcher, a pass every simulated hour (quick)...", file=sys.stderr, flush=True)
    for seen in watch.measure(watch.QUICK):
        runs = f"{seen.replicates:,} runs" + (f", {seen.seconds:.0f} s" if seen.seconds else "")
        figure = f"{seen.figure} ({runs}; quick, the estimate judged: `python -m bench.watch`)"
        row(figure, seen.measured, seen.target, seen.reached)
    print("cold start and package size...", file=sys.stderr, flush=True)
    cold = deploy.cold_start()
    row(
        "cold start: `import handler` vs `import flask, redis, serverless_wsgi`",
        f"{cold['handler_s'] * 1000:.0f} ms vs {cold['baseline_s'] * 1000:.0f} ms, "
        f"ratio of each pair {shown(cold, 'ratio', RATIO)}",
        "≤ 1.2",
        cold["ratio"] <= 1.2,
    )
    try:
        size = deploy.zip_size()
    except deploy.NotPackaged as reason:
        row(ZIP, f"not measured: {reason}", "≤ 3 MB", False)
    else:
        row(ZIP, f"{size / 1e6:.2f} MB", "≤ 3 MB", size <= 3e6)

    print(f"\n{LEGEND}\n")
    print(table(rows))


def table(rows: list[tuple[str, str, str, bool]]) -> str:
    """The Markdown table the README's Performance section is pasted from; a ``|`` inside a
    cell (a tool's message in a row not measured) is escaped, so it cannot split the cell."""
    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    for *cells, ok in rows:
        text = " | ".join(cell.replace("|", "\\|") for cell in cells)
        lines.append(f"| {text} | {'met' if ok else 'MISSED'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
