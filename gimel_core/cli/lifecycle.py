"""`gimel archive|unarchive|reset|delete EXPERIMENT`: an experiment's life after it starts."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..client import Backend
from .options import WHERE, Source, backend_options, one_line_errors


def _command(
    name: str, summary: str, done: str, act: Callable[[Backend, str, str], object], confirm: bool
) -> click.Command:
    asks = " Asks first unless --yes." if confirm else ""

    @click.command(name=name, help=f"{summary}{asks}\n\n{WHERE}")
    @click.argument("experiment")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @backend_options
    @one_line_errors
    def command(
        experiment: str,
        yes: bool,
        source: Source,
    ) -> None:
        if confirm and not yes:
            click.confirm(f"{name.capitalize()} experiment {experiment!r}?", abort=True)
        with source.open() as backend:
            act(backend, source.namespace, experiment)
        click.echo(f"{experiment}: {done}")

    return command


COMMANDS = [
    _command(
        "archive",
        "Hide an experiment from the listing (it keeps counting).",
        "archived",
        lambda backend, ns, name: backend.update(ns, name, {"archived": True}),
        confirm=False,
    ),
    _command(
        "unarchive",
        "Show an archived experiment in the listing again.",
        "back in the listing",
        lambda backend, ns, name: backend.update(ns, name, {"archived": False}),
        confirm=False,
    ),
    _command(
        "reset",
        "Zero an experiment's counters, keeping its settings.",
        "counters zeroed",
        lambda backend, ns, name: backend.reset(ns, name),
        confirm=True,
    ),
    _command(
        "delete",
        "Delete an experiment and all its counts.",
        "deleted",
        lambda backend, ns, name: backend.delete(ns, name),
        confirm=True,
    ),
]
