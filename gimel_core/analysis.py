"""From counts to results: the statistics of every goal and variant, and their verdicts.

Per goal, every variant gets its conversion rate with a 95% Wilson interval and, against the
control, the relative uplift with its interval, a p-value (Holm-adjusted across the goal's
variants), the Bayesian chance to beat the control and a verdict; per experiment, a
sample-ratio-mismatch test against the declared weights. ``hll`` counts carry their counting
error into every statistic (:mod:`gimel_core.stats.counting_error`).

The uplift's interval and p-value follow the experiment's analysis method (:func:`method`):

- ``fixed``: the fixed-horizon Katz interval and pooled z-test, valid at one planned look;
- ``sequential``: the always-valid confidence sequence and p-value (:mod:`.stats.sequential`)
  at this look, and, from the daily history, their running intersection and minimum
  (``running_uplift_ci``, ``running_p_value``), which stay valid however often the team looks.
  The Holm adjustment and the verdict use the running p-values;
- ``group_sequential``, for a plan with a size: alpha spent over the closed days toward the
  planned size (:mod:`.looks`), each row's interval the repeated confidence interval at the
  last look, its verdict the bound's.

The comparisons a decision rests on (every primary goal's challengers) are corrected as one
family (:mod:`.multiplicity`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from . import decisions, looks, multiplicity, stats
from .cache import Caches, Memo, memo, memoized
from .defaults import PARTICIPATE
from .results import (
    ExperimentCounts,
    ExperimentResult,
    GoalResult,
    Interval,
    Looks,
    Planning,
    Srm,
    VariantResult,
)
from .stats import power
from .stats.counting_error import count_variance, equivalent_rse, rate_variance
from .stats.proportions import clamp
from .vocabulary import Analysis, Direction, Mode, Role

CONTROL_NAMES = ("control", "original")
"""Variant names taken as the control when none is declared."""


def choose_control(variants: Iterable[str], declared: str | None = None) -> str | None:
    """The declared control if present, else "control", else "original", else the first name."""
    names = sorted(set(variants))
    for candidate in (declared, *CONTROL_NAMES):
        if candidate is not None and candidate in names:
            return candidate
    return names[0] if names else None


def analyse(counts: ExperimentCounts, caches: Caches | None = None) -> ExperimentResult:
    """The results of one experiment now (without statistics if it does not exist);
    ``caches``: where a process keeps what it computed, to compute it once."""
    return replan(_analyse(counts, _running_from_history(counts, caches), caches), counts)


def plans_ahead(counts: ExperimentCounts) -> bool:
    """Whether the results depend on the time too (a plan with a size or an MDE)."""
    plan = counts.settings.plan
    return plan is not None and plan.sized


def method(counts: ExperimentCounts) -> Analysis:
    """The analysis that computes the intervals and p-values: the declared one, but the
    confidence sequence for a group-sequential experiment without a size (:mod:`.looks`)."""
    analysis = counts.settings.analysis
    if analysis != Analysis.GROUP_SEQUENTIAL:
        return analysis
    plan = counts.settings.plan
    if plan is not None and plan.planned_participants is not None:
        return analysis
    control = choose_control(counts.variants, counts.settings.control)
    return analysis if looks.schedule(counts, control) else Analysis.SEQUENTIAL


def replan(result: ExperimentResult, counts: ExperimentCounts) -> ExperimentResult:
    """``result`` with its planning figures and decision as of ``counts.elapsed_days``: the
    only part of the results that changes with time alone, not with the counts."""
    plan = counts.settings.plan
    if plan is None or not plans_ahead(counts) or result.srm is None:  # srm: it exists
        return result
    outlook = _planning(counts, result)
    total = sum(result.participants.values())
    decision = decisions.decide(
        result.goals,
        result.control,
        result.srm,
        total,
        plan.planned_participants,
        outlook,
        result.looks,
        multiplicity.describe(result.goals, result.control, result.method or Analysis.FIXED),
    )
    return replace(result, planning=outlook, decision=decision)


def analyse_history(
    counts: ExperimentCounts, today: int, caches: Caches | None = None
) -> list[tuple[int, ExperimentResult]]:
    """The results as they stood at the end of each recorded day, then today's (now)."""
    past, through = memo(
        caches.past if caches else None, _fingerprint(counts), lambda: _past(counts, caches)
    )
    now = _running(counts, through, caches)
    return [*past, (today, _analyse(counts, now, caches))]


