"""What the watcher checks on each experiment, and the alerts it makes of what changed.

Five checks, each on one experiment's results as ``GET /experiments/<name>`` answers them:

- **decided**: the decision line left ``keep_running`` (``ship``, ``keep_control`` or
  ``no_difference``). Gimel's analyses are valid at any look (confidence sequences, or
  group-sequential bounds spent over closed days), so checking every hour does not add false
  decisions; ``python -m bench.watch`` measures it.
- **harm**: a guardrail's verdict on a variant turned to ``harm``.
- **srm**: the split of participants is not the declared one, by the always-valid
  Dirichlet-multinomial test (:mod:`.stats.srm_sequential`), whose running p-value the watcher
  keeps between looks. Exact counting only: a HyperLogLog count's error would read as a
  mismatch in a large experiment.
- **silent**: a declared experiment (one with a plan) received no event for ``silent_after``
  seconds: tracking may be broken. Events are noticed by the counts changing between passes,
  so tracking itself pays nothing for it.
- **size_reached**: the plan's number of participants is reached.

An alert's id is made from what changed, never from when it was noticed: a decision that
flips back and forth is announced once, and a new silence (after events came back) is news
again. Everything here is a pure function of the results and what the last pass remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import alerts, defaults, stats
from .alerts import Alert
from .results import ExperimentResult, GoalResult, VariantResult
from .stats.srm_sequential import sequential_srm_p_value
from .vocabulary import AlertKind, DecisionKind, Mode, Role, VerdictKind

DECIDED = frozenset({DecisionKind.SHIP, DecisionKind.KEEP_CONTROL, DecisionKind.NO_DIFFERENCE})
"""The decision lines that end an experiment's wait."""

SRM_ALPHA = stats.SRM_ALPHA
"""The always-valid SRM p-value below which the split is announced as broken (0.1%)."""

SILENT_AFTER = defaults.WATCH_SILENT_HOURS * 3600
"""Seconds without events after which a declared experiment is announced silent
(``GIMEL_WATCH_SILENT_HOURS``)."""


@dataclass(frozen=True, slots=True)
class Memory:
    """What the watcher remembers of one experiment between passes."""

    announced: frozenset[str] = frozenset()
    """The ids of the alerts already announced."""
    srm_p_value: float = 1.0
    """The always-valid SRM p-value so far (its running minimum over the looks)."""
    events: int | None = None
    """The events counted at the last pass (all counters added up); None: never looked."""
    events_at: int | None = None
    """Unix time the count of events was last seen changing."""


@dataclass(frozen=True, slots=True)
class Findings:
    """One look at one experiment: the new alerts, and what to remember for the next."""

    alerts: tuple[Alert, ...]
    memory: Memory
    numbers: dict[str, float] = field(default_factory=dict)


def look(
    result: ExperimentResult,
    memory: Memory,
    now: int,
    *,
    silent_after: int = SILENT_AFTER,
    dashboard_url: str | None = None,
    namespace: str,
) -> Findings:
    """The alerts ``result`` calls for that ``memory`` has not announced, and the new memory."""
    epoch = result.reset_at or result.created or 0
    found: list[Alert] = []

    def add(
        kind: AlertKind, change: str, text: str, numbers: Mapping[str, float], **kw: object
    ) -> None:
        made = alerts.alert(
            kind,
            namespace,
            result.experiment,
            _line(text),
            change=f"{epoch}:{change}",
            created=now,
            numbers=numbers,
            dashboard_url=dashboard_url,
            decision=None if result.decision is None else result.decision.kind,
            **kw,  # type: ignore[arg-type]
        )
        if made.id not in memory.announced and all(a.id != made.id for a in found):
            found.append(made)

    participants = sum(result.participants.values())
    srm_p = _srm(result, memory.srm_p_value)
    if srm_p < SRM_ALPHA:
        split = {f"participants_{v}": n for v, n in list(result.participants.items())[:8]}
        add(
            AlertKind.SRM,
            "split",
            f"The participants' split does not match the declared weights (always-valid "
            f"p={srm_p:.2g}): no result can be trusted until the assignment is fixed",
            {"p_value": srm_p, **split},
        )
    events = participants + sum(row.successes for goal in result.goals for row in goal.results)
    events_at = _events_at(result, memory, events, now)
    declared = result.settings.plan is not None
    if declared and now - events_at >= silent_after:
        hours = (now - events_at) / 3600
        add(
            AlertKind.SILENT,
            f"silent:{events_at}",
            f"No events for {hours:.0f} hours: tracking may be broken",
            {"hours_without_events": round(hours, 1), "participants": participants},
        )
    for goal in result.goals:
        if goal.role != Role.GUARDRAIL:
            continue
        for row in goal.results:
            if row.verdict is not None and row.verdict.kind == VerdictKind.HARM:
                add(
                    AlertKind.HARM,
                    f"harm:{goal.goal}:{row.label}",
                    row.verdict.text,
                    _row_numbers(row),
                    variant=row.label,
                )
    decision = result.decision
    if decision is not None and decision.kind in DECIDED:
        deciding = _deciding_row(result.goals, decision.variant)
        numbers = {"participants": participants, **_row_numbers(deciding)}
        add(
            AlertKind.DECIDED,
            f"{decision.kind}:{decision.variant or ''}",
            decision.text,
            numbers,
            variant=decision.variant,
        )
    planned = _planned(result)
    if planned is not None and participants >= planned:
        add(
            AlertKind.SIZE_REACHED,
            f"size:{planned}",
            f"The planned {planned:,} participants are reached ({participants:,})",
            {"participants": participants, "planned": planned},
        )
    announced = memory.announced | {a.id for a in found}
    kept = Memory(announced, srm_p, events, events_at)
    return Findings(tuple(found), kept)


