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
  A look counts toward them once both arms reach the minimum evidence
  (:data:`.defaults.MIN_TRIALS` participants, :data:`.defaults.MIN_CONVERSIONS` converting).
  The Holm adjustment and the verdict use the running p-values;
- ``group_sequential``, for a plan with a size: alpha spent over the closed days toward the
  planned size (:mod:`.looks`), each row's interval the repeated confidence interval at the
  last look, its verdict the bound's.

Value goals (a plan's ``type: value``) compare means per participant from per-variant sums
(:mod:`.stats.means`): the mean with its 95% Student t interval, the relative uplift of the
means with Welch's interval and p-value (fixed), gbstats' confidence sequence (sequential, with
the same running values), or the log ratio of the means against the bounds (group-sequential).
Their chance to beat the control is ``Phi(uplift / sd(uplift))``: the posterior of the uplift
under a flat prior on its normal approximation, not the Beta posterior of a rate.

Where the plan names a covariate, every goal (binary ones as 0/1 values) also gets CUPED's
regression-adjusted figures (``adjusted``), and verdicts, corrections and the decision use them
where they exist: the same effect with less noise.

The comparisons a decision rests on (every primary goal's challengers) are corrected as one
family (:mod:`.multiplicity`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from statistics import NormalDist
from typing import Any

from . import decisions, defaults, looks, multiplicity, stats
from .cache import Caches, Memo, memo, memoized
from .defaults import PARTICIPATE
from .results import (
    Adjusted,
    Covariate,
    ExperimentCounts,
    ExperimentResult,
    GoalResult,
    Interval,
    Looks,
    Planning,
    Srm,
    VariantResult,
)
from .stats import means, power, student
from .stats.counting_error import count_variance, equivalent_rse, rate_variance
from .stats.means import Sums
from .stats.proportions import clamp
from .vocabulary import Analysis, Direction, GoalType, Mode, Role

_NORMAL = NormalDist()

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
        multiplicity.describe(
            result.goals, result.control, result.method or Analysis.FIXED, _covariate(counts)
        ),
    )
    return replace(result, planning=outlook, decision=decision)


def analyse_history(
    counts: ExperimentCounts, today: int, caches: Caches | None = None
) -> tuple[list[tuple[int, ExperimentResult]], dict[str, str]]:
    """The results as they stood at the end of each recorded day, then today's (now); and
    where what is derived from the recorded days alone may be kept with them (their JSON)."""
    past, through, kept = memo(
        caches.past if caches else None,
        _fingerprint(counts),
        lambda: (*_past(counts, caches), {}),
    )
    now = _running(counts, through, caches)
    return [*past, (today, _analyse(counts, now, caches))], kept


def _fingerprint(counts: ExperimentCounts) -> tuple[object, ...]:
    """Everything the recorded days' results depend on: their counts, sums and the settings."""
    settings = counts.settings
    weights = tuple(sorted(settings.weights.items())) if settings.weights else None
    days = tuple(
        (
            day,
            tuple(sorted(cells.items())),
            tuple(sorted(counts.history_moments.get(day, {}).items())),
        )
        for day, cells in counts.history
    )
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

Running = dict[tuple[str, str, bool], stats.Running]
"""(goal, variant, CUPED-adjusted) -> the running always-valid values through this look
(sequential only)."""


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
    estimates, adjusted = _estimates(counts, design, control) if design else ({}, {})
    goals = multiplicity.correct(goals, control, used, design, estimates, memo_bounds, adjusted)
    shown = design.shown(memo_bounds) if design and used == Analysis.GROUP_SEQUENTIAL else None
    expected = stats.expected_split(trials, counts.settings.weights)
    observed = [trials.get(v, 0) for v in expected]
    # Participants of different variants are disjoint sets: independent counting errors.
    variances = [count_variance(n, counts.counting) for n in observed]
    p = stats.srm_p_value(observed, list(expected.values()), variances)
    srm = Srm(p, expected, p is not None and p < stats.SRM_ALPHA)
    plan = counts.settings.plan
    planned = plan.planned_participants if plan else None
    correction = multiplicity.describe(goals, control, used, _covariate(counts))
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
        covariate=_covariate_note(counts),
        **common,
    )


def _covariate(counts: ExperimentCounts) -> str | None:
    plan = counts.settings.plan
    return plan.covariate.name if plan is not None and plan.covariate is not None else None


def _covariate_note(counts: ExperimentCounts) -> Covariate | None:
    name = _covariate(counts)
    if name is None:
        return None
    return Covariate(
        name,
        f"Visitors who sent no {name} count with {name} = 0: the adjustment still holds, "
        "but removes less variance the more visitors are missing it.",
    )


def _planning(counts: ExperimentCounts, result: ExperimentResult) -> Planning | None:
    """The plan's figures for its first primary goal (None without a size or an MDE, or
    before the control has a rate to plan from)."""
    control = result.control
    plan = counts.settings.plan
    goal = next((g for g in plan.goals if g.role == Role.PRIMARY), None) if plan else None
    if plan is None or goal is None or control is None or goal.valued:
        return None  # a value goal: the figures plan from a rate, which a mean is not
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
    kind = GoalType.VALUE if declared is not None and declared.valued else GoalType.BINARY
    cuped = _covariate(counts) is not None
    cells = tuple((label, counts.count(goal, label), trials[label]) for label in counts.variants)
    summed = kind == GoalType.VALUE or cuped
    sums = tuple(counts.sums(goal, label) for label in counts.variants) if summed else None
    through = tuple(
        (label, adjusted, tuple(r.ci) if r.ci else None, r.p_value)
        for label in counts.variants
        for adjusted in (False, True)
        if (r := running.get((goal, label, adjusted))) is not None
    )
    key = (
        goal,
        cells,
        sums,
        kind,
        cuped,
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
    sums: tuple[Sums, ...] | None,
    kind: GoalType,
    cuped: bool,
    control: str | None,
    counting: Mode | None,
    analysis: Analysis,
    tuning: int,
    role: Role,
    direction: Direction,
    margin: float,
    through: tuple[tuple[str, bool, tuple[float, ...] | None, float | None], ...],
    looks: Memo | None,
) -> GoalResult:
    """One goal's rows and verdicts: a pure function of its counts, sums and settings (kept by
    :func:`_goal`, so a goal whose counts did not change since the last read, most of them on
    a dashboard that refreshes, is not computed again). Each row is built once, whole."""
    trials = {label: n for label, _, n in cells}
    successes = {label: s for label, s, _ in cells}
    s0, n0 = clamp(successes[control], trials[control]) if control else (0, 0)
    arms = {label: sums[i] for i, (label, _, _) in enumerate(cells)} if sums else {}
    base_sums = arms.get(control) if control else None
    valued = kind == GoalType.VALUE
    running = {(label, adjusted): (ci, p) for label, adjusted, ci, p in through}
    sequential = analysis == Analysis.SEQUENTIAL
    sequential_look = memoized(looks, _sequential)
    mean_look = memoized(looks, _mean_look)
    rows = []
    for label, s, n in cells:
        if valued and base_sums is not None:
            values = _compare_means(label, s, arms[label], base_sums, control)
        else:
            values = _compare(label, s, n, s0, n0, control, counting)
        if sequential and label != control and values.get("p_value") is not None:
            if valued and base_sums is not None:
                look = mean_look(arms[label], base_sums, tuning, False)
                values["uplift_ci"] = _interval(look.ci) if look else None
            else:
                look = sequential_look(s, n, s0, n0, tuning, counting)
                values["uplift_ci"] = _bounded(look.ci) if look else None
            values["p_value"] = look.p_value if look else None
            if (label, False) in running:
                ci, p = running[label, False]
                values["running_uplift_ci"] = _interval(ci) if valued else _bounded(ci)
                values["running_p_value"] = p
        if cuped and base_sums is not None:
            values["adjusted"] = _adjusted(
                label, arms, base_sums, control, analysis, tuning, running.get((label, True))
            )
        rows.append(values)
    # Holm across the goal's comparisons (one comparison at most: nothing to adjust), on the
    # p-values that stay valid as the team looks: the running ones in sequential analysis; and
    # on the deciding ones (CUPED-adjusted where they exist) for the verdicts.
    p_values = [row.get("running_p_value" if sequential else "p_value") for row in rows]
    adjusted = stats.holm(p_values) if len(rows) > 2 else p_values
    deciding = [_deciding_p(row, p) for row, p in zip(rows, p_values, strict=True)]
    corrected = stats.holm(deciding) if len(rows) > 2 else deciding
    for values, p_adjusted, q in zip(rows, adjusted, corrected, strict=True):
        values["p_value_adjusted"] = p_adjusted
        if values.get("adjusted") is not None and values["adjusted"].p_value is not None:
            values["adjusted"] = values["adjusted"]._replace(p_value_adjusted=q)
    base = next((VariantResult(**row) for row in rows if row["label"] == control), None)
    results = []
    guardrail = role == Role.GUARDRAIL
    for values in rows:
        label = values["label"]
        if base is not None and label == control:
            results.append(base)
            continue
        row = VariantResult(**values)
        if guardrail:
            ci, running_ci = values.get("uplift_ci"), values.get("running_uplift_ci")
            if row.adjusted is not None and row.adjusted.uplift_ci is not None:
                ci = running_ci = row.adjusted.uplift_ci  # already the running one if any
            verdict = decisions.judge_guardrail(
                label, row.trials, ci, running_ci, base, goal, analysis, direction, margin
            )
        else:
            chance, p = decisions.deciding(row)
            verdict = decisions.judge(label, row.trials, chance, p, base, goal, analysis, direction)
        results.append(row._replace(verdict=verdict))
    return GoalResult(goal, tuple(results), role, direction, margin, kind)


def _deciding_p(row: dict[str, Any], p: float | None) -> float | None:
    adjusted = row.get("adjusted")
    return adjusted.p_value if adjusted is not None and adjusted.p_value is not None else p


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


def _interval(ci: tuple[float, ...] | list[float] | None) -> Interval | None:
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


# -- means (value goals) and CUPED ---------------------------------------------------------------


def _compare_means(
    label: str, successes: int, arm: Sums, control_sums: Sums, control: str | None
) -> dict[str, Any]:
    """A value goal's row so far: the mean per participant with its t interval and, unless it
    is the control, the relative uplift of the means with Welch's test (:mod:`.stats.means`)."""
    row: dict[str, Any] = {
        "label": label,
        "successes": successes,
        "trials": arm.n,
        "sum": arm.sum_y if arm.valid else None,
        "mean": arm.mean,
        "ci": _mean_interval(arm),
    }
    if label == control:
        return row
    mean, mean0 = arm.mean, control_sums.mean
    if mean is not None and mean0:
        ratio = mean / mean0 - 1.0
        row["uplift"] = ratio if math.isfinite(ratio) else None
    uplift = means.relative_uplift(arm, control_sums)
    if uplift is not None:
        inference = uplift.fixed()
        row["uplift"] = uplift.uplift
        row["uplift_ci"] = _interval(inference.ci)
        row["p_value"] = inference.p_value
        row["chance_to_beat_control"] = _chance(uplift)
    return row


def _mean_interval(arm: Sums) -> Interval | None:
    """The mean's 95% Student t interval (None below 2 participants or without variance)."""
    mean, variance = arm.mean, arm.variance
    if mean is None or variance is None:
        return None
    half = student.quantile(0.5 + stats.CONFIDENCE / 2.0, arm.n - 1) * math.sqrt(variance / arm.n)
    return (mean - half, mean + half) if math.isfinite(half) else None


def _chance(uplift: means.Uplift) -> float:
    """The chance the arm beats the control: ``Phi(uplift / sd)``, the posterior under a flat
    prior of the uplift's normal approximation (a mean has no Beta posterior)."""
    return _NORMAL.cdf(uplift.uplift / math.sqrt(uplift.variance))


def _adjusted(
    label: str,
    arms: dict[str, Sums],
    control_sums: Sums,
    control: str | None,
    analysis: Analysis,
    tuning: int,
    through: tuple[tuple[float, ...] | None, float | None] | None,
) -> Adjusted:
    """A row's CUPED figures. The control's row has its adjusted mean alone, with theta pooled
    over every variant (with two, the comparison's own). In sequential analysis the interval
    and p-value are the running ones (this look's without history): the values that decide.
    Group-sequential analysis puts its own in (:mod:`.multiplicity`)."""
    arm = arms[label]
    if label == control:
        pooled = Sums(0, 0.0, 0.0)
        for sums in arms.values():
            pooled = pooled + sums
        return Adjusted(mean=_adjusted_mean(arm, means.theta(pooled, Sums(0, 0.0, 0.0)), pooled))
    pair = arm + control_sums
    result = means.cuped(arm, control_sums)
    if result is None:
        return Adjusted(mean=_adjusted_mean(arm, means.theta(arm, control_sums), pair))
    uplift = result.adjusted
    if analysis == Analysis.SEQUENTIAL:
        if through is not None:
            ci, p_value = _interval(through[0]), through[1]
        else:
            inference = uplift.sequential(tuning)
            ci, p_value = _interval(inference.ci), inference.p_value
    else:
        inference = uplift.fixed()
        ci, p_value = _interval(inference.ci), inference.p_value
    return Adjusted(
        mean=_adjusted_mean(arm, result.theta, pair),
        uplift=uplift.uplift,
        uplift_ci=ci,
        p_value=p_value,
        chance_to_beat_control=_chance(uplift),
        variance_reduction=result.variance_reduction,
    )


def _adjusted_mean(arm: Sums, theta: float, pooled: Sums) -> float | None:
    """``mean y - theta (mean x - pooled mean x)``: the arm's mean had its covariate been the
    pooled average, on the scale of the raw means (the uplift's difference is the same)."""
    mean = arm.mean
    if mean is None or pooled.n <= 0:
        return None
    adjusted = mean - theta * (arm.sum_x / arm.n - pooled.sum_x / pooled.n)
    return adjusted if math.isfinite(adjusted) else None


def _mean_look(arm: Sums, control: Sums, tuning: int, adjusted: bool) -> stats.Sequential | None:
    """One look of a value goal's (or a CUPED) comparison, in the confidence sequence."""
    if adjusted:
        result = means.cuped(arm, control)
        uplift = result.adjusted if result is not None else None
    else:
        uplift = means.relative_uplift(arm, control)
    if uplift is None:
        return None
    inference = uplift.sequential(tuning)
    return stats.Sequential(uplift.uplift, uplift.variance, list(inference.ci), inference.p_value)


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
    counts: ExperimentCounts, design: looks.Schedule, control: str | None
) -> tuple[
    dict[tuple[str, str], list[looks.Estimate]], dict[tuple[str, str], list[looks.Estimate]]
]:
    """Each comparison's log ratio (of rates, or of means for a value goal) and its standard
    error at each group-sequential look (:func:`looks.estimate`, :func:`looks.log_ratio`),
    and the CUPED-adjusted ones where the plan has a covariate (None where they do not exist)."""
    found: dict[tuple[str, str], list[looks.Estimate]] = {}
    adjusted: dict[tuple[str, str], list[looks.Estimate]] = {}
    if control is None or counts.counting is None:
        return found, adjusted
    counting = counts.counting
    plan = counts.settings.plan
    cuped = _covariate(counts) is not None
    for day, cells in zip(design.days, design.cells, strict=True):
        at = counts if cells is counts.counts else counts.on(day, cells)
        for goal in counts.goals:
            declared = plan.goal(goal) if plan else None
            valued = declared is not None and declared.valued
            s0, n0 = clamp(cells.get((goal, control), 0), cells.get((PARTICIPATE, control), 0))
            base = at.sums(goal, control) if valued or cuped else None
            for variant in counts.variants:
                if variant == control:
                    continue
                arm = at.sums(goal, variant) if base is not None else None
                if valued and arm is not None and base is not None:
                    estimate = looks.log_ratio(means.relative_uplift(arm, base))
                else:
                    s, n = clamp(
                        cells.get((goal, variant), 0), cells.get((PARTICIPATE, variant), 0)
                    )
                    rse = equivalent_rse(s, n, s0, n0, counting) if n and n0 else 0.0
                    estimate = looks.estimate(s, n, s0, n0, rse)
                found.setdefault((goal, variant), []).append(estimate)
                if cuped and arm is not None and base is not None:
                    result = means.cuped(arm, base)
                    cuped_estimate = looks.log_ratio(result.adjusted if result else None)
                    adjusted.setdefault((goal, variant), []).append(cuped_estimate)
    return found, adjusted


