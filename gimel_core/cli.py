"""The ``gimel`` command: run Gimel locally, deploy it, and read and manage results.

Every option can also come from a ``GIMEL_*`` environment variable. Errors are one line
on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import redis

from . import defaults, keys
from .client import Backend, HttpBackend, RedisBackend
from .config import Config
from .errors import GimelError
from .snippet import ADAPTERS, ALEPHBET_SRC, snippet
from .store import connect, unavailable

DEPLOY_CONFIG = "gimel.config.json"
"""Written by `gimel configure` (git-ignored); serverless.yml reads its parameters from it."""


def local_api_key(data_dir: str) -> str:
    """The key of a local install: generated once, kept (owner-only) in the data dir."""
    path = Path(data_dir) / "api-key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def read_deploy_config() -> dict[str, Any]:
    path = Path(DEPLOY_CONFIG)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise GimelError(
            f"{DEPLOY_CONFIG} is not valid JSON: fix it or run `gimel configure`"
        ) from None
    return data if isinstance(data, dict) else {}


def write_deploy_config(values: dict[str, Any]) -> None:
    fd = os.open(DEPLOY_CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
        out.write("\n")


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GimelError as exc:
            raise click.ClickException(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis: {exc}") from None

    return run


# -- options shared by the commands that read or change results ---------------------------

_url = click.option(
    "--url", envvar="GIMEL_URL", help="Base URL of a Gimel API (local or deployed)."
)
_key = click.option("--api-key", envvar="GIMEL_API_KEY", help="API key for --url.")
_redis = click.option(
    "--redis-url", envvar="GIMEL_REDIS_URL", help="Read and write the store directly instead."
)
_data_dir = click.option(
    "--data-dir",
    default=defaults.DATA_DIR,
    show_default=True,
    envvar="GIMEL_DATA_DIR",
    help="Folder of the embedded Redis and the local API key.",
)
_namespace = click.option(
    "--namespace", "-n", default=defaults.NAMESPACE, show_default=True, envvar="GIMEL_NAMESPACE"
)


def data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in (_namespace, _data_dir, _redis, _key, _url):
        command = option(command)
    return command


@contextmanager
def open_backend(
    url: str | None, api_key: str | None, redis_url: str | None, data_dir: str
) -> Iterator[Backend]:
    """--url (HTTP), else --redis-url, else the deployed endpoint, else the local store."""
    deployed = read_deploy_config()
    if url:
        yield HttpBackend(url, api_key or _local_key_if_any(data_dir))
    elif redis_url:
        yield RedisBackend(redis_url)
    elif deployed.get("endpoint"):
        yield HttpBackend(deployed["endpoint"], api_key or deployed.get("apiKey"))
    else:
        from .embedded import EmbeddedRedis

        server = EmbeddedRedis(data_dir).start()  # attaches to `gimel serve` if it runs
        try:
            yield RedisBackend(server.url)
        finally:
            server.stop()


def _local_key_if_any(data_dir: str) -> str | None:
    path = Path(data_dir) / "api-key"
    return path.read_text().strip() if path.exists() else None


@click.group()
@click.version_option(package_name="gimel")
def main() -> None:
    """Gimel: a tiny, private A/B-testing backend for Alephbet."""


# -- running locally ------------------------------------------------------------------------


@main.command()
@click.option("--host", default=defaults.HOST, show_default=True, envvar="GIMEL_HOST")
@click.option("--port", default=defaults.PORT, show_default=True, type=int, envvar="GIMEL_PORT")
@_data_dir
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per process.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="GIMEL_WORKERS",
    help="Processes sharing the listening socket (one waitress is one core at most).",
)
@one_line_errors
def serve(host: str, port: int, data_dir: str, threads: int, workers: int) -> None:
    """Run Gimel locally under a production WSGI server (waitress).

    With no GIMEL_REDIS_URL, an embedded Redis keeps the data in --data-dir, in an
    append-only file fsynced every second.
    """
    from .app import create_app

    config = Config.from_env()
    overrides: dict[str, object] = {"data_dir": data_dir}
    if not config.api_keys:
        overrides["api_keys"] = (local_api_key(data_dir),)
    app = create_app(config.with_overrides(overrides))
    store = app.extensions.get("gimel_embedded")
    try:
        # Bind before printing, so the URLs in the banner answer as soon as they appear.
        listener = socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        if store is not None:
            store.stop()
        raise GimelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    children = [_fork_worker(app, listener, threads) for _ in range(workers - 1)]
    base = f"http://{host}:{port}"
    where = f"embedded, data in {store.data_dir}" if store else "GIMEL_REDIS_URL"
    click.echo(f"Gimel is listening on {base}")
    click.echo(f"  track URL : {base}/track")
    click.echo(f"  dashboard : {base}/dashboard")
    click.echo(f"  API key   : {app.config['GIMEL'].api_keys[0]}")
    click.echo(f"  Redis     : {where}")
    click.echo("Paste this into a page to start an experiment (`gimel snippet` prints it again):")
    click.echo(snippet(f"{base}/track"))
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    # SIGTERM (systemd, CI) stops as cleanly as Ctrl-C: the embedded Redis flushes its AOF.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run_waitress(app, listener, threads)
    except KeyboardInterrupt:
        pass
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
        listener.close()
        if store is not None:
            store.stop()
        click.echo("Gimel stopped.")


def _run_waitress(app: Any, listener: socket.socket, threads: int) -> None:
    import waitress

    server = waitress.create_server(app, sockets=[listener], threads=threads, ident="gimel")
    try:
        server.run()
    finally:
        server.close()


def _fork_worker(app: Any, listener: socket.socket, threads: int) -> int:
    """A child process serving the same socket; it leaves the embedded Redis to its parent."""
    pid = os.fork()
    if pid:
        return pid
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        _run_waitress(app, listener, threads)
    os._exit(0)  # no atexit handlers: those stop the embedded Redis, which is the parent's


@main.command(name="snippet")
@click.option("--url", envvar="GIMEL_URL", help="Base URL of Gimel (default: deployed or local).")
@_namespace
@click.option("--adapter", type=click.Choice(sorted(ADAPTERS)), default="gimel", show_default=True)
@click.option("--experiment", default="my first experiment", show_default=True)
@click.option("--alephbet-src", default=ALEPHBET_SRC, show_default=True)
@one_line_errors
def snippet_command(
    url: str | None, namespace: str, adapter: str, experiment: str, alephbet_src: str
) -> None:
    """Print an HTML snippet that loads Alephbet and counts an experiment in Gimel."""
    base = url or read_deploy_config().get("endpoint") or f"http://{defaults.HOST}:{defaults.PORT}"
    click.echo(
        snippet(
            base.rstrip("/") + "/track",
            namespace=namespace,
            adapter=adapter,
            alephbet_src=alephbet_src,
            experiment=experiment,
        ),
        nl=False,
    )


@main.command()
@click.option("--url", envvar="GIMEL_URL", help="Base URL of Gimel (default: deployed or local).")
def dashboard(url: str | None) -> None:
    """Open the dashboard in a browser (the page asks for the key; it is never in the URL)."""
    base = url or read_deploy_config().get("endpoint") or f"http://{defaults.HOST}:{defaults.PORT}"
    target = base.rstrip("/") + "/dashboard"
    click.echo(target)
    webbrowser.open(target)


# -- results and lifecycle ------------------------------------------------------------------


@main.command()
@click.argument("experiment", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--archived", is_flag=True, help="Include archived experiments.")
@data_options
@one_line_errors
def results(
    experiment: str | None,
    fmt: str,
    archived: bool,
    url: str | None,
    api_key: str | None,
    redis_url: str | None,
    data_dir: str,
    namespace: str,
) -> None:
    """Results with their statistics: an aligned table, JSON or CSV."""
    with open_backend(url, api_key, redis_url, data_dir) as backend:
        if experiment:
            found = [backend.experiment(namespace, experiment)]
        else:
            found = backend.experiments(namespace, archived=archived)
    if fmt == "json":
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        write_csv(found, sys.stdout)
    else:
        click.echo(render_table(found) if found else "No experiments yet.")


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def render_table(found: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for exp in found:
        srm = exp.get("srm") or {}
        flags = [exp.get("counting") or "?", f"control {exp.get('control')}"]
        if exp.get("archived"):
            flags.append("archived")
        if srm.get("mismatch"):
            flags.append(f"SAMPLE RATIO MISMATCH p={_num(srm.get('p_value'))}")
        lines.append(f"{exp['experiment']}  ({', '.join(flags)})")
        if not exp["goals"]:
            participants = exp.get("participants") or {}
            lines.append(
                "  no goals yet; participants: "
                + (", ".join(f"{v} {n}" for v, n in participants.items()) or "none")
            )
        for goal in exp["goals"]:
            header = [
                "goal " + goal["goal"],
                "trials",
                "successes",
                "rate",
                "95% interval",
                "uplift",
                "p",
                "p (Holm)",
                "chance to beat",
            ]
            rows = [header]
            for r in goal["results"]:
                ci = r.get("ci")
                rows.append(
                    [
                        r["label"],
                        str(r["trials"]),
                        str(r["successes"]),
                        _pct(r.get("conversion_rate")),
                        f"{_pct(ci[0])} - {_pct(ci[1])}" if ci else "-",
                        _pct(r.get("uplift")),
                        _num(r.get("p_value")),
                        _num(r.get("p_value_adjusted")),
                        _pct(r.get("chance_to_beat_control"), 0),
                    ]
                )
            widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
            for row in rows:
                cells = [row[0].ljust(widths[0])]
                cells += [
                    cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
                ]
                lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


CSV_FIELDS = [
    "experiment",
    "counting",
    "control",
    "goal",
    "variant",
    "trials",
    "successes",
    "conversion_rate",
    "ci_low",
    "ci_high",
    "uplift",
    "p_value",
    "p_value_adjusted",
    "chance_to_beat_control",
    "srm_p_value",
    "srm_mismatch",
]


def write_csv(found: list[dict[str, Any]], out: Any) -> None:
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for exp in found:
        srm = exp.get("srm") or {}
        for goal in exp["goals"]:
            for r in goal["results"]:
                ci = r.get("ci") or [None, None]
                writer.writerow(
                    {
                        "experiment": exp["experiment"],
                        "counting": exp.get("counting"),
                        "control": exp.get("control"),
                        "goal": goal["goal"],
                        "variant": r["label"],
                        "trials": r["trials"],
                        "successes": r["successes"],
                        "conversion_rate": r.get("conversion_rate"),
                        "ci_low": ci[0],
                        "ci_high": ci[1],
                        "uplift": r.get("uplift"),
                        "p_value": r.get("p_value"),
                        "p_value_adjusted": r.get("p_value_adjusted"),
                        "chance_to_beat_control": r.get("chance_to_beat_control"),
                        "srm_p_value": srm.get("p_value"),
                        "srm_mismatch": srm.get("mismatch"),
                    }
                )


def _lifecycle(name: str, past: str, confirm: bool) -> Callable[..., Any]:
    @click.argument("experiment")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @data_options
    @one_line_errors
    def command(
        experiment: str,
        yes: bool,
        url: str | None,
        api_key: str | None,
        redis_url: str | None,
        data_dir: str,
        namespace: str,
    ) -> None:
        if confirm and not yes:
            click.confirm(f"{name.capitalize()} experiment {experiment!r}?", abort=True)
        with open_backend(url, api_key, redis_url, data_dir) as backend:
            if name == "archive":
                backend.update(namespace, experiment, {"archived": True})
            elif name == "unarchive":
                backend.update(namespace, experiment, {"archived": False})
            elif name == "reset":
                backend.reset(namespace, experiment)
            else:
                backend.delete(namespace, experiment)
        click.echo(f"{experiment}: {past}")

    command.__doc__ = f"{name.capitalize()} an experiment" + (
        " (asks first unless --yes)." if confirm else "."
    )
    return command


main.command(name="archive")(_lifecycle("archive", "archived", confirm=False))
main.command(name="unarchive")(_lifecycle("unarchive", "back in the listing", confirm=False))
main.command(name="reset")(_lifecycle("reset", "counters zeroed", confirm=True))
main.command(name="delete")(_lifecycle("delete", "deleted", confirm=True))


# -- deploying ------------------------------------------------------------------------------

COUNTING_CHOICE = click.Choice(list(defaults.COUNTING_MODES))


@main.command()
@click.option("--redis-url", help="Redis the Lambda function will use (redis:// or rediss://).")
@click.option("--counting", type=COUNTING_CHOICE, help="Counting mode of new experiments.")
@click.option("--region", help="AWS region, e.g. eu-west-1.")
@click.option("--stage", help="Deployment stage, e.g. prod.")
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

    Saved (owner-only, git-ignored) in gimel.config.json, which serverless.yml reads.
    Re-running shows the current values as defaults.
    """
    current = read_deploy_config()

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
    values["region"] = ask("AWS region", region, "region", "us-east-1")
    values["stage"] = ask("Stage", stage, "stage", "dev")
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
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", values["region"]):
        raise GimelError(f"--region {values['region']!r} does not look like an AWS region")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", values["stage"]):
        raise GimelError("--stage must be letters, digits and '-' (at most 32)")
    ok, detail = redis_check(values["redisUrl"])
    click.echo(f"Redis: {detail}")
    if not ok and not skip_redis_check:
        if no_input or not click.confirm("Save anyway (e.g. a Redis only reachable from AWS)?"):
            raise GimelError("Redis did not answer; nothing saved (--skip-redis-check saves)")
    write_deploy_config(values)
    click.echo(f"Saved to {DEPLOY_CONFIG}. API key: {values['apiKey']}")
    click.echo("Next: gimel deploy")


