"""`gimel import-legacy`: the original Gimel's counters merged into this Gimel's store."""

from __future__ import annotations

import click

from .. import defaults, legacy
from ..config import REDIS_SCHEMES, Config
from ..errors import GimelError, InvalidInput, StoreUnavailable
from ..events import check_name
from ..store import connect, unavailable
from .options import data_dir_option, one_line_errors, open_store, redis_url_option
from .report import shown


@click.command(name="import-legacy", short_help="Import the original Gimel's counters.")
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
@redis_url_option
@data_dir_option
@one_line_errors
def import_legacy(
    source: str, namespaces: tuple[str, ...], dry_run: bool, redis_url: str | None, data_dir: str
) -> None:
    """Import the original Gimel's (or its windowed successor's) counters; safe to re-run.

    Writes to --redis-url, or with none to the local store in --data-dir.
    """
    found = _scan(source, namespaces)
    click.echo(f"Found {len(found)} experiment(s) in {', '.join(namespaces)}:")
    for exp in found:
        click.echo(
            f"  {exp.namespace}/{exp.name}: {len(exp.counters)} counter(s), {exp.mode or '-'}"
        )
        for old, new in exp.renamed:
            click.echo(f"    renamed: {old!r} -> {new}")
        for key in exp.ambiguous:
            click.echo(f"    ambiguous (a ':' in a goal or variant name), skipped: {shown(key)}")
        for problem in exp.problems:
            click.echo(f"    problem: {shown(problem)}")
    ambiguous = sum(len(exp.ambiguous) for exp in found)
    if ambiguous:
        click.echo(f"{ambiguous} counter(s) are ambiguous and will not be imported.")
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    config = Config.from_env()
    imported = 0
    with open_store(redis_url, data_dir) as store:
        for exp in found:
            if not (exp.counters and exp.mode):
                continue
            refused = legacy.write(store.client, exp, config.dedup_window, config.analysis)
            if refused:
                click.echo(f"  {exp.namespace}/{exp.name}: not imported: {refused}")
            else:
                imported += 1
    click.echo(f"Imported {imported} experiment(s).")


def _scan(source: str, namespaces: tuple[str, ...]) -> list[legacy.LegacyExperiment]:
    """Every experiment of the legacy namespaces; nothing is written there."""
    for namespace in namespaces:
        try:
            check_name("namespace", namespace)
        except InvalidInput as exc:
            raise GimelError(f"--namespace {namespace!r}: {exc}") from None
    if not source.startswith(REDIS_SCHEMES):
        raise GimelError(f"--from must be a Redis URL: {', '.join(REDIS_SCHEMES)}")
    client = connect(source, timeout=10)
    try:
        with unavailable():
            return [exp for ns in namespaces for exp in legacy.scan(client, ns)]
    except StoreUnavailable as exc:
        raise GimelError(f"--from: {exc}") from None
    finally:
        client.close()