def _fingerprint(counts: ExperimentCounts) -> tuple[object, ...]:
    """Everything the recorded days' results depend on: their counts and the settings."""
    settings = counts.settings
    weights = tuple(sorted(settings.weights.items())) if settings.weights else None
    days = tuple((day, tuple(sorted(cells.items()))) for day, cells in counts.history)
    plan = settings.plan.encode() if settings.plan else None
    return (counts.name, counts.counting, counts.variants, counts.goals, settings.control,
            weights, settings.analysis, settings.sequential_tuning, counts.created,
            counts.reset_at, days, plan)  # fmt: skip


def _past(
    counts: ExperimentCounts, caches: Caches | None
) -> tuple[tuple[tuple[int, ExperimentResult], ...], Running]:
    """The results of the recorded days, and the running values through the last of them
    (kept by :func:`analyse_history`: a recorded day never changes)."""
    through: Running = {}
    days = []
    for day, cells in counts.history:
        on_day = counts.on(day, cells)
        through = _running(on_day, through, caches)
        days.append((day, _analyse(on_day, through, caches)))
    return tuple(days), through


# -- one look -------------------------------------------------------------------------------

Running = dict[tuple[str, str], stats.Running]
"""(goal, variant) -> the running always-valid values through this look (sequential only)."""


def _analyse(counts: ExperimentCounts, running: Running, caches: Caches | None) -> ExperimentResult:
    """The results, without planning figures (:func:`replan` adds them)."""
    trials = counts.participants
    common: dict[str, Any] = {
        "experiment": counts.name,
        "counting": counts.counting,
        "participants": trials,
        "settings": counts.settings,
        "dedup_window": counts.dedup_window,
        "created": counts.created,
        "reset_at": counts.reset_at,
    }
    if counts.counting is None:
        return ExperimentResult(control=counts.settings.control, **common)
    control = choose_control(counts.variants, counts.settings.control)
    design = looks.schedule(counts, control)
    used = method(counts)
    goals = tuple(
        _goal(counts, trials, goal, control, running, used, caches) for goal in _ordered(counts)
    )
    memo_bounds = caches.bounds if caches else None
    estimates = _estimates(counts, design, control, caches) if design else {}
    goals = multiplicity.correct(goals, control, used, design, estimates, memo_bounds)
    shown = design.shown(memo_bounds) if design and used == Analysis.GROUP_SEQUENTIAL else None
    expected = stats.expected_split(trials, counts.settings.weights)
    observed = [trials.get(v, 0) for v in expected]
    # Participants of different variants are disjoint sets: independent counting errors.
    variances = [count_variance(n, counts.counting) for n in observed]
    p = stats.srm_p_value(observed, list(expected.values()), variances)
    srm = Srm(p, expected, p is not None and p < stats.SRM_ALPHA)
    plan = counts.settings.plan
    planned = plan.planned_participants if plan else None
    correction = multiplicity.describe(goals, control, used)
    decision = decisions.decide(
        goals, control, srm, sum(trials.values()), planned, None, shown, correction
    )
    return ExperimentResult(
        goals=goals,
        control=control,
        srm=srm,
        decision=decision,
        method=used,
        looks=shown,
        **common,
    )


def _planning(counts: ExperimentCounts, result: ExperimentResult) -> Planning | None:
    """The plan's figures for its first primary goal (None without a size or an MDE, or
    before the control has a rate to plan from)."""
    control = result.control
    plan = counts.settings.plan
    goal = next((g for g in plan.goals if g.role == Role.PRIMARY), None) if plan else None
    if plan is None or goal is None or control is None:
        return None
    if plan.planned_participants is None and plan.mde is None:
        return None
    trials = counts.participants
    s0, n0 = clamp(counts.count(goal.name, control), trials.get(control, 0))
    if not 0 < s0 < n0:  # no rate to plan from yet
        return None
    weights = counts.settings.weights
    shares = None
    if weights:
        total = sum(weights.values())
        other = next(v for v in plan.variants if v != control)
        shares = (weights.get(other, 0.0) / total, weights.get(control, 0.0) / total)
        if not (shares[0] > 0 and shares[1] > 0):
            shares = None
    used = result.method or counts.settings.analysis
    planned = plan.planned_participants
    final_bound = None
    if used == Analysis.GROUP_SEQUENTIAL and result.looks is not None:
        planned = result.looks.planned
        final_bound = _final_bound(counts, result.looks, planned)
    design = power.Design(
        mean=s0 / n0,
        variants=len(plan.variants),
        shares=shares,
        analysis=used,
        tuning=counts.settings.sequential_tuning,
        counting=counts.counting,
        final_bound=final_bound,
    )
    found = power.outlook(
        design,
        planned,
        plan.mde,
        observed=sum(trials.values()),
        days=counts.elapsed_days or 0.0,
        direction=goal.direction,
    )
    return Planning(goal.name, found.mde, found.power, found.needed, found.days_remaining)


