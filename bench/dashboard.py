"""Dashboard load time in Chromium, and the cost of the results endpoint behind it.

100 experiments x 3 variants x 4 goals are counted through ``Tracker.track`` (the same
atomic script as ``/track``) on an embedded redis-server, then:

- the page is opened in Debian's chromium (Playwright, no download) with the API key already
  in sessionStorage, and timed from navigation start until every experiment is rendered and
  painted (the page sets ``performance.mark("gimel:rendered")`` and ``data-ready``); each
  time in a new tab of the same browser, after a first load that fills its cache (a team
  member opening the dashboard again), counting the requests the server answered;
- ``GET /experiments`` is timed in-process through Flask's test client, and the Redis round
  trips it makes are counted (every ``send_packed_command``: one per command or pipeline).

Run: ``.venv/bin/python -m bench.dashboard``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.connection
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from gimel_core import create_app
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event
from gimel_core.tracking import Tracker

from .spread import shown, spread, timed_ms

API_KEY = "bench-key-0123456789abcdef"
NAMESPACE = "alephbet"
EXPERIMENTS = 100
VARIANTS = ("control", "red", "blue")
GOALS = ("signup", "purchase", "share", "subscribe")
LOADS = 5
CALLS = 10
TARGETS = {
    "load_ms": 500.0,
    "results_ms": 5.0,
    "results_cold_ms": 20.0,
    "summary_ms": 3.0,
    "summary_cold_ms": 10.0,
    "round_trips": 4,
}
"""Most of each figure (milliseconds, round trips) that `python -m bench` calls met."""
CHROMIUM = os.environ.get("GIMEL_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seed(counters: Tracker) -> int:
    """A few dozen visitors per variant, a varying share of them per goal; returns events."""
    events = 0
    for e in range(EXPERIMENTS):
        experiment = f"experiment-{e:03d}"
        for v, variant in enumerate(VARIANTS):
            trials = 20 + (7 * e + 11 * v) % 25
            for i in range(trials):
                uuid = f"{experiment}-{variant}-{i}"
                counters.track(Event(NAMESPACE, experiment, variant, "participate", uuid))
                events += 1
                for g, goal in enumerate(GOALS):
                    if i % (2 + (e + v + g) % 5) == 0:
                        counters.track(Event(NAMESPACE, experiment, variant, goal, uuid))
                        events += 1
    return events


@contextmanager
def counted_round_trips() -> Iterator[list[int]]:
    """Counts what is written to Redis: one send per command, one per whole pipeline."""
    calls = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def results_endpoint(app: Flask, view: str = "full") -> dict[str, float]:
    """In-process time of GET /experiments (all 100 in one page) as a refresh sees it
    (unchanged experiments keep their analysis), and with nothing computed yet, each over
    CALLS calls (``spread``), and its Redis round trips; ``view=summary``: the light listing
    the dashboard loads first."""
    client = app.test_client()
    headers = {"x-api-key": API_KEY}
    url = f"/experiments?namespace={NAMESPACE}&limit={EXPERIMENTS}&view={view}"
    response = client.get(url, headers=headers)  # warm: scripts, connection, imports
    assert response.status_code == 200, response.data
    listed = response.get_json()[1:]
    assert len(listed) == EXPERIMENTS, len(listed)
    # What is timed is the view asked for: every goal's results, or their names alone.
    for experiment in listed:
        if view == "summary":
            assert "goals" not in experiment and len(experiment["goal_names"]) == len(GOALS)
        else:
            assert [len(goal["results"]) for goal in experiment["goals"]] == [3] * len(GOALS)
    with counted_round_trips() as calls:
        assert client.get(url, headers=headers).status_code == 200
    prefix = "results" if view == "full" else view
    store = app.extensions["gimel"].client
    store.config_resetstat()
    warm = timed_ms(lambda: client.get(url, headers=headers), CALLS)
    # What redis-server spent inside the page's script calls: the part of each call in-process
    # that is Redis's own, not this process's.
    inside = store.info("commandstats")["cmdstat_evalsha"]["usec"] / CALLS / 1000
    return (
        spread(f"{prefix}_ms", warm)
        | {f"{prefix}_redis_ms": inside}
        # Nothing computed yet: as when every experiment just changed.
        | spread(
            f"{prefix}_cold_ms",
            timed_ms(
                lambda: client.get(url, headers=headers),
                CALLS,
                app.extensions["gimel"].caches.clear,
            ),
        )
        | {f"{prefix}_round_trips": calls[0]}
    )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


def page_load(app: Flask) -> dict[str, float]:
    """Time from navigation start to the rendered board (first paint: every card, from the
    summaries), over LOADS fresh pages (``spread``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise SystemExit("bench.dashboard needs the playwright package") from exc
    answered: list[str] = []  # paths the server answered, for the load under way

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        answered.append(environ["PATH_INFO"])
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counted, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/dashboard"
    loads, fetches, renders, requests = [], [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(f"sessionStorage.setItem('gimel.apiKey', {API_KEY!r});")
            for attempt in range(LOADS + 1):  # the first one warms the server and the browser
                answered.clear()
                page = context.new_page()
                page.goto(url)
                # Poll on a timer: a selector wait would observe every DOM mutation and slow
                # down the very rendering being measured.
                page.wait_for_function(
                    "() => document.body.dataset.ready === 'board'", polling=50, timeout=30_000
                )
                figures = page.evaluate(
                    """() => {
                      const api = performance.getEntriesByType("resource")
                        .find((e) => new URL(e.name).pathname === "/experiments");
                      return {
                        cards: document.querySelectorAll("article.exp").length,
                        tables: document.querySelectorAll("article.exp table").length,
                        rendered: performance.getEntriesByName("gimel:rendered")[0].startTime,
                        data: performance.getEntriesByName("gimel:data")[0].startTime,
                        fetch: api ? api.responseEnd - api.startTime : null,
                      };
                    }"""
                )
                page.close()
                assert figures["cards"] == EXPERIMENTS, figures
                if attempt:
                    loads.append(figures["rendered"])
                    fetches.append(figures["fetch"])
                    renders.append(figures["rendered"] - figures["data"])
                    requests.append(len(answered))
            browser.close()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    return {
        **spread("load_ms", loads),
        "load_fetch_ms": statistics.median(fetches),
        "load_render_ms": statistics.median(renders),
        "load_requests": max(requests),
    }


def measure() -> dict[str, float]:
    """Every figure of this benchmark, on a fresh embedded Redis."""
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedRedis(folder).start()
        try:
            app = create_app({"redis_url": store.url, "api_keys": (API_KEY,)})
            started = time.perf_counter()
            events = seed(app.extensions["gimel"].tracker)
            figures: dict[str, float] = {
                "events": events,
                "seed_s": time.perf_counter() - started,
            }
            figures.update(results_endpoint(app))
            figures.update(results_endpoint(app, "summary"))
            figures.update(page_load(app))
            return figures
        finally:
            store.stop()


def main() -> None:
    figures = measure()
    shape = f"{EXPERIMENTS} experiments x {len(VARIANTS)} variants x {len(GOALS)} goals"
    print(f"dashboard: {shape} ({figures['events']:,} events, seeded in {figures['seed_s']:.1f} s)")
    rows = [
        (
            f"page load in Chromium, {LOADS} loads",
            shown(figures, "load_ms", "{:.0f}", " ms"),
            "load_ms",
        ),
        (
            "  of which GET /experiments, as the page saw it",
            f"{figures['load_fetch_ms']:.0f} ms",
            "",
        ),
        ("  of which building and painting the page", f"{figures['load_render_ms']:.0f} ms", ""),
        ("  requests the server answered, most of a load", f"{figures['load_requests']}", ""),
    ]
    for key, label in (
        ("results", "GET /experiments"),
        ("summary", "GET /experiments?view=summary"),
    ):
        rows.append(
            (
                f"{label} in-process, {CALLS} calls",
                shown(figures, f"{key}_ms", unit=" ms"),
                f"{key}_ms",
            )
        )
        rows.append(
            (
                "  of which redis-server's, inside the script calls",
                f"{figures[f'{key}_redis_ms']:.1f} ms",
                "",
            )
        )
        rows.append(
            (
                "  nothing computed yet",
                shown(figures, f"{key}_cold_ms", unit=" ms"),
                f"{key}_cold_ms",
            )
        )
    rows.append(
        (
            "Redis round trips per GET /experiments",
            f"{figures['results_round_trips']:.0f}",
            "round_trips",
        )
    )
    print("times: the median of the calls (min, max)")
    for label, value, target in rows:
        limit = f"<= {TARGETS[target]:g}" if target else ""
        print(f"  {label:<46} {value:>30}   {limit}")


if __name__ == "__main__":
    main()