def redis_check(url: str) -> tuple[bool, str]:
    probe = keys.check_probe(secrets.token_hex(4))
    try:
        client = connect(url, timeout=3)
        with unavailable():
            client.set(probe, "1", ex=10)
            client.delete(probe)
        return True, "reachable and writable"
    except GimelError as exc:
        return False, f"not reachable from here: {exc}"


def sls_command() -> list[str] | None:
    local = Path("node_modules/.bin/sls")
    if local.exists():
        return [str(local)]
    return None


@main.command()
@_redis
@_data_dir
@one_line_errors
def check(redis_url: str | None, data_dir: str) -> None:
    """Preflight: Redis, counting mode, API key, and the sls CLI for deploys."""
    deployed = read_deploy_config()
    results: list[tuple[bool, str]] = []
    try:
        config = Config.from_env()
        results.append((True, f"configuration: counting {config.counting}"))
    except GimelError as exc:
        config = Config()
        results.append((False, f"configuration: {exc}"))
    url = redis_url or deployed.get("redisUrl")
    if url:
        ok, detail = redis_check(url)
        results.append((ok, f"Redis {url.split('@')[-1]}: {detail}"))
    else:
        from .embedded import redis_binary

        try:
            results.append((True, f"Redis: embedded ({redis_binary()})"))
        except GimelError as exc:
            results.append((False, f"Redis: {exc}"))
    key = config.api_keys or deployed.get("apiKey") or _local_key_if_any(data_dir)
    results.append(
        (
            bool(key),
            "API key: configured"
            if key
            else "API key: none (set GIMEL_API_KEY or run gimel configure)",
        )
    )
    sls = sls_command()
    results.append(
        (
            sls is not None,
            "sls: " + ("node_modules/.bin/sls" if sls else "not installed (run: npm ci)"),
        )
    )
    for ok, line in results:
        click.echo(("ok    " if ok else "FAIL  ") + line)
    if not all(ok for ok, _ in results):
        sys.exit(1)