def _final_bound(counts: ExperimentCounts, shown: Looks, planned: int | None) -> float | None:
    """The bound at the planned size if the looks go on daily at the rate seen so far: what
    the planning figures pad the fixed-horizon standard error by (:mod:`.stats.power`)."""
    total = sum(counts.participants.values())
    days = counts.elapsed_days or 0.0
    if planned is None:
        return None
    if shown.final or total <= 0 or days <= 0:
        count = max(1, len(shown.fractions))
    else:
        count = len(shown.fractions) + math.ceil(max(0.0, planned - total) * days / total)
    return looks.final_bound(min(looks.MAX_PROJECTED, max(1, count)), shown.spending)


def _goal(
    counts: ExperimentCounts,
    trials: dict[str, int],
    goal: str,
    control: str | None,
    running: Running,
    analysis: Analysis,
    caches: Caches | None,
) -> GoalResult:
    plan = counts.settings.plan
    declared = plan.goal(goal) if plan else None
    cells = tuple((label, counts.count(goal, label), trials[label]) for label in counts.variants)
    through = tuple(
        (label, tuple(r.ci) if r.ci else None, r.p_value)
        for label in counts.variants
        if (r := running.get((goal, label))) is not None
    )
    key = (
        goal,
        cells,
        control,
        counts.counting,
        analysis,
        counts.settings.sequential_tuning,
        declared.role if declared else Role.PRIMARY,
        declared.direction if declared else Direction.INCREASE,
        declared.margin if declared else 0.0,
        through,
    )
    goal_result = memoized(caches.goals if caches else None, _goal_result)
    return goal_result(*key, caches.looks if caches else None)


def _goal_result(
    goal: str,
    cells: tuple[tuple[str, int, int], ...],
    control: str | None,
    counting: Mode | None,
    analysis: Analysis,
    tuning: int,
    role: Role,
    direction: Direction,
    margin: float,
    through: tuple[tuple[str, tuple[float, ...] | None, float | None], ...],
    looks: Memo | None,
) -> GoalResult:
    """One goal's rows and verdicts: a pure function of its counts and settings (kept by
    :func:`_goal`, so a goal whose counts did not change since the last read, most of them on
    a dashboard that refreshes, is not computed again). Each row is built once, whole."""
    trials = {label: n for label, _, n in cells}
    successes = {label: s for label, s, _ in cells}
    s0, n0 = clamp(successes[control], trials[control]) if control else (0, 0)
    running = {label: (ci, p) for label, ci, p in through}
    sequential = analysis == Analysis.SEQUENTIAL
    sequential_look = memoized(looks, _sequential)
    rows = []
    for label, s, n in cells:
        values = _compare(label, s, n, s0, n0, control, counting)
        if sequential and label != control and values.get("p_value") is not None:
            look = sequential_look(s, n, s0, n0, tuning, counting)
            values["uplift_ci"] = _bounded(look.ci) if look else None
            values["p_value"] = look.p_value if look else None
            if label in running:
                ci, p = running[label]
                values["running_uplift_ci"] = _bounded(ci)
                values["running_p_value"] = p
        rows.append(values)
    # Holm across the goal's comparisons (one comparison at most: nothing to adjust), on the
    # p-values that stay valid as the team looks: the running ones in sequential analysis.
    p_values = [row.get("running_p_value" if sequential else "p_value") for row in rows]
    adjusted = stats.holm(p_values) if len(rows) > 2 else p_values
    for values, p_adjusted in zip(rows, adjusted, strict=True):
        values["p_value_adjusted"] = p_adjusted
    base = next((VariantResult(**row) for row in rows if row["label"] == control), None)
    results = []
    guardrail = role == Role.GUARDRAIL
    for values in rows:
        label = values["label"]
        if base is not None and label == control:
            results.append(base)
            continue
        if guardrail:
            verdict = decisions.judge_guardrail(
                label,
                values["trials"],
                values.get("uplift_ci"),
                values.get("running_uplift_ci"),
                base,
                goal,
                analysis,
                direction,
                margin,
            )
        else:
            chance, p = values.get("chance_to_beat_control"), values["p_value_adjusted"]
            verdict = decisions.judge(
                label, values["trials"], chance, p, base, goal, analysis, direction
            )
        results.append(VariantResult(**values, verdict=verdict))
    return GoalResult(goal, tuple(results), role, direction, margin)


def _ordered(counts: ExperimentCounts) -> list[str]:
    """Goals by role (primary, guardrail, secondary), then by name."""
    plan = counts.settings.plan
    if plan is None:
        return list(counts.goals)
    rank = {Role.PRIMARY: 0, Role.GUARDRAIL: 1, Role.SECONDARY: 2}

    def key(goal: str) -> tuple[int, str]:
        declared = plan.goal(goal)
        return (rank[declared.role] if declared else 0, goal)

    return sorted(counts.goals, key=key)