def _srm(result: ExperimentResult, previous: float) -> float:
    """The running always-valid SRM p-value, with this look's counts (exact counting only)."""
    if result.counting != Mode.EXACT or result.srm is None or not result.srm.expected:
        return previous
    names = list(result.srm.expected)
    counts = [result.participants.get(name, 0) for name in names]
    weights = [result.srm.expected[name] for name in names]
    p = sequential_srm_p_value(counts, weights, previous)
    return previous if p is None else p


def _events_at(result: ExperimentResult, memory: Memory, events: int, now: int) -> int:
    """When the experiment's events last changed: now if they did since the last pass; at the
    first look, its creation (or reset) if it has none yet, else now."""
    if memory.events is None:
        return (result.reset_at or result.created or now) if events == 0 else now
    if events != memory.events or memory.events_at is None:
        return now
    return memory.events_at


def _planned(result: ExperimentResult) -> int | None:
    """Participants the plan means to decide at: declared, or (group-sequential) its looks'
    target, or (an MDE) the participants it needs at the rates seen so far."""
    plan = result.settings.plan
    if plan is None:
        return None
    if plan.planned_participants is not None:
        return plan.planned_participants
    if result.looks is not None and result.looks.planned is not None:
        return result.looks.planned
    if plan.mde is not None and result.planning is not None:
        return result.planning.needed
    return None


def _deciding_row(goals: tuple[GoalResult, ...], variant: str | None) -> VariantResult | None:
    """The variant's row on the first primary goal (the first challenger's with no variant)."""
    for goal in goals:
        if goal.role != Role.PRIMARY:
            continue
        for row in goal.results:
            if row.verdict is not None and (variant is None or row.label == variant):
                return row
    return None


def _row_numbers(row: VariantResult | None) -> dict[str, float]:
    """The figures behind a verdict: the CUPED-adjusted ones where the plan has a covariate."""
    if row is None:
        return {}
    adjusted = row.adjusted
    picked = {
        "uplift": row.uplift,
        "p_value": row.p_value_adjusted if row.p_value_adjusted is not None else row.p_value,
        "chance_to_beat_control": row.chance_to_beat_control,
    }
    if adjusted is not None and adjusted.uplift is not None:
        picked = {
            "uplift": adjusted.uplift,
            "p_value": adjusted.p_value_adjusted
            if adjusted.p_value_adjusted is not None
            else adjusted.p_value,
            "chance_to_beat_control": adjusted.chance_to_beat_control,
        }
    figures = {name: value for name, value in picked.items() if value is not None}
    return {"trials": row.trials, **figures}


def _line(text: str) -> str:
    """One line of at most :data:`alerts.MAX_TEXT` characters."""
    text = " ".join(text.split())
    return text if len(text) <= alerts.MAX_TEXT else text[: alerts.MAX_TEXT - 1] + "…"