ENDPOINT = re.compile(r"(https://\S+?)/track\b")


@main.command()
@click.option("--stage", help="Stage to deploy (default: the configured one).")
@one_line_errors
def deploy(stage: str | None) -> None:
    """Deploy to AWS with `sls deploy`, then print the endpoint, snippet and dashboard URL."""
    values = read_deploy_config()
    if not values:
        raise GimelError(f"no {DEPLOY_CONFIG}: run `gimel configure` first")
    sls = sls_command()
    if sls is None:
        raise GimelError("sls is not installed here: run `npm ci` in the Gimel checkout")
    command = [
        *sls,
        "deploy",
        "--stage",
        stage or values.get("stage", "dev"),
        "--region",
        values.get("region", "us-east-1"),
    ]
    click.echo("$ " + " ".join(command))
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
    if endpoint:
        values["endpoint"] = endpoint
        write_deploy_config(values)
        click.echo(f"\nEndpoint : {endpoint}")
        click.echo(f"Dashboard: {endpoint}/dashboard")
        click.echo(f"API key  : {values['apiKey']}\n")
        click.echo(snippet(f"{endpoint}/track"))


# -- moving from the original Gimel --------------------------------------------------------


@main.command(name="import-legacy")
@click.option("--from", "source", required=True, help="Redis URL of the original Gimel's data.")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    default=[defaults.NAMESPACE],
    show_default=True,
    help="Legacy namespace to import (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be imported.")
