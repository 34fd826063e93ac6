"""The ``gimel`` command: run Gimel locally, deploy it, and read and manage results.

One module per concern; this one only builds the command group. Every option can also come
from a ``GIMEL_*`` environment variable. Errors are one line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import click

from . import check, deploy, legacy, lifecycle, pages, plan, report, serve, watch


@click.group()
@click.version_option(package_name="gimel")
def main() -> None:
    """Gimel: a tiny, private A/B-testing backend for Alephbet."""


for command in (
    serve.serve,
    pages.snippet_command,
    pages.dashboard,
    report.results,
    plan.plan,
    *lifecycle.COMMANDS,
    check.check,
    deploy.configure,
    deploy.deploy,
    legacy.import_legacy,
    watch.watch,
):
    main.add_command(command)
