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

``apply`` checks the whole file first and reports every error in it, prints what each plan
would change (``+`` an experiment it creates), has the server check each change without
writing (a dry run of the PUT, which predicts every refusal), and only then declares the
changed ones, so nothing is sent unless all would be accepted, and running it again changes
nothing.
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
from ..errors import Conflict, GimelError, InvalidFields, InvalidInput, UnknownExperiment
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would change and what the server would refuse; change nothing.",
)
@click.option(
    "--drop-undeclared",
    is_flag=True,
    help="Where an experiment no plan declared yet counted names its plan leaves out (from "
    "public traffic), remove them and their counts instead of refusing the plan.",
)
@backend_options
@one_line_errors
def apply(
    file: Path,
    dry_run: bool,
    drop_undeclared: bool,
    source: Source,
) -> None:
    namespace, wanted = read(file, source.namespace)
    with source.open() as backend:
        changed = []
        for name, (body, parsed) in wanted.items():
            exists, declared = current(backend, namespace, name)
            lines = plans.changes(declared, parsed)
            if not lines:
                click.echo(f"= {shown(name)}: unchanged")
                continue
            click.echo(f"{'~' if exists else '+'} {shown(name)}:")
            for line in lines:
                click.echo(f"    {shown(line)}")
            changed.append((name, body))
        # The server checks every change as it would apply it (a dry run of the PUT), so a
        # refusal, such as a counted goal the plan leaves out, is known before anything is sent.
        refused = []
        for name, body in changed:
            try:
                backend.declare(namespace, name, body, True, drop_undeclared)
            except (Conflict, InvalidInput) as exc:
                refused.append(f"{name}: {exc}")
        if refused:
            raise GimelError(
                f"{len(refused)} of {len(changed)} plans would be refused; nothing sent:\n"
                + "\n".join(f"  {shown(line)}" for line in refused)
            )
        if dry_run or not changed:
            click.echo(f"{len(changed)} to change{' (dry run: nothing sent)' if dry_run else ''}")
            return
        for name, body in changed:
            backend.declare(namespace, name, body, drop_undeclared=drop_undeclared)
        click.echo(f"{len(changed)} declared in namespace {shown(namespace)}")


@plan.command(
    short_help="Print the declared plans, in the format `plan apply` reads.",
    help="Print the declared plans, in the format `plan apply` reads: only what each declares, "
    f"no default (a file it overwrites loses its comments).\n\n{WHERE}",
)
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
    declared = {exp.experiment: exp.settings.plan.declared() for exp in found if exp.settings.plan}
    document = {"namespace": namespace, "experiments": declared}
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        # Flow style for lists and mappings of plain values: `variants: [blue, red]`, one
        # goal a line, as plans are written by hand.
        text = yaml.safe_dump(
            document, sort_keys=False, allow_unicode=False, default_flow_style=None, width=100
        )
        click.echo(text, nl=False)


def read(file: Path, namespace: str) -> tuple[str, dict[str, tuple[Any, plans.Plan]]]:
    """The file's namespace and plans (each as written, and parsed); a GimelError listing
    every error of the file, each with its experiment and field."""
    try:
        document = yaml.safe_load(file.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GimelError(f"{file}: not valid YAML or JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("experiments"), dict):
        raise GimelError(f"{file}: expected a mapping with 'experiments': {{name: plan, ...}}")
    unknown = sorted(set(document) - {"namespace", "experiments"})
    if unknown:
        raise GimelError(f"{file}: unknown key {unknown[0]!r}; known: namespace, experiments")
    problems = []
    if document.get("namespace") is not None:
        try:
            namespace = check_name("namespace", document["namespace"])
        except InvalidInput as exc:
            problems.append(exc.message)
    wanted = {}
    for name, body in document["experiments"].items():
        where = f"experiment {name!r}"
        try:
            checked = check_name("experiment", str(name))
            wanted[checked] = (body, plans.parse(body, defaults.MAX_VARIANTS, defaults.MAX_GOALS))
        except InvalidFields as exc:
            problems += [f"{where}: {error.field}: {error.message}" for error in exc.errors]
        except InvalidInput as exc:
            problems.append(f"{where}: {exc.field}: {exc.message}")
    if len(problems) == 1:
        raise GimelError(f"{file}: {problems[0]}")
    if problems:
        lines = "".join(f"\n  {problem}" for problem in problems)
        raise GimelError(f"{file}: {len(problems)} errors; nothing sent:{lines}")
    return namespace, wanted


def current(backend: Backend, namespace: str, name: str) -> tuple[bool, plans.Plan | None]:
    """Whether the experiment exists, and its plan."""
    try:
        return True, backend.experiment(namespace, name).settings.plan
    except (NotFound, UnknownExperiment):
        return False, None
