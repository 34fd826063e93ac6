"""``GET /experiments/<name>/alerts``: the watcher's delivery log through the API.

The log is filled by real :class:`Watcher` passes against receivers on loopback (a webhook
that fails its first delivery, so a retry shows, and a Slack-shaped one whose URL path is its
secret), on a real Redis; the answer is compared with ``Watcher.log`` and searched for the
URLs and the secret, which must appear nowhere, neither in the answer nor in Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from receivers import Answer, Receiver

from conftest import AUTH
from gimel_core import keys
from gimel_core.notify import BACKOFF, Slack, Webhook, redact
from gimel_core.watch import Watcher

START = 1_767_225_600  # 2026-01-01T00:00:00Z
SECRET = "webhook-secret-" + "k" * 32
HOOK_PATH = "/hooks/gimel-7c1e"
SLACK_PATH = "/services/T0AAAA/B0BBBB/slacktokensecret42"
PLAN = {"variants": ["control", "green"], "goals": ["signup"], "planned_participants": 300}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seeded(make_app: Callable[..., Flask], clock: Clock) -> Flask:
    """ "button" declared for 300 participants, tracked 300 to 100: its split is broken (an
    SRM alert) and its size is reached (a size_reached alert)."""
    app = make_app(counting="exact", clock=clock)
    client = app.test_client()
    assert client.put("/experiments/button", json=PLAN, headers=AUTH).status_code == 201
    events = [
        {
            "experiment": "button",
            "variant": variant,
            "event": "participate",
            "uuid": f"{variant}{i}",
        }
        for variant, count in (("control", 300), ("green", 100))
        for i in range(count)
    ]
    for start in range(0, len(events), 500):
        assert client.post("/track", json=events[start : start + 500]).status_code == 200
    return app


def alerts_of(app: Flask, name: str = "button", query: str = "") -> Any:
    response = app.test_client().get(f"/experiments/{name}/alerts{query}", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_the_log_shows_announced_alerts_retries_and_redacted_deliveries(
    make_app: Callable[..., Flask], receiver: Callable[..., Receiver], raw_redis: Any
) -> None:
    clock = Clock(START)
    app = seeded(make_app, clock)
    hook = receiver(Answer(500, b"try later"))
    slack = receiver()
    hook_url, slack_url = hook.url + HOOK_PATH, slack.url + SLACK_PATH
    experiments = app.extensions["gimel"].experiments
    watcher = Watcher(experiments, [Webhook(hook_url, SECRET), Slack(slack_url)], clock=clock)
    assert alerts_of(app) == {"experiment": "button", "alerts": [], "deliveries": []}

    report = watcher.run()
    assert (report.alerts, report.delivered, report.retrying) == (2, 2, 1)
    log = alerts_of(app)
    assert log == watcher.log("alephbet", "button")
    first, second = log["alerts"]
    assert [first["kind"], second["kind"]] == ["srm", "size_reached"]
    assert first["numbers"]["participants_control"] == 300
    # The webhook's first delivery failed: it waits for its retry, the second alert behind it.
    retry_at = START + BACKOFF
    assert first["pending"] == [{"destination": "webhook", "attempts": 1, "retry_at": retry_at}]
    assert second["pending"] == [{"destination": "webhook", "attempts": 0, "retry_at": START}]
    # Newest first: Slack got both alerts, the webhook answered 500 to the first.
    attempts = [(d["kind"], d["destination"], d["ok"], d["status"]) for d in log["deliveries"]]
    assert attempts == [
        ("size_reached", redact(slack_url), True, 200),
        ("srm", redact(hook_url), False, 500),
        ("srm", redact(slack_url), True, 200),
    ]
    failed = log["deliveries"][1]
    assert failed["error"] == "answered 500: try later"
    assert (failed["alert"], failed["retry_at"]) == (first["id"], retry_at)

    clock.now = retry_at
    assert watcher.run().delivered == 2
    log = alerts_of(app)
    assert [a["pending"] for a in log["alerts"]] == [[], []]
    latest = [(d["kind"], d["attempt"], d["status"]) for d in log["deliveries"][:2]]
    assert latest == [("size_reached", 1, 200), ("srm", 2, 200)]
    assert len(hook.received) == 3 and len(slack.received) == 2

    # No secret anywhere: not in the answer, not in what Redis keeps.
    kept = [
        *raw_redis.hvals(keys.alerts("alephbet", "button")),
        *raw_redis.lrange(keys.deliveries("alephbet", "button"), 0, -1),
    ]
    for text in (app.test_client().get("/experiments/button/alerts", headers=AUTH).data, *kept):
        for secret in (HOOK_PATH, SLACK_PATH, SECRET, "slacktokensecret42"):
            assert secret.encode() not in text
    assert {d["destination"] for d in log["deliveries"]} == {
        f"http://127.0.0.1:{hook.server.server_address[1]}/…",
        f"http://127.0.0.1:{slack.server.server_address[1]}/…",
    }

    # A reset forgets what was announced: the log starts again.
    assert app.test_client().post("/experiments/button/reset", headers=AUTH).status_code == 200
    assert alerts_of(app) == {"experiment": "button", "alerts": [], "deliveries": []}


def test_unknown_experiments_bad_queries_and_missing_keys_are_refused(
    make_app: Callable[..., Flask],
) -> None:
    app = seeded(make_app, Clock(START))
    client = app.test_client()
    assert alerts_of(app)["alerts"] == []  # exists, never watched: an empty log
    for url in (
        "/experiments/nothing/alerts",
        "/experiments/button/alerts?namespace=elsewhere",
        "/experiments/button%2Fx/alerts",
    ):
        unknown = client.get(url, headers=AUTH)
        assert unknown.status_code == 404, url
        assert unknown.get_json()["error"].startswith("no experiment named"), url
    for url, field in (
        ("/experiments/button/alerts?namespace=", "namespace"),
        ("/experiments/button/alerts?namespace=a&namespace=b", "namespace"),
        ("/experiments/" + "x" * 129 + "/alerts", "experiment"),
    ):
        bad = client.get(url, headers=AUTH)
        assert bad.status_code == 400, url
        assert bad.get_json()["field"] == field, url
    assert client.get("/experiments/button/alerts").status_code == 401
    assert (
        client.get("/experiments/button/alerts", headers={"x-api-key": "nope"}).status_code == 403
    )
    assert client.delete("/experiments/button", headers=AUTH).status_code == 200
    assert client.get("/experiments/button/alerts", headers=AUTH).status_code == 404
