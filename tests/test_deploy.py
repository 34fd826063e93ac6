"""The deployment, checked with the real `sls` CLI (osls) and its plugins, no mocks.

`sls package` runs with no AWS credentials at all; cfn-lint and the assertions below read
the CloudFormation template and the zip it wrote. `sls invoke local` runs the example
events shipped in events/, and `sls offline` serves the API with API Gateway's own key
check. Each runs the way the README tells a user to: from the project folder, with the
project's virtualenv first on PATH (as `source .venv/bin/activate` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from conftest import API_KEY
from gimel_core import notify, rules
from gimel_core.embedded import free_port
from gimel_core.errors import ConfigError
from helpers import PRIVATE, PUBLIC

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
EXAMPLE_KEY = "local-example-key-0123456789"
"""The x-api-key the example events in events/ carry (a local example, not a secret)."""

RUNTIME, ABI, MACHINE = "python3.13", "cpython-313-aarch64-linux-gnu", 183  # ELF EM_AARCH64
MAX_ZIP_BYTES = 3 * 1024 * 1024

PARAMS = {
    "apiKey": "ci-fake-key-for-packaging-0000",
    "redisUrl": "rediss://:not-a-password@cache.example.com:6380/0",
    "trackPaths": "collect,t",
    "counting": "exact",
    "dedupWindow": "3600",
    "sourceBudget": "40",
    "trackRateLimit": "500",
    "subnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "securityGroupIds": "sg-0123456789abcdef0",
    "webhookUrl": "https://hooks.example.com/gimel/alerts?team=growth",
    "webhookSecret": "whsec-0123456789abcdef0123456789abcdef",
    "slackWebhookUrl": "https://hooks.slack.com/services/T000/B000/not-a-real-token",
    "dashboardUrl": "https://gimel.example.com/dev/dashboard",
    "watchSilentHours": "6",
}
WATCH_ENVIRONMENT = {
    "GIMEL_WEBHOOK_URL": PARAMS["webhookUrl"],
    "GIMEL_WEBHOOK_SECRET": PARAMS["webhookSecret"],
    "GIMEL_SLACK_WEBHOOK_URL": PARAMS["slackWebhookUrl"],
    "GIMEL_DASHBOARD_URL": PARAMS["dashboardUrl"],
    "GIMEL_WATCH_SILENT_HOURS": "6",
}
"""The alert settings, in the watch function's environment and nowhere else."""

EXTRA_TRACK = {
    (method, extra) for method, path in PUBLIC if path == "/track" for extra in ("/collect", "/t")
}
"""trackPaths=collect,t: each extra path gets exactly the methods /track has."""


def counts(experiment: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    """(goal, variant) -> (successes, trials): the original results' fields, and only those."""
    return {
        (goal["goal"], result["label"]): (result["successes"], result["trials"])
        for goal in experiment["goals"]
        for result in goal["results"]
    }


# -- running sls ---------------------------------------------------------------------------


def sls_env(**extra: str) -> dict[str, str]:
    """This environment with the virtualenv activated and every AWS credential source gone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GIMEL_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def sls_command(*args: str) -> list[str]:
    # --no: never download anything; `sls` must be the pinned osls from node_modules.
    return ["npx", "--no", "sls", *args]


def sls(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sls_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def params(values: dict[str, str | None]) -> list[str]:
    """--param options; None leaves a param out."""
    return [f"--param={name}={value}" for name, value in values.items() if value is not None]


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    if not (ROOT / "node_modules" / ".bin" / "sls").exists():
        pytest.fail("node_modules is missing: run `make node_modules` (npm ci) first")


# -- sls package: the template and the zip --------------------------------------------------


@dataclass
class Package:
    directory: Path
    template: dict[str, Any]
    zip: Path
    files: dict[str, bytes]
    """Every file in the zip, by name."""

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource["Properties"]
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == kind
        }

    def function(self, name: str = "api") -> dict[str, Any]:
        functions = self.resources("AWS::Lambda::Function").values()
        (function,) = [f for f in functions if f["FunctionName"] == f"gimel-dev-{name}"]
        return function

    def routes(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(method, path) of every API Gateway method, e.g. ("GET", "/experiments/{name}")."""
        resources = self.resources("AWS::ApiGateway::Resource")

        def path(parent: dict[str, Any]) -> str:
            if "Ref" not in parent:  # Fn::GetAtt [RestApi, RootResourceId]
                return ""
            resource = resources[parent["Ref"]]
            return path(resource["ParentId"]) + "/" + resource["PathPart"]

        return {
            (method["HttpMethod"], path(method["ResourceId"]) or "/"): method
            for method in self.resources("AWS::ApiGateway::Method").values()
        }


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    out = tmp_path_factory.mktemp("package")
    result = sls("package", "--package", str(out), *params(PARAMS), env=sls_env())
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((out / "cloudformation-template-update-stack.json").read_text())
    with zipfile.ZipFile(out / "gimel.zip") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return Package(out, template, out / "gimel.zip", files)


def test_cfn_lint_finds_no_errors_or_warnings(package: Package) -> None:
    cfn_lint = shutil.which("cfn-lint", path=sls_env()["PATH"])
    assert cfn_lint, "cfn-lint is not installed: pip install -e '.[test]'"
    templates = sorted(package.directory.glob("cloudformation-template-*.json"))
    assert len(templates) == 2  # create-stack and update-stack
    result = subprocess.run(
        [cfn_lint, "--format", "parseable", *map(str, templates)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    # Exit code bits: 2 errors, 4 warnings, 8 informational; 1 means it could not run.
    assert result.returncode in (0, 8), result.stdout + result.stderr


def test_api_key_on_every_route_that_reads_or_changes_data(package: Package) -> None:
    routes = package.routes()
    assert set(routes) == PUBLIC | PRIVATE | EXTRA_TRACK
    for route, method in routes.items():
        assert method["ApiKeyRequired"] is (route in PRIVATE), route
        assert method["Integration"]["Type"] == "AWS_PROXY", route  # the app sees it all


def test_every_route_the_app_serves_is_deployed(
    package: Package, make_app: Callable[..., Flask]
) -> None:
    """A route missing from serverless.yml would answer 403 from API Gateway once deployed."""
    deployed = set(package.routes())
    for rule in make_app().url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's own; Gimel serves its files from /dashboard
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <path:name> -> {name}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert (method, path) in deployed, f"add {method} {path} to serverless.yml"


def test_one_api_key_shared_by_api_gateway_and_the_app_with_a_usage_plan(
    package: Package,
) -> None:
    (key,) = package.resources("AWS::ApiGateway::ApiKey").values()
    assert key["Name"] == "gimel-dev"  # scoped by stage
    assert key["Value"] == PARAMS["apiKey"]
    assert package.function()["Environment"]["Variables"]["GIMEL_API_KEY"] == key["Value"]

    ((plan_name, plan),) = package.resources("AWS::ApiGateway::UsagePlan").items()
    assert plan["UsagePlanName"] == "gimel-dev"
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "ApiGatewayRestApi"}, "Stage": "dev"}]
    assert plan["Throttle"] == {"BurstLimit": 20, "RateLimit": 10}
    assert plan["Quota"] == {"Limit": 10000, "Period": "DAY"}
    (link,) = package.resources("AWS::ApiGateway::UsagePlanKey").values()
    assert link["UsagePlanId"] == {"Ref": plan_name}
    assert link["KeyType"] == "API_KEY"


def test_function_runtime_settings_and_environment(package: Package) -> None:
    function = package.function()
    assert function["Handler"] == "handler.handler"
    assert function["FunctionName"] == "gimel-dev-api"
    assert function["Runtime"] == RUNTIME
    assert function["Architectures"] == ["arm64"]
    assert (function["Timeout"], function["MemorySize"]) == (5, 256)  # see serverless.yml
    assert function["Environment"]["Variables"] == {
        "GIMEL_REDIS_URL": PARAMS["redisUrl"],
        "GIMEL_API_KEY": PARAMS["apiKey"],
        "GIMEL_COUNTING": "exact",
        "GIMEL_DEDUP_WINDOW": "3600",
        # A deploy counts only declared experiments unless told otherwise (serverless.yml).
        "GIMEL_REGISTRATION": "declared",
        "GIMEL_TRACK_PATHS": "collect,t",
        "GIMEL_SOURCE_BUDGET": "40",
    }
    assert function["VpcConfig"] == {
        "SubnetIds": PARAMS["subnetIds"].split(","),
        "SecurityGroupIds": PARAMS["securityGroupIds"].split(","),
    }


def test_the_watcher_runs_on_its_schedule_with_the_alert_settings_in_its_environment_only(
    package: Package,
) -> None:
    assert len(package.resources("AWS::Lambda::Function")) == 2
    watch, api = package.function("watch"), package.function("api")
    assert watch["Handler"] == "handler.watch"
    assert (watch["Timeout"], watch["MemorySize"]) == (300, 256)  # see serverless.yml
    shared = {k: v for k, v in api["Environment"]["Variables"].items() if k != "GIMEL_TRACK_PATHS"}
    assert watch["Environment"]["Variables"] == {**shared, **WATCH_ENVIRONMENT}
    assert not set(WATCH_ENVIRONMENT) & set(api["Environment"]["Variables"])
    assert watch["VpcConfig"] == api["VpcConfig"]  # it reads the same Redis
    ((rule_name, rule),) = package.resources("AWS::Events::Rule").items()
    assert rule["ScheduleExpression"] == "rate(1 hour)"  # watchRate's default
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["WatchLambdaFunction", "Arn"]}
    permissions = package.resources("AWS::Lambda::Permission").values()
    (allowed,) = [p for p in permissions if p["Principal"] == "events.amazonaws.com"]
    assert allowed["FunctionName"] == {"Fn::GetAtt": ["WatchLambdaFunction", "Arn"]}
    assert allowed["SourceArn"] == {"Fn::GetAtt": [rule_name, "Arn"]}


def test_the_stage_throttles_every_tracking_route(package: Package) -> None:
    """trackRateLimit: API Gateway's ceiling on the tracking routes, all visitors together."""
    (deployment,) = package.resources("AWS::ApiGateway::Deployment").values()
    settings = deployment["StageDescription"]["MethodSettings"]
    throttled = {(s["HttpMethod"], s["ResourcePath"]) for s in settings}
    assert throttled == {
        (method, f"/~1{path}") for path in ("track", "collect", "t") for method in ("GET", "POST")
    }
    assert {(s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"]) for s in settings} == {
        (500, 1000)
    }


def test_zip_is_small_and_holds_only_the_app_and_its_requirements(package: Package) -> None:
    assert package.zip.stat().st_size < MAX_ZIP_BYTES
    names = list(package.files)
    top = {name.split("/")[0] for name in names}
    assert {"handler.py", "gimel_core", "flask", "werkzeug", "redis", "serverless_wsgi.py"} <= top
    for name in ("tests", "node_modules", "bench", "docs", "events", ".venv", "deploy", "bin"):
        assert name not in top
    # Nothing but Python modules, packages and their metadata (and licences) at the top.
    packages = {name.split("/")[0] for name in names if name.count("/") == 1}
    for entry in top:
        assert entry.endswith(".py") or entry in packages, entry
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    # Every file of the app itself is there.
    shipped = {n for n in names if n.startswith("gimel_core/")}
    source = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "gimel_core").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert source <= shipped


def test_zip_extension_modules_are_built_for_the_lambda_runtime(package: Package) -> None:
    extensions = [name for name in package.files if name.endswith(".so")]
    assert {name.split("/")[0] for name in extensions} == {"markupsafe", "hiredis"}
    for name in extensions:
        assert name.endswith((f".{ABI}.so", ".abi3.so")), name
        elf = package.files[name][:20]
        assert elf[:5] == b"\x7fELF\x02", name  # 64-bit ELF
        assert int.from_bytes(elf[18:20], "little") == MACHINE, name
    for name, data in package.files.items():
        if name.endswith(".dist-info/WHEEL"):
            for line in data.decode().splitlines():
                if line.startswith("Tag: "):
                    python, abi, platform = line[5:].split("-")
                    assert python in ("py3", "py2.py3", "py2", "cp313"), line
                    assert abi in ("none", "abi3", "cp313"), line
                    assert platform == "any" or platform.endswith("_aarch64"), line


def test_zip_is_self_contained(package: Package, redis_url: str, tmp_path: Path) -> None:
    """The packaged handler imports and counts using nothing but the zip and the stdlib.

    The local interpreter may differ from the runtime; MarkupSafe then falls back to its
    pure-Python code, so only the compiled extension goes unused here.
    """
    with zipfile.ZipFile(package.zip) as archive:
        archive.extractall(tmp_path)
    script = (
        "import json, os, sys\n"
        "import handler\n"
        "for name in ('flask', 'werkzeug', 'jinja2', 'redis', 'serverless_wsgi'):\n"
        "    assert os.path.abspath(sys.modules[name].__file__).startswith(sys.argv[1]), name\n"
        "event = json.load(open(sys.argv[2]))\n"
        "print(handler.handler(event, None)['statusCode'])\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GIMEL_REDIS_URL": redis_url,
        "GIMEL_API_KEY": EXAMPLE_KEY,
    }
    result = subprocess.run(
        # -S: no site-packages, so nothing can come from the virtualenv.
        [sys.executable, "-S", "-c", script, str(tmp_path), str(EVENTS / "track.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"redisUrl": None}, "set the Redis URL"),
        ({"redisUrl": "redis://localhost:6379/0"}, "the Redis URL points at this machine"),
        ({"apiKey": "too-short"}, "set the API key"),
        ({"apiKey": EXAMPLE_KEY}, "the public example from events/"),
        ({"trackPaths": "experiments"}, "collides with an existing route"),
        ({"trackPaths": "collect.js"}, "may only hold letters, digits"),
        ({"subnetIds": None}, "needs both subnetIds and securityGroupIds"),
        ({"sourceBudget": "thirty"}, "sourceBudget must be a whole number"),
        ({"trackRateLimit": "0"}, "trackRateLimit must be a whole number"),
        # osls checks the schedule against EventBridge's rules ("1 hour", "2 hours").
        ({"watchRate": "rate(1 hours)"}, "functions.watch.events.0.schedule"),
        ({"webhookSecret": "s" * 31}, "webhookSecret must be at least 32 characters"),
    ],
)
def test_package_refuses_settings_that_cannot_work(
    changes: dict[str, str | None], complaint: str, tmp_path: Path
) -> None:
    settings = params({**PARAMS, **changes})
    result = sls("package", "--package", str(tmp_path), *settings, env=sls_env(), timeout=120)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


# -- the plugin and the app apply one rule (gimel_core/rules.json) ---------------------------

KEYS = [
    "k" * 20,
    "k" * 128,
    "!\"#$%&'()*+-./0123456789:;<=>?@[\\]^_`{|}~",
    "k" * 19,
    "k" * 129,
    "k" * 200,
    "é" * 25,
    "k" * 24 + "\U0001f600",
    "k" * 20 + "," + "m" * 20,
    "k" * 10 + " " + "k" * 10,
    "k" * 20 + "\t",
    "k" * 20 + "\x7f",
]
TRACK_PATHS = [
    "collect",
    "t",
    "a/b",
    "/collect/",
    "a-b_c",
    "a//b",
    "collect.js",
    "../x",
    "é",
    "a b",
]
PLUGIN_VERDICTS = """
const Plugin = require(process.argv[1]);
const { keys, paths } = JSON.parse(process.argv[2]);
class Refused extends Error {}
function accepts(gimel, act) {
  const functions = { api: { events: [{ http: 'GET track' }] } };
  const service = { custom: { gimel }, functions, provider: {} };
  try {
    act(new Plugin({ service, classes: { Error: Refused } }));
    return true;
  } catch (error) {
    if (error instanceof Refused) return false;
    throw error;
  }
}
console.log(JSON.stringify({
  keys: keys.map((apiKey) => accepts({ apiKey }, (plugin) => plugin.checkApiKey())),
  paths: paths.map((path) => accepts({}, (plugin) => plugin.addTrackPaths([path]))),
}));
"""


def python_accepts_path(path: str) -> bool:
    try:
        return bool(rules.track_paths(path))
    except ConfigError:
        return False


def test_the_plugin_applies_the_apps_key_and_track_path_rules() -> None:
    """Run by node for real: the plugin reads the rules the app reads, and agrees with it."""
    table = json.dumps({"keys": KEYS, "paths": TRACK_PATHS})
    plugin = str(ROOT / "deploy" / "gimel-plugin.js")
    result = subprocess.run(
        ["node", "-e", PLUGIN_VERDICTS, plugin, table], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout)
    assert verdicts["keys"] == [rules.deploy_key_problem(key) is None for key in KEYS]
    assert verdicts["paths"] == [python_accepts_path(path) for path in TRACK_PATHS]
    assert verdicts["keys"] == [True] * 3 + [False] * 9  # the table tests both sides
    assert verdicts["paths"] == [True] * 5 + [False] * 5


WATCH_VERDICTS = """
const Plugin = require(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
class Refused extends Error {}
console.log(JSON.stringify(cases.map(({ settings, endpoint }) => {
  if (endpoint) process.env.AWS_ENDPOINT_URL = endpoint;
  else delete process.env.AWS_ENDPOINT_URL;
  const functions = { api: { environment: {} }, watch: { environment: {} } };
  const service = { custom: { gimel: settings }, functions, provider: {} };
  try {
    new Plugin({ service, classes: { Error: Refused } }).addWatcher();
    return { api: functions.api.environment, watch: functions.watch.environment };
  } catch (error) {
    if (error instanceof Refused) return { refused: error.message };
    throw error;
  }
})));
"""
SECRET = "s" * 32
SLACK = "https://hooks.slack.com/services/T000/B000/secret-token"
EMULATOR = "http://127.0.0.1:4566"
WATCH_CASES: list[tuple[dict[str, str], str, str | None]] = [
    # (settings, AWS endpoint, what the refusal says; None: accepted)
    ({}, "", None),
    ({"webhookUrl": "https://hooks.example.com/a?b=c", "webhookSecret": SECRET}, "", None),
    ({"webhookUrl": "http://hooks.example.com/a", "webhookSecret": SECRET}, "", "https://"),
    ({"webhookUrl": "https://u:p@hooks.example.com/a", "webhookSecret": SECRET}, "", "user"),
    ({"webhookUrl": "not a url", "webhookSecret": SECRET}, "", "webhookUrl is not a URL"),
    ({"webhookUrl": "https://hooks.example.com/a"}, "", "webhookUrl needs webhookSecret"),
    ({"webhookSecret": SECRET}, "", "webhookSecret is set but webhookUrl is not"),
    (
        {"webhookUrl": "https://hooks.example.com/a", "webhookSecret": SECRET[:-1]},
        "",
        "webhookSecret must be at least 32 characters",
    ),
    # Loopback: only when every AWS call goes to an emulator on this machine.
    ({"webhookUrl": "http://127.0.0.1:9/a", "webhookSecret": SECRET}, EMULATOR, None),
    (
        {"webhookUrl": "http://127.0.0.1:9/a", "webhookSecret": SECRET},
        "",
        "webhookUrl points at this machine",
    ),
    ({"slackWebhookUrl": SLACK}, "", None),
    ({"slackWebhookUrl": SLACK.replace("https", "http")}, "", "slackWebhookUrl must be an https"),
    ({"dashboardUrl": "https://gimel.example.com/prod/dashboard"}, "", None),
    ({"dashboardUrl": "https://gimel.example.com/d?key=x"}, "", "dashboardUrl must be"),
    ({"watchSilentHours": "720"}, "", None),
    ({"watchSilentHours": "0"}, "", "watchSilentHours must be a whole number"),
    ({"watchSilentHours": "1.5"}, "", "watchSilentHours must be a whole number"),
]
WATCH_NAMES = {
    "webhookUrl": "GIMEL_WEBHOOK_URL",
    "webhookSecret": "GIMEL_WEBHOOK_SECRET",
    "slackWebhookUrl": "GIMEL_SLACK_WEBHOOK_URL",
    "dashboardUrl": "GIMEL_DASHBOARD_URL",
    "watchSilentHours": "GIMEL_WATCH_SILENT_HOURS",
}


def test_the_plugin_checks_the_watchers_settings_and_gives_them_to_the_watch_function_only():
    """Run by node for real; a refusal never shows a URL's path (a Slack URL is a secret)."""
    cases = [{"settings": settings, "endpoint": endpoint} for settings, endpoint, _ in WATCH_CASES]
    plugin = str(ROOT / "deploy" / "gimel-plugin.js")
    result = subprocess.run(
        ["node", "-e", WATCH_VERDICTS, plugin, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for (settings, _, complaint), verdict in zip(
        WATCH_CASES, json.loads(result.stdout), strict=True
    ):
        if complaint is None:
            assert verdict["api"] == {}, settings
            expected = {WATCH_NAMES[k]: v for k, v in settings.items() if k in WATCH_NAMES}
            assert verdict["watch"] == expected, settings
        else:
            assert complaint in verdict.get("refused", ""), (settings, verdict)
            assert "/a" not in verdict["refused"] and "secret-token" not in verdict["refused"]
            assert SECRET[:-1] not in verdict["refused"]


def test_the_plugin_accepts_the_destinations_the_app_sends_to() -> None:
    """Deploying to the emulator (loopback allowed), the plugin and notify.check_url agree."""
    urls = [
        "https://hooks.example.com/x",
        "https://hooks.example.com:8443/x?y=z",
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]:80/x",
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com:99999/x",
    ]
    cases = [{"settings": {"slackWebhookUrl": url}, "endpoint": EMULATOR} for url in urls]
    plugin = str(ROOT / "deploy" / "gimel-plugin.js")
    result = subprocess.run(
        ["node", "-e", WATCH_VERDICTS, plugin, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr

    def app_accepts(url: str) -> bool:
        try:
            return bool(notify.check_url(url))
        except ValueError:
            return False

    verdicts = ["refused" not in verdict for verdict in json.loads(result.stdout)]
    assert verdicts == [app_accepts(url) for url in urls]
    assert verdicts == [True] * 5 + [False] * 4  # the table tests both sides


def test_setup_py_and_gimel_deploy_ship_the_same_files() -> None:
    """setup.py reads the list from rules.json, as gimel deploy does, and every file exists."""
    setup = (ROOT / "setup.py").read_text()
    assert 'json.loads(Path("gimel_core/rules.json").read_text())["deployFiles"]' in setup
    assert all((ROOT / name).is_file() for name in rules.DEPLOY_FILES)
    assert "deploy/gimel-plugin.js" in rules.DEPLOY_FILES
    # sls packages gimel_core/**, so the deployed app (and the plugin, beside it) has the rules.
    assert "gimel_core/**" in (ROOT / "serverless.yml").read_text()


# -- extra track paths through the Lambda handler -------------------------------------------


def test_handler_serves_extra_track_paths_as_track(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", EXAMPLE_KEY)
    monkeypatch.setenv("GIMEL_TRACK_PATHS", "collect,t")
    monkeypatch.delitem(sys.modules, "handler", raising=False)
    import handler

    try:
        track = json.loads((EVENTS / "track.json").read_text())
        for path in ("/collect", "/t"):
            response = handler.handler({**track, "path": path, "resource": path}, None)
            assert response["statusCode"] == 200, path
            assert response["multiValueHeaders"]["Access-Control-Allow-Origin"] == ["*"], path
        # Only the exact paths: nothing below them, nothing else.
        below = handler.handler({**track, "path": "/collect/x", "resource": "/collect/x"}, None)
        assert below["statusCode"] == 404
        results = handler.handler(json.loads((EVENTS / "experiments.json").read_text()), None)
        assert json.loads(results["body"])[1]["experiment"] == "button color"
    finally:
        sys.modules.pop("handler", None)


# -- sls invoke local with the shipped events -----------------------------------------------


def invoke_local(event: str, redis_url: str) -> dict[str, Any]:
    # Open registration: the example events are for an experiment no plan declares.
    env = sls_env(GIMEL_REDIS_URL=redis_url, GIMEL_API_KEY=EXAMPLE_KEY, GIMEL_REGISTRATION="open")
    result = sls("invoke", "local", "-f", "api", "--path", f"events/{event}", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # The handler's return value is printed last, as indented JSON; logs may come before.
    lines = result.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


@pytest.mark.slow
def test_invoke_local_runs_every_shipped_event(
    redis_url: str, make_app: Callable[..., Flask]
) -> None:
    shipped = {p.name for p in EVENTS.glob("*.json")}
    assert shipped == {"track.json", "track-goal.json", "experiments.json", "delete.json"}

    for event in ("track.json", "track-goal.json"):
        response = invoke_local(event, redis_url)
        assert response["statusCode"] == 200, response
        assert response["multiValueHeaders"]["Access-Control-Allow-Origin"] == ["*"]

    results = invoke_local("experiments.json", redis_url)
    assert results["statusCode"] == 200, results
    body = json.loads(results["body"])
    assert body[1]["experiment"] == "button color"
    assert counts(body[1]) == {("signup", "red"): (1, 1)}

    assert invoke_local("delete.json", redis_url)["statusCode"] == 200
    left = (
        make_app(api_keys=(EXAMPLE_KEY,))
        .test_client()
        .get("/experiments", headers={"x-api-key": EXAMPLE_KEY})
        .get_json()
    )
    assert left[1:] == [] and left[0]["meta"]["scope"] is None


# -- sls offline ----------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


class Offline:
    """`sls offline start` in its own process group, so it can be stopped whole."""

    def __init__(self, log: Path, redis_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/dev"
        self.log = log
        settings = {"apiKey": API_KEY, "redisUrl": redis_url, "trackPaths": "collect"}
        command = sls_command(
            "offline",
            "start",
            "--host",
            "127.0.0.1",
            "--httpPort",
            str(self.port),
            "--lambdaPort",
            str(free_port()),
            *params(settings),
        )
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=sls_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.process.pid

    def wait_until_listening(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("sls offline exited:\n" + self.log.read_text())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.2)
        pytest.fail("sls offline did not listen in time:\n" + self.log.read_text())

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while group_members(self.pgid) and time.monotonic() < deadline:
            self.process.poll()  # reap the leader
            time.sleep(0.1)
        if group_members(self.pgid):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(timeout=15)


@pytest.fixture
def offline(tmp_path: Path, redis_url: str) -> Iterator[Offline]:
    server = Offline(tmp_path / "offline.log", redis_url)
    try:
        server.wait_until_listening()
        yield server
    finally:
        server.stop()


def request(
    method: str, url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    # A browser's agent: urllib's own is one of the scripts' agents Gimel does not count.
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"}
    req = urllib.request.Request(
        url, data=data, method=method, headers={**browser, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_offline_serves_the_api_behind_api_gateways_key_check(offline: Offline) -> None:
    base = offline.url
    # A deploy counts declared experiments only (serverless.yml's default): declare it.
    plan = json.dumps({"variants": ["blue", "red"], "goals": ["signup"]}).encode()
    path = f"{base}/experiments/button%20color?namespace=alephbet"
    status, _, _ = request("PUT", path, {"Content-Type": "application/json"}, plan)
    assert status == 403  # API Gateway's own check: no key
    key = {"x-api-key": API_KEY, "Content-Type": "application/json"}
    status, _, body = request("PUT", path, key, plan)
    assert status == 201, body
    status, _, body = request("GET", f"{base}/track?experiment=other&variant=a&uuid=u&event=x")
    assert status == 200, body  # undeclared: answered, not counted
    query = "experiment=button+color&variant=red&namespace=alephbet"
    for path, uuid, event in (
        ("track", "u1", "participate"),
        ("collect", "u2", "participate"),  # the extra track path counts like /track
        ("track", "u2", "signup"),
    ):
        status, headers, body = request("GET", f"{base}/{path}?{query}&uuid={uuid}&event={event}")
        assert status == 200, body
        assert headers["access-control-allow-origin"] == "*"
    status, headers, _ = request(
        "OPTIONS",
        f"{base}/track",
        {"Origin": "https://www.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] == "*"

    # Refused by API Gateway itself (its own answer, not the app's) without the right key.
    for refused in ({}, {"x-api-key": "wrong-key-0123456789abcdef"}):
        status, _, body = request("GET", f"{base}/experiments", refused)
        assert status == 403
        assert json.loads(body) == {"message": "Forbidden"}

    status, _, body = request("GET", f"{base}/experiments", {"x-api-key": API_KEY})
    assert status == 200, body
    # The plan's variants are shown, counted yet or not; the undeclared experiment is not.
    listing = json.loads(body)
    assert [exp["experiment"] for exp in listing[1:]] == ["button color"]
    assert counts(listing[1]) == {("signup", "red"): (1, 2), ("signup", "blue"): (0, 0)}

    offline.stop()
    assert group_members(offline.pgid) == []
