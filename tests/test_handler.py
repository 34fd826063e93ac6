"""handler.handler driven by recorded API Gateway REST (v1) events, as Lambda sends them."""

from __future__ import annotations

import ast
import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import NotFound

from conftest import API_KEY
from helpers import original

EVENTS = Path(__file__).parent / "events"
NOT_FOUND = NotFound.description


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> ModuleType:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.delenv("GIMEL_COUNTING", raising=False)
    sys.modules.pop("handler", None)
    module = importlib.import_module("handler")
    yield module
    sys.modules.pop("handler", None)


def call(handler: ModuleType, name: str) -> dict[str, Any]:
    return handler.handler(load(name), None)


def test_track_then_results_through_the_lambda_handler(handler: ModuleType) -> None:
    first = call(handler, "track_participate.json")
    assert first["statusCode"] == 200
    headers = first.get("multiValueHeaders") or first["headers"]
    flat = {k.lower(): v[0] if isinstance(v, list) else v for k, v in headers.items()}
    assert flat["access-control-allow-origin"] == "*"
    assert flat["cache-control"] == "no-store"
    assert call(handler, "track_participate.json")["statusCode"] == 200  # resent
    assert call(handler, "track_goal.json")["statusCode"] == 200

    results = call(handler, "experiments.json")
    assert results["statusCode"] == 200
    body = json.loads(results["body"])
    # "sign+up" on the wire arrives decoded as "sign up" and is counted under that name.
    assert body[1]["experiment"] == "checkout button"
    assert original(body[1]["goals"]) == [
        {"goal": "sign up", "results": [{"label": "big red", "successes": 1, "trials": 1}]}
    ]
    by_name = call(handler, "experiment_by_name.json")
    assert by_name["statusCode"] == 200
    assert json.loads(by_name["body"])["experiment"] == "checkout button"

    deleted = call(handler, "delete.json")
    assert deleted["statusCode"] == 200
    assert json.loads(call(handler, "experiments.json")["body"])[1:] == []


def test_preflight_health_and_refusals(handler: ModuleType) -> None:
    preflight = call(handler, "track_preflight.json")
    assert preflight["statusCode"] in (200, 204)
    assert call(handler, "health.json")["statusCode"] == 200
    assert call(handler, "experiments_no_key.json")["statusCode"] == 401

    repeated = call(handler, "track_repeated_field.json")
    assert repeated["statusCode"] == 400
    assert json.loads(repeated["body"])["field"] == "experiment"
    missing = call(handler, "track_missing_uuid.json")
    assert missing["statusCode"] == 400
    assert json.loads(missing["body"]) == {"error": "'uuid' is required", "field": "uuid"}
    assert json.loads(call(handler, "experiments.json")["body"])[1:] == []


@pytest.mark.parametrize(
    "event",
    [{}, {"foo": 1}, [], "x", None, {"httpMethod": "GET"}, {"httpMethod": "GET", "path": 3}],
)
def test_malformed_or_non_http_events_get_a_well_formed_answer(
    handler: ModuleType, event: Any
) -> None:
    answer = handler.handler(event, None)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"]) == {"error": "not an API Gateway HTTP event"}
    assert answer["headers"]["Content-Type"] == "application/json"


def test_warm_up_pings_are_answered_without_a_request(handler: ModuleType) -> None:
    assert handler.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None) == {}


def test_a_tracking_container_never_loads_the_statistics() -> None:
    """Most Lambda invocations are /track: the results side loads on its first request."""
    code = (
        "import sys, handler\n"
        "handler.handler({'httpMethod': 'GET', 'path': '/health'}, None)\n"
        "print(sorted(m for m in sys.modules if m.startswith('gimel_core')))\n"
    )
    env = {"GIMEL_REDIS_URL": "redis://127.0.0.1:1", "GIMEL_API_KEY": "k" * 24, "PATH": "/usr/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out.strip().splitlines()[-1]))
    assert "gimel_core.track_endpoint" in loaded
    # Nor the results' shapes and the plans (a tenth of the cold start when they loaded).
    statistics = {"gimel_core.experiments", "gimel_core.analysis", "gimel_core.stats"}
    assert not loaded & {*statistics, "gimel_core.results", "gimel_core.plans"}


def test_a_lone_surrogate_api_key_is_refused_not_500(handler: ModuleType) -> None:
    event = load("experiments.json")
    event["headers"]["x-api-key"] = "\ud800"
    event["multiValueHeaders"]["x-api-key"] = ["\ud800"]
    answer = handler.handler(event, None)
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"]) == {"error": "wrong API key"}


def test_a_deeply_nested_settings_body_through_the_handler_is_400(handler: ModuleType) -> None:
    assert call(handler, "track_participate.json")["statusCode"] == 200
    event = load("experiments.json")
    event.update(
        httpMethod="PATCH",
        path="/experiments/checkout button",
        resource="/experiments/{name+}",
        body="[" * 100_000,
    )
    event["headers"]["Content-Type"] = "application/json"
    event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    answer = handler.handler(event, None)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["field"] == "body"


LONG_ASSET_NAMES = ["a" * 253 + ".js", "a" * 300 + ".css", "a" * 64 + ".js", "é" * 200 + ".js"]
"""Longer than a file name may be (255 bytes: ENAMETOOLONG, once a 500 with a traceback),
or just past the longest name looked up."""


@pytest.mark.single_redis  # no Redis is involved
@pytest.mark.parametrize("name", LONG_ASSET_NAMES, ids=lambda name: f"{len(name)}-chars")
def test_a_dashboard_asset_name_too_long_for_a_file_is_404_on_both_paths(
    handler: ModuleType, client: FlaskClient, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    direct = client.get(f"/dashboard/{name}")
    assert direct.status_code == 404
    assert direct.get_json() == {"error": NOT_FOUND}
    event = load("health.json")
    event.update(path=f"/dashboard/{name}", resource="/dashboard/{asset}")
    event["pathParameters"] = {"asset": name}
    answer = handler.handler(event, None)
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"]) == {"error": NOT_FOUND}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback
