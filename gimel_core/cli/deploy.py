"""`gimel configure` and `gimel deploy`: settings saved in gimel.config.json, then `sls deploy`.

`gimel deploy` works from a Gimel checkout (sls runs there) and from any folder with Gimel
installed from its wheel: the wheel carries serverless.yml, the plugin, the handler and the
pinned npm and pip requirements (setup.py), and `gimel deploy` lays them out with the
installed gimel_core in .gimel/deploy/ and installs the pinned sls there with `npm ci`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from .. import defaults, rules
from ..config import Config
from ..errors import GimelError
from ..snippet import snippet
from ..vocabulary import Mode, Registration
from . import deploy_config
from .check import redis_check
from .options import one_line_errors

COUNTING_CHOICE = click.Choice([m.value for m in Mode])
REGISTRATION_CHOICE = click.Choice([r.value for r in Registration])
FRONT_DOORS = ("rest", "url")
"""deploy/gimel-plugin.js's frontDoor values: the REST API only, or a function URL too."""
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
STAGE = re.compile(r"[A-Za-z0-9-]{1,32}")
ENDPOINT = re.compile(r"(https://\S+?)/track\b")
"""The base URL in `sls deploy`'s list of endpoints."""
FUNCTION_URL = re.compile(r"\b(https?://[^\s/]+\.lambda-url\.[^\s/]+?)/?\s*$")
"""The function URL `sls deploy` lists with frontDoor=url."""
WATCH_RATE = re.compile(
    r"rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)|cron\(\S+( \S+){5}\)"
)
"""An EventBridge schedule, as osls checks serverless.yml's (``rate(1 hour)``, ``rate(2 hours)``,
``cron(0 9 * * ? *)``)."""
ALERT_SETTINGS = {
    "webhookUrl": "GIMEL_WEBHOOK_URL",
    "webhookSecret": "GIMEL_WEBHOOK_SECRET",
    "slackWebhookUrl": "GIMEL_SLACK_WEBHOOK_URL",
    "dashboardUrl": "GIMEL_DASHBOARD_URL",
    "watchSilentHours": "GIMEL_WATCH_SILENT_HOURS",
}
"""The watcher's params (serverless.yml) and the variables the watch function gets them as."""

DEPLOY_DIR = deploy_config.DEPLOY_DIR
"""Where `gimel deploy` prepares them outside a checkout, beside gimel.config.json."""
SLS = Path("node_modules", ".bin", "sls")


