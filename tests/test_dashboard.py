"""The dashboard in a real browser: Debian's chromium driven by Playwright, no download.

The app is served over real HTTP in a thread and seeded through ``/track``; every check
compares what the page shows with what the API answers. Without chromium or the
``playwright`` package the tests are skipped, unless GIMEL_REQUIRE_BROWSER=1 (CI) makes
that a failure.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from receivers import Answer, Receiver
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler

import gimel_core
import helpers
from conftest import API_KEY
from gimel_core import api, create_app
from gimel_core.embedded import free_port
from gimel_core.notify import Slack, Webhook
from gimel_core.watch import Watcher
from helpers import chromium

# The page only speaks HTTP to the API, whose behaviour on a cluster is tested elsewhere.
pytestmark = pytest.mark.single_redis

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DASHBOARD = Path(gimel_core.__file__).parent / "dashboard"
MODULES = sorted(path.name for path in DASHBOARD.glob("*.js"))
VENDORED = sorted(path.name for path in (DASHBOARD / "vendor").glob("*.js"))
TIMEOUT_MS = 10_000
WEIRD = "checkout: {new} / flow ✓ ü"  # a name that needs escaping everywhere
MINUS = "\u2212"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


# -- serving and seeding ---------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


@contextmanager
def serving(wsgi_app: Any, prefix: str = "") -> Iterator[str]:
    """Serve over HTTP on a free port in a thread; yields the app's root URL ending in '/'."""
    with helpers.serving(wsgi_app, QuietHandler) as address:
        yield f"http://{address}{prefix}/"


def send_events(root: str, events: Iterable[dict[str, str]]) -> None:
    """GET /track for each event on one keep-alive connection, as Alephbet would."""
    parts = urlsplit(root)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        for fields in events:
            connection.request("GET", f"{parts.path}track?{urlencode(fields)}")
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body
    finally:
        connection.close()


def visitors(
    experiment: str, variant: str, trials: int, goals: dict[str, int]
) -> Iterator[dict[str, str]]:
    for i in range(trials):
        uuid = f"{experiment}-{variant}-{i}"
        yield {"experiment": experiment, "variant": variant, "event": "participate", "uuid": uuid}
        for goal, successes in goals.items():
            if i < successes:
                yield {"experiment": experiment, "variant": variant, "event": goal, "uuid": uuid}


def seed(root: str) -> None:
    send_events(root, visitors("button", "control", 600, {"signup": 90, "purchase": 30}))
    send_events(root, visitors("button", "green", 600, {"signup": 180, "purchase": 34}))
    send_events(root, visitors("split", "a", 150, {"signup": 15}))  # 150 vs 90: SRM
    send_events(root, visitors("split", "b", 90, {"signup": 9}))
    send_events(root, visitors(WEIRD, "A 1", 20, {"buy now": 3}))
    send_events(root, visitors(WEIRD, "B/2", 20, {"buy now": 5}))
    send_events(root, visitors("tiny", "only", 3, {}))


def api_get(root: str, path: str, key: str = API_KEY) -> Any:
    request = urllib.request.Request(root + path, headers={"x-api-key": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def server(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The app served over HTTP, empty; yields its root URL."""
    with serving(make_app()) as root:
        yield root


@pytest.fixture
def served(server: str, make_app: Callable[..., Flask]) -> str:
    """The app served over HTTP with a few experiments in it."""
    seed(server)
    # One experiment counted in exact mode (the mode is recorded with its first event).
    exact = make_app(counting="exact").test_client()
    for fields in visitors("pricing", "cheap", 12, {"buy": 4}):
        assert exact.get("/track?" + urlencode(fields)).status_code == 200
    return server


# -- the browser side ------------------------------------------------------------------------

RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""

READ_PAGE = """() => Array.from(document.querySelectorAll("article.exp")).map((card) => ({
  name: card.dataset.experiment,
  srm: card.querySelector(".srm") ? card.querySelector(".srm").textContent : null,
  caveat: card.querySelector(".caveat").textContent,
  archived: !!card.querySelector(".badge-muted"),
  goals: Array.from(card.querySelectorAll("section.goal")).map((goal) => ({
    goal: goal.dataset.goal,
    verdicts: Array.from(goal.querySelectorAll(".verdict")).map(
      (v) => (v.querySelector(".verdict-text") || v).textContent),
    rows: Array.from(goal.querySelectorAll("tbody tr")).map((tr) => ({
      label: tr.dataset.variant,
      cells: Object.fromEntries(Array.from(tr.querySelectorAll("td[data-field]")).map((td) => [
        td.dataset.field, {
          value: td.dataset.value, low: td.dataset.low, high: td.dataset.high,
          adjusted: td.dataset.adjusted,
          text: td.firstChild ? td.firstChild.textContent : "",
          sub: td.querySelector(".sub") ? td.querySelector(".sub").textContent : "",
        }])),
    })),
  })),
}))"""


class Watched:
    """A page whose requests, failures, console errors and CSP violations are recorded."""

    def __init__(self, browser: Any, root: str) -> None:
        self.root = root
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(root))
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.add_init_script(RECORD_CSP)
        self.page = self.context.new_page()
        self.requests: list[Any] = []
        self.failed: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))
        self.page.on(
            "console", lambda m: self.console.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))

    def open(self, key: str | None = API_KEY) -> None:
        self.page.goto(self.root + "dashboard")
        self.wait_ready("login")
        if key is not None:
            self.login(key)

    def login(self, key: str, expect: str = "board") -> None:
        self.page.fill("#api-key", key)
        self.page.click("#login-form button[type=submit]")
        self.wait_ready(expect)

    def wait_ready(self, state: str) -> None:
        self.page.wait_for_selector(f'body[data-ready="{state}"]', state="attached")

    def card(self, name: str) -> Any:
        return self.page.locator(f'article.exp[data-experiment="{css_string(name)}"]')

    def confirm(self, name: str, action: str, accept: bool = True) -> None:
        self.card(name).locator(f'button[data-action="{action}"]').click()
        self.page.wait_for_selector("#confirm[open]")
        self.page.click("#confirm-ok" if accept else "#confirm-cancel")
        self.page.wait_for_selector("#confirm", state="hidden")

    def read(self) -> list[dict[str, Any]]:
        return self.page.evaluate(READ_PAGE)

    def assert_clean(self, allowed_console: str | None = None) -> None:
        """Nothing blocked, nothing failed, every request to the app, the key in no URL."""
        assert self.page.evaluate("window.__csp") == []
        console = [m for m in self.console if not (allowed_console and allowed_console in m)]
        assert console == []
        assert self.failed == []
        assert self.requests
        for request in self.requests:
            assert request.url.startswith(self.origin + "/"), request.url
            assert API_KEY not in request.url and quote(API_KEY) not in request.url
            if request.resource_type in ("fetch", "xhr"):
                assert request.url.startswith(self.root), request.url
                assert request.headers.get("x-api-key"), request.url

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watch(browser: Any) -> Iterator[Callable[[str], Watched]]:
    opened: list[Watched] = []

    def make(root: str) -> Watched:
        opened.append(Watched(browser, root))
        return opened[-1]

    yield make
    for watched in opened:
        watched.close()


def css_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# -- reading numbers back from their text ------------------------------------------------


def shown_number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace(MINUS, "-").replace("+", ""))


def assert_percent(text: str, value: float) -> None:
    """``text`` shows ``value`` (a fraction) as a percentage, rounded as the page rounds."""
    text = text.strip()
    if text.startswith(">"):
        assert value * 100 >= shown_number(text[1:]), (text, value)
    elif text.startswith("<"):
        assert value * 100 <= shown_number(text[1:]), (text, value)
    else:
        decimals = len(text.rstrip("%").partition(".")[2])
        assert math.isclose(shown_number(text), value * 100, abs_tol=0.5 * 10**-decimals + 1e-9), (
            text,
            value,
        )


def assert_p(text: str, value: float) -> None:
    if text.startswith("<"):
        assert value < float(text[1:])
    else:
        decimals = len(text.partition(".")[2])
        assert math.isclose(float(text), value, abs_tol=0.5 * 10**-decimals + 1e-12), (text, value)


def assert_row(cells: dict[str, dict[str, str]], row: dict[str, Any], control: bool) -> None:
    for field in ("trials", "successes"):
        assert int(cells[field]["value"]) == row[field]
        assert int(cells[field]["text"].replace(",", "")) == row[field]
    rate = cells["conversion_rate"]
    assert float(rate["value"]) == row["conversion_rate"]
    assert_percent(rate["text"], row["conversion_rate"])
    assert [float(rate["low"]), float(rate["high"])] == row["ci"]
    low, high = rate["sub"].split(" to ")
    assert_percent(low, row["ci"][0])
    assert_percent(high, row["ci"][1])
    p_value, chance = cells["p_value"], cells["chance_to_beat_control"]
    if control:
        assert row["p_value"] is None and row["chance_to_beat_control"] is None
        assert p_value["value"] == chance["value"] == cells["uplift"]["value"] == ""
        assert p_value["text"] == chance["text"] == cells["uplift"]["text"] == "\u2014"
        return
    assert float(p_value["value"]) == row["p_value"]
    if row["p_value_adjusted"] is None:  # the running values wait for enough evidence
        assert p_value["adjusted"] == ""
    else:
        assert float(p_value["adjusted"]) == row["p_value_adjusted"]
    assert_p(p_value["text"], row["p_value"])
    assert float(chance["value"]) == row["chance_to_beat_control"]
    assert_percent(chance["text"], row["chance_to_beat_control"])
    if row["uplift"] is not None:
        assert float(cells["uplift"]["value"]) == row["uplift"]
        assert_percent(cells["uplift"]["text"], row["uplift"])


VERDICT = re.compile(r"(?P<chance>[<>]?[\d.]+%) (?:Bayesian )?chance.*, p=?(?P<p><?[\d.]+)")


def assert_verdict(text: str, start: str, row: dict[str, Any], flip: bool = False) -> None:
    assert text.startswith(start), text
    found = VERDICT.search(text)
    assert found, text
    chance = row["chance_to_beat_control"]
    assert_percent(found["chance"], 1 - chance if flip else chance)
    assert_p(found["p"], row["p_value_adjusted"])


# -- tests -----------------------------------------------------------------------------------


IMPORTED = re.compile(r'\bfrom "\./([^"]+)"|\bimport\("\./([^"]+)"\)')
VERSIONED = re.compile(r'"dashboard/v/([0-9a-f]{12})/([^"]+)"')
"""A file the page asks for, under the dashboard's version: (version, name)."""
KEPT_FOR_GOOD = "public, max-age=31536000, immutable"


def page_version(client: FlaskClient) -> str:
    """The one version the page asks for its files under."""
    (version,) = {v for v, _ in VERSIONED.findall(client.get("/dashboard").get_data(as_text=True))}
    return version


def test_every_module_is_served_as_javascript(client: FlaskClient) -> None:
    """The page loads main.js as a module; every module it imports (uPlot on demand), and only
    those, exists."""
    page = client.get("/dashboard").get_data(as_text=True)
    version = page_version(client)
    assert f'<script type="module" src="dashboard/v/{version}/main.js"></script>' in page
    reached: set[str] = set()
    todo = ["main.js"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        response = client.get(f"/dashboard/v/{version}/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8", name
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert client.get(f"/dashboard/{name}").data == response.data, name  # by name alone
        todo += [a or b for a, b in IMPORTED.findall(response.get_data(as_text=True))]
    assert sorted(reached) == sorted(MODULES + VENDORED)  # none missing, none unused
    assert VENDORED == ["uplot.js"] and not set(MODULES) & set(VENDORED)
    assert client.get("/dashboard/app.css").headers["Content-Type"] == "text/css; charset=utf-8"
    index = client.get("/dashboard/index.html")
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    for unknown in (
        "app.js",  # the single script the modules replaced
        "nothing.js",
        "Main.js",
        "main.mjs",
        "main.js.map",
        "index.htm",
        "README.md",
        "..",
        "%2e%2e%2fapi.py",
    ):
        assert client.get(f"/dashboard/{unknown}").status_code == 404, unknown
        assert client.get(f"/dashboard/v/{version}/{unknown}").status_code == 404, unknown


STATIC_IMPORT = re.compile(r'\bfrom "\./([^"]+)"')
PRELOADED = re.compile(r'<link rel="modulepreload" href="dashboard/v/[0-9a-f]{12}/([^"]+)">')


def test_the_page_asks_for_every_module_at_once(client: FlaskClient) -> None:
    """index.html preloads each module main.js imports, at any depth, and only those: the
    browser asks for them all with the page, instead of one level of imports per round trip
    (four levels deep: main, board, card, goal, chart). uPlot, imported on demand, waits."""
    page = client.get("/dashboard").get_data(as_text=True)
    reached: set[str] = set()
    todo = ["main.js"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += STATIC_IMPORT.findall((DASHBOARD / name).read_text())
    preloaded = PRELOADED.findall(page)
    assert sorted(preloaded) == sorted(reached - {"main.js"})
    assert len(preloaded) == len(set(preloaded)) and "uplot.js" not in preloaded
    # After the module script: it is what the page runs, and the preloads only feed it.
    assert page.index('/main.js"></script>') < page.index('rel="modulepreload"')


def dashboard_files() -> list[tuple[str, bytes]]:
    """Every file the dashboard serves, read here: the page, its styles and scripts, uPlot's."""
    return [
        (path.name, path.read_bytes())
        for folder in (DASHBOARD, DASHBOARD / "vendor")
        for path in folder.iterdir()
        if path.suffix in (".js", ".css", ".html")
    ]


def test_the_files_are_kept_for_good_under_their_version(client: FlaskClient) -> None:
    """The page asks for every file under one version, a hash of all of them: a browser keeps
    each for good, and a release that changes any file (or adds one) has another version, so
    its page asks for new ones. Under another version (a page opened before a release), a file
    is sent as it is now and asked for again each time, never kept."""
    page = client.get("/dashboard").get_data(as_text=True)
    asked = VERSIONED.findall(page)
    version = page_version(client)
    assert {name for _, name in asked} == {"uplot.css", "app.css", *MODULES}
    files = dashboard_files()
    assert version == api.version_of(files)
    name, data = files[0]
    for changed in (
        [(name, data + b" "), *files[1:]],  # a byte more
        [(name, data[:-1] + bytes([data[-1] ^ 1])), *files[1:]],  # a bit flipped
        [*files, ("new.js", b"")],  # a file more
        [(name + "x", data), *files[1:]],  # a file renamed
    ):
        assert api.version_of(changed) != version
    assert api.version_of(list(reversed(files))) == version  # their order is not theirs
    for name in ("main.js", "app.css", "uplot.js", "uplot.css"):
        kept = client.get(f"/dashboard/v/{version}/{name}")
        assert kept.status_code == 200 and kept.headers["Cache-Control"] == KEPT_FOR_GOOD, name
        assert kept.data == client.get(f"/dashboard/{name}").data
        assert "default-src 'none'" in kept.headers["Content-Security-Policy"]
        older = client.get(f"/dashboard/v/{'0' * 12}/{name}")
        assert older.data == kept.data and older.headers["Cache-Control"] == "no-cache", name
    # The page itself is asked for again each time: it is what names the version.
    assert client.get("/dashboard").headers["Cache-Control"] == "no-cache"
    for path in (
        f"/dashboard/v/{version}/index.html",  # its relative URLs hold only at /dashboard
        f"/dashboard/v/{version.upper()}/main.js",
        f"/dashboard/v/{version[:-1]}/main.js",
        f"/dashboard/v/{version}0/main.js",
        "/dashboard/v/main.js",
        f"/dashboard/v/{version}",
        f"/dashboard/v/{version}/vendor/uplot.js",
        f"/dashboard/v/{version}/..%2fapi.py",
    ):
        answer = client.get(path)
        assert answer.status_code == 404 and "error" in answer.get_json(), path


def test_an_unchanged_file_is_not_sent_again(client: FlaskClient) -> None:
    """Each file has a strong ETag of its bytes: asked again with it (no-cache makes a browser
    ask each time), the answer is a 304 without a body, with the page's security headers."""
    version = page_version(client)
    for asset in ("", "/main.js", "/app.css", "/uplot.js", f"/v/{version}/main.js"):
        first = client.get(f"/dashboard{asset}")
        etag = first.headers["ETag"]
        kept = "/v/" in asset  # else asked for again each time
        assert first.headers["Cache-Control"] == (KEPT_FOR_GOOD if kept else "no-cache"), asset
        assert first.status_code == 200
        assert etag == f'"{hashlib.sha1(first.data).hexdigest()}"', asset
        again = client.get(f"/dashboard{asset}", headers={"If-None-Match": f'"old", {etag}'})
        assert again.status_code == 304 and again.data == b"", asset
        assert again.headers["ETag"] == etag
        assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
        assert again.headers["X-Content-Type-Options"] == "nosniff"
        changed = client.get(f"/dashboard{asset}", headers={"If-None-Match": '"old"'})
        assert changed.status_code == 200 and changed.data == first.data, asset
    # Another file's tag is not this one's.
    main = client.get("/dashboard/main.js").headers["ETag"]
    assert client.get("/dashboard/api.js", headers={"If-None-Match": main}).status_code == 200


def test_a_browser_opening_the_dashboard_again_asks_for_the_page_alone(
    make_app: Callable[..., Flask], browser: Any
) -> None:
    """The files come from the browser's cache: the server (on Lambda, one invocation each)
    sees the page and the data, not the page's 24 files."""
    seen: list[str] = []
    app = make_app()

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["PATH_INFO"])
        return app(environ, start_response)

    with serving(counting) as root:
        send_events(root, visitors("button", "control", 3, {"signup": 1}))
        context = browser.new_context()
        context.add_init_script(f"sessionStorage.setItem('gimel.apiKey', {API_KEY!r});")
        try:
            for visit in range(2):
                seen.clear()
                page = context.new_page()
                page.goto(root + "dashboard")
                page.wait_for_selector('body[data-ready="board"]', state="attached")
                page.close()
                files = [path for path in seen if path.startswith("/dashboard/")]
                if visit == 0:
                    assert len(files) == len(MODULES) + 2, files  # the styles, the modules
                else:
                    assert files == [], files
            assert "/dashboard" in seen and "/experiments" in seen
        finally:
            context.close()


def test_the_page_shows_the_api_numbers(served: str, watch: Callable[[str], Watched]) -> None:
    page = watch(served)
    page.open()
    api = api_get(served, "experiments")[1:]
    shown = page.read()
    assert [card["name"] for card in shown] == [e["experiment"] for e in api]
    assert {e["experiment"] for e in api} == {"button", "pricing", "split", "tiny", WEIRD}
    for card, exp in zip(shown, api, strict=True):
        assert [g["goal"] for g in card["goals"]] == [g["goal"] for g in exp["goals"]]
        for goal, api_goal in zip(card["goals"], exp["goals"], strict=True):
            rows = {r["label"]: r["cells"] for r in goal["rows"]}
            assert list(rows) == [r["label"] for r in api_goal["results"]]
            for row in api_goal["results"]:
                assert_row(rows[row["label"]], row, control=row["label"] == exp["control"])

    by_name = {card["name"]: card for card in shown}
    api_rows = {
        (e["experiment"], g["goal"]): {r["label"]: r for r in g["results"]}
        for e in api
        for g in e["goals"]
    }
    signup, purchase = by_name["button"]["goals"][1], by_name["button"]["goals"][0]
    assert (signup["goal"], purchase["goal"]) == ("signup", "purchase")
    green = api_rows["button", "signup"]["green"]
    assert green["chance_to_beat_control"] >= 0.95 and green["p_value_adjusted"] < 0.05
    assert_verdict(signup["verdicts"][0], "green beats control on signup, ", green)
    # Purchase: no winner either way, in the server's words.
    undecided = api_rows["button", "purchase"]["green"]
    assert undecided["verdict"]["kind"] in ("even", "wait")
    assert purchase["verdicts"][0] == undecided["verdict"]["text"]
    assert_verdict(purchase["verdicts"][0], "", undecided)
    (weird,) = by_name[WEIRD]["goals"][0]["verdicts"]
    assert weird.startswith("B/2 vs A 1 on buy now: not enough data yet"), weird

    # SRM: flagged by the API for the 150/90 split only, and shown there only.
    assert [e["experiment"] for e in api if e["srm"]["mismatch"]] == ["split"]
    assert [card["name"] for card in shown if card["srm"]] == ["split"]
    split = next(e for e in api if e["experiment"] == "split")
    srm = by_name["split"]["srm"]
    assert "Sample ratio mismatch" in srm
    assert split["srm"]["p_value"] < 0.001 and "p<0.001" in srm
    share = split["participants"]["a"] / sum(split["participants"].values())
    found = re.search(r"a ([\d.]+%) \(expected 50.0%\), b ([\d.]+%) \(expected 50.0%\)", srm)
    assert found, srm
    assert_percent(found[1], share)
    assert_percent(found[2], 1 - share)
    assert "Unreliable" in by_name["split"]["goals"][0]["verdicts"][-1]

    assert "about ±0.8% counting error" in by_name["button"]["caveat"]
    assert "Exact unique counts" in by_name["pricing"]["caveat"]

    # The key lives in this tab's sessionStorage only.
    assert page.page.evaluate("sessionStorage.getItem('gimel.apiKey')") == API_KEY
    assert API_KEY not in page.page.evaluate("JSON.stringify(localStorage)")
    assert API_KEY not in page.page.url
    BUILD.mkdir(exist_ok=True)
    page.page.screenshot(path=str(BUILD / "dashboard.png"), full_page=True)
    page.page.set_viewport_size({"width": 390, "height": 844})
    page.page.screenshot(path=str(BUILD / "dashboard-narrow.png"))
    page.assert_clean()


def test_archive_reset_and_delete(served: str, watch: Callable[[str], Watched]) -> None:
    page = watch(served)
    page.open()
    assert page.card(WEIRD).count() == 1

    page.confirm(WEIRD, "archive", accept=False)  # cancelled: nothing happens
    assert page.card(WEIRD).count() == 1
    page.confirm(WEIRD, "archive")
    page.card(WEIRD).wait_for(state="detached")
    assert WEIRD not in [e["experiment"] for e in api_get(served, "experiments")[1:]]
    archived = {e["experiment"]: e for e in api_get(served, "experiments?archived=true")[1:]}
    assert archived[WEIRD]["archived"] is True

    page.page.check("#show-archived")
    page.wait_ready("board")
    assert page.card(WEIRD).locator(".badge-muted").inner_text().lower() == "archived"
    assert page.card(WEIRD).locator('button[data-action="unarchive"]').count() == 1

    page.confirm("split", "reset")
    page.page.wait_for_selector('article[data-experiment="split"] td[data-value="0"]')
    split = api_get(served, "experiments/split")
    assert split["participants"] == {"a": 0, "b": 0}
    trials = page.card("split").locator('td[data-field="trials"]').all_inner_texts()
    assert trials == ["0", "0"]

    page.confirm("tiny", "delete")
    page.card("tiny").wait_for(state="detached")
    with pytest.raises(HTTPError) as missing:
        api_get(served, "experiments/tiny")
    assert missing.value.code == 404

    page.page.reload()
    page.wait_ready("board")
    names = [card["name"] for card in page.read()]
    assert names == ["button", WEIRD, "pricing", "split"]
    methods = {(r.method, urlsplit(r.url).path) for r in page.requests}
    assert ("PATCH", "/experiments/" + quote(WEIRD, safe="")) in methods
    assert ("POST", "/experiments/split/reset") in methods
    assert ("DELETE", "/experiments/tiny") in methods
    page.assert_clean()


def test_wrong_key_asks_again_and_logout_forgets(
    server: str, watch: Callable[[str], Watched]
) -> None:
    send_events(server, visitors("button", "control", 3, {"signup": 1}))
    page = watch(server)
    page.open(key=None)
    page.login("not-the-key-0123456789", expect="login")
    assert "wrong API key" in page.page.inner_text("#login-message")
    assert page.page.evaluate("sessionStorage.getItem('gimel.apiKey')") is None
    page.login(API_KEY)
    assert page.card("button").count() == 1
    page.page.click("#logout")
    page.wait_ready("login")
    assert page.page.is_visible("#login") and not page.page.is_visible("#board")
    assert page.page.evaluate("sessionStorage.getItem('gimel.apiKey')") is None
    assert page.page.locator("article.exp").count() == 0
    page.assert_clean(allowed_console="status of 403")


def test_under_a_stage_prefix_with_the_empty_state(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    """As on API Gateway (/prod/dashboard): relative URLs, and the how-to that works."""
    app = DispatcherMiddleware(NotFound(), {"/prod": make_app()})
    with serving(app, prefix="/prod") as root:
        page = watch(root)
        page.open()
        empty = page.page.inner_text(".empty")
        assert "No experiments yet" in empty
        assert f'"{root}track"' in empty
        curl = page.page.locator(".empty pre").nth(1).inner_text()
        sample = re.fullmatch(r"curl -A '([^']+)' '(.+)'", curl)
        assert sample and sample[2].startswith(root + "track?")
        by_hand = urllib.request.Request(sample[2], headers={"User-Agent": sample[1]})
        with urllib.request.urlopen(by_hand, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"ok": True}  # counted, not filtered
        page.page.click("#refresh")
        page.card("demo").wait_for()
        assert all(r.url.startswith(root) for r in page.requests)
        page.assert_clean()


def test_store_down_shows_a_retry(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}", redis_timeout=0.05)
    with serving(app) as root:
        page = watch(root)
        page.open(key=None)
        page.login(API_KEY, expect="error")
        text = page.page.inner_text("#notice")
        assert "unavailable" in text and "Retrying in" in text
        assert page.page.is_visible("#notice button")
        assert page.page.evaluate("sessionStorage.getItem('gimel.apiKey')") == API_KEY
        page.assert_clean(allowed_console="status of 503")


READ_VERDICTS = """() => Array.from(document.querySelectorAll("section.goal")).map((goal) => ({
  experiment: goal.closest("article.exp").dataset.experiment,
  goal: goal.dataset.goal,
  verdicts: Array.from(goal.querySelectorAll(".verdict[data-kind]")).map(
    (v) => [v.dataset.kind, v.querySelector(".verdict-text").textContent]),
  rows: Object.fromEntries(Array.from(goal.querySelectorAll("tbody tr")).map(
    (tr) => [tr.dataset.variant, tr.className])),
}))"""

KINDS = ("win", "lose", "even", "wait", "harm", "safe")


def expected_verdicts(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the page must show: the API's verdict of each row; "wait" when it has none."""
    out = []
    for exp in experiments:
        control = exp["control"]
        for goal in exp["goals"]:
            verdicts, rows = [], {}
            for row in goal["results"]:
                label, given = row["label"], row.get("verdict")
                if label == control:
                    rows[label] = "row-control"
                    continue
                kind = given["kind"] if given and given["kind"] in KINDS else "wait"
                text = f"{label} vs {control} on {goal['goal']}: not enough data yet"
                verdicts.append([kind, given["text"] if given else text])
                rows[label] = f"row-{kind}"
            if not verdicts:
                verdicts = [["wait", "Only one variant so far: nothing to compare yet."]]
            out.append(
                {"experiment": exp["experiment"], "goal": goal["goal"], "verdicts": verdicts}
                | {"rows": rows}
            )
    return out


def test_verdicts_are_the_apis(served: str, watch: Callable[[str], Watched]) -> None:
    """The page decides nothing: it shows each row's verdict as the API sends it."""
    page = watch(served)
    page.open()
    api = api_get(served, "experiments")[1:]
    assert page.page.evaluate(READ_VERDICTS) == expected_verdicts(api)
    scripts = {urlsplit(r.url).path for r in page.requests if r.resource_type == "script"}
    (version,) = {path.split("/")[3] for path in scripts}
    assert scripts == {f"/dashboard/v/{version}/{name}" for name in MODULES}

    # Every kind, an unknown kind, null and no verdict at all, each on a goal of its own.
    givens: list[Any] = [{"kind": kind, "text": f"{kind}: {WEIRD}"} for kind in KINDS]
    givens += [{"kind": "<b>odd</b>", "text": "<i>not markup</i>"}, None, "missing"]
    button = next(e for e in api if e["experiment"] == "button")
    control, green = (button["goals"][0]["results"][i] for i in (0, 1))
    assert (control["label"], green["label"]) == ("control", "green")
    for i, given in enumerate(givens):
        row = {k: v for k, v in green.items() if k != "verdict"}
        if given != "missing":
            row["verdict"] = given
        button["goals"].append({"goal": f"goal {i}", "results": [control, row]})

    def answer(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, json=[*response.json()[:1], *api])

    page.page.route(lambda url: urlsplit(url).path == "/experiments", answer)
    page.page.click("#refresh")
    page.wait_ready("board")
    assert page.page.evaluate(READ_VERDICTS) == expected_verdicts(api)
    assert page.page.locator(".verdict-text i, .verdict-text b").count() == 0
    page.assert_clean()


# -- history ---------------------------------------------------------------------------------


def test_uplot_is_the_pinned_release_served_from_the_package(client: FlaskClient) -> None:
    """Committed byte for byte as npm installs it, license included; served like the rest."""
    version = json.loads((ROOT / "package-lock.json").read_text())["packages"][
        "node_modules/uplot"
    ]["version"]
    assert json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"] == version
    vendor = DASHBOARD / "vendor"
    script, style = (vendor / "uplot.js").read_bytes(), (vendor / "uplot.css").read_bytes()
    assert f"https://github.com/leeoniya/uPlot (v{version})".encode() in script[:400]
    assert b"(MIT Licensed)" in script[:400]
    assert "Permission is hereby granted" in (vendor / "uplot.LICENSE").read_text()
    release = ROOT / "node_modules" / "uplot"
    if release.is_dir():  # `make test` runs `npm ci` first; `make vendor` copies them again
        assert script == (release / "dist" / "uPlot.esm.js").read_bytes()
        assert style == (release / "dist" / "uPlot.min.css").read_bytes()
    for name, body, mimetype in [
        ("uplot.js", script, "text/javascript"),
        ("uplot.css", style, "text/css"),
    ]:
        response = client.get(f"/dashboard/{name}")
        assert response.status_code == 200 and response.mimetype == mimetype, name
        assert response.data == body
        assert "style-src 'self'" in response.headers["Content-Security-Policy"]
    for unknown in ("vendor/uplot.js", "vendor%2Fuplot.js", "uplot.LICENSE", "uPlot.esm.js"):
        assert client.get(f"/dashboard/{unknown}").status_code == 404, unknown


DAY = 86400
FIRST_DAY = datetime(2026, 11, 28, tzinfo=UTC)

# New participants per variant each day, and how many of them reach each goal: green's signup
# rate is about twice the control's (its interval leaves 0 after a few days, not on the first),
# their purchase rates are the same (its interval never leaves 0).
DAYS = [
    {"control": (60, {"signup": 6, "purchase": 2}), "green": (60, {"signup": 12, "purchase": 2})},
    {"control": (80, {"signup": 8, "purchase": 3}), "green": (78, {"signup": 17, "purchase": 3})},
    {
        "control": (100, {"signup": 10, "purchase": 3}),
        "green": (102, {"signup": 22, "purchase": 3}),
    },
    {
        "control": (120, {"signup": 12, "purchase": 4}),
        "green": (120, {"signup": 27, "purchase": 4}),
    },
    {
        "control": (150, {"signup": 15, "purchase": 5}),
        "green": (150, {"signup": 33, "purchase": 5}),
    },
    {"control": (40, {"signup": 4, "purchase": 1}), "green": (42, {"signup": 9, "purchase": 1})},
]


class Clock:
    """The app's time (Unix seconds), which the test moves from day to day."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dated(redis_url: str) -> Iterator[str]:
    """The app served over HTTP, "checkout" tracked over six UTC days; today is the last.
    Exact counts, so that each day's figures are the ones sent."""
    clock = Clock(FIRST_DAY)
    config = {"redis_url": redis_url, "api_keys": (API_KEY,), "counting": "exact"}
    app = create_app(config, clock=clock)
    try:
        with serving(app) as root:
            for day, variants in enumerate(DAYS):
                clock.now = (FIRST_DAY + timedelta(days=day, hours=9)).timestamp()
                for variant, (trials, goals) in variants.items():
                    events = visitors("checkout", variant, trials, goals)
                    send_events(root, ({**e, "uuid": f"{e['uuid']}-day{day}"} for e in events))
                clock.now += 6 * 3600
            send_events(root, visitors("other", "a", 3, {}))
            yield root
    finally:
        app.extensions["gimel"].client.close()


READ_HISTORY = """({ name, days }) => {
  const card = Array.from(document.querySelectorAll("article.exp"))
    .find((c) => c.dataset.experiment === name);
  const details = card.querySelector("details.history");
  const facts = (figure) => Array.from(figure.querySelectorAll(".facts li")).map((li) => ({
    ...li.dataset, text: li.textContent,
    total: li.querySelector("[data-total]") && li.querySelector("[data-total]").dataset.total,
    since: li.querySelector("[data-since]") && li.querySelector("[data-since]").dataset.since,
  }));
  // uPlot's canvas: its size, how many pixels are painted, and, for the uplift, how tall the
  // band is (pixels tinted like the first variant) just inside the first and the last day.
  const canvas = (figure) => {
    const el = figure.querySelector(".uplot canvas");
    if (!el) return null;
    const ctx = el.getContext("2d");
    const pixels = ctx.getImageData(0, 0, el.width, el.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
    const over = figure.querySelector(".u-over");
    const ratio = el.width / el.getBoundingClientRect().width;
    const column = (x) => {
      const at = Math.round((over.offsetLeft + x * over.offsetWidth) * ratio);
      const top = Math.round(over.offsetTop * ratio);
      const col = ctx.getImageData(at, top, 1, Math.round(over.offsetHeight * ratio)).data;
      let tinted = 0;
      for (let i = 0; i < col.length; i += 4) if (col[i + 3] && col[i + 2] - col[i] > 12) tinted++;
      return tinted;
    };
    return { width: el.width, height: el.height, painted,
      firstDay: column((0.5 + 0.1) / days), lastDay: column(1 - (0.5 + 0.1) / days) };
  };
  const figures = (root) => Object.fromEntries(Array.from(
    root.querySelectorAll(":scope > figure, :scope > .history-charts > figure"),
    (f) => [f.dataset.chart, { facts: facts(f), canvas: canvas(f),
      title: f.querySelector(".history-chart-title").textContent,
      label: f.querySelector(".history-plot").getAttribute("aria-label") }]));
  const body = details.querySelector(".history-body");
  return {
    state: details.dataset.state,
    range: body.querySelector(".history-range").textContent,
    ...figures(body),
    goals: Array.from(body.querySelectorAll("section.history-goal"),
      (s) => ({ goal: s.dataset.goal, ...figures(s) })),
  };
}"""


def interval_of(row: dict[str, Any]) -> list[float] | None:
    """The interval the page draws and marks: the running one when the server sends it."""
    return row["running_uplift_ci"] or row["uplift_ci"]


def first_excluding_zero(points: list[dict[str, Any]], goal: str, label: str) -> str | None:
    for point in points:
        (row,) = (
            r
            for g in point["goals"]
            if g["goal"] == goal
            for r in g["results"]
            if r["label"] == label
        )
        ci = interval_of(row)
        if ci and (ci[0] > 0 or ci[1] < 0):
            return str(point["date"])
    return None


def test_history_charts_are_drawn_on_demand_from_the_api(
    dated: str, watch: Callable[[str], Watched]
) -> None:
    page = watch(dated)
    page.open()
    history = api_get(dated, "experiments/checkout/history")
    points = history["points"]
    dates = [(FIRST_DAY + timedelta(days=d)).date().isoformat() for d in range(len(DAYS))]
    assert [p["date"] for p in points] == dates  # one point per day with events, today last

    def paths() -> list[str]:
        return [urlsplit(r.url).path for r in page.requests]

    assert not [p for p in paths() if p.endswith("/history") or p.endswith("/uplot.js")]

    card = page.card("checkout")
    card.locator("details.history > summary").click()
    card.locator('details.history[data-state="ready"]').wait_for()
    shown = page.page.evaluate(READ_HISTORY, {"name": "checkout", "days": len(points)})
    # Fetched when opened, for this experiment only, with uPlot loaded then.
    assert [p for p in paths() if p.endswith("/history")] == ["/experiments/checkout/history"]
    (main,) = [p for p in paths() if p.endswith("/main.js")]
    assert [p for p in paths() if p.endswith("/uplot.js")] == [main.replace("main", "uplot")]

    assert shown["range"].startswith(f"{len(DAYS)} days with events, {dates[0]} to {dates[-1]}")
    last, before = points[-1], points[-2]
    variants = ["control", "green"]

    participants = shown["participants"]
    assert [f["variant"] for f in participants["facts"]] == variants
    for fact in participants["facts"]:
        label = fact["variant"]
        new = last["participants"][label] - before["participants"][label]
        assert new == DAYS[-1][label][0]
        assert int(fact["last"]) == new and int(fact["total"]) == last["participants"][label]
        assert fact["text"].startswith(f"{label}: {new} on {dates[-1]}, ")

    assert [g["goal"] for g in shown["goals"]] == [g["goal"] for g in last["goals"]]
    assert {g["goal"] for g in shown["goals"]} == {"signup", "purchase"}
    for goal in shown["goals"]:
        rows = {
            r["label"]: r for g in last["goals"] if g["goal"] == goal["goal"] for r in g["results"]
        }
        rates = goal["rates"]["facts"]
        assert [f["variant"] for f in rates] == variants
        for fact in rates:
            row = rows[fact["variant"]]
            assert float(fact["rate"]) == row["conversion_rate"]
            found = re.search(r": ([\d.]+%) \((\d+) of (\d+)\)$", fact["text"])
            assert found, fact["text"]
            assert_percent(found[1], row["conversion_rate"])
            assert (int(found[2]), int(found[3])) == (row["successes"], row["trials"])
        (uplift,) = goal["uplift"]["facts"]
        green = rows["green"]
        assert uplift["variant"] == "green" and float(uplift["uplift"]) == green["uplift"]
        since = first_excluding_zero(points, goal["goal"], "green")
        assert uplift["since"] == (since or "")
        if since:
            assert f"interval excludes 0 since {since}" in uplift["text"]
        else:
            assert "interval still contains 0" in uplift["text"]
        for chart in ("rates", "uplift"):
            assert goal[chart]["canvas"]["width"] > 300 and goal[chart]["canvas"]["height"] > 150
            assert goal[chart]["canvas"]["painted"] > 2000, (goal["goal"], chart)
    assert participants["canvas"]["painted"] > 2000

    by_goal = {g["goal"]: g for g in shown["goals"]}
    # Signup: green's interval leaves 0 on a later day than the first, and stays out.
    since = first_excluding_zero(points, "signup", "green")
    assert since is not None and dates[0] < since <= dates[-1]
    # The band narrows as data accrues, in the answer and on the canvas.
    signup = [
        interval_of(r)
        for p in points
        for g in p["goals"]
        if g["goal"] == "signup"
        for r in g["results"]
        if r["label"] == "green"
    ]
    assert (
        signup[0]
        and signup[-1]
        and signup[-1][1] - signup[-1][0] < (signup[0][1] - signup[0][0]) / 1.5
    )
    band = by_goal["signup"]["uplift"]["canvas"]
    assert band["firstDay"] > band["lastDay"] * 1.3 > 0, band
    assert first_excluding_zero(points, "purchase", "green") is None

    # The whole card in the viewport, so that the sticky top bar does not cross it.
    BUILD.mkdir(exist_ok=True)
    height = card.evaluate("(c) => c.getBoundingClientRect().height")
    page.page.set_viewport_size({"width": 1280, "height": math.ceil(height) + 200})
    page.page.evaluate("window.scrollTo(0, 0)")
    card.screenshot(path=str(BUILD / "dashboard-history.png"))

    # Closed and opened again: drawn already, not fetched again.
    card.locator("details.history > summary").click()
    card.locator("details.history > summary").click()
    assert [p for p in paths() if p.endswith("/history")] == ["/experiments/checkout/history"]

    # An experiment deleted meanwhile: its history says so, with a way to try again.
    other = page.card("other")
    delete = urllib.request.Request(dated + "experiments/other", method="DELETE")
    delete.add_header("x-api-key", API_KEY)
    urllib.request.urlopen(delete, timeout=10).close()
    other.locator("details.history > summary").click()
    other.locator('details.history[data-state="error"]').wait_for()
    assert "Could not load the history" in other.locator(".history-body").inner_text()
    assert other.locator(".history-body button").inner_text() == "Try again"
    page.assert_clean(allowed_console="status of 404")


# -- alerts ----------------------------------------------------------------------------------

READ_ALERTS = """(name) => {
  const card = Array.from(document.querySelectorAll("article.exp"))
    .find((c) => c.dataset.experiment === name);
  const details = card.querySelector("details.alerts");
  const body = details.querySelector(".alerts-body");
  return {
    state: details.dataset.state,
    text: body.textContent,
    alerts: Array.from(body.querySelectorAll("li.alert-item"), (li) => ({
      kind: li.dataset.kind, id: li.dataset.id,
      head: li.querySelector(".alert-head").textContent,
      text: li.querySelector(".alert-text").textContent,
      pending: Array.from(li.querySelectorAll(".alert-pending li"), (p) => p.textContent),
    })),
    deliveries: Array.from(body.querySelectorAll("table.deliveries tbody tr"), (tr) => ({
      ok: tr.dataset.ok, alert: tr.dataset.alert, when: tr.querySelector("th").textContent,
      ...Object.fromEntries(Array.from(tr.querySelectorAll("td[data-field]"),
        (td) => [td.dataset.field, td.textContent])),
    })),
  };
}"""
ALERT_HEADS = {"srm": "Sample ratio mismatch", "size_reached": "Planned size reached"}


def minute(ts: int | None) -> str:
    """A time as the page shows it: to the minute, in UTC."""
    if ts is None:
        return "\u2014"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_alerts_show_what_the_watcher_announced_and_delivered(
    make_app: Callable[..., Flask],
    watch: Callable[[str], Watched],
    receiver: Callable[..., Receiver],
) -> None:
    """A real watcher pass against loopback receivers fills the log: the webhook fails its
    first delivery (a retry waits, the second alert behind it), Slack takes both."""
    clock = Clock(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    app = make_app(counting="exact", clock=clock)
    plan = {"variants": ["control", "green"], "goals": ["signup"], "planned_participants": 300}
    put = app.test_client().put("/experiments/button", json=plan, headers={"x-api-key": API_KEY})
    assert put.status_code == 201
    events = [
        {"experiment": "button", "variant": arm, "event": "participate", "uuid": f"{arm}{i}"}
        for arm, trials in (("control", 300), ("green", 100))
        for i in range(trials)
    ]
    post_events(app, [*events, *visitors("quiet", "a", 3, {})])
    hook, slack = receiver(Answer(500, b"try later")), receiver()
    secrets = ("/hooks/gimel-7c1e", "/services/T0AAAA/B0BBBB/slacktokensecret42", "k" * 40)
    destinations = [Webhook(hook.url + secrets[0], secrets[2]), Slack(slack.url + secrets[1])]
    report = Watcher(app.extensions["gimel"].experiments, destinations, clock=clock).run()
    assert (report.alerts, report.retrying) == (2, 1)
    with serving(app) as root:
        page = watch(root)
        page.open()
        assert not [p for p in details_paths(page) if p.endswith("/alerts")]
        card = page.card("button")
        card.locator("details.alerts > summary").click()
        card.locator('details.alerts[data-state="ready"]').wait_for()
        shown = page.page.evaluate(READ_ALERTS, "button")
        log = api_get(root, "experiments/button/alerts")
        # Fetched when opened, for this experiment only.
        assert [p for p in details_paths(page) if p.endswith("/alerts")] == [
            "/experiments/button/alerts"
        ]

        assert [a["kind"] for a in log["alerts"]] == ["srm", "size_reached"]
        for seen, alert in zip(shown["alerts"], log["alerts"], strict=True):
            assert (seen["kind"], seen["id"]) == (alert["kind"], alert["id"])
            assert seen["head"] == f"{ALERT_HEADS[alert['kind']]} · {minute(alert['created'])}"
            assert seen["text"] == alert["text"]
        first, second = log["alerts"]
        assert first["pending"][0]["attempts"] == 1 and second["pending"][0]["attempts"] == 0
        assert shown["alerts"][0]["pending"] == [
            f"webhook: 1 attempt failed, next try {minute(first['pending'][0]['retry_at'])}"
        ]
        assert shown["alerts"][1]["pending"] == [
            f"webhook: not tried yet (due {minute(second['pending'][0]['retry_at'])}; "
            "alerts go in order)"
        ]

        assert len(shown["deliveries"]) == len(log["deliveries"]) == 3
        for seen, sent in zip(shown["deliveries"], log["deliveries"], strict=True):
            assert seen["ok"] == str(sent["ok"]).lower() and seen["alert"] == sent["alert"]
            assert seen["when"] == minute(sent["at"])
            assert seen["kind"] == ALERT_HEADS[sent["kind"]]
            assert seen["destination"] == sent["destination"]
            assert seen["attempt"] == str(sent["attempt"])
            assert seen["status"] == str(sent["status"])
            assert seen["error"] == (sent["error"] or "\u2014")
            assert seen["retry_at"] == minute(sent["retry_at"])
        failed = shown["deliveries"][1]
        assert (failed["status"], failed["error"]) == ("500", "answered 500: try later")
        assert failed["retry_at"] != "\u2014"
        # Destinations by scheme and host: no path, no secret, on the page or in the answer.
        html = page.page.content()
        for secret in secrets:
            assert secret not in html and secret not in json.dumps(log)

        BUILD.mkdir(exist_ok=True)
        card.locator("details.alerts").screenshot(path=str(BUILD / "dashboard-alerts.png"))

        # An experiment the watcher found nothing to say about says so.
        quiet = page.card("quiet")
        quiet.locator("details.alerts > summary").click()
        quiet.locator('details.alerts[data-state="ready"]').wait_for()
        assert page.page.evaluate(READ_ALERTS, "quiet")["text"].startswith("No alert announced")
        page.assert_clean()


# -- summaries first, each experiment's results on demand --------------------------------------


def post_events(app: Flask, events: list[dict[str, str]]) -> None:
    client = app.test_client()
    for start in range(0, len(events), 500):
        answer = client.post("/track", json=events[start : start + 500])
        assert answer.status_code == 200, answer.get_data(as_text=True)


def fetched(page: Watched) -> list[tuple[str, dict[str, str]]]:
    """The API calls the page made, in order: (path, query)."""
    calls = []
    for request in page.requests:
        if request.resource_type == "fetch":
            parts = urlsplit(request.url)
            calls.append((unquote(parts.path), dict(parse_qsl(parts.query))))
    return calls


def details_paths(page: Watched) -> list[str]:
    return [p for p, _ in fetched(page) if p.startswith("/experiments/")]


def test_summaries_first_then_results_only_of_the_cards_opened(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    """Over a hundred experiments: two pages of summaries, the first few small cards open by
    themselves, their results in one request, every other card fetches its results only when
    opened."""
    app = make_app()
    names = [f"exp {i:03}" for i in range(105)]
    events = []
    for name in names:
        for variant in ("a", "b"):
            for i in range(4):
                one = {"experiment": name, "variant": variant, "uuid": f"{name}-{variant}-{i}"}
                events += [{**one, "event": "participate"}, {**one, "event": "signup"}][: 1 + i % 2]
    post_events(app, events)
    with serving(app) as root:
        page = watch(root)
        page.open()
        calls = fetched(page)
        lists = [(p, q) for p, q in calls if p == "/experiments"]
        assert [q.get("view") for _, q in lists] == ["summary", "summary", None]
        assert "cursor" not in lists[0][1] and lists[1][1]["cursor"]
        # Every summary before any experiment's results.
        assert calls.index(lists[2]) == 2
        cards = page.page.locator("article.exp")
        assert cards.count() == 105
        assert [c["name"] for c in page.read()] == names
        # The first six open by themselves (2 variants x 1 goal each), in one request for the
        # six, and show what each one's own GET gives; the others wait.
        assert lists[2][1] == {"namespace": "alephbet", "scope": ",".join(names[:6])}
        assert details_paths(page) == []
        opened = page.page.locator('details.results-section[data-state="ready"]')
        assert opened.count() == 6
        for name in names[:6]:
            (shown,) = (c for c in page.read() if c["name"] == name)
            api = api_get(root, "experiments/" + quote(name))
            rows = {r["label"]: r["cells"] for r in shown["goals"][0]["rows"]}
            for row in api["goals"][0]["results"]:
                assert_row(rows[row["label"]], row, control=row["label"] == api["control"])
        assert page.page.locator('details.results-section[data-state="closed"]').count() == 99
        assert page.card(names[50]).locator("section.goal").count() == 0
        assert "1 goal: signup" in page.card(names[50]).locator(".results-section").text_content()

        # Opened: fetched then, for that card only, and shown as the API says.
        card = page.card(names[50])
        card.locator("details.results-section > summary").click()
        card.locator('details.results-section[data-state="ready"]').wait_for()
        assert details_paths(page) == ["/experiments/exp 050"]
        assert fetched(page)[-1][1] == {"namespace": "alephbet"}
        api = api_get(root, "experiments/" + quote(names[50]))
        (shown,) = (c for c in page.read() if c["name"] == names[50])
        assert [g["goal"] for g in shown["goals"]] == ["signup"]
        rows = {r["label"]: r["cells"] for r in shown["goals"][0]["rows"]}
        for row in api["goals"][0]["results"]:
            assert_row(rows[row["label"]], row, control=row["label"] == api["control"])
        # Closed and opened again: not fetched again.
        card.locator("details.results-section > summary").click()
        card.locator("details.results-section > summary").click()
        assert len(details_paths(page)) == 1

        # An action on a closed card: its answer carries the results, shown at once.
        other = page.card(names[80])
        page.confirm(names[80], "reset")
        page.page.wait_for_selector(
            f'article[data-experiment="{names[80]}"] details.results-section[data-state="ready"]'
        )
        assert len(details_paths(page)) == 2  # the POST .../reset, nothing else
        # The text, not innerText: a card of a long list (content-visibility: auto) may not be
        # laid out yet in the frame it was replaced in, and innerText of such a cell is "".
        assert other.locator('td[data-field="trials"]').all_text_contents() == ["0", "0"]
        page.assert_clean()


def test_cards_a_scope_cannot_name_open_by_themselves(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    """The first cards' results come in one request, GET /experiments?scope=…, which names
    them with commas: a name holding a comma fetches its own, and shows the same."""
    app = make_app()
    names = ["a,b", "c", "d"]
    post_events(
        app,
        [
            {"experiment": name, "variant": variant, "event": event, "uuid": f"{variant}-{i}"}
            for name in names
            for variant in ("x", "y")
            for i in range(3)
            for event in ("participate", "signup")[: 1 + i % 2]
        ],
    )
    with serving(app) as root:
        page = watch(root)
        page.open()
        scoped = [q for p, q in fetched(page) if p == "/experiments" and "scope" in q]
        assert scoped == [{"namespace": "alephbet", "scope": "c,d"}]
        assert details_paths(page) == ["/experiments/a,b"]
        assert page.page.locator('details.results-section[data-state="ready"]').count() == 3
        for name in names:
            (shown,) = (c for c in page.read() if c["name"] == name)
            api = api_get(root, "experiments/" + quote(name))
            rows = {r["label"]: r["cells"] for r in shown["goals"][0]["rows"]}
            for row in api["goals"][0]["results"]:
                assert_row(rows[row["label"]], row, control=row["label"] == api["control"])
        page.assert_clean()


FLOOD = (24, 20, 50)
"""Experiments, variants, goals: the namespace public POST /track requests can create."""


def test_a_flood_renders_quickly_from_summaries(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    count, variants, goals = FLOOD
    app = make_app()
    post_events(
        app,
        [
            {
                "experiment": f"flood {e:02}",
                "variant": f"variant {v:02}",
                "event": goal,
                "uuid": f"visitor-{e}-{v}",
            }
            for e in range(count)
            for v in range(variants)
            for goal in ("participate", *(f"goal {g:02}" for g in range(goals)))
        ],
    )
    with serving(app) as root:
        page = watch(root)
        page.open(key=None)
        started = time.perf_counter()
        page.login(API_KEY)
        rendered = time.perf_counter() - started
        sizes = page.page.evaluate(
            """() => performance.getEntriesByType("resource")
                 .filter((e) => e.initiatorType === "fetch")
                 .map((e) => [new URL(e.name).pathname, e.encodedBodySize])"""
        )
        assert [path for path, _ in sizes] == ["/experiments", "/experiments"]
        assert sum(size for _, size in sizes) < 200_000  # the whole list, all 24 (full: 9 MB)
        assert page.page.locator("article.exp").count() == count
        assert details_paths(page) == []  # nothing opens by itself: each card is big
        assert rendered < 5, rendered

        name = "flood 07"
        card = page.card(name)
        started = time.perf_counter()
        card.locator("details.results-section > summary").click()
        card.locator('details.results-section[data-state="ready"]').wait_for()
        opened = time.perf_counter() - started
        assert details_paths(page) == ["/experiments/" + name]
        assert card.locator("section.goal").count() == goals
        assert card.locator("section.goal tbody tr").count() == goals * variants
        assert opened < 5, opened
        page.assert_clean()
        print(f"\nflood: list rendered in {rendered:.2f} s, {sizes}; one opened in {opened:.2f} s")


def test_a_declared_experiment_shows_its_decision_plan_and_roles(
    server: str, make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    """The decision line is the API's, word for word; guardrails say so; the plan's figures."""
    plan = {
        "variants": ["control", "green"],
        "goals": [
            "signup",
            {"name": "refund", "role": "guardrail", "direction": "decrease", "margin": 0.02},
        ],
        "planned_participants": 5000,
        "analysis": "fixed",
    }
    request = urllib.request.Request(
        server + "/experiments/button",
        data=json.dumps(plan).encode(),
        method="PUT",
        headers={"x-api-key": API_KEY, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
    send_events(server, visitors("button", "control", 600, {"signup": 90, "refund": 30}))
    send_events(server, visitors("button", "green", 600, {"signup": 180, "refund": 70}))
    api = api_get(server, "experiments/button")
    assert api["decision"]["kind"] == "keep_control"  # refunds up: the guardrail overrides

    page = watch(server)
    page.open()
    card = page.card("button")
    assert card.locator(".badge-plan").inner_text().lower() == "declared"
    decision = card.locator(".decision")
    assert decision.get_attribute("data-kind") == "keep_control"
    assert card.locator(".decision-text").inner_text() == api["decision"]["text"]
    planning = card.locator(".planning").inner_text()
    assert planning.startswith("Plan (signup): detectable at 5,000 participants:")
    refund = card.locator('section.goal[data-goal="refund"]')
    assert refund.locator(".goal-role").inner_text() == "guardrail, lower is better"
    assert refund.locator(".verdict").get_attribute("data-kind") == "harm"
    page.assert_clean()


def test_a_group_sequential_experiment_shows_its_looks(
    server: str, watch: Callable[[str], Watched]
) -> None:
    """A sized plan is analysed group-sequentially: the card says when the first look is (the
    API's date), and a row's p-value is marked nominal until a look gives it a bound."""
    plan = {"variants": ["control", "green"], "goals": ["signup"], "planned_participants": 4000}
    request = urllib.request.Request(
        server + "/experiments/sized",
        data=json.dumps(plan).encode(),
        method="PUT",
        headers={"x-api-key": API_KEY, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
    send_events(server, visitors("sized", "control", 300, {"signup": 30}))
    send_events(server, visitors("sized", "green", 300, {"signup": 60}))
    api = api_get(server, "experiments/sized")
    assert api["method"] == "group_sequential" and api["looks"]["dates"] == []

    page = watch(server)
    page.open()
    card = page.card("sized")
    looks = card.locator(".looks")
    assert looks.get_attribute("data-final") == "false"
    text = looks.inner_text()
    assert text.startswith("Group-sequential (obrien-fleming, 4,000 planned)")
    assert f"first look at the end of {api['looks']['next_look']} (UTC)" in text
    assert card.locator(".decision-text").inner_text() == api["decision"]["text"]
    page.assert_clean()


def shop_events(variant: str, lift: float) -> Iterator[dict[str, str]]:
    """240 visitors with their orders before the experiment (the covariate): those with 3 or
    more buy, for more the more orders they had (green's buyers ``lift`` more), so the orders
    predict most of the revenue; a quarter sign up."""
    for i in range(240):
        orders, uuid = i % 7, f"shop-{variant}-{i}"
        seen = {"experiment": "shop", "variant": variant, "covariate": str(orders)}
        yield {**seen, "event": "participate", "uuid": uuid}
        if i % 4 == 0:
            yield {**seen, "event": "signup", "uuid": uuid}
        if orders >= 3:
            value = 5 * orders + lift + (i % 5) / 4
            yield {**seen, "event": "revenue", "uuid": f"{uuid}-buy", "value": str(value)}


def amount_text(x: float) -> str:
    """An amount as the page writes it (format.js ``amount``, two decimals above 1)."""
    return f"{x:,.2f}".replace("-", MINUS)


def test_a_value_goal_shows_its_mean_and_the_cuped_figures(
    make_app: Callable[..., Flask], watch: Callable[[str], Watched]
) -> None:
    """A value goal's card shows the mean per visitor (an amount, not a rate) with its
    interval, and charts it; with a covariate, the comparison columns are the CUPED ones the
    verdicts use (labelled with its name, the unadjusted figures in their titles), the
    variance reduction beside them, and the covariate's note on the card."""
    plan = {
        "variants": ["control", "green"],
        "goals": [{"name": "revenue", "type": "value", "cap": 1000}, "signup"],
        "covariate": "orders",
        "analysis": "fixed",
    }
    with serving(make_app(counting="exact")) as root:
        declare(root, "shop", plan)
        send_events(root, shop_events("control", 0))
        send_events(root, shop_events("green", 5))
        api = api_get(root, "experiments/shop")
        goals = {g["goal"]: g for g in api["goals"]}
        assert goals["revenue"]["type"] == "value"
        green = next(r for r in goals["revenue"]["results"] if r["label"] == "green")
        assert green["mean"] > 10 and green["adjusted"]["variance_reduction"] > 0.3

        page = watch(root)
        page.open()
        card = page.card("shop")
        revenue = card.locator('section.goal[data-goal="revenue"]')
        revenue.wait_for()
        assert revenue.get_attribute("data-type") == "value"
        note = card.locator(".covariate")
        assert note.inner_text() == f"CUPED, orders: {api['covariate']['note']}"
        headings = revenue.locator("thead th").all_inner_texts()
        assert (
            "Mean per visitor (95% interval)" in headings and "Rate (95% interval)" not in headings
        )
        assert "Uplift vs control (CUPED, orders)" in headings and "Variance reduction" in headings
        assert "Uplift vs control" not in headings  # instead of, not beside: no two verdicts

        (shown,) = page.read()
        for goal in shown["goals"]:
            for row in goal["rows"]:
                api_row = next(
                    r for r in goals[goal["goal"]]["results"] if r["label"] == row["label"]
                )
                cells, cuped = row["cells"], api_row["adjusted"]
                if goal["goal"] == "revenue":
                    assert "conversion_rate" not in cells
                    mean, total = cells["mean"], cells["sum"]
                    assert float(mean["value"]) == api_row["mean"]
                    assert mean["text"] == amount_text(api_row["mean"])
                    assert [float(mean["low"]), float(mean["high"])] == api_row["ci"]
                    assert mean["sub"] == " to ".join(amount_text(x) for x in api_row["ci"])
                    assert float(total["value"]) == api_row["sum"]
                    assert total["text"] == amount_text(api_row["sum"])
                assert "uplift" not in cells and "p_value" not in cells
                if row["label"] == api["control"]:
                    assert cells["adjusted_uplift"]["text"] == "\u2014"
                    assert cells["variance_reduction"]["text"] == "\u2014"
                    continue
                adjusted = cells["adjusted_uplift"]
                assert float(adjusted["value"]) == cuped["uplift"]
                assert_percent(adjusted["text"], cuped["uplift"])
                low, high = adjusted["sub"].split(" to ")
                assert_percent(low, cuped["uplift_ci"][0])
                assert_percent(high, cuped["uplift_ci"][1])
                p_value = cells["adjusted_p_value"]
                assert float(p_value["value"]) == cuped["p_value"]
                assert float(p_value["adjusted"]) == cuped["p_value_adjusted"]
                assert_p(p_value["text"], cuped["p_value"])
                beat = cells["adjusted_chance"]
                assert float(beat["value"]) == cuped["chance_to_beat_control"]
                assert_percent(beat["text"], cuped["chance_to_beat_control"])
                reduction = cells["variance_reduction"]
                assert float(reduction["value"]) == cuped["variance_reduction"]
                assert_percent(reduction["text"], cuped["variance_reduction"])
        # The unadjusted uplift is in the CUPED uplift's title.
        title = revenue.locator('tr[data-variant="green"] td[data-field="adjusted_uplift"]')
        unadjusted = title.get_attribute("title")
        assert unadjusted.startswith("unadjusted: "), unadjusted
        assert_percent(unadjusted.removeprefix("unadjusted: "), green["uplift"])
        assert {g["goal"] for g in shown["goals"]} == {"revenue", "signup"}
        assert shown["goals"][0]["verdicts"] or shown["goals"][1]["verdicts"]

        # The chart plots the means on an axis of amounts.
        chart = revenue.locator("figure.chart")
        assert chart.locator("figcaption").inner_text().startswith("Mean per participant")
        labels = chart.locator("text.value-label").all_text_contents()
        assert amount_text(green["mean"]) in labels
        BUILD.mkdir(exist_ok=True)
        card.screenshot(path=str(BUILD / "dashboard-value-goal.png"))
        page.assert_clean()


# -- a phone, counts in words, goals with nothing to chart -----------------------------------

PHONE = {"width": 390, "height": 844}

# Where a cell is on the page, and whether it is the element seen at its centre (not clipped
# by a scrolling box or covered by another one).
SEEN = """(td) => {
  const box = td.getBoundingClientRect();
  const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return { left: box.left, right: box.right, width: box.width, seen: td.contains(top) };
}"""


def test_a_phone_shows_every_figure_of_a_row(served: str, watch: Callable[[str], Watched]) -> None:
    """At 390 px the page does not scroll sideways, and a variant's rate, uplift and p-value
    are on screen beside its name."""
    page = watch(served)
    page.page.set_viewport_size(PHONE)
    page.open()
    width = page.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"
    for experiment, goal, variant in [("button", "signup", "green"), (WEIRD, "buy now", "B/2")]:
        row = page.card(experiment).locator(
            f'section.goal[data-goal="{css_string(goal)}"] '
            f'tbody tr[data-variant="{css_string(variant)}"]'
        )
        # Down to the row, and no further: nothing scrolled sideways to reach a figure.
        row.locator("th.variant").scroll_into_view_if_needed()
        for field in ("conversion_rate", "uplift", "p_value", "chance_to_beat_control"):
            cell = row.locator(f'td[data-field="{field}"]')
            box = cell.evaluate(SEEN)
            assert 0 <= box["left"] and box["right"] <= PHONE["width"], (variant, field, box)
            assert box["seen"], (variant, field, box)
            assert cell.is_visible()
        # Each figure says what it is: the column's heading, above it.
        heading = row.locator('td[data-field="p_value"]').evaluate(
            "(td) => getComputedStyle(td, '::before').content"
        )
        assert heading == '"p-value"'
    # An experiment with no goal yet: its participants' table, each figure on screen too.
    row = page.card("tiny").locator('tbody tr[data-variant="only"]')
    row.locator("th.variant").scroll_into_view_if_needed()
    for cell in row.locator("td").all():
        box = cell.evaluate(SEEN)
        assert 0 <= box["left"] and box["right"] <= PHONE["width"] and box["seen"], box
    BUILD.mkdir(exist_ok=True)
    page.card("button").locator("section.goal").first.screenshot(
        path=str(BUILD / "dashboard-phone.png")
    )
    page.card("tiny").screenshot(path=str(BUILD / "dashboard-phone-no-goal.png"))
    page.assert_clean()


def test_counts_read_in_the_singular_for_one(server: str, watch: Callable[[str], Watched]) -> None:
    send_events(server, visitors("solo", "a", 1, {"signup": 1}))
    page = watch(server)
    page.open()
    assert page.page.inner_text("#summary").startswith("1 experiment in namespace")
    card = page.card("solo")
    meta = card.locator(".exp-meta").inner_text()
    assert " · 1 participant · " in meta, meta
    assert card.locator(".results-section > summary").inner_text() == "Results · 1 goal: signup"
    card.locator("details.history > summary").click()
    card.locator('details.history[data-state="ready"]').wait_for()
    assert card.locator(".history-range").inner_text().startswith("1 day with events, ")
    page.assert_clean()


def declare(root: str, name: str, plan: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{root}experiments/{quote(name, safe='')}",
        data=json.dumps(plan).encode(),
        method="PUT",
        headers={"x-api-key": API_KEY, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def test_goals_and_histories_without_data_say_so_instead_of_empty_charts(
    server: str, watch: Callable[[str], Watched]
) -> None:
    # Declared, nobody reached yet; and declared with participants in the control only.
    declare(server, "waiting", {"variants": ["a", "b"], "goals": ["signup"]})
    declare(server, "lopsided", {"variants": ["a", "b"], "goals": ["signup"]})
    send_events(server, visitors("lopsided", "a", 3, {}))
    page = watch(server)
    page.open()

    waiting = page.card("waiting")
    goal = waiting.locator('section.goal[data-goal="signup"]')
    goal.wait_for()
    assert goal.locator("figure.chart").count() == 0
    assert goal.locator(".no-chart").inner_text().startswith("No participants yet")
    waiting.locator("details.history > summary").click()
    waiting.locator('details.history[data-state="ready"]').wait_for()
    assert waiting.locator(".history-body").inner_text() == "No events counted yet."

    lopsided = page.card("lopsided")
    assert lopsided.locator('section.goal[data-goal="signup"] figure.chart').count() == 1
    lopsided.locator("details.history > summary").click()
    lopsided.locator('details.history[data-state="ready"]').wait_for()
    history = lopsided.locator('section.history-goal[data-goal="signup"]')
    charts = [f.get_attribute("data-chart") for f in history.locator("figure").all()]
    assert charts == ["rates"]  # a's rate (0%); no uplift: b has nobody
    empty = history.locator('.no-chart[data-chart="uplift"]')
    assert empty.inner_text() == "No uplift over a to chart yet."
    page.assert_clean()


# -- the root, the vocabulary ----------------------------------------------------------------


def test_the_root_sends_a_browser_to_the_dashboard(
    client: FlaskClient, served: str, watch: Callable[[str], Watched]
) -> None:
    for accept in ("text/html", "application/json", "*/*"):
        response = client.get("/", headers={"Accept": accept})
        assert response.status_code == 302, accept
        assert response.headers["Location"] == "/dashboard"
        assert response.data == b""
    # Behind a stage prefix (API Gateway's /prod), the dashboard under the same prefix.
    staged = client.get("/", base_url="http://localhost/prod/")
    assert staged.headers["Location"] == "/prod/dashboard"
    page = watch(served)
    page.page.goto(served)
    page.wait_ready("login")
    assert page.page.url == served + "dashboard"
    page.assert_clean()


def test_vocabulary_js_is_what_python_generates() -> None:
    """Regenerate with `make vocabulary`."""
    from gimel_core.dashboard.vocabulary import TARGET, javascript

    assert TARGET == DASHBOARD / "vocabulary.js"
    assert TARGET.read_text(encoding="utf-8") == javascript()


def test_no_module_spells_a_word_of_the_vocabulary_itself() -> None:
    """Modes, analyses, roles, directions, verdict and decision kinds come from vocabulary.js:
    a bare "keep_control" compared or used as a key would drift unseen when Python renames it.
    (Text shown to people, `text: "guardrail"`, and comments may say the words.)"""
    from gimel_core.vocabulary import VOCABULARY

    words = {
        member.value
        for name, enum in VOCABULARY.items()
        if name != "Registration"  # the dashboard never compares it; "declared" is a badge
        for member in enum
    }
    comment = re.compile(r"(^|\s)//.*$", re.MULTILINE)
    quoted = re.compile(r"""(?<!:)(?<!: )(["'`])([a-z_]+)\1""")  # not a property's value
    key = re.compile(r"[{,]\s*([a-z_]+)\s*:")  # an unquoted key: { ship: ... }
    found = []
    for module in MODULES:
        if module == "vocabulary.js":
            continue
        code = comment.sub(r"\1", (DASHBOARD / module).read_text(encoding="utf-8"))
        spelled = [w for _, w in quoted.findall(code)] + key.findall(code)
        found += [(module, word) for word in spelled if word in words]
    assert not found, found
