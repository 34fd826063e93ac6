"""The watcher on real Redis (single and cluster), delivering to real receivers on loopback.

Experiments are declared and filled through the API (``PUT /experiments``, ``POST /track``);
the app's clock and the watcher's are one settable clock, so retries and silences happen in
simulated time. Each receiver checks what a team's endpoint would: the signature, how many
times each alert came, and in which order.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from receivers import Answer, Receiver
from serving import GimelServe, clean_env

from conftest import AUTH
from gimel_core import checks, keys, notify
from gimel_core.embedded import EmbeddedRedis, free_port
from gimel_core.notify import Slack, Webhook
from gimel_core.storage.schema import WatchTag
from gimel_core.storage.watch_save import save
from gimel_core.watch import LOG_MOST, Watcher

SECRET = "whsec-" + "s" * 40
SLACK_TOKEN = "T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
START = 1_800_000_000
NS = "alephbet"

SHIPPING: dict[str, Any] = {
    "variants": ["blue", "red"],
    "control": "blue",
    "goals": [{"name": "buy"}],
    "analysis": "fixed",
}
"""With :func:`fill`'s default counts, red beats blue on buy beyond doubt."""


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(make_app: Callable[..., Flask], clock: Clock) -> Flask:
    return make_app(clock=clock, counting="exact", source_budget=0)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def declare(client: FlaskClient, name: str, plan: dict[str, Any] = SHIPPING) -> None:
    answer = client.put(f"/experiments/{name}", json=plan, headers=AUTH)
    assert answer.status_code in (200, 201), answer.get_json()


def fill(
    client: FlaskClient,
    name: str,
    counts: dict[str, tuple[int, dict[str, int]]] | None = None,
    tag: str = "",
) -> None:
    """Participants per variant, and per goal the ones who converted, through POST /track."""
    counts = counts or {"blue": (300, {"buy": 30}), "red": (300, {"buy": 120})}
    events = []
    for variant, (participants, goals) in counts.items():
        for i in range(participants):
            uuid = f"{tag}{variant}-{i}"
            events.append(
                {"experiment": name, "variant": variant, "event": "participate", "uuid": uuid}
            )
            for goal, converted in goals.items():
                if i < converted:
                    events.append(
                        {"experiment": name, "variant": variant, "event": goal, "uuid": uuid}
                    )
    for start in range(0, len(events), 500):
        answer = client.post("/track", json=events[start : start + 500])
        assert answer.status_code == 200, answer.get_json()


def watcher(app: Flask, *destinations: notify.Destination, **options: Any) -> Watcher:
    return Watcher(app.extensions["gimel"].experiments, destinations, **options)


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received]


def signed(receiver: Receiver, clock: Clock) -> list[dict[str, Any]]:
    """Every body the receiver got, each checked against its signature as a team would."""
    for request in receiver.received:
        header = request.headers[notify.SIGNATURE_HEADER]
        assert notify.verify(SECRET, request.body, header, now=clock.now), header
    return bodies(receiver)


def test_a_decision_is_announced_once_signed_and_logged(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app, Webhook(f"{hook.url}/gimel", SECRET))
    report = watch.run()
    assert (report.experiments, report.alerts, report.delivered) == (1, 1, 1)
    (body,) = signed(hook, clock)
    decision = client.get("/experiments/checkout", headers=AUTH).get_json()["decision"]
    assert body["kind"] == "decided" and body["decision"] == "ship" and body["variant"] == "red"
    assert body["text"] == decision["text"] and body["experiment"] == "checkout"
    assert body["numbers"]["participants"] == 600
    clock.now += 3600
    fill(client, "checkout", tag="more-")  # still decided the same way: no news
    assert watch.run().alerts == 0
    assert len(hook.received) == 1
    log = watch.log(NS, "checkout")
    assert [a["id"] for a in log["alerts"]] == [body["id"]] and log["alerts"][0]["pending"] == []
    (record,) = log["deliveries"]
    assert record["ok"] and record["status"] == 200 and record["alert"] == body["id"]
    assert record["destination"] == notify.redact(hook.url)


