"""Experiment plans: what a team declares about an experiment before (or while) it runs.

A plan names the variants and goals that count, the control, the intended split, each goal's
role (``primary`` goals decide, ``guardrail`` goals must do no harm, ``secondary`` goals are
shown), the analysis method, and the planned size and minimum detectable effect the
decision is checked against. It is declared with ``PUT /experiments/<name>`` (API key) or
``gimel plan apply``; public traffic can then only count in it, never change it
(``track.lua`` drops events for names the plan does not list).

Parsed and validated here, stored as canonical JSON in the experiment's meta hash
(:data:`gimel_core.storage.schema.Meta.PLAN`), with the control, weights, description and analysis
copied to their own meta fields so that the analysis reads one kind of settings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import defaults
from .errors import InvalidInput
from .events import check_name
from .storage.schema import Meta

ROLES = ("primary", "guardrail", "secondary")
DIRECTIONS = ("increase", "decrease")
FIELDS = (
    "variants",
    "control",
    "weights",
    "goals",
    "analysis",
    "planned_participants",
    "mde",
    "description",
)
GOAL_FIELDS = ("name", "role", "direction", "margin")
MAX_DESCRIPTION = 1000
MAX_PARTICIPANTS = 10**12
# Control characters other than tab and newline, and lone surrogates (JSON can carry them).
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class PlannedGoal:
    name: str
    role: str = "primary"
    direction: str = "increase"
    """Which way is better: ``decrease`` for goals such as refunds or errors."""
    margin: float = 0.0
    """Guardrails: the relative harm tolerated (0.02: up to 2% worse) before it is breached."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "direction": self.direction,
            "margin": self.margin,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    variants: tuple[str, ...]
    control: str
    goals: tuple[PlannedGoal, ...] = ()
    weights: dict[str, float] | None = None
    analysis: str | None = None
    """None: the experiment keeps the method it was created with."""
    planned_participants: int | None = None
    """Participants over all variants at which the team means to decide."""
    mde: float | None = None
    """Minimum detectable effect the team cares about, relative (0.05: a 5% uplift)."""
    description: str | None = None

    def goal(self, name: str) -> PlannedGoal | None:
        return next((g for g in self.goals if g.name == name), None)

    @property
    def goal_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.goals)

    def to_json(self) -> dict[str, Any]:
        """Every field, defaults spelled out: the stored form, and what ``plan show`` prints."""
        return {
            "variants": list(self.variants),
            "control": self.control,
            "weights": self.weights,
            "goals": [g.to_json() for g in self.goals],
            "analysis": self.analysis,
            "planned_participants": self.planned_participants,
            "mde": self.mde,
            "description": self.description,
        }

    def encode(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def parse(body: Any, max_variants: int, max_goals: int) -> Plan:
    """A plan from its JSON object; :class:`InvalidInput` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidInput("body", 'expected a JSON object with at least "variants"')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field {unknown[0]!r}; known: {', '.join(FIELDS)}")
    variants = _names("variants", body.get("variants"), 2, max_variants)
    control = body.get("control")
    if control is None:
        control = variants[0]
    else:
        control = check_name("control", control)
        if control not in variants:
            raise InvalidInput("control", f"{control!r} is not one of the plan's variants")
    goals = _goals(body.get("goals"), max_goals)
    weights = body.get("weights")
    analysis = body.get("analysis")
    if analysis is not None and analysis not in defaults.ANALYSES:
        raise InvalidInput("analysis", f"must be one of: {', '.join(defaults.ANALYSES)}")
    planned = body.get("planned_participants")
    if planned is not None and (
        isinstance(planned, bool)
        or not isinstance(planned, int)
        or not 2 <= planned <= MAX_PARTICIPANTS
    ):
        raise InvalidInput(
            "planned_participants",
            f"must be a whole number of participants (all variants) from 2 to {MAX_PARTICIPANTS}",
        )
    return Plan(
        variants=variants,
        control=control,
        goals=goals,
        weights=None if weights is None else parse_weights(weights, variants),
        analysis=analysis,
        planned_participants=planned,
        mde=_fraction("mde", body.get("mde"), low=0.0, high=10.0, open_low=True),
        description=parse_description(body.get("description")),
    )


def decode(raw: str) -> Plan:
    """A stored plan (written by :meth:`Plan.encode`, so trusted)."""
    return from_json(json.loads(raw))


def from_json(data: dict[str, Any]) -> Plan:
    """A plan as :meth:`Plan.to_json` wrote it (stored, or in a results answer)."""
    return Plan(
        variants=tuple(data["variants"]),
        control=data["control"],
        goals=tuple(PlannedGoal(**g) for g in data["goals"]),
        weights=data["weights"],
        analysis=data["analysis"],
        planned_participants=data["planned_participants"],
        mde=data["mde"],
        description=data["description"],
    )


def parse_weights(weights: Any, variants: Iterable[str]) -> dict[str, float]:
    """``{variant: weight}`` covering exactly these variants, some positive."""
    known = set(variants)
    if not isinstance(weights, dict) or not weights:
        raise InvalidInput(
            "weights", 'expected an object of variant: weight, e.g. {"a": 1, "b": 1}'
        )
    missing = sorted(known - set(weights))
    if missing:
        raise InvalidInput("weights", f"no weight for variant {missing[0]!r}")
    parsed: dict[str, float] = {}
    for variant, weight in weights.items():
        if variant not in known:
            raise InvalidInput("weights", f"{variant!r} is not a variant of this experiment")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidInput("weights", f"weight of {variant!r} must be a number")
        try:
            value = float(weight)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise InvalidInput("weights", f"weight of {variant!r} must be zero or positive")
        parsed[variant] = value
    if not any(parsed.values()):
        raise InvalidInput("weights", "at least one weight must be positive")
    if not math.isfinite(sum(parsed.values())):
        raise InvalidInput("weights", "weights are too large: use relative sizes like 1 and 3")
    return parsed


def parse_description(description: Any) -> str | None:
    if description is not None and (
        not isinstance(description, str)
        or len(description) > MAX_DESCRIPTION
        or _FORBIDDEN.search(description)
    ):
        raise InvalidInput(
            "description",
            f"must be text of at most {MAX_DESCRIPTION} characters, without control characters",
        )
    return description or None


def _names(field: str, value: Any, least: int, most: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInput(field, f"'{field}' must be a list of names")
    if not least <= len(value) <= most:
        raise InvalidInput(field, f"'{field}' must list {least} to {most} names")
    names = tuple(check_name(field, name) for name in value)
    _unique(field, names)
    return names


def _unique(field: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(field, f"{name!r} is listed twice in '{field}'")
        seen.add(name)


def _goals(value: Any, most: int) -> tuple[PlannedGoal, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most:
        raise InvalidInput("goals", f"'goals' must be a list of at most {most} goals")
    goals = []
    for i, item in enumerate(value):
        where = f"goals[{i}]"
        if isinstance(item, str):  # a bare name: a primary goal, higher is better
            item = {"name": item}
        if not isinstance(item, dict):
            raise InvalidInput(where, f"'{where}' must be a goal name or an object with 'name'")
        unknown = sorted(set(item) - set(GOAL_FIELDS))
        if unknown:
            raise InvalidInput(
                f"{where}.{unknown[0]}",
                f"unknown goal field {unknown[0]!r}; known: {', '.join(GOAL_FIELDS)}",
            )
        name = check_name(f"{where}.name", item.get("name"))
        if name == defaults.PARTICIPATE:
            raise InvalidInput(
                f"{where}.name", f"{name!r} is counted for every experiment: not a goal to declare"
            )
        role = item.get("role", "primary")
        if role not in ROLES:
            raise InvalidInput(f"{where}.role", f"must be one of: {', '.join(ROLES)}")
        direction = item.get("direction", "increase")
        if direction not in DIRECTIONS:
            raise InvalidInput(f"{where}.direction", f"must be one of: {', '.join(DIRECTIONS)}")
        margin = _fraction(f"{where}.margin", item.get("margin"), low=0.0, high=1.0) or 0.0
        goals.append(PlannedGoal(name, role, direction, margin))
    _unique("goals", (g.name for g in goals))
    return tuple(goals)


def _fraction(
    field: str, value: Any, low: float, high: float, open_low: bool = False
) -> float | None:
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (low < value if open_low else low <= value) and value < high
    if not ok:
        bound = f"above {low:g}" if open_low else f"from {low:g}"
        raise InvalidInput(field, f"must be a relative number {bound} and below {high:g}")
    return float(value)


def changes(current: Plan | None, wanted: Plan) -> list[str]:
    """What applying ``wanted`` over ``current`` changes, one line per field (empty: nothing)."""
    if current is None:
        return [f"+ {key}: {_shown(value)}" for key, value in wanted.to_json().items()]
    before, after = current.to_json(), wanted.to_json()
    return [
        f"~ {key}: {_shown(before[key])} -> {_shown(after[key])}"
        for key in after
        if before[key] != after[key]
    ]


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


def meta_fields(plan: Plan) -> dict[str, str]:
    """The meta-hash fields a plan sets (an empty value removes one), itself included."""
    fields = {
        Meta.PLAN: plan.encode(),
        Meta.CONTROL: plan.control,
        Meta.WEIGHTS: json.dumps(plan.weights) if plan.weights else "",
        Meta.DESCRIPTION: plan.description or "",
    }
    if plan.analysis is not None:
        fields[Meta.ANALYSIS] = plan.analysis
    return fields


GOVERNED = ("control", "weights", "description", "analysis")
"""Settings a plan owns: once declared, they change with the plan, not with PATCH."""