def _running(counts: ExperimentCounts, through: Running, caches: Caches | None) -> Running:
    """The running values through this look, from those through the previous one."""
    if counts.counting is None or method(counts) != Analysis.SEQUENTIAL:
        return {}
    control = choose_control(counts.variants, counts.settings.control)
    if control is None:
        return {}
    trials = counts.participants
    tuning, counting = counts.settings.sequential_tuning, counts.counting
    memo_looks = caches.looks if caches else None
    sequential_look = memoized(memo_looks, _sequential)
    mean_look = memoized(memo_looks, _mean_look)
    plan = counts.settings.plan
    cuped = _covariate(counts) is not None
    running: Running = {}
    for goal in counts.goals:
        declared = plan.goal(goal) if plan else None
        valued = declared is not None and declared.valued
        s0, n0 = clamp(counts.count(goal, control), trials[control])
        base = counts.sums(goal, control) if valued or cuped else None
        for variant in counts.variants:
            if variant == control:
                continue
            arm = counts.sums(goal, variant) if base is not None else None
            s, n = clamp(counts.count(goal, variant), trials[variant])
            if not _enough(s, n, s0, n0):
                # Too little to read the asymptotic sequence by: the running values wait.
                for adjusted_too in (False, True):
                    if (key := (goal, variant, adjusted_too)) in through:
                        running[key] = through[key]
                continue
            look: stats.Sequential | None
            if valued and arm is not None and base is not None:
                look = mean_look(arm, base, tuning, False)
            else:
                look = sequential_look(s, n, s0, n0, tuning, counting)
            running[goal, variant, False] = stats.step(through.get((goal, variant, False)), look)
            if cuped and arm is not None and base is not None:
                adjusted = mean_look(arm, base, tuning, True)
                key = (goal, variant, True)
                running[key] = stats.step(through.get(key), adjusted)
    return running


def _enough(s: int, n: int, s0: int, n0: int) -> bool:
    """Both arms have the evidence a sequential look needs (:data:`.defaults.MIN_CONVERSIONS`)."""
    return min(n, n0) >= defaults.MIN_TRIALS and min(s, s0) >= defaults.MIN_CONVERSIONS


def _running_from_history(counts: ExperimentCounts, caches: Caches | None) -> Running:
    if counts.counting is None or method(counts) != Analysis.SEQUENTIAL:
        return {}
    through: Running = {}
    for day, cells in counts.history:
        through = _running(counts.on(day, cells), through, caches)
    return _running(counts, through, caches)
