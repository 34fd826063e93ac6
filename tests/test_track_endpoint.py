"""/track: the WSGI fast path and the Flask route answer every request the same way."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from werkzeug.test import Client, EnvironBuilder

from conftest import API_KEY
from gimel_core import api, defaults, keys
from gimel_core.storage.runner import Scripts
from helpers import track_url

pytestmark = pytest.mark.single_redis  # HTTP details, not storage

EVENT = {"experiment": "e", "variant": "v", "event": "participate"}


def requests(uuid: str) -> list[tuple[str, str, dict]]:
    """(method, path, keyword arguments of the test client) covering every answer of /track."""
    batch = [{**EVENT, "uuid": f"{uuid}-{i}"} for i in range(3)]
    return [
        ("GET", track_url(**EVENT, uuid=uuid), {}),
        ("GET", track_url(**EVENT, uuid=uuid), {}),  # a duplicate
        ("GET", track_url(experiment="e", variant="v"), {}),  # fields missing: 400
        ("GET", track_url(**EVENT, uuid=uuid), {"headers": {"User-Agent": "Googlebot/2.1"}}),
        ("GET", "/track?" + "x" * 9000, {}),  # 414
        ("POST", "/track", {"data": json.dumps(batch), "content_type": "application/json"}),
        ("POST", "/track", {"data": b"[{", "content_type": "application/json"}),  # 400
        ("POST", "/track", {"data": b"[" + b" " * 1_000_001 + b"]"}),  # 413
        ("OPTIONS", "/track", {"headers": {"Origin": "https://shop.example"}}),
    ]


def answers(client: Client, uuid: str) -> list[tuple[int, dict[str, str], bytes]]:
    found = []
    for method, path, kwargs in requests(uuid):
        response = client.open(path, method=method, **kwargs)
        headers = dict(response.headers)
        found.append((response.status_code, headers, response.get_data()))
    return found


def test_fast_path_and_flask_route_answer_alike(app: Flask) -> None:
    fast = answers(Client(app), "u1")
    routed = answers(Client(app.wsgi_app.next), "u2")  # type: ignore[attr-defined]
    statuses = [status for status, _, _ in fast]
    assert statuses == [200, 200, 400, 200, 414, 200, 400, 413, 204]
    for (status, headers, body), other in zip(fast, routed, strict=True):
        assert (status, headers, body) == other
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Cache-Control"] == "no-store"
        if status != 204:
            assert int(headers["Content-Length"]) == len(body)
            assert headers["Content-Type"] == "application/json"
            json.loads(body)
    # Both counted: the route is not a stub.
    client = app.test_client()
    exp = client.get("/experiments/e", headers={"x-api-key": app.config["GIMEL"].api_keys[0]})
    assert exp.get_json()["participants"] == {"v": 8}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_are_refused(client, method: str) -> None:
    response = client.open(track_url(**EVENT, uuid="u"), method=method)
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}


def test_tracking_paths_are_in_the_route_table(make_app) -> None:
    app = make_app(track_paths=("/track", "/t/p"))
    rules = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}
    for path in ("/track", "/t/p"):
        assert {"GET", "POST", "OPTIONS"} <= set(rules[path] or ())


def test_no_request_hook_is_skipped_silently(app: Flask) -> None:
    """Flask's request hooks do not run for /track (the fast path answers before Flask).

    A hook added to the app must also be added to track_endpoint.py (or be meant only for the
    other routes): then update this list.
    """
    assert not any(app.before_request_funcs.values())
    after = {name: [f.__name__ for f in funcs] for name, funcs in app.after_request_funcs.items()}
    assert after == {None: [api.data_cors.__name__]}  # data endpoints only, by design
    assert not any(app.teardown_request_funcs.values())
    assert not any(app.url_value_preprocessors.values())


def test_bot_verdicts_are_kept_per_agent_and_bounded(app: Flask) -> None:
    endpoint = app.wsgi_app
    client = app.test_client()
    for n in range(3):
        answer = client.get(track_url(**EVENT, uuid=f"b{n}"), headers={"User-Agent": "Googlebot"})
        assert answer.get_json() == {"ok": True, "counted": False}
    verdicts = endpoint._is_bot.cache_info()  # type: ignore[attr-defined]
    assert (verdicts.misses, verdicts.hits) == (1, 2)  # the pattern ran once for three
    assert verdicts.maxsize == defaults.BOT_VERDICTS


def together_requests() -> list[dict]:
    """WSGI environs of requests a `gimel serve` worker may take together: every kind of
    ``GET /track`` answer, and requests the tracking endpoint leaves to the app."""
    get = [
        track_url(**EVENT, uuid="t1"),
        track_url(**EVENT, uuid="t1"),  # a duplicate
        track_url(**EVENT, uuid="t2"),
        track_url(experiment="e", variant="v"),  # fields missing: 400
        track_url(**EVENT, uuid="t3", value="9.5"),  # a value on participate: not counted
        track_url(experiment="e", variant="w", event="participate", uuid="t4"),
        track_url(experiment="e", variant="x", event="participate", uuid="t5"),  # past the cap
        track_url(experiment="f", variant="v", event="signup", uuid="t1"),
        "/track?" + "x" * 9000,  # 414
    ]
    environs = [EnvironBuilder(path=url).get_environ() for url in get]
    bot = EnvironBuilder(path=track_url(**EVENT, uuid="t6"), headers={"User-Agent": "Googlebot"})
    environs.insert(3, bot.get_environ())
    batch = json.dumps([{**EVENT, "uuid": "t7"}])
    environs.insert(5, EnvironBuilder(path="/track", method="POST", data=batch).get_environ())
    environs.append(EnvironBuilder(path="/health").get_environ())
    return environs


def stored(app: Flask, raw_redis) -> tuple[object, dict]:
    listing = app.test_client().get("/experiments", headers={"x-api-key": API_KEY})
    return listing.get_json(), raw_redis.hgetall(keys.abuse())


def test_requests_taken_together_are_answered_and_counted_as_each_alone(
    make_app, raw_redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `gimel serve` does with requests that wait together: their events go to Redis in
    one round trip, and each answer, each count and each dropped tally is what the same
    requests get one by one."""
    now = 1_780_000_000.0
    settings = {"counting": "exact", "max_variants": 2, "clock": lambda: now}
    alone_app = make_app(**settings)
    alone = [
        alone_app.wsgi_app.respond(environ) if environ["PATH_INFO"] == "/track" else None
        for environ in together_requests()
        if environ["REQUEST_METHOD"] == "GET"
    ]
    alone_stored = stored(alone_app, raw_redis)
    raw_redis.flushall()

    app = make_app(**settings)
    sent: list[list[str]] = []
    run = Scripts.run

    def recorded(self: Scripts, calls):
        sent.append([call.script for call in calls])
        return run(self, calls)

    monkeypatch.setattr(Scripts, "run", recorded)
    together = app.wsgi_app.respond_together(together_requests())
    monkeypatch.undo()
    kinds = [e["REQUEST_METHOD"] for e in together_requests()]
    assert [a for a, kind in zip(together, kinds, strict=True) if kind == "GET"] == alone
    assert together[kinds.index("POST")] is None and together[-1] is None  # left to the app
    codes = [200, 200, 200, 200, 400, 200, 200, 422, 200, 414, None]
    assert [a.code if a else None for a in alone] == codes
    assert json.loads(alone[5].body)["counted"] is False  # the value on participate
    assert stored(app, raw_redis) == alone_stored
    assert alone_stored[0][1]["participants"] == {"v": 2, "w": 1}
    # Every event to count in one round trip, one script call each.
    tracks = [calls for calls in sent if "track" in calls]
    assert tracks == [["track"] * 7]
