"""The OpenAPI document served at /openapi.json: valid, complete, and true to the app.

Four layers keep it true. The document is valid OpenAPI 3 and its examples match its own
schemas. Every route of the app is documented with the same methods, and every documented
operation exists, so an endpoint cannot be added without documenting it. Real answers to
representative requests, a seeded experiment with statistics included, conform to the
documented status codes, headers and schemas. And schemathesis fuzzes a real `gimel serve`
(embedded Redis, API key) from the document: no server error, every answer documented.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from receivers import Answer, Receiver
from werkzeug.test import TestResponse

from conftest import API_KEY, AUTH
from gimel_core import create_app, track_endpoint
from gimel_core.config import Config
from gimel_core.embedded import free_port
from gimel_core.notify import Delivery, Webhook
from gimel_core.results import (
    Decision,
    ExperimentResult,
    GoalResult,
    Planning,
    Srm,
    VariantResult,
    Verdict,
)
from gimel_core.vocabulary import (
    AlertKind,
    Analysis,
    DecisionKind,
    Direction,
    Mode,
    Registration,
    Role,
    Spending,
    VerdictKind,
)
from gimel_core.watch import Watcher, destination_name
from tests.serving import GimelServe

pytestmark = pytest.mark.single_redis  # the contract does not depend on the kind of Redis

DOC: dict[str, Any] = json.loads(
    resources.files("gimel_core").joinpath("openapi.json").read_text("utf-8")
)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TRACK_METHODS = set(track_endpoint.METHODS)
"""The methods /track answers; any other gets 405."""


def resolve(node: Any) -> Any:
    """Follow a local ``$ref`` (``#/components/...``) until a real object."""
    while isinstance(node, dict) and "$ref" in node:
        ref = str(node["$ref"])
        assert ref.startswith("#/"), f"only local references: {ref}"
        node = DOC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``instance`` violates ``schema`` (OpenAPI 3.0 dialect, references resolved)."""
    validator = OAS30Validator({**schema, "components": DOC["components"]})
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


# -- the document itself ----------------------------------------------------------------------


def test_the_document_is_valid_openapi() -> None:
    assert DOC["openapi"].startswith("3.0.")
    validate_spec(DOC)


def test_the_app_serves_the_document(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == DOC


def test_every_example_matches_its_schema() -> None:
    checked = 0

    def walk(node: Any, where: str) -> None:
        nonlocal checked
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}/{i}")
            return
        if not isinstance(node, dict):
            return
        if "schema" in node and ("example" in node or "examples" in node):
            values = [node["example"]] if "example" in node else []
            values += [resolve(e)["value"] for e in node.get("examples", {}).values()]
            for value in values:
                errors = schema_errors(value, node["schema"])
                assert not errors, f"example at {where} does not match its schema: {errors}"
                checked += 1
        for key, value in node.items():
            walk(value, f"{where}/{key}")

    walk(DOC, "#")
    assert checked >= 20


def test_every_operation_is_described_and_every_error_body_is_json() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    for path, method, operation in operations():
        label = f"{method.upper()} {path}"
        assert operation.get("summary"), label
        assert operation.get("tags"), label
        responses = operation["responses"]
        if operation.get("security"):
            assert {"400", "401", "403", "503"} <= set(responses), label
        for status, response in responses.items():
            response = resolve(response)
            assert response.get("description"), f"{label} {status}"
            if int(status) < 400:
                continue
            schema = resolve(response["content"]["application/json"]["schema"])
            assert "error" in schema["required"], f"{label} {status}"
            assert resolve(schema["properties"]["error"])["type"] == "string"
            if status == "503":
                assert response["headers"]["Retry-After"]["$ref"].endswith("/RetryAfter")


# -- every route is documented, and only routes ----------------------------------------------


def documented_methods() -> dict[str, set[str]]:
    return {
        path: {m.upper() for m in item if m in HTTP_METHODS} for path, item in DOC["paths"].items()
    }


def test_every_route_is_documented_with_its_methods(app: Flask) -> None:
    documented = documented_methods()
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(rule.methods or ())
    assert set(routes) == set(documented), "documented paths differ from the app's routes"
    for path, methods in routes.items():
        # HEAD is implied by GET. Flask answers OPTIONS on every route by itself; the document
        # describes it where it matters (CORS preflights), and only where the app answers it.
        answered = methods - {"HEAD", "OPTIONS"}
        assert documented[path] - {"OPTIONS"} == answered, path
        assert "OPTIONS" not in documented[path] or "OPTIONS" in methods, path
    for path in Config().track_paths:
        assert documented[path] == TRACK_METHODS


# -- real answers conform to the document -----------------------------------------------------


def conforms(response: TestResponse, path: str, method: str = "GET") -> Any:
    """Assert the answer is documented for the operation, headers and body included.

    Returns the decoded JSON body (or the text of another documented media type).
    """
    label = f"{method} {path}"
    responses = DOC["paths"][path][method.lower()]["responses"]
    status = str(response.status_code)
    text = response.get_data(as_text=True)
    assert status in responses, f"{label} answered an undocumented {status}: {text[:500]}"
    documented = resolve(responses[status])
    for name, header in documented.get("headers", {}).items():
        header = resolve(header)
        value = response.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{label} {status}: no {name} header"
            continue
        schema = resolve(header["schema"])
        parsed: Any = int(value) if schema.get("type") == "integer" else value
        assert not schema_errors(parsed, schema), f"{label} {status}: {name}: {value!r}"
    content = documented.get("content")
    if not content:
        assert response.get_data() == b"", f"{label} {status} should have no body"
        return None
    assert response.mimetype in content, f"{label} {status}: {response.mimetype} undocumented"
    if response.mimetype != "application/json":
        return text
    body = response.get_json()
    errors = schema_errors(body, content["application/json"]["schema"])
    assert not errors, f"{label} {status} does not match the document: {errors}\n{text[:2000]}"
    return body


def plain_error(response: TestResponse) -> dict[str, Any]:
    """An error answered outside any operation (wrong method, unknown path): the Error shape."""
    body = response.get_json()
    assert not schema_errors(body, {"$ref": "#/components/schemas/Error"}), body
    assert response.headers["Cache-Control"] == "no-store"
    return dict(body)


def track_query(**fields: str) -> str:
    return "/track?" + urlencode(fields)


EVENT = {"experiment": "button", "variant": "red", "event": "participate", "uuid": "u1"}


def test_tracking_answers_conform(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    assert conforms(client.get(track_query(**EVENT)), "/track") == {"ok": True}
    bot = client.get(track_query(**EVENT), headers={"User-Agent": "Googlebot/2.1"})
    assert conforms(bot, "/track") == {"ok": True, "counted": False}
    missing = conforms(client.get(track_query(experiment="button")), "/track")
    assert missing["field"] == "variant"
    twice = conforms(client.get(track_query(**EVENT) + "&uuid=u2"), "/track")
    assert twice["field"] == "uuid"
    too_long = client.get(track_query(**EVENT, pad="x" * 9000))
    assert too_long.status_code == 414
    assert conforms(too_long, "/track")["error"]
    assert conforms(client.options("/track"), "/track", "OPTIONS") is None

    assert conforms(client.post("/track", json=[EVENT, EVENT]), "/track", "POST") == {"accepted": 2}
    assert conforms(
        client.post("/track", json=EVENT, headers={"User-Agent": "python-requests/2.32"}),
        "/track",
        "POST",
    ) == {"accepted": 0, "filtered": 1}
    bad = conforms(client.post("/track", json=[EVENT, {**EVENT, "uuid": ""}, 3]), "/track", "POST")
    assert [e["index"] for e in bad["errors"]] == [1, 2]
    assert conforms(client.post("/track", data=b"{nope"), "/track", "POST")["field"] == "body"
    too_many = conforms(client.post("/track", json=[EVENT] * 501), "/track", "POST")
    assert too_many["field"] == "body"

    limited = make_app(
        batch_max_bytes=1000, max_variants=1, allowed_namespaces=frozenset({"alephbet"})
    ).test_client()
    big = limited.post("/track", json=[EVENT] * 20)
    assert big.status_code == 413
    conforms(big, "/track", "POST")
    capped = limited.post("/track", json=[EVENT, {**EVENT, "variant": "blue"}])
    assert conforms(capped, "/track", "POST")["dropped"][0]["field"] == "variant"
    refused = limited.get(track_query(**EVENT, namespace="elsewhere"))
    assert refused.status_code == 422
    assert conforms(refused, "/track")["field"] == "namespace"

    wrong = client.put("/track")
    assert wrong.status_code == 405
    assert set(wrong.headers["Allow"].replace(" ", "").split(",")) == TRACK_METHODS
    plain_error(wrong)


def seed(client: FlaskClient, experiment: str, counts: dict[str, tuple[int, int]]) -> None:
    """Participants and `signup` successes per variant, plus a few `click`s, by POST /track."""
    events = []
    for variant, (trials, successes) in counts.items():
        for i in range(trials):
            one = {"experiment": experiment, "variant": variant, "uuid": f"{variant}-{i}"}
            events.append({**one, "event": "participate"})
            if i < successes:
                events.append({**one, "event": "signup"})
            if i % 7 == 0:
                events.append({**one, "event": "click"})
    for start in range(0, len(events), 500):
        response = client.post("/track", json=events[start : start + 500])
        assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_results_answers_conform_with_statistics(
    make_app: Callable[..., Flask], counting: str
) -> None:
    client = make_app(counting=counting).test_client()
    seed(client, "button", {"control": (300, 45), "red": (310, 70), "blue": (150, 27)})
    seed(client, "tiny", {"a": (1, 1)})
    one = {"namespace": "alephbet"}
    path = "/experiments/{name}"

    listing = conforms(client.get("/experiments", headers=AUTH), "/experiments")
    assert listing[0]["meta"] == {"scope": None, "filtered": 0, "dropped": {}}
    assert [e["experiment"] for e in listing[1:]] == ["button", "tiny"]
    button = conforms(client.get("/experiments/button", headers=AUTH), path)
    assert button["counting"] == counting
    assert button["control"] == "control"
    signup = next(g for g in button["goals"] if g["goal"] == "signup")
    rows = {row["label"]: row for row in signup["results"]}
    assert rows["control"]["uplift"] is None
    # bound: group-sequential only; sum, mean: value goals only; adjusted: with a covariate.
    absent = ("bound", "sum", "mean", "adjusted")
    statistics = [k for k in rows["red"] if k not in absent]
    assert all(rows[v][k] is not None for v in ("red", "blue") for k in statistics)
    assert all(rows[v][k] is None for v in ("red", "blue") for k in absent)
    tiny = conforms(client.get("/experiments/tiny", headers=AUTH), path)
    assert tiny["srm"]["p_value"] is None

    scoped = client.get("/experiments?scope=tiny,nothing,button", headers=AUTH)
    scoped_body = conforms(scoped, "/experiments")
    assert scoped_body[0]["meta"]["scope"] == "tiny,nothing,button"
    assert [e["counting"] for e in scoped_body[1:]] == [counting, None, counting]

    settings = {
        "control": "red",
        "weights": {"control": 1, "red": 1, "blue": 2.5},
        "description": "Sign-up button colour\nsecond line",
    }
    patched = client.patch("/experiments/button", json=settings, headers=AUTH)
    patched_body = conforms(patched, path, "PATCH")
    assert patched_body["control"] == "red"
    assert patched_body["srm"]["mismatch"] is True
    archived = client.patch("/experiments/tiny", json={"archived": True}, headers=AUTH)
    assert conforms(archived, path, "PATCH")["archived"] is True
    active = conforms(client.get("/experiments", headers=AUTH), "/experiments")
    assert [e["experiment"] for e in active[1:]] == ["button"]
    every = conforms(client.get("/experiments?archived=TRUE", headers=AUTH), "/experiments")
    assert len(every) == 3

    reset = client.post("/experiments/button/reset?" + urlencode(one), headers=AUTH)
    reset_body = conforms(reset, "/experiments/{name}/reset", "POST")
    assert reset_body["reset_at"] is not None
    assert reset_body["participants"] == {"blue": 0, "control": 0, "red": 0}

    deleted = client.delete("/experiments/button", headers=AUTH)
    assert conforms(deleted, path, "DELETE") == {"deleted": "button", "namespace": "alephbet"}
    legacy = client.delete("/delete?experiment=tiny", headers=AUTH)
    assert conforms(legacy, "/delete", "DELETE") == {"deleted": "tiny", "namespace": "alephbet"}


def test_results_refusals_conform(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    seed(client, "button", {"a": (3, 1), "b": (3, 2)})
    path = "/experiments/{name}"
    alerts = "/experiments/{name}/alerts"
    wrong_key = {"x-api-key": "not-the-key-0123456789"}
    for method, url, documented in [
        ("GET", "/experiments", "/experiments"),
        ("GET", "/experiments/button", path),
        ("PATCH", "/experiments/button", path),
        ("DELETE", "/experiments/button", path),
        ("POST", "/experiments/button/reset", "/experiments/{name}/reset"),
        ("GET", "/experiments/button/alerts", "/experiments/{name}/alerts"),
        ("DELETE", "/delete?experiment=button", "/delete"),
    ]:
        no_key = client.open(url, method=method)
        assert no_key.status_code == 401
        assert "x-api-key" in conforms(no_key, documented, method)["error"]
        wrong = client.open(url, method=method, headers=wrong_key)
        assert wrong.status_code == 403
        conforms(wrong, documented, method)
        preflight = client.options(url)
        assert conforms(preflight, documented, "OPTIONS") is None
        assert method in preflight.headers["Allow"]

    closed = make_app(api_keys=()).test_client()
    answer = closed.get("/experiments", headers=AUTH)
    assert answer.status_code == 403
    assert "GIMEL_API_KEY" in conforms(answer, "/experiments")["error"]

    for url in ("/experiments/nothing", "/experiments/" + quote("a/b", safe="")):
        unknown = client.get(url, headers=AUTH)
        assert unknown.status_code == 404
        conforms(unknown, path)
    for response, documented, method in [
        (client.get("/experiments/" + "x" * 129, headers=AUTH), path, "GET"),
        (client.get("/experiments/button?namespace=", headers=AUTH), path, "GET"),
        (client.get("/experiments/button/alerts?namespace=", headers=AUTH), alerts, "GET"),
        (client.get("/experiments?archived=maybe", headers=AUTH), "/experiments", "GET"),
        (client.get("/experiments?scope=a," + "x" * 129, headers=AUTH), "/experiments", "GET"),
        (client.patch(path.format(name="button"), headers=AUTH), path, "PATCH"),
        (client.patch("/experiments/button", json={"color": 1}, headers=AUTH), path, "PATCH"),
        (client.patch("/experiments/button", json={"control": "c"}, headers=AUTH), path, "PATCH"),
        (client.delete("/delete", headers=AUTH), "/delete", "DELETE"),
    ]:
        assert response.status_code == 400, response.get_data(as_text=True)
        assert conforms(response, documented, method)["field"]
    for response, documented, method in [
        (
            client.patch("/experiments/nothing", json={"archived": True}, headers=AUTH),
            path,
            "PATCH",
        ),
        (client.delete("/experiments/nothing", headers=AUTH), path, "DELETE"),
        (client.post("/experiments/nothing/reset", headers=AUTH), path + "/reset", "POST"),
        (client.get("/experiments/nothing/alerts", headers=AUTH), alerts, "GET"),
        (client.delete("/delete?experiment=nothing", headers=AUTH), "/delete", "DELETE"),
    ]:
        assert response.status_code == 404
        conforms(response, documented, method)

    for response in (client.put("/experiments", headers=AUTH), client.post("/health")):
        assert response.status_code == 405
        assert response.headers["Allow"]
        plain_error(response)
    nowhere = client.get("/nothing/here")
    assert nowhere.status_code == 404
    plain_error(nowhere)


def test_service_answers_conform(client: FlaskClient) -> None:
    assert conforms(client.get("/health"), "/health") == {"status": "ok"}
    assert "<html" in conforms(client.get("/dashboard"), "/dashboard")
    for asset in ("main.js", "app.css", "index.html"):
        conforms(client.get(f"/dashboard/{asset}"), "/dashboard/{asset}")
    missing = client.get("/dashboard/secret.txt")
    assert missing.status_code == 404
    conforms(missing, "/dashboard/{asset}")
    page = client.get("/dashboard").get_data(as_text=True)
    version = re.search(r"dashboard/v/(\w+)/main\.js", page)[1]  # type: ignore[index]
    for path in (f"{version}/main.js", f"{'0' * 12}/app.css", f"{version}/index.html", "x/a.js"):
        conforms(client.get(f"/dashboard/v/{path}"), "/dashboard/v/{version}/{asset}")
    conforms(client.get("/openapi.json"), "/openapi.json")


def test_outage_answers_conform() -> None:
    down = create_app(
        {
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "api_keys": (API_KEY,),
            "redis_timeout": 0.1,
        }
    ).test_client()
    for response, path, method in [
        (down.get(track_query(**EVENT)), "/track", "GET"),
        (down.post("/track", json=EVENT), "/track", "POST"),
        (down.get("/health"), "/health", "GET"),
        (down.get("/experiments", headers=AUTH), "/experiments", "GET"),
        (down.get("/experiments/button", headers=AUTH), "/experiments/{name}", "GET"),
        (down.get("/experiments/b/alerts", headers=AUTH), "/experiments/{name}/alerts", "GET"),
        (down.delete("/delete?experiment=button", headers=AUTH), "/delete", "DELETE"),
    ]:
        assert response.status_code == 503
        conforms(response, path, method)


def test_plan_answers_conform(client: FlaskClient) -> None:
    """PUT, its dry run and its refusals: every field of the plan at fault in ``errors``."""
    seed(client, "button", {"a": (3, 1), "b": (3, 2)})
    path = "/experiments/{name}"
    plan = {"variants": ["a", "b"], "goals": ["signup", "click"], "mde": 0.1}
    for dry_run, status in (("true", 201), ("false", 201), ("true", 200)):
        url = f"/experiments/fresh?dry_run={dry_run}"
        response = client.put(url, json=plan, headers=AUTH)
        assert response.status_code == status
        assert conforms(response, path, "PUT")["plan"]["mde"] == 0.1
    for dry_run in ("true", "false"):
        url = f"/experiments/button?dry_run={dry_run}"
        left_out = client.put(url, json={"variants": ["a", "b"]}, headers=AUTH)
        assert left_out.status_code == 409
        assert conforms(left_out, path, "PUT")["goals"] == ["click", "signup"]
        bad = client.put(
            url, json={"variants": ["a"], "goals": [{"name": "x", "role": "main"}]}, headers=AUTH
        )
        assert bad.status_code == 400
        errors = conforms(bad, path, "PUT")["errors"]
        assert [e["field"] for e in errors] == ["variants", "goals[0].role"]
    wrong = client.put("/experiments/button?dry_run=yes", json=plan, headers=AUTH)
    assert wrong.status_code == 400 and conforms(wrong, path, "PUT")["field"] == "dry_run"


def test_the_alert_log_answers_conform(
    make_app: Callable[..., Flask], receiver: Callable[..., Receiver]
) -> None:
    """Filled by a real watcher pass: an SRM alert whose webhook delivery failed once."""
    app = make_app(counting="exact")
    client = app.test_client()
    seed(client, "button", {"a": (300, 30), "b": (100, 10)})
    hook = receiver(Answer(500, b"later"))
    Watcher(app.extensions["gimel"].experiments, [Webhook(hook.url + "/h", "s" * 32)]).run()
    path = "/experiments/{name}/alerts"
    log = conforms(client.get("/experiments/button/alerts", headers=AUTH), path)
    assert [a["kind"] for a in log["alerts"]] == ["srm"]
    assert log["alerts"][0]["pending"][0]["attempts"] == 1
    assert [d["status"] for d in log["deliveries"]] == [500]
    for url in ("/experiments/nothing/alerts", "/experiments/button/alerts?namespace=other"):
        unknown = client.get(url, headers=AUTH)
        assert unknown.status_code == 404
        assert conforms(unknown, path)["error"]


# -- contract violations found while writing the document, fixed -------------------------


def test_a_huge_integer_weight_is_refused(client: FlaskClient) -> None:
    seed(client, "button", {"a": (1, 0), "b": (1, 0)})
    response = client.patch(
        "/experiments/button",
        data='{"weights": {"a": 1, "b": 1' + "0" * 400 + "}}",
        content_type="application/json",
        headers=AUTH,
    )
    assert response.status_code == 400
    conforms(response, "/experiments/{name}", "PATCH")


def test_a_setting_named_with_a_lone_surrogate_is_refused(client: FlaskClient) -> None:
    seed(client, "button", {"a": (1, 0)})
    response = client.patch(
        "/experiments/button",
        data='{"\\ud800": 1}',
        content_type="application/json",
        headers=AUTH,
    )
    assert response.status_code == 400
    conforms(response, "/experiments/{name}", "PATCH")


def test_weights_whose_sum_overflows_are_refused(client: FlaskClient) -> None:
    seed(client, "button", {"a": (1, 0), "b": (1, 0)})
    response = client.patch(
        "/experiments/button", json={"weights": {"a": 1e308, "b": 1e308}}, headers=AUTH
    )
    assert response.status_code == 400
    assert "too large" in response.get_json()["error"]


# -- schemathesis against a real `gimel serve` ----------------------------------------------

SCHEMATHESIS_CONFIG = """\
# Every answer is checked against the document: no 5xx (a 503 is documented, and would only
# come from an outage), a documented status code, content type, headers and body; and the
# API must not ignore its key, must answer 405 to undocumented methods, and must refuse
# input that violates the documented constraints.
[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_headers_conformance.enabled = true
response_schema_conformance.enabled = true
ignored_auth.enabled = true
unsupported_method.enabled = true
negative_data_rejection.enabled = true

# /experiments/{name}/reset, /history and /alerts also read as /experiments/{name} with a
# name ending in "/reset", "/history" or "/alerts" (names may contain "/"), so the methods of
# /experiments/{name} there address that experiment rather than answering 405.
[[operations]]
include-path = "/experiments/{name}/reset"
checks.unsupported_method.enabled = false

[[operations]]
include-path = "/experiments/{name}/history"
checks.unsupported_method.enabled = false

[[operations]]
include-path = "/experiments/{name}/alerts"
checks.unsupported_method.enabled = false
"""
SEED = "20240601"


def schemathesis_command() -> Path:
    return Path(sys.executable).parent / "schemathesis"


@contextmanager
def gimel_serve(tmp: Path, key: str) -> Iterator[str]:
    """`gimel serve` (embedded Redis in ``tmp/data``); it must outlive the run and log no
    traceback."""
    with GimelServe(tmp / "data", env={"GIMEL_API_KEY": key}) as gimel:
        yield gimel.base
        assert gimel.process.poll() is None, f"gimel serve died:\n{gimel.output()}"
    assert "Traceback" not in gimel.output(), gimel.output()


def schemathesis(tmp: Path, base: str, *options: str) -> str:
    """Run the schemathesis CLI on the served document; returns its output, fails on failures."""
    config = tmp / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    command = [
        str(schemathesis_command()),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        *options,
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found problems:\n{output}"
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated.group(1)) > 0, output
    assert generated.group(1) == generated.group(2), output
    return output


@pytest.mark.slow
def test_schemathesis_finds_gimel_serve_true_to_the_document(tmp_path: Path) -> None:
    assert schemathesis_command().exists(), "install the test extra: pip install -e '.[test]'"
    key = secrets.token_urlsafe(24)
    with gimel_serve(tmp_path, key) as base:
        keyed = schemathesis(tmp_path, base, "--header", f"x-api-key: {key}", "-n", "25")
        operations_tested = re.search(r"Tested:\s+(\d+)", keyed)
        assert operations_tested, keyed
        # Every operation (schemathesis skips the one serving the document it reads).
        assert int(operations_tested.group(1)) >= len(list(operations())) - 1
        # Without the key: every results operation answers 401 (no key) or 403 (a key
        # schemathesis made up) in the documented shape.
        # (No stateful phase: its links start at /track, which has no key to omit.)
        schemathesis(
            tmp_path,
            base,
            "--include-tag",
            "results",
            "-n",
            "10",
            "--phases",
            "examples,coverage,fuzzing",
        )


# -- the document's words and fields are the code's ------------------------------------------

CONCEPTS: dict[str, type[StrEnum]] = {
    "counting": Mode,
    "analysis": Analysis,
    "method": Analysis,
    "spending": Spending,
    "registration": Registration,
    "role": Role,
    "direction": Direction,
}
"""A property of these names, in any schema, holds that concept's values."""
KINDS: dict[str, type[StrEnum]] = {
    "verdict": VerdictKind,
    "Decision": DecisionKind,
    "WebhookAlert": AlertKind,
    "AnnouncedAlert": AlertKind,
    "DeliveryAttempt": AlertKind,
}
"""``kind``: a verdict's, a decision's or an alert's, by the schema that holds it."""


def vocabulary_fields(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any, type]]:
    """Every property of the document that holds one of the vocabulary's concepts: its path,
    its schema and the enum it must list."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from vocabulary_fields(item, (*path, str(i)))
        return
    if not isinstance(node, dict):
        return
    for name, schema in node.get("properties", {}).items():
        concept = CONCEPTS.get(name)
        if name == "kind":
            concept = next(kind for holder, kind in KINDS.items() if holder in path)
        if concept is not None:
            yield "/".join((*path, name)), resolve(schema), concept
    for key, value in node.items():
        yield from vocabulary_fields(value, (*path, key))


def test_every_enum_of_the_document_is_the_codes_vocabulary() -> None:
    """A value added to a StrEnum (a new verdict, a new analysis) must be documented, and the
    document cannot list one the code does not know."""
    found = list(vocabulary_fields(DOC))
    paths = {path for path, _, _ in found}
    for expected in (
        "components/schemas/Experiment/counting",
        "components/schemas/Goal/role",
        "components/schemas/Result/properties/verdict/kind",
        "components/schemas/Decision/kind",
        "components/schemas/History/analysis",
    ):
        assert expected in paths, expected
    assert len(found) >= 14
    for path, schema, concept in found:
        listed = [value for value in schema["enum"] if value is not None]
        if not listed:  # always null (an experiment with no data): holds none of them
            continue
        assert set(listed) == {member.value for member in concept}, path
        assert len(listed) == len(set(listed)), path


def test_every_result_field_is_documented_and_every_documented_one_is_sent() -> None:
    """The result rows are listed once in the code (their dataclass fields): their JSON keys
    are the document's properties, so a field cannot be added to one and not the other."""
    verdict = Verdict(VerdictKind.WIN, "a beats b")
    row = VariantResult("a", 1, 2, verdict=verdict)
    decision = Decision(DecisionKind.SHIP, "Ship a", "a")
    planning = Planning("signup", 0.1, 0.8, 1000, 3.0)
    goal = GoalResult("signup", (row,))
    srm = Srm(0.5, {"a": 1.0}, False)
    experiment = ExperimentResult(
        "exp", (goal,), Mode.HLL, {"a": 2}, srm=srm, decision=decision, planning=planning
    )
    schemas = DOC["components"]["schemas"]

    def documented(schema: Any) -> list[str]:
        return sorted(resolve(schema)["properties"])

    assert documented(schemas["Result"]) == sorted(row.to_json())
    assert documented(schemas["Result"]["properties"]["verdict"]) == sorted(verdict.to_json())
    assert documented(schemas["Goal"]) == sorted(goal.to_json())
    assert documented(schemas["Decision"]) == sorted(decision.to_json())
    assert documented(schemas["Planning"]) == sorted(planning.to_json())
    assert documented(schemas["Srm"]) == sorted(srm.to_json())
    assert documented(schemas["Experiment"]) == sorted(experiment.to_json())
    unknown = ExperimentResult("nothing").to_json()
    assert documented(schemas["UnknownExperiment"]) == sorted(unknown)
    summary = experiment.to_json(summary=True)  # Experiment's fields, goal_names for goals
    assert set(summary) == set(experiment.to_json()) - {"goals"} | {"goal_names"}
    assert set(documented(schemas["ExperimentSummary"])) <= set(summary)


def test_the_alert_log_documents_what_the_watcher_keeps() -> None:
    """An announced alert is the webhook's body, field for field (each documented once, in
    WebhookAlert), with what is due; an attempt is a notify.Delivery with its alert's kind."""
    schemas = DOC["components"]["schemas"]
    announced = schemas["AnnouncedAlert"]["properties"]
    webhook = schemas["WebhookAlert"]
    assert sorted(announced) == sorted([*webhook["properties"], "pending"])
    for name in webhook["properties"]:
        assert announced[name] == {"$ref": f"#/components/schemas/WebhookAlert/properties/{name}"}
    assert schemas["AnnouncedAlert"]["required"] == [*webhook["required"], "pending"]
    due = announced["pending"]["items"]["properties"]["destination"]["enum"]
    assert due == [destination_name(Webhook("https://a.example", "s" * 32)), "slack"]
    attempt = Delivery("0" * 32, "https://a.example/…", 1, 0, True, 200, None, None)
    documented = schemas["DeliveryAttempt"]["properties"]
    assert sorted(documented) == sorted([*attempt.to_json(), "kind"])
    assert resolve(documented["kind"])["enum"] == [kind.value for kind in AlertKind]