def test_a_receiver_failing_twice_gets_the_alert_on_the_third_attempt_after_backoff(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(Answer(500, b"down"), Answer(503, b""))
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app, Webhook(hook.url, SECRET))
    first = watch.run()
    assert (first.alerts, first.delivered, first.retrying) == (1, 0, 1)
    clock.now += notify.backoff(1) - 1  # not due yet: nothing sent
    assert watch.run().retrying == 0 and len(hook.received) == 1
    clock.now += 1
    assert watch.run().retrying == 1
    clock.now += notify.backoff(2)
    assert watch.run().delivered == 1
    assert watch.run().delivered == 0
    sent = signed(hook, clock)
    assert len(sent) == 3 and len({b["id"] for b in sent}) == 1
    log = watch.log(NS, "checkout")
    assert [(d["attempt"], d["ok"], d["status"]) for d in log["deliveries"]] == [
        (3, True, 200),
        (2, False, 503),
        (1, False, 500),
    ]
    assert log["deliveries"][2]["retry_at"] == START + notify.backoff(1)


def test_a_receiver_that_never_answers_well_gets_a_bounded_number_of_attempts(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(*[Answer(500)] * notify.ATTEMPTS)
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app, Webhook(hook.url, SECRET))
    for _ in range(notify.ATTEMPTS + 3):
        watch.run()
        clock.now += 3600
    assert len(hook.received) == notify.ATTEMPTS
    log = watch.log(NS, "checkout")
    assert log["alerts"][0]["pending"] == []  # recorded as failed, no longer due
    assert not log["deliveries"][0]["ok"] and log["deliveries"][0]["retry_at"] is None


GUARDED: dict[str, Any] = {
    "variants": ["blue", "red"],
    "control": "blue",
    "goals": [
        {"name": "buy", "role": "primary"},
        {"name": "refund", "role": "guardrail", "direction": "decrease"},
    ],
    "analysis": "fixed",
}