def _bounded(ci: tuple[float, ...] | list[float] | None) -> Interval | None:
    """A rate cannot fall below 0, so neither can the uplift below -1: the sequential interval
    (symmetric on the ratio's scale) is cut there, which keeps its coverage."""
    return None if ci is None else (max(-1.0, ci[0]), ci[1])


def _interval(ci: list[float] | None) -> Interval | None:
    return None if ci is None else (ci[0], ci[1])


def _compare(
    label: str,
    successes: int,
    trials: int,
    s0: int,
    n0: int,
    control: str | None,
    counting: Mode | None,
) -> dict[str, Any]:
    """One variant's rate and, unless it is the control, its comparison with the control: the
    row's values so far."""
    s, n = clamp(successes, trials)
    rate = s / n if n else None
    # The counting variance of each arm's log rate: a goal's uuids are a subset of its
    # variant's participants, so the two counts' errors correlate (counting_error).
    var = rate_variance(s, n, counting)
    row: dict[str, Any] = {
        "label": label,
        "successes": successes,
        "trials": trials,
        "conversion_rate": rate,
        "ci": _interval(stats.wilson(s, n, var)),
    }
    if label == control or not (n and n0):
        return row
    var0 = rate_variance(s0, n0, counting)
    row["uplift"] = (s * n0) / (s0 * n) - 1.0 if s0 else None
    row["uplift_ci"] = _interval(stats.uplift_interval(s, n, s0, n0, var, var0))
    row["p_value"] = stats.two_proportion_p(s, n, s0, n0, var, var0)
    row["chance_to_beat_control"] = stats.chance_to_beat(s, n, s0, n0, var, var0)
    return row


# -- running values over the daily history ----------------------------------------------------


def _sequential(
    s: int, n: int, s0: int, n0: int, tuning: int, counting: Mode | None
) -> stats.Sequential | None:
    """One look (kept in ``Caches.looks``: a day's look never changes once recorded)."""
    # The counting variance of the log ratio as counting_error models it, in the one-rse
    # form sequential_uplift takes.
    rse = equivalent_rse(s, n, s0, n0, counting)
    return stats.sequential_uplift(s, n, s0, n0, tuning=tuning, rse=rse)


def _estimates(
    counts: ExperimentCounts,
    design: looks.Schedule,
    control: str | None,
    caches: Caches | None,
) -> dict[tuple[str, str], list[looks.Estimate]]:
    """Each comparison's log rate ratio and its standard error at each group-sequential look
    (:func:`looks.estimate`)."""
    found: dict[tuple[str, str], list[looks.Estimate]] = {}
    if control is None or counts.counting is None:
        return found
    counting = counts.counting
    for cells in design.cells:
        for goal in counts.goals:
            s0, n0 = clamp(cells.get((goal, control), 0), cells.get((PARTICIPATE, control), 0))
            for variant in counts.variants:
                if variant == control:
                    continue
                s, n = clamp(cells.get((goal, variant), 0), cells.get((PARTICIPATE, variant), 0))
                rse = equivalent_rse(s, n, s0, n0, counting) if n and n0 else 0.0
                found.setdefault((goal, variant), []).append(looks.estimate(s, n, s0, n0, rse))
    return found


def _running(counts: ExperimentCounts, through: Running, caches: Caches | None) -> Running:
    """The running values through this look, from those through the previous one."""
    if counts.counting is None or method(counts) != Analysis.SEQUENTIAL:
        return {}
    control = choose_control(counts.variants, counts.settings.control)
    if control is None:
        return {}
    trials = counts.participants
    tuning, counting = counts.settings.sequential_tuning, counts.counting
    sequential_look = memoized(caches.looks if caches else None, _sequential)
    running: Running = {}
    for goal in counts.goals:
        s0, n0 = clamp(counts.count(goal, control), trials[control])
        for variant in counts.variants:
            if variant == control:
                continue
            s, n = clamp(counts.count(goal, variant), trials[variant])
            look = sequential_look(s, n, s0, n0, tuning, counting) if n and n0 else None
            running[goal, variant] = stats.step(through.get((goal, variant)), look)
    return running


def _running_from_history(counts: ExperimentCounts, caches: Caches | None) -> Running:
    if counts.counting is None or method(counts) != Analysis.SEQUENTIAL:
        return {}
    through: Running = {}
    for day, cells in counts.history:
        through = _running(counts.on(day, cells), through, caches)
    return _running(counts, through, caches)
