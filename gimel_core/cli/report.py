"""`gimel results`: the results model rendered as an aligned table, CSV, or the API's JSON.

Everything is rendered from :mod:`gimel_core.results`, as the API and the dashboard are; the
verdict sentences are the server's, so the terminal says what the dashboard says.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

import click

from ..results import Covariate, ExperimentResult, GoalResult, History, Looks, VariantResult
from ..vocabulary import Direction, GoalType, Role
from .options import WHERE, Source, backend_options, one_line_errors


@click.command(
    short_help="Results, statistics and verdicts of the experiments.",
    help="Results with their statistics and verdicts, of one EXPERIMENT or all of them.\n\n"
    + WHERE,
)
@click.argument("experiment", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="json: the same JSON as GET /experiments (with its meta element first), or as "
    "GET /experiments/<name> for one EXPERIMENT.",
)
@click.option("--archived", is_flag=True, help="Include archived experiments.")
@click.option(
    "--history",
    is_flag=True,
    help="EXPERIMENT's results day by day (GET /experiments/<name>/history).",
)
@backend_options
@one_line_errors
def results(
    experiment: str | None,
    fmt: str,
    archived: bool,
    history: bool,
    source: Source,
) -> None:
    body: Any
    if history:
        if not experiment:
            raise click.UsageError("--history needs an EXPERIMENT")
        with source.open() as backend:
            days = backend.history(source.namespace, experiment)
        if fmt == "json":
            click.echo(json.dumps(days.to_json(), indent=2, ensure_ascii=False))
        elif fmt == "csv":
            write_history_csv(days, sys.stdout)
        else:
            click.echo(render_history(days))
        return
    with source.open() as backend:
        if experiment:
            one = backend.experiment(source.namespace, experiment)
            found, body = [one], one.to_json()
        else:
            listing = backend.experiments(source.namespace, archived)
            found, body = listing.experiments, listing.to_json()
    if fmt == "json":
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        write_csv(found, sys.stdout)
    else:
        click.echo(render_table(found) if found else "No experiments yet.")


# -- names are attacker-chosen text: neither the terminal nor a spreadsheet may act on them ----

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list)."""


def shown(text: str) -> str:
    """``text`` for a terminal: C0 and C1 controls, DEL and ESC (so every escape sequence)
    become visible escapes such as ``\\x1b``, so a name cannot retitle or clear the screen."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def cell(text: str | None) -> str | None:
    """A text cell (a name or a verdict) for CSV: one a spreadsheet would read as a formula
    gets a leading ``'``. A CR is also written as ``\\r``: the writer leaves it unquoted and
    readers would start a new row there, with a cell no prefix protects. Numbers never pass
    here, so negative ones stay numbers."""
    if not text:
        return text
    if text.startswith(FORMULA_START):
        text = "'" + text
    return text.replace("\r", "\\r")


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _amount(value: float | None) -> str:
    """A sum or a mean of a value goal: an amount, two decimals (three figures below 1)."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _range(ci: tuple[float, float] | None, show: Callable[[float | None], str]) -> str:
    return f"{show(ci[0])} - {show(ci[1])}" if ci else "-"


TABLE_HEADER = [
    "trials",
    "successes",
    "rate",
    "95% interval",
    "uplift",
    "p",
    "p (Holm)",
    "Bayesian chance to beat",
]
VALUE_HEADER = [
    "trials",
    "value events",
    "sum",
    "mean",
    "95% interval",
    "uplift",
    "p",
    "p (Holm)",
    "Bayesian chance to beat",
]
"""A value goal's columns: its mean per participant (those without a value count 0)."""
ADJUSTED_HEADER = [
    "uplift",
    "uplift interval",
    "p",
    "p (Holm)",
    "Bayesian chance to beat",
    "variance reduction",
]
"""The CUPED figures under a goal's table, when the plan declares a covariate: the verdicts
are decided on these. (The adjusted mean is in the CSV, not the table.)"""


def render_table(found: Iterable[ExperimentResult]) -> str:
    """Per experiment a title line, then per goal a table and the verdict of each variant."""
    lines: list[str] = []
    for exp in found:
        lines.append(f"{shown(exp.experiment)}  ({', '.join(_flags(exp))})")
        if exp.decision is not None:
            lines.append(f"  decision: {shown(exp.decision.text)}")
        if exp.looks is not None:
            lines.append(f"  looks: {_looks(exp.looks)}")
        if exp.covariate is not None:
            lines.append(f"  covariate {_covariate(exp.covariate)}")
        if not exp.goals:
            participants = ", ".join(f"{shown(v)} {n}" for v, n in exp.participants.items())
            lines.append(f"  no goals yet; participants: {participants or 'none'}")
        for goal in exp.goals:
            lines += _goal_table(goal, exp.covariate)
        lines.append("")
    return "\n".join(lines).rstrip()


def _covariate(covariate: Covariate) -> str:
    return f"{shown(covariate.name)}: {shown(covariate.note)}"


