"""`sls deploy`, requests through API Gateway, a redeploy and `sls remove`, on an AWS emulator.

LocalStack (tests/emulator/) runs on loopback without Docker; the real `npx sls deploy` from
this checkout and the real `gimel deploy` of a wheel installed in a fresh virtualenv create
real CloudFormation stacks there, and the deployed zip runs under AWS's Python runtime client
in a clean process, against the suite's redis-server. Marked `emulator`: `make test-emulator`
(and .ci/run) run it; plain `make test` does not, as its first run installs LocalStack.

What this proves, and what only AWS can: see the README's "What the emulated deploy proves".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from receivers import Receiver

from emulator import aws
from gimel_core import create_app, notify
from gimel_core.embedded import EmbeddedRedis
from gimel_core.watch import Watcher
from helpers import PRIVATE, PUBLIC

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "emulated-key-0123456789abcdef"
WRONG_KEY = "wrong-key-0123456789abcdefgh"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
"""Visitors' events come from browsers; Gimel answers scripts' events without counting them."""
FORBIDDEN = {"message": "Forbidden"}
"""API Gateway's own answer to a missing or wrong key: the request never reached the function."""


# -- the emulator, its clients and the stacks -----------------------------------------------


@dataclass
class Emulator:
    localstack: aws.LocalStack
    ecr: aws.NoEcr
    redis_url: str
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, bin_dir: Path, **extra: str) -> dict[str, str]:
        """This machine's environment, minus anything AWS or Gimel, sent to the emulator."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GIMEL_"))}
        env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
        env.pop("VIRTUAL_ENV", None)
        env.update(self.localstack.env(self.ecr), **extra)
        return env

    def run(
        self, command: list[str], cwd: Path, env: dict[str, str], what: str, timeout: float = 420
    ) -> str:
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        self.timings[what] = time.monotonic() - started
        assert result.returncode == 0, f"{what}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        sent = {"User-Agent": BROWSER, **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        return self.localstack.request(method, url, sent, data)

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        status, _, body = self.request(method, url, **kwargs)
        assert status == 200, (method, url, status, body)
        return json.loads(body)

    def stack_outputs(self, stack: str) -> dict[str, str]:
        (described,) = self.localstack.aws(
            "cloudformation", "describe-stacks", "--stack-name", stack
        )["Stacks"]
        return {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}


def report(request: pytest.FixtureRequest, line: str) -> None:
    """A line on the terminal now, past pytest's output capture (installs take minutes)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"emulator: {line}")


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: EmbeddedRedis,
    request: pytest.FixtureRequest,
) -> Iterator[Emulator]:
    started = time.monotonic()
    python = aws.install(log=lambda line: report(request, line))
    installed = time.monotonic() - started
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    root = tmp_path_factory.mktemp("localstack")
    with aws.running(root, python) as localstack, aws.NoEcr() as ecr:
        emulator = Emulator(localstack, ecr, redis_server.url)
        emulator.timings["install (0 when the pins are unchanged)"] = installed
        emulator.timings["LocalStack ready"] = localstack.wait_until_ready()
        try:
            yield emulator
        finally:
            for what, seconds in emulator.timings.items():
                report(request, f"{what}: {seconds:.1f} s")


def sls(*args: str) -> list[str]:
    return ["npx", "--no", "sls", *args]


def params(**values: str) -> list[str]:
    return [f"--param={name}={value}" for name, value in values.items()]


@dataclass
class Stack:
    stage: str
    endpoint: str
    """As `sls deploy` printed it and the stack's ServiceEndpoint output says."""
    settings: dict[str, str]

    @property
    def name(self) -> str:
        return f"gimel-{self.stage}"


def checkout_deploy(emulator: Emulator, stage: str, what: str, **settings: str) -> Stack:
    settings = {"apiKey": API_KEY, "redisUrl": emulator.redis_url, **settings}
    env = emulator.env(Path(sys.executable).parent)
    output = emulator.run(sls("deploy", "--stage", stage, *params(**settings)), ROOT, env, what)
    assert f"Service deployed to stack gimel-{stage}" in output, output
    endpoint = emulator.stack_outputs(f"gimel-{stage}")["ServiceEndpoint"]
    assert f"GET - {endpoint}/track" in output
    return Stack(stage, endpoint, settings)


@pytest.fixture(scope="module")
def stack(emulator: Emulator) -> Stack:
    # registration=open: a visitor's first event creates the experiment, as on a laptop.
    return checkout_deploy(emulator, "emu", "deploy (npx sls deploy)", registration="open")


def concrete(path: str) -> str:
    return path.replace("{name}", "no-such-experiment").replace("{asset}", "app.css")


def deployed_routes(emulator: Emulator, stack: Stack) -> dict[tuple[str, str], bool]:
    """(method, path) -> whether API Gateway requires the key, read from the deployed API."""
    apis = emulator.localstack.aws("apigateway", "get-rest-apis")["items"]
    (api,) = [item for item in apis if item["name"] == f"{stack.stage}-gimel"]
    resources = emulator.localstack.aws(
        "apigateway", "get-resources", "--rest-api-id", api["id"], "--embed", "methods"
    )["items"]
    return {
        (method, resource["path"]): bool(details.get("apiKeyRequired"))
        for resource in resources
        for method, details in resource.get("resourceMethods", {}).items()
    }


def counts(experiment: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (goal["goal"], result["label"]): (result["successes"], result["trials"])
        for goal in experiment["goals"]
        for result in goal["results"]
    }


def results(emulator: Emulator, base: str, experiment: str) -> dict[str, Any]:
    body = emulator.json(
        "GET", f"{base}/experiments?namespace=alephbet", headers={"x-api-key": API_KEY}
    )
    (found,) = [item for item in body[1:] if item["experiment"] == experiment]
    return found


def track(emulator: Emulator, url: str, experiment: str, variant: str, uuid: str, event: str):
    query = f"experiment={experiment.replace(' ', '+')}&variant={variant}&uuid={uuid}"
    status, headers, body = emulator.request(
        "GET", f"{url}?{query}&event={event}&namespace=alephbet"
    )
    assert status == 200, body
    assert headers["access-control-allow-origin"] == "*"


def assert_cors_preflight(emulator: Emulator, url: str) -> None:
    """The app's own preflight answer (its headers, not the emulator's or a gateway's)."""
    status, headers, _ = emulator.request(
        "OPTIONS",
        url,
        {"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204, (url, status)
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert headers["access-control-allow-headers"] == "Content-Type"


# -- the REST API deployed from the checkout ------------------------------------------------


def test_every_route_of_serverless_yml_is_deployed_and_only_private_ones_need_the_key(
    emulator: Emulator, stack: Stack
) -> None:
    routes = deployed_routes(emulator, stack)
    assert set(routes) == PUBLIC | PRIVATE
    assert {route for route, private in routes.items() if private} == PRIVATE


def test_every_public_route_answers(emulator: Emulator, stack: Stack) -> None:
    started = time.monotonic()
    status, _, body = emulator.request("GET", f"{stack.endpoint}/health")
    emulator.timings["first request (cold start)"] = time.monotonic() - started
    assert status == 200 and json.loads(body) == {"status": "ok"}, body
    track(emulator, f"{stack.endpoint}/track", "public routes", "a", "p1", "participate")
    status, _, body = emulator.request(
        "POST",
        f"{stack.endpoint}/track",
        body=[
            {"experiment": "public routes", "variant": "a", "uuid": "p2", "event": "participate"}
        ],
    )
    assert (status, json.loads(body)) == (200, {"accepted": 1}), body
    status, headers, body = emulator.request("GET", f"{stack.endpoint}/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html"), body[:200]
    # The page's files, under the version it names: the stage's route for them is there.
    (version,) = set(re.findall(r'"dashboard/v/([0-9a-f]{12})/', body.decode()))
    status, headers, body = emulator.request("GET", f"{stack.endpoint}/dashboard/app.css")
    assert status == 200 and headers["content-type"].startswith("text/css"), body[:200]
    url = f"{stack.endpoint}/dashboard/v/{version}/main.js"
    status, headers, kept = emulator.request("GET", url)
    assert status == 200 and headers["content-type"].startswith("text/javascript"), kept[:200]
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    spec = emulator.json("GET", f"{stack.endpoint}/openapi.json")
    assert spec["openapi"].startswith("3.")
    assert_cors_preflight(emulator, f"{stack.endpoint}/track")


def test_every_private_route_is_refused_by_api_gateway_without_the_right_key(
    emulator: Emulator, stack: Stack
) -> None:
    for method, path in sorted(PRIVATE):
        url = f"{stack.endpoint}{concrete(path)}?namespace=alephbet&experiment=no-such-experiment"
        for headers in ({}, {"x-api-key": WRONG_KEY}):
            status, _, body = emulator.request(method, url, headers)
            assert (status, json.loads(body)) == (403, FORBIDDEN), (method, path, headers)
        # With the key the app answers (a PUT with no body, until it is a valid plan: 400).
        status, headers, body = emulator.request(method, url, {"x-api-key": API_KEY})
        assert status not in (401, 403) and status < 500, (method, path, status, body)
        assert json.loads(body) != FORBIDDEN


def test_an_event_tracked_through_the_function_shows_in_its_results(
    emulator: Emulator, stack: Stack
) -> None:
    config = emulator.localstack.aws(
        "lambda", "get-function-configuration", "--function-name", f"{stack.name}-api"
    )
    assert config["Environment"]["Variables"]["GIMEL_REGISTRATION"] == "open"
    assert config["Runtime"] == "python3.13" and config["Architectures"] == ["arm64"]
    for variant, uuid, event in (
        ("red", "u1", "participate"),
        ("blue", "u2", "participate"),
        ("red", "u1", "signup"),
        ("red", "u1", "participate"),  # the same visitor again: counted once
    ):
        track(emulator, f"{stack.endpoint}/track", "button color", variant, uuid, event)
    found = results(emulator, stack.endpoint, "button color")
    assert counts(found) == {("signup", "red"): (1, 1), ("signup", "blue"): (0, 1)}


def test_sls_info_lists_the_endpoints_and_the_key(emulator: Emulator, stack: Stack) -> None:
    env = emulator.env(Path(sys.executable).parent)
    output = emulator.run(
        sls("info", "--stage", stack.stage, *params(**stack.settings)), ROOT, env, "sls info"
    )
    assert f"gimel-{stack.stage}: {API_KEY}" in output
    for method, path in PUBLIC | PRIVATE:
        shown = "" if path == "/" else path  # sls prints the root as the bare endpoint
        assert f"{method} - {stack.endpoint}{shown}\n" in output, (method, path)


def test_a_redeploy_with_an_extra_track_path_and_a_function_url_serves_both(
    emulator: Emulator, stack: Stack
) -> None:
    redeployed = checkout_deploy(
        emulator,
        stack.stage,
        "redeploy (trackPaths=collect, frontDoor=url)",
        registration="open",
        trackPaths="collect",
        frontDoor="url",
    )
    assert redeployed.endpoint == stack.endpoint  # the same API, updated in place
    routes = deployed_routes(emulator, stack)
    assert {route for route in routes if route[1] == "/collect"} == {
        ("GET", "/collect"),
        ("OPTIONS", "/collect"),
        ("POST", "/collect"),
    }
    assert not any(private for route, private in routes.items() if route[1] == "/collect")
    track(emulator, f"{stack.endpoint}/collect", "extra path", "a", "c1", "participate")
    assert_cors_preflight(emulator, f"{stack.endpoint}/collect")

    # The function URL: public tracking for the price of Lambda alone.
    function_url = emulator.stack_outputs(stack.name)["ApiLambdaFunctionUrl"].rstrip("/")
    assert ".lambda-url." in function_url
    track(emulator, f"{function_url}/track", "extra path", "b", "c2", "participate")
    track(emulator, f"{function_url}/collect", "extra path", "b", "c3", "participate")
    assert_cors_preflight(emulator, f"{function_url}/track")
    # No API Gateway there: every private route reaches the app, which refuses it without
    # the right key, and answers with it.
    for method, path in sorted(PRIVATE):
        url = f"{function_url}{concrete(path)}?namespace=alephbet&experiment=no-such-experiment"
        for headers, refused in (({}, 401), ({"x-api-key": WRONG_KEY}, 403)):
            status, _, body = emulator.request(method, url, headers)
            assert status == refused, (method, path, status, body)
            assert "key" in json.loads(body)["error"]
        status, _, body = emulator.request(method, url, {"x-api-key": API_KEY})
        assert status not in (401, 403) and status < 500, (method, path, status, body)
    participants = results(emulator, function_url, "extra path")["participants"]
    assert participants == {"a": 1, "b": 2}


def test_sls_remove_leaves_no_stack_bucket_api_or_function(
    emulator: Emulator, stack: Stack
) -> None:
    env = emulator.env(Path(sys.executable).parent)
    bucket = emulator.stack_outputs(stack.name)["ServerlessDeploymentBucketName"]
    output = emulator.run(
        sls("remove", "--stage", stack.stage, *params(**stack.settings)), ROOT, env, "sls remove"
    )
    assert "Service gimel has been successfully removed" in output
    assert_removed(emulator, stack.stage, bucket)


def assert_removed(emulator: Emulator, stage: str, bucket: str) -> None:
    client = emulator.localstack
    stacks = client.aws("cloudformation", "list-stacks")["StackSummaries"]
    assert {s["StackStatus"] for s in stacks if s["StackName"] == f"gimel-{stage}"} <= {
        "DELETE_COMPLETE"
    }
    assert bucket not in {b["Name"] for b in client.aws("s3api", "list-buckets")["Buckets"]}
    apis = client.aws("apigateway", "get-rest-apis")["items"]
    assert f"{stage}-gimel" not in {api["name"] for api in apis}
    keys = client.aws("apigateway", "get-api-keys")["items"]
    assert f"gimel-{stage}" not in {key["name"] for key in keys}
    plans = client.aws("apigateway", "get-usage-plans")["items"]
    assert f"gimel-{stage}" not in {plan["name"] for plan in plans}
    functions = client.aws("lambda", "list-functions")["Functions"]
    assert not {f"gimel-{stage}-api", f"gimel-{stage}-watch"} & {
        f["FunctionName"] for f in functions
    }
    rules = client.aws("events", "list-rules", "--name-prefix", f"gimel-{stage}-")["Rules"]
    assert rules == []


# -- the watcher: EventBridge runs it on its schedule -----------------------------------------

WEBHOOK_SECRET = "emulated-webhook-secret-0123456789abcdef"
SIZED = {"variants": ["blue", "red"], "goals": ["signup"], "analysis": "fixed"}
"""Planned at 2 participants: the first two reach it, and at that size the fixed analysis
decides (no difference). Two alerts, in this order:"""
ALERTS = ["decided", "size_reached"]
SCHEDULE_WAIT = 240.0
"""Seconds for the first scheduled pass to deliver: LocalStack's scheduler looks once a
minute, then the function starts cold on a busy 2-core machine."""
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": aws.ACCOUNT,
    "time": "2026-12-01T10:00:00Z",
    "region": aws.REGION,
    "resources": [],
    "detail": {},
}


def test_the_watcher_is_deployed_on_its_schedule_and_delivers_each_alert_once(
    emulator: Emulator, receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Its own database, so the watcher sees only this experiment.
    watched = emulator.redis_url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(watched).flushdb()
    app = create_app({"redis_url": watched, "api_keys": (API_KEY,)})
    client = app.test_client()
    plan = {**SIZED, "planned_participants": 2}
    answer = client.put("/experiments/sized", json=plan, headers={"x-api-key": API_KEY})
    assert answer.status_code == 201, answer.get_json()
    for variant, uuid in (("blue", "u1"), ("red", "u2")):
        query = f"experiment=sized&variant={variant}&uuid={uuid}&event=participate"
        assert client.get(f"/track?{query}", headers={"User-Agent": BROWSER}).status_code == 200

    webhook = receiver()
    stack = checkout_deploy(
        emulator,
        "watch",
        "deploy with the watcher every minute",
        redisUrl=watched,
        watchRate="rate(1 minute)",
        webhookUrl=f"{webhook.url}/alerts",
        webhookSecret=WEBHOOK_SECRET,
    )
    deployed = time.monotonic()
    lambdas = emulator.localstack

    # The watch function alone holds the webhook's settings.
    watch = lambdas.aws(
        "lambda", "get-function-configuration", "--function-name", f"{stack.name}-watch"
    )
    assert (watch["Handler"], watch["Timeout"]) == ("handler.watch", 300)
    variables = watch["Environment"]["Variables"]
    assert variables["GIMEL_WEBHOOK_URL"] == f"{webhook.url}/alerts"
    assert variables["GIMEL_WEBHOOK_SECRET"] == WEBHOOK_SECRET
    api = lambdas.aws(
        "lambda", "get-function-configuration", "--function-name", f"{stack.name}-api"
    )
    assert not [name for name in api["Environment"]["Variables"] if "WEBHOOK" in name]

    # Its rule and the rule's target, as EventBridge lists them.
    arn = watch["FunctionArn"]
    (rule_name,) = lambdas.aws("events", "list-rule-names-by-target", "--target-arn", arn)[
        "RuleNames"
    ]
    rule = lambdas.aws("events", "describe-rule", "--name", rule_name)
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")
    (target,) = lambdas.aws("events", "list-targets-by-rule", "--rule", rule_name)["Targets"]
    assert target["Arn"] == arn

    # The schedule itself runs it: each alert reaches the receiver once, signed.
    while len(webhook.received) < len(ALERTS) and time.monotonic() - deployed < SCHEDULE_WAIT:
        time.sleep(1)
    emulator.timings["the schedule's first delivery, after the deploy"] = (
        time.monotonic() - deployed
    )
    assert [json.loads(r.body)["kind"] for r in webhook.received] == ALERTS
    for received in webhook.received:
        assert received.path == "/alerts"
        assert notify.verify(
            WEBHOOK_SECRET, received.body, received.headers[notify.SIGNATURE_HEADER]
        )
        assert json.loads(received.body)["experiment"] == "sized"

    # A second trigger, EventBridge's scheduled event sent to the function: nothing new.
    answer_file = tmp_path / "report.json"
    invoked = lambdas.aws(
        "lambda",
        "invoke",
        "--function-name",
        f"{stack.name}-watch",
        "--payload",
        json.dumps(SCHEDULED_EVENT),
        str(answer_file),
    )
    assert invoked["StatusCode"] == 200 and "FunctionError" not in invoked, invoked
    report = json.loads(answer_file.read_text())
    assert (report["alerts"], report["delivered"]) == (0, 0), report
    assert len(webhook.received) == len(ALERTS)
    log = Watcher(app.extensions["gimel"].experiments).log("alephbet", "sized")
    assert [alert["pending"] for alert in log["alerts"]] == [[], []]
    assert sorted(d["ok"] for d in log["deliveries"]) == [True, True]

    # Removed, the schedule goes with the stack.
    bucket = emulator.stack_outputs(stack.name)["ServerlessDeploymentBucketName"]
    env = emulator.env(Path(sys.executable).parent)
    emulator.run(
        sls("remove", "--stage", stack.stage, *params(**stack.settings)),
        ROOT,
        env,
        "sls remove (the watcher's stage)",
    )
    assert_removed(emulator, stack.stage, bucket)
    assert len(webhook.received) == len(ALERTS)


# -- pip install gimel, gimel configure, gimel deploy: from a wheel, in an empty folder -----


def test_the_three_commands_deploy_from_an_installed_wheel_in_an_empty_folder(
    emulator: Emulator, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("gimel-*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    subprocess.run(
        [bin_dir / "pip", "install", "--quiet", f"{wheel}[local]"], check=True, timeout=600
    )
    emulator.timings["pip install gimel (the wheel, in a fresh venv)"] = time.monotonic() - started

    folder = tmp_path / "my-site"
    folder.mkdir()
    env = emulator.env(bin_dir)
    gimel = str(bin_dir / "gimel")
    # The production default: registration=declared (no --registration).
    configure = [gimel, "configure", "--redis-url", emulator.redis_url, "--stage", "wheel"]
    configure += ["--api-key", API_KEY, "--front-door", "url"]
    output = emulator.run([*configure, "--no-input"], folder, env, "gimel configure")
    assert "Saved to gimel.config.json" in output
    output = emulator.run([gimel, "deploy"], folder, env, "gimel deploy (npm ci, sls deploy)")
    assert "Preparing .gimel/deploy/" in output and "$ npm ci" in output
    assert "Service deployed to stack gimel-wheel" in output

    saved = json.loads((folder / "gimel.config.json").read_text())
    outputs = emulator.stack_outputs("gimel-wheel")
    assert saved["endpoint"] == outputs["ServiceEndpoint"]
    assert saved["trackUrl"] == outputs["ApiLambdaFunctionUrl"].rstrip("/") + "/track"
    assert f'GimelAdapter("{saved["trackUrl"]}"' in output  # the snippet tracks through it
    # The zip holds the installed Gimel's code, and nothing of the deploy files it carries.
    with zipfile.ZipFile(folder / ".gimel/deploy/.serverless/gimel.zip") as archive:
        names = archive.namelist()
    assert {"handler.py", "gimel_core/__init__.py", "gimel_core/storage/track.lua"} <= set(names)
    assert not [name for name in names if "deploy_files" in name or name.endswith(".pyc")]

    # Declared registration: an undeclared experiment is answered, not counted...
    def listing() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = emulator.json(
            "GET", f"{saved['endpoint']}/experiments?limit=100", headers={"x-api-key": API_KEY}
        )
        return found

    before = listing()[0]["meta"]["dropped"].get("undeclared", 0)
    track(emulator, saved["trackUrl"], "from a wheel", "a", "w0", "participate")
    after = listing()
    assert "from a wheel" not in {exp["experiment"] for exp in after[1:]}
    assert after[0]["meta"]["dropped"]["undeclared"] == before + 1
    # ...until the team declares it, with the plans file, through the deployed API.
    (folder / "plans.yaml").write_text(
        "experiments:\n  from a wheel:\n    variants: [a, b]\n    goals: [signup]\n"
    )
    # The deployed API by LocalStack's path-style URL: its host-style one needs public DNS.
    endpoint = urlsplit(saved["endpoint"])
    api = f"{emulator.localstack.url}/restapis/{endpoint.hostname.split('.')[0]}"
    where = ["--url", f"{api}{endpoint.path}/_user_request_", "--api-key", API_KEY]
    output = emulator.run(
        [gimel, "plan", "apply", "plans.yaml", *where], folder, env, "gimel plan apply"
    )
    assert "1 declared in namespace alephbet" in output
    track(emulator, saved["trackUrl"], "from a wheel", "a", "w1", "participate")
    track(emulator, saved["trackUrl"], "from a wheel", "z", "w2", "participate")  # not declared
    found = results(emulator, saved["endpoint"], "from a wheel")
    assert found["participants"] == {"a": 1, "b": 0} and found["plan"]["variants"] == ["a", "b"]
    output = emulator.run([gimel, "plan", "show", *where], folder, env, "gimel plan show")
    # Only what the file declared: the goal by its bare name, no default spelled out.
    assert "from a wheel:" in output and "goals: [signup]" in output and "null" not in output

    # A second deploy reuses the installed sls; `sls remove` runs from the prepared folder.
    output = emulator.run([gimel, "deploy"], folder, env, "gimel deploy again")
    assert "$ npm ci" not in output and "Service deployed to stack gimel-wheel" in output
    bucket = outputs["ServerlessDeploymentBucketName"]
    prepared = folder / ".gimel" / "deploy"
    emulator.run(
        [str(prepared / "node_modules/.bin/sls"), "remove", "--stage", "wheel"],
        prepared,
        env,
        "sls remove (the wheel's deploy)",
    )
    assert_removed(emulator, "wheel", bucket)