def test_alerts_of_one_experiment_arrive_in_order_the_later_waiting_behind_a_retry(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    """Red wins on buy but harms the refund guardrail: the harm, then the decision not to
    ship it. The receiver fails the first delivery; the decision waits behind it."""
    hook = receiver(Answer(500))
    declare(client, "guarded", GUARDED)
    counts = {"blue": (300, {"buy": 30, "refund": 5}), "red": (300, {"buy": 120, "refund": 60})}
    fill(client, "guarded", counts)
    watch = watcher(app, Webhook(hook.url, SECRET))
    assert watch.run().alerts == 2
    assert len(hook.received) == 1  # the harm failed; the decision was not sent before it
    clock.now += notify.backoff(1)
    assert watch.run().delivered == 2
    kinds = [b["kind"] for b in signed(hook, clock)]
    assert kinds == ["harm", "harm", "decided"]
    announced = [a["kind"] for a in watch.log(NS, "guarded")["alerts"]]
    assert announced == ["harm", "decided"]
    decided = bodies(hook)[-1]
    assert decided["decision"] == "keep_control" and decided["variant"] == "red"


def test_each_destination_keeps_its_own_queue(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    """Slack answering 404 (a deleted webhook) is recorded, not retried, and does not hold
    the signed webhook back; its URL, a secret, shows nowhere."""
    hook = receiver()
    slack = receiver(Answer(404, b"no_service"))
    declare(client, "checkout")
    fill(client, "checkout")
    slack_url = f"{slack.url}/services/{SLACK_TOKEN}"
    watch = watcher(app, Webhook(hook.url, SECRET), Slack(slack_url))
    report = watch.run()
    assert (report.delivered, report.failed, report.retrying) == (1, 1, 0)
    clock.now += 3 * 3600
    assert watch.run().delivered == 0 and len(slack.received) == 1
    log = watch.log(NS, "checkout")
    failed = next(d for d in log["deliveries"] if not d["ok"])
    assert failed["status"] == 404 and "no_service" in failed["error"]
    assert SLACK_TOKEN not in json.dumps(log) and SECRET not in json.dumps(log)
    assert SLACK_TOKEN not in report.line()


def test_slack_gets_a_message_a_person_reads_with_a_link_to_the_experiment(
    app: Flask, client: FlaskClient, receiver: Callable[..., Receiver]
) -> None:
    slack = receiver()
    declare(client, "checkout")
    fill(client, "checkout")
    dashboard = "https://gimel.example.com/prod/dashboard"
    watcher(app, Slack(f"{slack.url}/services/{SLACK_TOKEN}"), dashboard_url=dashboard).run()
    (request,) = slack.received
    assert request.path == f"/services/{SLACK_TOKEN}"
    assert notify.SIGNATURE_HEADER not in request.headers  # Slack's URL is its secret
    message = json.loads(request.body)
    decision = client.get("/experiments/checkout", headers=AUTH).get_json()["decision"]
    header, section, numbers, context, actions = message["blocks"]
    assert header["text"]["text"] == "checkout: decided"
    assert html.unescape(section["text"]["text"]) == decision["text"]  # Slack's &lt; &gt; &amp;
    assert {"*participants*\n600", "*uplift*\n3"} <= {f["text"] for f in numbers["fields"]}
    assert "decision ship" in context["elements"][0]["text"]
    button = actions["elements"][0]
    assert button["url"] == f"{dashboard}#namespace={NS}&experiment=checkout"


def test_a_redirect_is_recorded_and_never_followed(
    app: Flask, client: FlaskClient, clock: Clock, receiver: Callable[..., Receiver]
) -> None:
    elsewhere = receiver()
    hook = receiver(Answer(302, headers={"Location": f"{elsewhere.url}/steal"}))
    declare(client, "checkout")
    fill(client, "checkout")
    report = watcher(app, Webhook(hook.url, SECRET)).run()
    assert report.failed == 1 and elsewhere.received == []


def test_two_watchers_at_once_deliver_each_alert_exactly_once(
    make_app: Callable[..., Flask],
    app: Flask,
    client: FlaskClient,
    clock: Clock,
    receiver: Callable[..., Receiver],
) -> None:
    """Two processes' worth of watchers (each its own app and Redis client) run their passes
    at the same moment, twice; the receiver is slow, so the passes overlap."""
    hook = receiver(*[Answer(200, delay=0.02)] * 40)
    names = [f"exp-{i}" for i in range(12)]
    for name in names:
        declare(client, name)
        fill(client, name)
    other = make_app(clock=clock, counting="exact", source_budget=0)
    watchers = [watcher(one, Webhook(hook.url, SECRET)) for one in (app, other)]
    reports: list[Any] = []
    for _ in range(2):
        threads = [threading.Thread(target=lambda w=w: reports.append(w.run())) for w in watchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    ids = [b["id"] for b in signed(hook, clock)]
    assert len(ids) == len(names) and len(set(ids)) == len(names)
    assert sorted(b["experiment"] for b in bodies(hook)) == sorted(names)
    assert sum(r.alerts for r in reports) == len(names)
    assert sum(r.delivered for r in reports) == len(names)


@pytest.mark.single_redis
def test_a_redis_outage_stops_the_pass_and_loses_nothing(
    app: Flask,
    client: FlaskClient,
    clock: Clock,
    receiver: Callable[..., Receiver],
    redis_server: EmbeddedRedis,
) -> None:
    hook = receiver()
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app, Webhook(hook.url, SECRET))
    redis_server.stop()
    try:
        report = watch.run()
        assert report.errors and "Redis" in report.errors[0] and report.delivered == 0
    finally:
        redis_server.start()  # same port, same data dir (append-only file)
    assert hook.received == []
    assert watch.run().delivered == 1
    assert watch.run().delivered == 0 and len(hook.received) == 1


@pytest.mark.single_redis
def test_a_delivery_whose_record_redis_lost_is_recorded_later_not_sent_again(
    app: Flask,
    client: FlaskClient,
    clock: Clock,
    receiver: Callable[..., Receiver],
    redis_server: EmbeddedRedis,
) -> None:
    """The receiver takes the alert, and Redis goes down before the watcher can record it."""
    hook = receiver(Answer(200, before=redis_server.stop))
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app, Webhook(hook.url, SECRET))
    try:
        report = watch.run()
        assert report.delivered == 1 and report.errors, report
    finally:
        redis_server.start()
    assert watch.run().delivered == 0
    clock.now += 3600
    assert watch.run().delivered == 0
    assert len(hook.received) == 1
    (record,) = watch.log(NS, "checkout")["deliveries"]
    assert record["ok"] and watch.log(NS, "checkout")["alerts"][0]["pending"] == []


def test_the_lease_and_the_epoch_guard_every_write(app: Flask, client: FlaskClient) -> None:
    """A watcher whose lease another holds, or whose experiment was reset since it read it,
    writes nothing."""
    declare(client, "checkout")
    raw = app.extensions["gimel"].client
    scripts = app.extensions["gimel"].scripts
    epoch = str(client.get("/experiments/checkout", headers=AUTH).get_json()["created"])
    raw.set(keys.watching(NS, "checkout"), "theirs", px=60_000)
    mine = {"set_fields": {"x": "1"}, "log": ["{}"], "log_most": LOG_MOST, "release": True}
    assert scripts.run_one(save(NS, "checkout", "mine", epoch, **mine)) is WatchTag.LOST
    raw.set(keys.watching(NS, "checkout"), "mine", px=60_000)
    assert scripts.run_one(save(NS, "checkout", "mine", "1", **mine)) is WatchTag.CHANGED
    assert raw.hgetall(keys.alerts(NS, "checkout")) == {}
    assert raw.llen(keys.deliveries(NS, "checkout")) == 0
    assert scripts.run_one(save(NS, "checkout", "mine", epoch, **mine)) is WatchTag.SAVED
    assert raw.hgetall(keys.alerts(NS, "checkout")) == {b"x": b"1"}
    assert raw.get(keys.watching(NS, "checkout")) is None  # released


def test_a_reset_experiment_is_announced_afresh_and_an_archived_one_not_at_all(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    declare(client, "checkout")
    fill(client, "checkout")
    watch = watcher(app)
    assert watch.run().alerts == 1
    assert watch.log(NS, "checkout")["alerts"][0]["pending"] == []  # no destination
    clock.now += 60
    assert client.post("/experiments/checkout/reset", headers=AUTH).status_code == 200
    assert watch.log(NS, "checkout")["alerts"] == []
    fill(client, "checkout")
    assert watch.run().alerts == 1
    assert (
        client.patch("/experiments/checkout", json={"archived": True}, headers=AUTH).status_code
        == 200
    )
    clock.now += 10 * 86_400
    report = watch.run()
    assert (report.experiments, report.alerts) == (0, 0)


def test_a_split_off_its_weights_is_announced_in_exact_mode_only(
    make_app: Callable[..., Flask], app: Flask, client: FlaskClient, clock: Clock
) -> None:
    plan = {**SHIPPING, "goals": []}
    skewed = {"blue": (450, {}), "red": (550, {})}
    declare(client, "exact-split", plan)
    fill(client, "exact-split", skewed)
    hll_app = make_app(clock=clock, counting="hll", source_budget=0)
    hll = hll_app.test_client()
    declare(hll, "hll-split", plan)
    fill(hll, "hll-split", skewed)
    watch = watcher(app)
    watch.run()
    assert [a["kind"] for a in watch.log(NS, "exact-split")["alerts"]] == []  # not yet
    fill(client, "exact-split", {"blue": (4500, {}), "red": (5500, {})}, tag="more-")
    fill(hll, "hll-split", {"blue": (4500, {}), "red": (5500, {})}, tag="more-")
    watch.run()
    (srm,) = watch.log(NS, "exact-split")["alerts"]
    assert srm["kind"] == "srm" and srm["numbers"]["p_value"] < checks.SRM_ALPHA
    assert srm["numbers"]["participants_blue"] == 4500 + 450
    assert watch.log(NS, "hll-split")["alerts"] == []


def test_a_declared_experiment_without_events_is_announced_silent_once_per_silence(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    declare(client, "quiet")
    fill(client, "quiet", {"blue": (10, {}), "red": (10, {})})
    client.get("/track?experiment=open&variant=a&event=participate&uuid=u1")  # undeclared
    watch = watcher(app, silent_after=6 * 3600)
    watch.run()
    clock.now += 6 * 3600 - 1
    assert watch.run().alerts == 0
    clock.now += 1
    assert watch.run().alerts == 1
    clock.now += 3600
    assert watch.run().alerts == 0  # the same silence
    fill(client, "quiet", {"blue": (1, {})}, tag="back-")
    watch.run()
    clock.now += 6 * 3600
    assert watch.run().alerts == 1  # a new silence
    kinds = [a["kind"] for a in watch.log(NS, "quiet")["alerts"]]
    assert kinds == ["silent", "silent"]
    assert watch.log(NS, "open")["alerts"] == []


def test_the_planned_size_reached_is_announced(app: Flask, client: FlaskClient) -> None:
    declare(client, "sized", {**SHIPPING, "goals": [], "planned_participants": 400})
    fill(client, "sized", {"blue": (150, {}), "red": (150, {})})
    watch = watcher(app)
    assert watch.run().alerts == 0
    fill(client, "sized", {"blue": (50, {}), "red": (50, {})}, tag="more-")
    assert watch.run().alerts == 1
    (reached,) = watch.log(NS, "sized")["alerts"]
    assert reached["kind"] == "size_reached" and reached["numbers"] == {
        "participants": 400,
        "planned": 400,
    }


# -- where it runs: `gimel watch --once` for cron, and inside `gimel serve` --------------------


def _gimel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gimel_core.cli", *args]
    return subprocess.run(command, env=clean_env(**env), capture_output=True, text=True, timeout=60)


def test_gimel_watch_once_delivers_and_says_what_it_did(
    client: FlaskClient, redis_url: str, receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    hook = receiver()
    declare(client, "checkout")
    fill(client, "checkout")
    env = {
        "GIMEL_REDIS_URL": redis_url,
        "GIMEL_WEBHOOK_URL": hook.url,
        "GIMEL_WEBHOOK_SECRET": SECRET,
        "GIMEL_DATA_DIR": str(tmp_path),
    }
    done = _gimel("watch", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert "1 new alerts, 1 delivered" in done.stdout
    assert _gimel("watch", "--once", env=env).stdout.count("0 new alerts") == 1
    (body,) = [json.loads(r.body) for r in hook.received]
    header = hook.received[0].headers[notify.SIGNATURE_HEADER]
    assert notify.verify(SECRET, hook.received[0].body, header) and body["kind"] == "decided"


@pytest.mark.single_redis
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GIMEL_WEBHOOK_URL": "http://example.com/hook"}, "must be https"),
        ({"GIMEL_WEBHOOK_URL": "https://example.com/hook"}, "GIMEL_WEBHOOK_SECRET"),
        ({"GIMEL_WATCH_SILENT_HOURS": "0"}, "GIMEL_WATCH_SILENT_HOURS must be between"),
        ({"GIMEL_WATCH_INTERVAL": "soon"}, "GIMEL_WATCH_INTERVAL must be a number"),
    ],
)
def test_gimel_watch_refuses_bad_settings_in_one_line(
    redis_url: str, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    done = _gimel("watch", "--once", env={"GIMEL_REDIS_URL": redis_url, **env})
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.single_redis
def test_gimel_watch_once_fails_when_redis_is_unreachable(tmp_path: Path) -> None:
    done = _gimel("watch", "--once", env={"GIMEL_REDIS_URL": f"redis://127.0.0.1:{free_port()}"})
    assert done.returncode == 1 and "Redis is unreachable" in done.stdout


@pytest.mark.single_redis
def test_gimel_serve_runs_one_watcher_for_all_its_workers(
    client: FlaskClient, redis_url: str, receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    hook = receiver()
    declare(client, "checkout")
    fill(client, "checkout")
    env = {
        "GIMEL_REDIS_URL": redis_url,
        "GIMEL_WEBHOOK_URL": hook.url,
        "GIMEL_WEBHOOK_SECRET": SECRET,
        "GIMEL_WATCH_INTERVAL": "1",
    }
    with GimelServe(tmp_path, "--workers", "2", env=env) as server:
        deadline = time.monotonic() + 20
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.1)
        watchers = [p for p in _session(server.process.pid) if "watch" in p]
        time.sleep(2)  # two more passes: nothing new
    assert len(hook.received) == 1, server.output()
    assert len(watchers) == 1, watchers
    assert _session(server.process.pid) == []  # stopped with the server


def _session(sid: int) -> list[str]:
    """The command lines of the processes in session ``sid``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) != sid:
                continue
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ProcessLookupError):
            continue
    return found
