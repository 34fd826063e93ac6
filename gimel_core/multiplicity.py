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
over every look (:func:`gimel_core.looks.holm`). Where the plan has a covariate, the family is
corrected on the CUPED-adjusted p-values (or statistics) wherever they exist: those are the
ones verdicts rest on (:func:`gimel_core.decisions.deciding`). The row's own
``p_value_adjusted`` stays the correction of the unadjusted p-values, for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from . import decisions, looks, stats
from .cache import Memo
from .results import GoalResult, VariantResult
from .vocabulary import Analysis, Role

Estimates = Mapping[tuple[str, str], Sequence[looks.Estimate]]


def deciding_p(row: VariantResult, method: Analysis) -> float | None:
    """The p-value a family corrects for this row: the CUPED-adjusted one where it exists (in
    sequential analysis already the running one), else the row's (running) p-value."""
    adjusted = row.adjusted
    if adjusted is not None and adjusted.p_value is not None:
        return adjusted.p_value
    return row.running_p_value if method == Analysis.SEQUENTIAL else row.p_value


def with_adjusted(
    row: VariantResult, p_plain: float | None, p_deciding: float | None
) -> VariantResult:
    """``row`` with its corrected p-values: the unadjusted one's, and the deciding one's in
    ``adjusted`` where that exists."""
    row = row._replace(p_value_adjusted=p_plain)
    adjusted = row.adjusted
    if adjusted is not None and adjusted.p_value is not None:
        row = row._replace(adjusted=adjusted._replace(p_value_adjusted=p_deciding))
    return row


def correct(
    goals: tuple[GoalResult, ...],
    control: str | None,
    method: Analysis,
    design: looks.Schedule | None,
    estimates: Estimates,
    memo: Memo | None,
    adjusted: Estimates | None = None,
) -> tuple[GoalResult, ...]:
    """``goals`` with their comparisons' adjusted p-values (or bounds) and verdicts taken
    across the family each belongs to; ``adjusted``: the CUPED-adjusted estimates at each look
    (None where they do not exist), which the group-sequential tests use where they exist."""
    if method == Analysis.GROUP_SEQUENTIAL and design is not None:
        return _group_sequential(goals, control, design, estimates, adjusted or {}, memo)
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
    plain = stats.holm([getattr(goals[i].results[j], which) for i, j in family])
    corrected = stats.holm([deciding_p(goals[i].results[j], method) for i, j in family])
    rows = {key: (p, q) for key, p, q in zip(family, plain, corrected, strict=True)}
    out = []
    for i, goal in enumerate(goals):
        if goal.role != Role.PRIMARY:
            out.append(goal)
            continue
        base = _base(goal, control)
        changed = []
        for j, row in enumerate(goal.results):
            if (i, j) in rows:
                row = with_adjusted(row, *rows[i, j])
                row = row._replace(
                    verdict=decisions.verdict(row, base, goal.goal, method, goal.direction)
                )
            changed.append(row)
        out.append(replace(goal, results=tuple(changed)))
    return tuple(out)


def describe(
    goals: Sequence[GoalResult],
    control: str | None,
    method: Analysis,
    covariate: str | None = None,
) -> str | None:
    """The correction and adjustment a decision rests on, for its line (None: one comparison
    and no covariate)."""
    primary = [g for g in goals if g.role == Role.PRIMARY]
    challengers = {r.label for g in primary for r in g.results if r.label != control}
    m = len(primary) * len(challengers)
    parts = []
    if m >= 2:
        each = ", each group-sequential" if method == Analysis.GROUP_SEQUENTIAL else ""
        parts.append(
            f"Holm across {m} comparisons ({_count(len(primary), 'primary goal')} x "
            f"{_count(len(challengers), 'variant')}){each}"
        )
    if covariate is not None:
        parts.append(f"CUPED-adjusted for {decisions.short(covariate)}")
    return "; ".join(parts) or None


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _base(goal: GoalResult, control: str | None) -> VariantResult | None:
    return next((r for r in goal.results if r.label == control), None)


def _group_sequential(
    goals: tuple[GoalResult, ...],
    control: str | None,
    design: looks.Schedule,
    estimates: Estimates,
    adjusted: Estimates,
    memo: Memo | None,
) -> tuple[GoalResult, ...]:
    deciding = {key: _deciding(found, adjusted.get(key, ())) for key, found in estimates.items()}
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
            tested.update(looks.holm(family, deciding, design, memo))
    return tuple(
        _rows(goal, control, design, estimates, adjusted, deciding, tested) for goal in goals
    )


def _deciding(
    plain: Sequence[looks.Estimate], adjusted: Sequence[looks.Estimate]
) -> list[looks.Estimate]:
    """Each look's CUPED-adjusted estimate where it exists, else its unadjusted one."""
    extra = [None] * (len(plain) - len(adjusted))
    return [a if a is not None else p for p, a in zip(plain, [*adjusted, *extra], strict=True)]


def _rows(
    goal: GoalResult,
    control: str | None,
    design: looks.Schedule,
    estimates: Estimates,
    adjusted: Estimates,
    deciding: Estimates,
    tested: Mapping[tuple[str, str], looks.Tested],
) -> GoalResult:
    base = _base(goal, control)
    rows = []
    for row in goal.results:
        if row.label == control:
            rows.append(row)
            continue
        key = (goal.goal, row.label)
        found = estimates.get(key, ())
        test = tested.get(key)
        edges = test.bounds if test else ()
        last, running = looks.intervals(found, edges)
        _, z = _last(found, edges)
        row = row._replace(
            uplift_ci=last,
            p_value=looks.nominal_p(z),
            p_value_adjusted=None,
            running_uplift_ci=running,
            running_p_value=None,
        )
        if row.adjusted is not None and row.label != control:
            # Its interval is the running one (the values that decide), as in sequential analysis.
            _, adjusted_ci = looks.intervals(adjusted.get(key, ()), edges)
            _, adjusted_z = _last(adjusted.get(key, ()), edges)
            row = row._replace(
                adjusted=row.adjusted._replace(
                    uplift_ci=adjusted_ci,
                    p_value=looks.nominal_p(adjusted_z),
                    p_value_adjusted=None,
                )
            )
            if adjusted_ci is not None:
                last = running = adjusted_ci
        at, z = _last(deciding.get(key, ()), edges)
        row = row._replace(bound=None if at is None or edges[at] == float("inf") else edges[at])
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
    return replace(goal, results=tuple(rows))


def _last(
    found: Sequence[looks.Estimate], edges: Sequence[float]
) -> tuple[int | None, float | None]:
    """The last look (so far tested) with a statistic, and its z."""
    at = max((k for k, e in enumerate(found[: len(edges)]) if e is not None), default=None)
    return at, None if at is None else looks.z_of(found[at])