def _looks(looks: Looks) -> str:
    """A group-sequential experiment's looks: how far, what bound, and when the next is."""
    planned = f"{looks.planned:,} planned" if looks.planned else "size from the first look"
    head = f"group-sequential ({looks.spending}, {planned})"
    if not looks.dates:
        return f"{head}; first look at the end of {looks.next_look} (UTC)"
    last = f"{len(looks.dates)} so far, the last on {looks.dates[-1]} at "
    last += f"{_pct(looks.fractions[-1], 0)} with bound {looks.bounds[-1]:.2f}"
    after = "final" if looks.final else f"next at the end of {looks.next_look}"
    return f"{head}; {last}; {after}"


def _flags(exp: ExperimentResult) -> list[str]:
    flags = [shown(exp.counting or "?"), f"control {shown(str(exp.control))}"]
    if exp.method is not None and exp.method != exp.settings.analysis:
        flags.append(f"analysed {exp.method}: the plan has no size yet")
    if exp.settings.archived:
        flags.append("archived")
    if exp.srm is not None and exp.srm.mismatch:
        flags.append(f"SAMPLE RATIO MISMATCH p={_num(exp.srm.p_value)}")
    return flags


def _goal_table(goal: GoalResult, covariate: Covariate | None = None) -> list[str]:
    """The goal's table; under it, when the rows have them, the CUPED figures; then the
    verdicts (decided on the CUPED figures when there are some)."""
    title = "goal " + shown(goal.goal)
    notes = ["value"] if goal.type == GoalType.VALUE else []
    if goal.role != Role.PRIMARY or goal.direction != Direction.INCREASE:
        notes.append(goal.role)
    if goal.direction == Direction.DECREASE:
        notes.append("lower is better")
    if notes:
        title += f" ({', '.join(notes)})"
    if goal.type == GoalType.VALUE:
        lines = _aligned([[title, *VALUE_HEADER]] + [_value_cells(row) for row in goal.results])
    else:
        lines = _aligned([[title, *TABLE_HEADER]] + [_cells(row) for row in goal.results])
    if any(row.adjusted is not None for row in goal.results):
        name = f"CUPED, {shown(covariate.name)}" if covariate else "CUPED"
        adjusted = [_adjusted_cells(row) for row in goal.results]
        lines += _aligned([[name, *ADJUSTED_HEADER], *adjusted])
    lines += [f"  verdict: {shown(row.verdict.text)}" for row in goal.results if row.verdict]
    return lines


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as lines: the first column to the left, the figures to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _cells(row: VariantResult) -> list[str]:
    return [
        shown(row.label),
        str(row.trials),
        str(row.successes),
        _pct(row.conversion_rate),
        _range(row.ci, _pct),
        _pct(row.uplift),
        _num(row.p_value),
        _num(row.p_value_adjusted),
        _pct(row.chance_to_beat_control, 0),
    ]


def _value_cells(row: VariantResult) -> list[str]:
    return [
        shown(row.label),
        str(row.trials),
        str(row.successes),
        _amount(row.sum),
        _amount(row.mean),
        _range(row.ci, _amount),
        _pct(row.uplift),
        _num(row.p_value),
        _num(row.p_value_adjusted),
        _pct(row.chance_to_beat_control, 0),
    ]


def _adjusted_cells(row: VariantResult) -> list[str]:
    cuped = row.adjusted
    if cuped is None:
        return [shown(row.label), *["-"] * len(ADJUSTED_HEADER)]
    return [
        shown(row.label),
        _pct(cuped.uplift),
        _range(cuped.uplift_ci, _pct),
        _num(cuped.p_value),
        _num(cuped.p_value_adjusted),
        _pct(cuped.chance_to_beat_control, 0),
        _pct(cuped.variance_reduction, 0),
    ]


CSV_FIELDS = [
    "experiment",
    "counting",
    "control",
    "goal",
    "role",
    "variant",
    "trials",
    "successes",
    "conversion_rate",
    "ci_low",
    "ci_high",
    "uplift",
    "p_value",
    "p_value_adjusted",
    "bound",
    "chance_to_beat_control",
    "srm_p_value",
    "srm_mismatch",
    "verdict",
    "decision",
    "type",
    "sum",
    "mean",
    "adjusted_mean",
    "adjusted_uplift",
    "adjusted_uplift_ci_low",
    "adjusted_uplift_ci_high",
    "adjusted_p_value",
    "variance_reduction",
]
"""One row per experiment, goal and variant; ``verdict`` is empty for the control, and
``decision`` is the experiment's (the same on each of its rows). An experiment with no goal
yet still gets one row per variant, its participants as ``trials`` and the goal cells empty,
so a spreadsheet lists every experiment the table does. Columns are only ever appended, so a
sheet that reads them by position keeps working: a value goal (``type`` ``value``) has its
``sum`` and ``mean`` (``ci_low``/``ci_high`` its interval, ``conversion_rate`` empty), and the
``adjusted_`` columns and ``variance_reduction`` are the CUPED figures of a plan with a
covariate."""


def write_csv(found: Iterable[ExperimentResult], out: IO[str]) -> None:
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for exp in found:
        if not exp.goals:
            writer.writerows(_participants_row(exp, v, n) for v, n in exp.participants.items())
        for goal in exp.goals:
            writer.writerows(_csv_row(exp, goal, row) for row in goal.results)