@click.command(short_help="Choose a deployment's Redis, counting, region and stage.")
@click.option("--redis-url", help="Redis the Lambda function will use (redis:// or rediss://).")
@click.option("--counting", type=COUNTING_CHOICE, help="Counting mode of new experiments.")
@click.option("--region", help=f"AWS region, e.g. eu-west-1 (first default: {defaults.REGION}).")
@click.option("--stage", help=f"Deployment stage, e.g. prod (first default: {defaults.STAGE}).")
@click.option("--api-key", help="API key (default: keep the current one, or generate one).")
@click.option(
    "--registration",
    type=REGISTRATION_CHOICE,
    help="declared (serverless.yml's default): count only planned experiments; open: any.",
)
@click.option(
    "--front-door",
    type=click.Choice(FRONT_DOORS),
    help="rest (default): the REST API only; url: a Lambda function URL too, for tracking.",
)
@click.option("--webhook-url", help="Where the watcher POSTs each alert, signed (https://).")
@click.option(
    "--webhook-secret",
    help="The alerts' signing key, 32+ characters (default: keep it, or generate one).",
)
@click.option("--slack-webhook-url", help="A Slack incoming webhook for the alerts.")
@click.option("--dashboard-url", help="The dashboard address each alert links to.")
@click.option("--watch-rate", help="How often the watcher runs (EventBridge; rate(1 hour)).")
@click.option("--watch-silent-hours", help="Hours without events before 'silent' (24).")
@click.option("--no-input", is_flag=True, help="Take options and current values; ask nothing.")
@click.option("--skip-redis-check", is_flag=True, help="Save even if the Redis does not answer.")
@one_line_errors
def configure(
    redis_url: str | None,
    counting: str | None,
    region: str | None,
    stage: str | None,
    api_key: str | None,
    registration: str | None,
    front_door: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    slack_webhook_url: str | None,
    dashboard_url: str | None,
    watch_rate: str | None,
    watch_silent_hours: str | None,
    no_input: bool,
    skip_redis_check: bool,
) -> None:
    """Choose the Redis, counting mode, region and stage of a deployment, and where its
    alerts go.

    Saved (owner-only, git-ignored) in gimel.config.json with the API key, which
    serverless.yml reads. Re-running shows the current values as defaults. An alert
    option given as '' removes the saved value.
    """
    current = deploy_config.read()

    def ask(label: str, given: Any, key: str, default: Any, **kwargs: Any) -> Any:
        value = given if given is not None else current.get(key, default)
        if given is None and not no_input:
            value = click.prompt(label, default=value, **kwargs)
        return value

    values = dict(current)
    values["redisUrl"] = ask("Redis URL (redis:// or rediss://)", redis_url, "redisUrl", None)
    values["counting"] = ask(
        "Counting mode", counting, "counting", defaults.COUNTING, type=COUNTING_CHOICE
    )
    values["region"] = ask("AWS region", region, "region", defaults.REGION)
    values["stage"] = ask("Stage", stage, "stage", defaults.STAGE)
    values["apiKey"] = api_key or current.get("apiKey") or secrets.token_urlsafe(24)
    if registration:
        values["registration"] = registration
    if front_door:
        values["frontDoor"] = front_door
    generated = _watch_settings(
        values,
        {
            "webhookUrl": webhook_url,
            "webhookSecret": webhook_secret,
            "slackWebhookUrl": slack_webhook_url,
            "dashboardUrl": dashboard_url,
            "watchRate": watch_rate,
            "watchSilentHours": watch_silent_hours,
        },
    )
    if not values["redisUrl"]:
        raise GimelError("a Redis URL is required: pass --redis-url")
    if problem := rules.deploy_key_problem(values["apiKey"]):
        raise GimelError(f"--api-key is not one API Gateway accepts: {problem}")
    Config.from_env(
        {
            "GIMEL_REDIS_URL": values["redisUrl"],
            "GIMEL_API_KEY": values["apiKey"],
            "GIMEL_COUNTING": values["counting"],
            **{env: str(values[key]) for key, env in ALERT_SETTINGS.items() if key in values},
        }
    )  # same checks as the app's, with the same messages
    if not REGION.fullmatch(values["region"]):
        raise GimelError(f"--region {values['region']!r} does not look like an AWS region")
    if not STAGE.fullmatch(values["stage"]):
        raise GimelError("--stage must be letters, digits and '-' (at most 32)")
    ok, detail = redis_check(values["redisUrl"])
    click.echo(f"Redis: {detail}")
    if not ok and not skip_redis_check:
        if no_input or not click.confirm("Save anyway (e.g. a Redis only reachable from AWS)?"):
            raise GimelError("Redis did not answer; nothing saved (--skip-redis-check saves)")
    deploy_config.write(values)
    click.echo(f"Saved to {deploy_config.DEPLOY_CONFIG}. API key: {values['apiKey']}")
    if generated:
        click.echo(f"Webhook secret (give it to the receiver): {values['webhookSecret']}")
    click.echo("Next: gimel deploy")


def _watch_settings(values: dict[str, Any], given: dict[str, str | None]) -> bool:
    """Apply the watcher's options to ``values`` ('' removes one); whether a webhook secret
    was generated (a webhook needs one, kept across runs like the API key)."""
    for key, value in given.items():
        if value is not None and value.strip():
            values[key] = value.strip()
        elif value is not None:
            values.pop(key, None)
    if not values.get("webhookUrl") and given["webhookSecret"] is None:
        values.pop("webhookSecret", None)  # the webhook removed: its secret goes with it
    rate = values.get("watchRate")
    if rate is not None and not WATCH_RATE.fullmatch(rate):
        raise GimelError(
            f"--watch-rate {rate!r} is not an EventBridge schedule: rate(1 hour), "
            "rate(<n> minutes|hours|days) or cron() of six fields"
        )
    if values.get("webhookUrl") and not values.get("webhookSecret"):
        values["webhookSecret"] = secrets.token_urlsafe(32)
        return True
    return False


