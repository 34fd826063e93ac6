"""From counts to results: the statistics of every goal and variant, and their verdicts.

Per goal, every variant gets its conversion rate with a 95% Wilson interval and, against the
control, the relative uplift with its interval, the pooled z-test p-value (Holm-adjusted
across the goal's variants), the chance to beat the control and a verdict; per experiment, a
sample-ratio-mismatch test against the declared weights. ``hll`` counts carry their counting
error into every statistic (:mod:`gimel_core.stats.counting_error`).
"""

from __future__ import annotations

from collections.abc import Iterable

from . import decisions, stats
from .results import ExperimentCounts, ExperimentResult, GoalResult, Srm, VariantResult
from .stats.counting_error import count_variance, rate_variance
from .stats.proportions import clamp

CONTROL_NAMES = ("control", "original")
"""Variant names taken as the control when none is declared."""


def choose_control(variants: Iterable[str], declared: str | None = None) -> str | None:
    """The declared control if present, else "control", else "original", else the first name."""
    names = sorted(set(variants))
    for candidate in (declared, *CONTROL_NAMES):
        if candidate is not None and candidate in names:
            return candidate
    return names[0] if names else None


def analyse(counts: ExperimentCounts) -> ExperimentResult:
    """The results of one experiment (without statistics if it does not exist)."""
    trials = counts.participants
    common = {
        "experiment": counts.name,
        "counting": counts.counting,
        "participants": trials,
        "settings": counts.settings,
        "dedup_window": counts.dedup_window,
        "created": counts.created,
        "reset_at": counts.reset_at,
    }
    if counts.counting is None:
        return ExperimentResult(control=counts.settings.control, **common)  # type: ignore[arg-type]
    counting = counts.counting
    control = choose_control(counts.variants, counts.settings.control)
    goals = tuple(
        _goal(
            goal,
            [(v, counts.count(goal, v), trials[v]) for v in counts.variants],
            control,
            counting,
        )
        for goal in counts.goals
    )
    expected = stats.expected_split(trials, counts.settings.weights)
    observed = [trials.get(v, 0) for v in expected]
    # Participants of different variants are disjoint sets: independent counting errors.
    variances = [count_variance(n, counting) for n in observed]
    p = stats.srm_p_value(observed, list(expected.values()), variances)
    srm = Srm(p, expected, p is not None and p < stats.SRM_ALPHA)
    return ExperimentResult(goals=goals, control=control, srm=srm, **common)  # type: ignore[arg-type]


def _goal(
    goal: str, rows: list[tuple[str, int, int]], control: str | None, counting: str | None
) -> GoalResult:
    s0, n0 = clamp(*next(((s, n) for label, s, n in rows if label == control), (0, 0)))
    results = [_compare(label, s, n, s0, n0, label == control, counting) for label, s, n in rows]
    p_values = [row.p_value for row in results]
    # One comparison at most: nothing to adjust.
    adjusted = stats.holm(p_values) if len(results) > 2 else p_values
    control_row = next((row for row in results if row.label == control), None)
    for row, p_adjusted in zip(results, adjusted, strict=True):
        row.p_value_adjusted = p_adjusted
        if row is not control_row:
            row.verdict = decisions.verdict(row, control_row, goal)
    return GoalResult(goal, tuple(results))


def _compare(
    label: str,
    successes: int,
    trials: int,
    s0: int,
    n0: int,
    is_control: bool,
    counting: str | None,
) -> VariantResult:
    """One variant's rate and, unless it is the control, its comparison with the control."""
    s, n = clamp(successes, trials)
    rate = s / n if n else None
    # The counting variance of each arm's log rate: a goal's uuids are a subset of its
    # variant's participants, so the two counts' errors correlate (counting_error).
    var = rate_variance(s, n, counting)
    ci = stats.wilson(s, n, var)
    if is_control or not (n and n0):
        return VariantResult(label, successes, trials, rate, ci)
    var0 = rate_variance(s0, n0, counting)
    return VariantResult(
        label,
        successes,
        trials,
        rate,
        ci,
        uplift=(s * n0) / (s0 * n) - 1.0 if s0 else None,
        uplift_ci=stats.uplift_interval(s, n, s0, n0, var, var0),
        p_value=stats.two_proportion_p(s, n, s0, n0, var, var0),
        chance_to_beat_control=stats.chance_to_beat(s, n, s0, n0, var, var0),
    )
