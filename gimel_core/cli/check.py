"""`gimel check`: a preflight, one line per check, saying what each is for.

The local checks (configuration, Redis, API key) decide the exit code. What only deploying
needs (the sls CLI, gimel.config.json) is reported as "for deploying: ..." and fails the
check only with ``--deploy``, so a machine that only runs Gimel locally passes.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .. import defaults, rules
from ..config import Config
from ..errors import ConfigError, GimelError
from ..store import FULL_REFUSAL, SAFE_POLICY, NodeHealth, connect, local_or, redis_health
from . import deploy_config, local_key
from .options import data_dir_option, one_line_errors

SLS = Path("node_modules/.bin/sls")
"""The sls CLI (osls) `npm ci` installs from package-lock.json, in the Gimel checkout."""


@dataclass(frozen=True)
class Check:
    ok: bool
    line: str
    blocks_deploy: bool = True
    """False for what is missing but `gimel deploy` supplies itself (sls, with npm)."""

    def mark(self, for_deploy: bool) -> str:
        """ "ok", "FAIL", or "--" for what deploying needs and is missing but not required now."""
        if self.ok:
            return "ok    "
        return "FAIL  " if for_deploy and self.blocks_deploy else "--    "


def redis_check(url: str) -> tuple[bool, str]:
    """Whether a Redis takes a write from here (a probe key that expires by itself) and
    cannot evict what Gimel keeps (every master of a cluster)."""
    try:
        Config.from_env({"GIMEL_REDIS_URL": url})  # the app's checks of the URL, and messages
        client = connect(url, timeout=3)
    except GimelError as exc:
        return False, f"not usable: {exc}"
    try:
        nodes = redis_health(client)
    except GimelError as exc:
        return False, f"not reachable from here: {exc}"
    finally:
        client.close()
    return _verdict(nodes)


def _verdict(nodes: list[NodeHealth]) -> tuple[bool, str]:
    masters = f"{len(nodes)} masters: " if len(nodes) > 1 else ""
    memory = max(nodes, key=lambda node: node.used / (node.maxmemory or float("inf")))
    use = f"memory {_mb(memory.used)}" + (
        f" of maxmemory {_mb(memory.maxmemory)} ({memory.used / memory.maxmemory:.0%})"
        if memory.maxmemory
        else " (no maxmemory)"
    )
    refusing = [node.refuses for node in nodes if node.refuses]
    if refusing or any(node.full for node in nodes):
        reason = refusing[0] if refusing else FULL_REFUSAL
        return False, (
            f"{masters}refuses writes: {reason}; {use}. Raise maxmemory or free memory "
            "(a full Redis answers every new event with 503)"
        )
    evicting = sorted({node.policy or "unknown" for node in nodes if node.evicts})
    if evicting:
        return False, (
            f"{masters}maxmemory-policy is {', '.join(evicting)}: a full Redis would evict "
            "counts and de-dup records (a re-sent event then counts twice). Set it to "
            f"{SAFE_POLICY}: `redis-cli CONFIG SET maxmemory-policy {SAFE_POLICY}` and in "
            "redis.conf; on ElastiCache, in the parameter group; then watch memory, since a "
            f"full Redis refuses writes instead; {use}"
        )
    nearly = " (nearly full: raise maxmemory)" if any(n.nearly_full for n in nodes) else ""
    return True, f"{masters}maxmemory-policy {SAFE_POLICY}, {use}{nearly}, reachable and writable"


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def sls_command() -> list[str] | None:
    return [str(SLS)] if SLS.exists() else None


def _without_password(url: str) -> str:
    return url.rpartition("@")[2]


@click.command(short_help="Preflight: what running, then deploying, Gimel needs.")
@click.option(
    "--redis-url",
    envvar="GIMEL_REDIS_URL",
    show_envvar=True,
    help="Redis to check (default: the embedded one in --data-dir).",
)
@data_dir_option
@click.option(
    "--deploy",
    "for_deploy",
    is_flag=True,
    help="Also fail if something `gimel deploy` needs is missing (sls, gimel.config.json).",
)
@one_line_errors
def check(redis_url: str | None, data_dir: str, for_deploy: bool) -> None:
    """Preflight: configuration, Redis and API key; then what deploying needs.

    The Redis is --redis-url, or with none the embedded one (started for the check if
    `gimel serve` does not run). Exit code 1 if a local check fails, or with --deploy if a
    deploying one does. Lines marked "--" are missing but not needed to run Gimel locally.
    """
    local = [_configuration(), _bots(), _redis(redis_url, data_dir), _api_key(data_dir)]
    deploying = [_deploy_config(), _sls()]
    for item in local:
        click.echo(("ok    " if item.ok else "FAIL  ") + item.line)
    for item in deploying:
        click.echo(item.mark(for_deploy) + "for deploying: " + item.line)
    ready_locally = all(item.ok for item in local)
    ready_to_deploy = all(item.ok or not item.blocks_deploy for item in deploying)
    if ready_locally and not ready_to_deploy and not for_deploy:
        click.echo("Ready to run locally; `gimel check --deploy` also requires the deploy items.")
    if not ready_locally or (for_deploy and not ready_to_deploy):
        sys.exit(1)


def _configuration() -> Check:
    what = "configuration (the GIMEL_* variables)"
    try:
        config = Config.from_env()
    except GimelError as exc:
        return Check(False, f"{what}: {exc}")
    return Check(True, f"{what}: counting {config.counting}")


def _redis(redis_url: str | None, data_dir: str) -> Check:
    what = "Redis (keeps the counts)"
    where = _without_password(redis_url) if redis_url else f"embedded, data in {data_dir}"
    try:
        url, server = local_or(redis_url, data_dir)
    except (GimelError, RuntimeError) as exc:  # no redis-server binary, or it did not start
        return Check(False, f"{what}: {where}: {exc}")
    try:
        ok, detail = redis_check(url)
    finally:
        if server is not None:
            server.stop()
    return Check(ok, f"{what}: {where}, {detail}")


def _api_key(data_dir: str) -> Check:
    what = "API key (opens the results and the dashboard)"
    try:
        keys = rules.api_keys(os.environ.get("GIMEL_API_KEY", ""))
        if len(keys) > 1:
            return Check(
                True,
                f"{what}: GIMEL_API_KEY, {len(keys)} keys for rotation (the app accepts "
                "each; a deployment's API Gateway takes exactly one)",
            )
        if keys:
            return Check(True, f"{what}: GIMEL_API_KEY")
        if local_key.read(data_dir):
            return Check(True, f"{what}: {local_key.path(data_dir)}")
    except GimelError as exc:
        return Check(False, f"{what}: {exc}")
    return Check(True, f"{what}: none yet; `gimel serve` makes one in {local_key.path(data_dir)}")


def _bots() -> Check:
    """Which visitors are not counted: said, so that nobody expects a script's hits counted."""
    pattern = os.environ.get("GIMEL_BOT_PATTERN")
    if pattern is None:
        which = (
            "the default (crawlers, previews, monitors, headless browsers, and the own "
            "agents of curl, Wget and HTTP libraries); GIMEL_BOT_PATTERN changes it"
        )
    elif pattern:
        which = f"GIMEL_BOT_PATTERN {pattern!r}"
    else:
        which = "none (GIMEL_BOT_PATTERN is empty): every User-Agent is counted"
    return Check(True, f"bot filter (User-Agents answered but not counted): {which}")