@_redis
@_data_dir
@one_line_errors
def import_legacy(
    source: str, namespaces: tuple[str, ...], dry_run: bool, redis_url: str | None, data_dir: str
) -> None:
    """Import the original Gimel's (or its windowed successor's) counters; safe to re-run."""
    from . import legacy

    legacy_client = redis.Redis.from_url(source, socket_timeout=10, socket_connect_timeout=5)
    found = [exp for ns in namespaces for exp in legacy.scan(legacy_client, ns)]
    ambiguous = sum(len(exp.ambiguous) for exp in found)
    click.echo(f"Found {len(found)} experiment(s) in {', '.join(namespaces)}:")
    for exp in found:
        click.echo(
            f"  {exp.namespace}/{exp.name}: {len(exp.counters)} counter(s), {exp.mode or '-'}"
        )
        for key in exp.ambiguous:
            click.echo(f"    ambiguous (a ':' in a goal or variant name), skipped: {key}")
        for problem in exp.problems:
            click.echo(f"    problem: {problem}")
    if ambiguous:
        click.echo(f"{ambiguous} counter(s) are ambiguous and will not be imported.")
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    with open_backend(None, None, redis_url, data_dir) as backend:
        assert isinstance(backend, RedisBackend)
        target = backend.counters.client
        window = Config.from_env().dedup_window
        imported = 0
        for exp in found:
            if not (exp.counters and exp.mode):
                continue
            refused = legacy.write(target, exp, window)
            if refused:
                click.echo(f"  {exp.namespace}/{exp.name}: not imported: {refused}")
            else:
                imported += 1
    click.echo(f"Imported {imported} experiment(s).")


if __name__ == "__main__":
    main()
