"""Several comparisons, one decision: the family-wise error across primary goals.

A variant ships on a win on any primary goal and is kept out by a loss on any, so a decision
rests on every (primary goal, challenger) comparison at once: with k of them each at 5%, an
A/A experiment would ship a false winner up to k times as often. Holm's step-down (Holm 1979,
"A simple sequentially rejective multiple test procedure") across that whole family keeps the
chance of any false win or loss at 5% whatever the effects, and rejects at least what
Bonferroni would. Secondary goals inform without deciding: Holm within each goal, as before.
Guardrails each test their own comparison: a harm they show can only hold a ship back.

Fixed and sequential analyses adjust p-values (the running, always-valid ones in sequential
analysis); the group-sequential one tests each comparison at Holm's levels with its own bounds
over every look (:func:`gimel_core.looks.holm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import decisions, looks, stats
from .cache import Memo
from .results import GoalResult, VariantResult
from .vocabulary import Analysis, Role

Estimates = Mapping[tuple[str, str], Sequence[looks.Estimate]]


def correct(
    goals: tuple[GoalResult, ...],
    control: str | None,
    method: Analysis,
    design: looks.Schedule | None,
    estimates: Estimates,
    memo: Memo | None,
) -> tuple[GoalResult, ...]:
    """``goals`` with their comparisons' adjusted p-values (or bounds) and verdicts taken
    across the family each belongs to."""
    if method == Analysis.GROUP_SEQUENTIAL and design is not None:
        return _group_sequential(goals, control, design, estimates, memo)
    primary = [g for g in goals if g.role == Role.PRIMARY]
    if len(primary) < 2:  # one goal: Holm across its variants is the family's already
        return goals
    family = [
        (i, j)
        for i, g in enumerate(goals)
        if g.role == Role.PRIMARY
        for j, row in enumerate(g.results)
        if row.label != control
    ]
    which = "running_p_value" if method == Analysis.SEQUENTIAL else "p_value"
    adjusted = stats.holm([getattr(goals[i].results[j], which) for i, j in family])
    rows = {key: p for key, p in zip(family, adjusted, strict=True)}
    out = []
    for i, goal in enumerate(goals):
        if goal.role != Role.PRIMARY:
            out.append(goal)
            continue
        base = _base(goal, control)
        changed = []
        for j, row in enumerate(goal.results):
            if (i, j) in rows:
                row = row._replace(p_value_adjusted=rows[i, j])
                row = row._replace(
                    verdict=decisions.verdict(row, base, goal.goal, method, goal.direction)
                )
            changed.append(row)
        out.append(GoalResult(goal.goal, tuple(changed), goal.role, goal.direction, goal.margin))
    return tuple(out)


def describe(goals: Sequence[GoalResult], control: str | None, method: Analysis) -> str | None:
    """The correction a decision rests on, for its line (None: one comparison, none)."""
    primary = [g for g in goals if g.role == Role.PRIMARY]
    challengers = {r.label for g in primary for r in g.results if r.label != control}
    m = len(primary) * len(challengers)
    if m < 2:
        return None
    each = ", each group-sequential" if method == Analysis.GROUP_SEQUENTIAL else ""
    return (
        f"Holm across {m} comparisons ({_count(len(primary), 'primary goal')} x "
        f"{_count(len(challengers), 'variant')}){each}"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _base(goal: GoalResult, control: str | None) -> VariantResult | None:
    return next((r for r in goal.results if r.label == control), None)


def _group_sequential(
    goals: tuple[GoalResult, ...],
    control: str | None,
    design: looks.Schedule,
    estimates: Estimates,
    memo: Memo | None,
) -> tuple[GoalResult, ...]:
    families: list[list[tuple[str, str]]] = []
    primary: list[tuple[str, str]] = []
    for goal in goals:
        keys = [(goal.goal, r.label) for r in goal.results if r.label != control]
        if goal.role == Role.PRIMARY:
            primary.extend(keys)
        elif goal.role == Role.SECONDARY:
            families.append(keys)
        else:  # a guardrail: each comparison alone
            families.extend([key] for key in keys)
    families.append(primary)
    tested: dict[tuple[str, str], looks.Tested] = {}
    for family in families:
        if family and design.fractions:
            tested.update(looks.holm(family, estimates, design, memo))
    return tuple(_rows(goal, control, design, estimates, tested) for goal in goals)


def _rows(
    goal: GoalResult,
    control: str | None,
    design: looks.Schedule,
    estimates: Estimates,
    tested: Mapping[tuple[str, str], looks.Tested],
) -> GoalResult:
    base = _base(goal, control)
    rows = []
    for row in goal.results:
        if row.label == control:
            rows.append(row)
            continue
        found = estimates.get((goal.goal, row.label), ())
        test = tested.get((goal.goal, row.label))
        edges = test.bounds if test else ()
        last, running = looks.intervals(found, edges)
        at = max((k for k, e in enumerate(found[: len(edges)]) if e is not None), default=None)
        z = None if at is None else looks.z_of(found[at])
        row = row._replace(
            uplift_ci=last,
            p_value=looks.nominal_p(z),
            p_value_adjusted=None,
            running_uplift_ci=running,
            running_p_value=None,
            bound=None if at is None or edges[at] == float("inf") else edges[at],
        )
        if goal.role == Role.GUARDRAIL:
            verdict = decisions.judge_guardrail(
                row.label,
                row.trials,
                last,
                running,
                base,
                goal.goal,
                Analysis.GROUP_SEQUENTIAL,
                goal.direction,
                goal.margin,
            )
        else:
            verdict = decisions.judge_look(
                row.label, row.trials, base, goal.goal, goal.direction, test, z, design
            )
        rows.append(row._replace(verdict=verdict))
    return GoalResult(goal.goal, tuple(rows), goal.role, goal.direction, goal.margin)
