"""`gimel plan apply FILE` and `gimel plan show`: experiment plans kept in a file, in git.

The file is YAML (JSON is YAML too) with the shape ``plan show`` prints::

    namespace: alephbet          # optional: else --namespace
    experiments:
      checkout:
        variants: [blue, red]
        control: blue
        goals:
          - {name: signup, role: primary}
          - {name: refund, role: guardrail, direction: decrease, margin: 0.02}
        planned_participants: 20000
        mde: 0.1

``apply`` checks every plan first (nothing is sent if one is invalid), prints what each
would change, then declares only the changed ones, so running it again changes nothing.
Experiments the file does not name are left as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from .. import defaults, plans
from ..client import Backend, NotFound
from ..errors import GimelError, InvalidInput, UnknownExperiment
from ..events import check_name
from .options import WHERE, Source, backend_options, one_line_errors
from .report import shown


@click.group(
    short_help="Declare experiments from a file of plans; show them.",
    help="Declare experiments from a file of plans, and show the declared ones.",
)
def plan() -> None:
    pass


@plan.command(
    short_help="Declare the plans in FILE: show the changes, apply them.",
    help=f"Declare the plans in FILE (YAML or JSON): show the changes, apply them.\n\n{WHERE}",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@backend_options
@one_line_errors
def apply(
    file: Path,
    dry_run: bool,
    source: Source,
) -> None:
    namespace, wanted = read(file, source.namespace)
    with source.open() as backend:
        changed = []
        for name, (body, parsed) in wanted.items():
            lines = plans.changes(current(backend, namespace, name), parsed)
            if not lines:
                click.echo(f"= {shown(name)}: unchanged")
                continue
            click.echo(f"~ {shown(name)}:")
            for line in lines:
                click.echo(f"    {shown(line)}")
            changed.append((name, body))
        if dry_run or not changed:
            click.echo(f"{len(changed)} to change{' (dry run: nothing sent)' if dry_run else ''}")
            return
        for name, body in changed:
            backend.declare(namespace, name, body)
        click.echo(f"{len(changed)} declared in namespace {shown(namespace)}")


@plan.command(help=f"Print the declared plans, in the format `plan apply` reads.\n\n{WHERE}")
@click.argument("experiments", nargs=-1)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml, or json (both are what `plan apply` reads).",
)
@backend_options
@one_line_errors
def show(
    experiments: tuple[str, ...],
    fmt: str,
    source: Source,
) -> None:
    namespace = source.namespace
    with source.open() as backend:
        if experiments:
            found = [backend.experiment(namespace, name) for name in experiments]
        else:
            found = backend.experiments(namespace, archived=True).experiments
    declared = {exp.experiment: exp.settings.plan.to_json() for exp in found if exp.settings.plan}
    document = {"namespace": namespace, "experiments": declared}
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=False), nl=False)


def read(file: Path, namespace: str) -> tuple[str, dict[str, tuple[Any, plans.Plan]]]:
    """The file's namespace and plans (each as written, and parsed); a GimelError naming the
    experiment and field of the first invalid one."""
    try:
        document = yaml.safe_load(file.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GimelError(f"{file}: not valid YAML or JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("experiments"), dict):
        raise GimelError(f"{file}: expected a mapping with 'experiments': {{name: plan, ...}}")
    unknown = sorted(set(document) - {"namespace", "experiments"})
    if unknown:
        raise GimelError(f"{file}: unknown key {unknown[0]!r}; known: namespace, experiments")
    try:
        if document.get("namespace") is not None:
            namespace = check_name("namespace", document["namespace"])
        wanted = {}
        for name, body in document["experiments"].items():
            where = f"experiment {name!r}"
            checked = check_name("experiment", str(name))
            try:
                wanted[checked] = (
                    body,
                    plans.parse(body, defaults.MAX_VARIANTS, defaults.MAX_GOALS),
                )
            except InvalidInput as exc:
                raise InvalidInput(exc.field, f"{where}: {exc.field}: {exc.message}") from None
    except InvalidInput as exc:
        raise GimelError(f"{file}: {exc.message}") from None
    return namespace, wanted


def current(backend: Backend, namespace: str, name: str) -> plans.Plan | None:
    try:
        return backend.experiment(namespace, name).settings.plan
    except (NotFound, UnknownExperiment):
        return None