def _deploy_config() -> Check:
    what = f"{deploy_config.DEPLOY_CONFIG} (the deployment's Redis, key, region and stage)"
    try:
        values = deploy_config.read()
    except GimelError as exc:
        return Check(False, f"{what}: {exc}")
    missing = [name for name in ("redisUrl", "apiKey") if not values.get(name)]
    if not values:
        return Check(False, f"{what}: none (run `gimel configure`)")
    if missing:
        return Check(False, f"{what}: no {' or '.join(missing)} (run `gimel configure`)")
    try:
        Config.from_env({"GIMEL_REDIS_URL": values["redisUrl"]})
    except ConfigError as exc:
        return Check(False, f"{what}: {exc} (run `gimel configure`)")
    key, source = deploy_config.api_key(values)
    if problem := rules.deploy_key_problem(key):
        return Check(False, f"{what}: {source} is not a key API Gateway accepts: {problem}")
    stage, region = values.get("stage", defaults.STAGE), values.get("region", defaults.REGION)
    redis = _without_password(values["redisUrl"])
    return Check(True, f"{what}: stage {stage} in {region}, Redis {redis}")


def _sls() -> Check:
    what = "sls (runs the AWS deployment)"
    if sls_command() is not None:
        return Check(True, f"{what}: {SLS}")
    prepared = deploy_config.DEPLOY_DIR / SLS
    if prepared.exists():
        return Check(True, f"{what}: {prepared}")
    if shutil.which("npm") is None:
        return Check(False, f"{what}: not installed, and no npm to install it (install Node.js 20)")
    return Check(
        False,
        f"{what}: not installed yet; `gimel deploy` installs the pinned one (npm)",
        blocks_deploy=False,
    )
