"""`gimel watch`: the watcher, as one pass for cron (``--once``) or a loop every interval.

`gimel serve` runs this command beside its workers (one watcher for the whole server, not
one per worker); on AWS a scheduled function runs the same pass (``handler.watch``).
"""

from __future__ import annotations

import signal
import sys
import threading

import click

from ..config import Config
from ..store import connect, local_or
from .options import data_dir_option, one_line_errors, redis_url_option


@click.command()
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.option(
    "--interval",
    type=click.IntRange(1, 86_400),
    default=None,
    help="Seconds between passes [default: GIMEL_WATCH_INTERVAL, else hourly].",
)
@redis_url_option
@data_dir_option
@one_line_errors
def watch(once: bool, interval: int | None, redis_url: str | None, data_dir: str) -> None:
    """Check every experiment; deliver what changed as alerts.

    Alerts go to GIMEL_WEBHOOK_URL (signed with GIMEL_WEBHOOK_SECRET) and
    GIMEL_SLACK_WEBHOOK_URL. Each pass announces what changed since the last one: a
    decision, a guardrail's harm, a sample-ratio mismatch, a declared experiment without
    events for GIMEL_WATCH_SILENT_HOURS, the planned size reached; each alert once, whatever
    other watchers run. With --once, the exit code is 1 if the pass could not read every
    namespace (Redis unreachable).
    """
    from ..experiments import Experiments
    from ..storage.runner import Scripts
    from ..watch import Watcher

    config = Config.from_env()
    every = interval or config.watch_interval
    if not once and not every:
        raise click.UsageError("GIMEL_WATCH_INTERVAL=0 turns the watcher off: give --interval")
    url, server = local_or(redis_url or config.redis_url, data_dir)
    client = connect(url, config.redis_timeout)
    stopping = threading.Event()
    try:
        watcher = Watcher.configured(Experiments(Scripts(client), config), config)
        if once:
            report = watcher.run()
            click.echo(report.line())
            sys.exit(1 if report.errors else 0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        click.echo(f"Watching every {every} s.")
        while not stopping.is_set():
            report = watcher.run()
            if report.alerts or report.delivered or report.retrying or report.failed:
                click.echo(f"watch: {report.line()}")
            for error in report.errors:
                click.echo(f"watch: {error}", err=True)
            sys.stdout.flush()
            stopping.wait(every)
    finally:
        client.close()
        if server is not None:
            server.stop()
