"""`python -m bench` (or `make bench`): every figure with its target, measured in one run.

Prints a Markdown table, ready for the README. Ratios are measured side by side against the
same redis-server, so they hold on a noisy machine; absolute rates move with the machine.
"""

from __future__ import annotations

import shutil
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


def missing() -> list[str]:
    """What the run needs beyond the test extra, checked before a minute is spent measuring."""
    needs = []
    if shutil.which("wrk") is None:
        needs.append("wrk, the HTTP load generator (apt-get install wrk)")
    if shutil.which(dashboard.CHROMIUM) is None:
        needs.append(
            f"chromium at {dashboard.CHROMIUM} (apt-get install chromium, or set GIMEL_CHROMIUM)"
        )
    if not deploy.SLS.exists():
        needs.append("the sls CLI in node_modules, for the Lambda zip (make node_modules)")
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
            memory = track.exact_bytes_per_uuid(server.url)
        finally:
            server.stop()
    row(
        "single events through `handler.handler`, and ratio to a redis-py PFADD loop; CPU time"
        " of this process per event",
        f"{single['handler_events_per_s']:,.0f}/s vs {single['pfadd_per_s']:,.0f}/s, "
        f"ratio {single['ratio']:.2f}; {single['cpu_us']:.0f} µs",
        "ratio ≥ 0.3; ≤ 300 µs",
        single["ratio"] >= 0.3 and single["cpu_us"] <= 300,
    )
    row(
        "batches of 500 through `POST /track`, and ratio to pipelined PFADD",
        f"{batch['batch_events_per_s']:,.0f} events/s vs {batch['pipelined_pfadd_per_s']:,.0f}/s"
        f", ratio {batch['ratio']:.2f}",
        "≥ 50,000/s, ratio ≥ 0.6",
        batch["batch_events_per_s"] >= 50_000 and batch["ratio"] >= 0.6,
    )
    row(
        "CPU per `GET /track` through `handler.handler`, a value event (`value`, `total`) over"
        " a binary one, same `exact` experiment; with redis-server's CPU (`INFO cpu`) added",
        f"{cost['value']:.0f} / {cost['binary']:.0f} µs, ratio {cost['ratio']:.2f}; "
        f"{cost['value'] + cost['value_redis']:.0f} / {cost['binary'] + cost['binary_redis']:.0f}"
        f" µs, ratio {cost['total_ratio']:.2f}",
        "≤ 1.10, both",
        cost["ratio"] <= 1.10 and cost["total_ratio"] <= 1.10,
    )
    print("results and dashboard (100 x 3 x 4)...", file=sys.stderr, flush=True)
    dash = dashboard.measure()
    row(
        "results for 100 experiments × 3 variants × 4 goals, one page: Redis round trips, time"
        " in-process (nothing computed yet)",
        f"{dash['results_round_trips']:.0f} round trips, {dash['results_ms']:.1f} ms"
        f" ({dash['results_cold_ms']:.1f} ms)",
        "≤ 4, ≤ 20 ms",
        dash["results_round_trips"] <= 4 and dash["results_ms"] <= 20,
    )
    row(
        "the summary the dashboard loads first (`view=summary`), same data: time in-process"
        " (nothing computed yet)",
        f"{dash['summary_ms']:.1f} ms ({dash['summary_cold_ms']:.1f} ms)",
        "≤ 5 ms",
        dash["summary_ms"] <= 5,
    )
    row(
        "dashboard first paint in headless Chromium for that data (every card, from summaries)",
        f"{dash['load_ms']:.0f} ms",
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
            " (nothing cached), Redis round trips",
            f"{days['history_ms']:.1f} ms ({days['history_cold_ms']:.1f} ms), "
            f"{days['round_trips']:.0f} round trip",
            "≤ 15 ms, 1",
            days["history_ms"] <= 15 and days["round_trips"] == 1,
        )
    print("gimel serve under wrk for 10 s...", file=sys.stderr, flush=True)
    served = load.run(seconds=10)
    row(
        "`gimel serve` under wrk (16 connections, loopback, one worker per core): /track req/s,"
        " errors, p99",
        servers.describe(served),
        "≥ 5,000/s, 0 errors, p99 ≤ 10 ms",
        served["requests_per_s"] >= 5000 and served["errors"] == 0 and served["p99_ms"] <= 10,
    )
    print("servers side by side, 3 s each...", file=sys.stderr, flush=True)
    figures = servers.compare(seconds=3)
    ours = figures[servers.GIMEL]
    for name, by_connections in figures.items():
        measured = "; ".join(servers.describe(by_connections[c]) for c in servers.CONNECTIONS)
        connections = " and ".join(str(c) for c in servers.CONNECTIONS)
        figure = f"{name}, /track at {connections} connections (`python -m bench.servers`)"
        if name == servers.GIMEL:
            target = "≥ 5,000/s, 0 errors, p99 ≤ 10 ms; 0 errors"
            ok = ours[16]["requests_per_s"] >= 5000 and ours[16]["errors"] == 0
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
    fraction = servers.gimel_fraction(figures)
    row(
        "Gimel's /track rate over the no-op app's, same server (16 connections): Gimel's own"
        " cost per request",
        f"{fraction:.3f}",
        "none: higher is better",
        True,
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
        f"ratio {cold['ratio']:.2f}",
        "≤ 1.3",
        cold["ratio"] <= 1.3,
    )
    size = deploy.zip_size()
    row("Lambda zip size", f"{size / 1e6:.2f} MB", "≤ 3 MB", size <= 3e6)

    print("\n| figure | measured | target | |")
    print("|---|---|---|---|")
    for figure, measured, target, ok in rows:
        print(f"| {figure} | {measured} | {target} | {'met' if ok else 'MISSED'} |")


if __name__ == "__main__":
    main()