def _participants_row(exp: ExperimentResult, variant: str, trials: int) -> dict[str, Any]:
    return {
        "experiment": cell(exp.experiment),
        "counting": cell(exp.counting),
        "control": cell(exp.control),
        "variant": cell(variant),
        "trials": trials,
        "srm_p_value": exp.srm.p_value if exp.srm else None,
        "srm_mismatch": exp.srm.mismatch if exp.srm else None,
        "decision": cell(exp.decision.text) if exp.decision else None,
    }


def _csv_row(exp: ExperimentResult, goal: GoalResult, row: VariantResult) -> dict[str, Any]:
    low, high = row.ci if row.ci else (None, None)
    cuped = row.adjusted
    cuped_low, cuped_high = cuped.uplift_ci if cuped and cuped.uplift_ci else (None, None)
    return {
        "experiment": cell(exp.experiment),
        "counting": cell(exp.counting),
        "control": cell(exp.control),
        "goal": cell(goal.goal),
        "role": goal.role,
        "variant": cell(row.label),
        "trials": row.trials,
        "successes": row.successes,
        "conversion_rate": row.conversion_rate,
        "ci_low": low,
        "ci_high": high,
        "uplift": row.uplift,
        "p_value": row.p_value,
        "p_value_adjusted": row.p_value_adjusted,
        "bound": row.bound,
        "chance_to_beat_control": row.chance_to_beat_control,
        "srm_p_value": exp.srm.p_value if exp.srm else None,
        "srm_mismatch": exp.srm.mismatch if exp.srm else None,
        "verdict": cell(row.verdict.text) if row.verdict else None,
        "decision": cell(exp.decision.text) if exp.decision else None,
        "type": goal.type,
        "sum": row.sum,
        "mean": row.mean,
        "adjusted_mean": cuped.mean if cuped else None,
        "adjusted_uplift": cuped.uplift if cuped else None,
        "adjusted_uplift_ci_low": cuped_low,
        "adjusted_uplift_ci_high": cuped_high,
        "adjusted_p_value": cuped.p_value if cuped else None,
        "variance_reduction": cuped.variance_reduction if cuped else None,
    }


HISTORY_HEADER = ["trials", "successes", "rate", "uplift", "uplift interval", "p", "running p"]


def render_history(history: History) -> str:
    """Per goal, one line per day and variant: the cumulative counts and statistics that day."""
    title = f"{shown(history.experiment)}  (history by UTC day, {shown(history.analysis)} analysis)"
    lines = [title]
    goals = history.points[-1].result.goals if history.points else ()
    for last in goals:
        name, valued = last.goal, last.type == GoalType.VALUE
        header = [*HISTORY_HEADER]
        if valued:  # a value goal's mean per participant where a binary goal has its rate
            header[2] = "mean"
        rows = [["goal " + shown(name), "variant", *header]]
        for point in history.points:
            goal = next((g for g in point.result.goals if g.goal == name), None)
            for row in goal.results if goal else ():
                ci = row.running_uplift_ci or row.uplift_ci
                rows.append(
                    [
                        point.date,
                        shown(row.label),
                        str(row.trials),
                        str(row.successes),
                        _amount(row.mean) if valued else _pct(row.conversion_rate),
                        _pct(row.uplift),
                        f"{_pct(ci[0])} - {_pct(ci[1])}" if ci else "-",
                        _num(row.p_value),
                        _num(row.running_p_value),
                    ]
                )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
            cells += [cell.rjust(w) for cell, w in zip(r[2:], widths[2:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    if not goals:
        lines.append("  no goals yet")
    return "\n".join(lines)


HISTORY_CSV_FIELDS = [
    "date",
    "goal",
    "variant",
    "trials",
    "successes",
    "conversion_rate",
    "uplift",
    "uplift_ci_low",
    "uplift_ci_high",
    "p_value",
    "running_uplift_ci_low",
    "running_uplift_ci_high",
    "running_p_value",
    "mean",
]
"""One row per day, goal and variant, oldest first; the last day is now. ``mean``: a value
goal's mean per participant (appended, as the results' CSV columns are)."""


def write_history_csv(history: History, out: IO[str]) -> None:
    writer = csv.DictWriter(out, HISTORY_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for point in history.points:
        for goal in point.result.goals:
            for row in goal.results:
                low, high = row.uplift_ci or (None, None)
                run_low, run_high = row.running_uplift_ci or (None, None)
                writer.writerow(
                    {
                        "date": point.date,
                        "goal": cell(goal.goal),
                        "variant": cell(row.label),
                        "trials": row.trials,
                        "successes": row.successes,
                        "conversion_rate": row.conversion_rate,
                        "uplift": row.uplift,
                        "uplift_ci_low": low,
                        "uplift_ci_high": high,
                        "p_value": row.p_value,
                        "running_uplift_ci_low": run_low,
                        "running_uplift_ci_high": run_high,
                        "running_p_value": row.running_p_value,
                        "mean": row.mean,
                    }
                )
