"""`gimel configure` and `gimel deploy`: settings saved in gimel.config.json, then `sls deploy`."""

from __future__ import annotations

import re
import secrets
import subprocess
from typing import Any

import click

from .. import defaults
from ..config import Config
from ..errors import GimelError
from ..snippet import snippet
from . import deploy_config
from .check import redis_check, sls_command
from .options import one_line_errors

COUNTING_CHOICE = click.Choice(list(defaults.COUNTING_MODES))
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
STAGE = re.compile(r"[A-Za-z0-9-]{1,32}")
ENDPOINT = re.compile(r"(https://\S+?)/track\b")
"""The base URL in `sls deploy`'s list of endpoints."""


@click.command()
@click.option("--redis-url", help="Redis the Lambda function will use (redis:// or rediss://).")
@click.option("--counting", type=COUNTING_CHOICE, help="Counting mode of new experiments.")
@click.option("--region", help=f"AWS region, e.g. eu-west-1 (first default: {defaults.REGION}).")
@click.option("--stage", help=f"Deployment stage, e.g. prod (first default: {defaults.STAGE}).")
@click.option("--api-key", help="API key (default: keep the current one, or generate one).")
@click.option("--no-input", is_flag=True, help="Take options and current values; ask nothing.")
@click.option("--skip-redis-check", is_flag=True, help="Save even if the Redis does not answer.")
@one_line_errors
def configure(
    redis_url: str | None,
    counting: str | None,
    region: str | None,
    stage: str | None,
    api_key: str | None,
    no_input: bool,
    skip_redis_check: bool,
) -> None:
    """Choose the Redis, counting mode, region and stage of a deployment.

    Saved (owner-only, git-ignored) in gimel.config.json with the API key, which
    serverless.yml reads. Re-running shows the current values as defaults.
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
    if not values["redisUrl"]:
        raise GimelError("a Redis URL is required: pass --redis-url")
    Config.from_env(
        {
            "GIMEL_REDIS_URL": values["redisUrl"],
            "GIMEL_API_KEY": values["apiKey"],
            "GIMEL_COUNTING": values["counting"],
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
    click.echo("Next: gimel deploy")


@click.command()
@click.option("--stage", help="Stage to deploy (default: the configured one).")
@one_line_errors
def deploy(stage: str | None) -> None:
    """Deploy to AWS with `sls deploy`, then print the endpoint, snippet and dashboard URL.

    Uses the settings `gimel configure` saved, and saves the endpoint back in
    gimel.config.json, where `gimel results`, `snippet` and `dashboard` find it.
    """
    values = deploy_config.read()
    if not values:
        raise GimelError(f"no {deploy_config.DEPLOY_CONFIG}: run `gimel configure` first")
    sls = sls_command()
    if sls is None:
        raise GimelError("sls is not installed here: run `npm ci` in the Gimel checkout")
    command = [
        *sls,
        "deploy",
        "--stage",
        stage or values.get("stage", defaults.STAGE),
        "--region",
        values.get("region", defaults.REGION),
    ]
    click.echo("$ " + " ".join(command))
    endpoint = _run_sls(command)
    if endpoint:
        values["endpoint"] = endpoint
        deploy_config.write(values)
        click.echo(f"\nEndpoint : {endpoint}")
        click.echo(f"Dashboard: {endpoint}/dashboard")
        click.echo(f"API key  : {values['apiKey']}\n")
        click.echo(snippet(f"{endpoint}/track"))


def _run_sls(command: list[str]) -> str | None:
    """Run sls, echoing its output; the endpoint it printed, if any."""
    endpoint = None
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    for line in process.stdout:
        click.echo(line, nl=False)
        found = ENDPOINT.search(line)
        endpoint = endpoint or (found.group(1) if found else None)
    code = process.wait()
    if code != 0:
        raise GimelError(
            f"sls deploy failed with exit code {code}; check your AWS credentials "
            "(aws sts get-caller-identity) and the messages above"
        )
    return endpoint