@click.command(short_help="Deploy to AWS with sls; print the endpoint and snippet.")
@click.option("--stage", help="Stage to deploy (default: the configured one).")
@one_line_errors
def deploy(stage: str | None) -> None:
    """Deploy to AWS with `sls deploy`, then print the endpoint, snippet and dashboard URL.

    Uses the settings `gimel configure` saved, and saves the endpoint back in
    gimel.config.json, where `gimel results`, `snippet` and `dashboard` find it. Outside a
    Gimel checkout it first prepares .gimel/deploy/ from this installed Gimel, and installs
    the pinned sls there with npm the first time.
    """
    values = deploy_config.read()
    if not values:
        raise GimelError(f"no {deploy_config.DEPLOY_CONFIG}: run `gimel configure` first")
    key, source = deploy_config.api_key(values)
    if problem := rules.deploy_key_problem(key):
        fix = (
            "unset it to deploy the saved one"
            if source == "GIMEL_API_KEY"
            else "run `gimel configure --api-key ...`, or delete it there to have one generated"
        )
        raise GimelError(f"{source} is not a key API Gateway accepts ({problem}): {fix}")
    project = project_folder()
    install_sls(project)
    command = [
        str(project / SLS),
        "deploy",
        "--stage",
        stage or values.get("stage", defaults.STAGE),
        "--region",
        values.get("region", defaults.REGION),
    ]
    click.echo("$ " + " ".join(command))
    endpoint, function_url = _run_sls(command, project)
    if endpoint:
        values["endpoint"] = endpoint
        values.pop("trackUrl", None)
        if function_url:
            values["trackUrl"] = f"{function_url}/track"
        deploy_config.write(values)
        track_url = values.get("trackUrl") or f"{endpoint}/track"
        click.echo(f"\nEndpoint : {endpoint}")
        click.echo(f"Tracking : {track_url}")
        click.echo(f"Dashboard: {endpoint}/dashboard")
        click.echo(f"API key  : {key}\n")
        click.echo(snippet(track_url))


def project_folder() -> Path:
    """The folder sls runs in: this Gimel checkout, or .gimel/deploy/ prepared here."""
    here = Path.cwd()
    if _is_checkout(here):
        return here
    target = here / DEPLOY_DIR
    package = Path(str(resources.files("gimel_core")))
    kit = package / "deploy_files"
    if not kit.is_dir():  # an editable install: the checkout it points to has the files
        kit = package.parent
        if not _is_checkout(kit):
            raise GimelError(
                "this Gimel install has no deploy files: install Gimel from its wheel "
                "(pip install gimel) or run gimel deploy in a Gimel checkout"
            )
    click.echo(f"Preparing {DEPLOY_DIR}/ from Gimel in {package}")
    for name in rules.DEPLOY_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kit / name, target / name)
    shutil.rmtree(target / "gimel_core", ignore_errors=True)
    shutil.copytree(
        package,
        target / "gimel_core",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "deploy_files"),
    )
    # serverless.yml reads the settings from gimel.config.json beside it: this folder's.
    link = target / deploy_config.DEPLOY_CONFIG
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(Path("..", "..", deploy_config.DEPLOY_CONFIG))
    return target


def _is_checkout(folder: Path) -> bool:
    return (folder / "serverless.yml").is_file() and (folder / "deploy/gimel-plugin.js").is_file()


def install_sls(project: Path) -> None:
    """`npm ci` in ``project`` when it has no sls, or (outside a checkout) an outdated one."""
    stamp = project / "node_modules" / ".gimel-package-lock.sha256"
    wanted = hashlib.sha256((project / "package-lock.json").read_bytes()).hexdigest()
    if (project / SLS).exists():
        if project == Path.cwd():  # a checkout: its node_modules is the developer's
            return
        if stamp.exists() and stamp.read_text() == wanted:
            return
    npm = shutil.which("npm")
    if npm is None:
        raise GimelError(
            "npm is not installed: install Node.js 20.19 or newer (it comes with npm), "
            "then run gimel deploy again"
        )
    click.echo(f"Installing the pinned sls and its plugins in {project} ($ npm ci)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=project, check=False
    )
    if result.returncode != 0 or not (project / SLS).exists():
        raise GimelError(f"npm ci failed in {project} (exit code {result.returncode})")
    stamp.write_text(wanted)


def _run_sls(command: list[str], project: Path) -> tuple[str | None, str | None]:
    """Run sls, echoing its output; the endpoint and function URL it printed, if any."""
    endpoint = function_url = None
    env = dict(os.environ)
    # serverless-python-requirements downloads the zip's wheels with the `python3` first
    # on PATH: this Gimel's, which has pip.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    for line in process.stdout:
        click.echo(line, nl=False)
        found = ENDPOINT.search(line)
        endpoint = endpoint or (found.group(1) if found else None)
        found = FUNCTION_URL.search(line)
        function_url = function_url or (found.group(1) if found else None)
    code = process.wait()
    if code != 0:
        raise GimelError(
            f"sls deploy failed with exit code {code}; check your AWS credentials "
            "(aws sts get-caller-identity) and the messages above"
        )
    return endpoint, function_url
