"""`gimel snippet` and `gimel dashboard`: what to paste into a page, and where to look."""

from __future__ import annotations

import webbrowser

import click

from .. import defaults
from ..snippet import ADAPTERS, ALEPHBET_SRC, snippet
from . import deploy_config
from .options import namespace_option, one_line_errors

_base_url_option = click.option(
    "--url",
    envvar="GIMEL_URL",
    show_envvar=True,
    help="Base URL of Gimel (default: the deployed one, else the local one).",
)


def base_url(url: str | None) -> str:
    """--url, else the endpoint `gimel deploy` saved, else the local `gimel serve`."""
    return (url or deploy_config.endpoint() or defaults.local_url()).rstrip("/")


@click.command(name="snippet", short_help="Print the HTML that loads Alephbet and counts in Gimel.")
@_base_url_option
@namespace_option
@click.option(
    "--adapter",
    type=click.Choice(sorted(ADAPTERS)),
    default="gimel",
    show_default=True,
    help="Alephbet's adapter: GimelAdapter, or LamedAdapter (names events by goal).",
)
@click.option(
    "--experiment",
    default="my first experiment",
    show_default=True,
    help="Name of the example experiment in the snippet.",
)
@click.option(
    "--alephbet-src",
    default=ALEPHBET_SRC,
    show_default=True,
    help="Where the page loads Alephbet from (serve it yourself to pin your own copy).",
)
@click.option(
    "--value-goal",
    metavar="GOAL",
    help=(
        'Add GOAL, a goal the plan declares with "type": "value" (e.g. purchase): the page '
        "calls valueGoal.complete(amount) each time it happens, and the browser sends the "
        "amount with the visitor's running total."
    ),
)
@click.option(
    "--covariate",
    metavar="NAME",
    help=(
        "Send the covariate the plan declares as NAME with every event: a number your backend "
        'writes into the page as <html data-gimel-covariate="3">, read when the visitor joins.'
    ),
)
@one_line_errors
def snippet_command(
    url: str | None,
    namespace: str,
    adapter: str,
    experiment: str,
    alephbet_src: str,
    value_goal: str | None,
    covariate: str | None,
) -> None:
    """Print an HTML snippet that loads Alephbet and counts an experiment in Gimel."""
    # A deployment with a function URL tracks through it (frontDoor=url): what it costs least.
    saved = None if url else deploy_config.read().get("trackUrl")
    text = snippet(
        saved if isinstance(saved, str) and saved else base_url(url) + "/track",
        namespace=namespace,
        adapter=adapter,
        alephbet_src=alephbet_src,
        experiment=experiment,
        value_goal=value_goal,
        covariate=covariate,
    )
    click.echo(text, nl=False)


@click.command(short_help="Open the dashboard in a browser.")
@_base_url_option
@one_line_errors
def dashboard(url: str | None) -> None:
    """Open the dashboard in a browser (the page asks for the key; it is never in the URL)."""
    target = base_url(url) + "/dashboard"
    click.echo(target)
    webbrowser.open(target)
