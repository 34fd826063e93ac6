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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

from . import defaults
from .errors import Conflict, InvalidFields, InvalidInput
from .events import check_name
from .storage.plan import kept_fields
from .storage.read import Stored
from .storage.schema import Meta
from .vocabulary import Analysis, Direction, GoalType, Role, Spending

FIELDS = (
    "variants",
    "control",
    "weights",
    "goals",
    "analysis",
    "spending",
    "planned_participants",
    "mde",
    "covariate",
    "description",
)
GOAL_FIELDS = ("name", "role", "direction", "margin", "type", "cap", "negative")
COVARIATE_FIELDS = ("name", "cap")
MAX_DESCRIPTION = 1000
MAX_PARTICIPANTS = 10**12
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
# Control characters other than tab and newline, and lone surrogates (JSON can carry them).
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class PlannedGoal:
    name: str
    role: Role = Role.PRIMARY
    direction: Direction = Direction.INCREASE
    """Which way is better: ``decrease`` for goals such as refunds or errors."""
    margin: float = 0.0
    """Guardrails: the relative harm tolerated (0.02: up to 2% worse) before it is breached."""
    type: GoalType = GoalType.BINARY
    cap: float | None = None
    """Value goals: each participant's total is capped at this (winsorized; with ``negative``,
    kept within -cap..cap), which bounds what one visitor can weigh."""
    negative: bool = False
    """Value goals: whether values may be below 0 (refunds); if not, such events are dropped."""

    @property
    def valued(self) -> bool:
        return self.type == GoalType.VALUE

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "direction": self.direction.value,
            "margin": self.margin,
            "type": self.type.value,
            "cap": self.cap,
            "negative": self.negative,
        }

    def declared(self) -> str | dict[str, Any]:
        """Its fields but the defaults; only a name left: the bare name."""
        shown: dict[str, Any] = {"name": self.name}
        if self.role != Role.PRIMARY:
            shown["role"] = self.role.value
        if self.direction != Direction.INCREASE:
            shown["direction"] = self.direction.value
        if self.margin:
            shown["margin"] = self.margin
        if self.valued:
            shown["type"] = self.type.value
        if self.cap is not None:
            shown["cap"] = _whole(self.cap)
        if self.negative:
            shown["negative"] = True
        return self.name if len(shown) == 1 else shown


@dataclass(frozen=True, slots=True)
class Covariate:
    """A number the site knows about each visitor before the experiment (orders in the last
    30 days, visits on this device), sent with its events: CUPED adjusts every goal by it."""

    name: str
    cap: float | None = None
    """Covariates are clipped to -cap..cap before they are summed."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cap": self.cap}

    def declared(self) -> str | dict[str, Any]:
        if self.cap is None:
            return self.name
        return {"name": self.name, "cap": _whole(self.cap)}


@dataclass(frozen=True, slots=True)
class Plan:
    variants: tuple[str, ...]
    control: str
    goals: tuple[PlannedGoal, ...] = ()
    weights: dict[str, float] | None = None
    analysis: Analysis | None = None
    """None: ``group_sequential`` with a size (``planned_participants`` or ``mde``), else the
    method the experiment was created with."""
    spending: Spending | None = None
    """Group-sequential analysis: how alpha is spent over the looks (None: O'Brien-Fleming)."""
    planned_participants: int | None = None
    """Participants over all variants at which the team means to decide."""
    mde: float | None = None
    """Minimum detectable effect the team cares about, relative (0.05: a 5% uplift)."""
    covariate: Covariate | None = None
    description: str | None = None

    @property
    def sized(self) -> bool:
        """Whether the plan declares its size: a number of participants, or an MDE."""
        return self.planned_participants is not None or self.mde is not None

    @property
    def method(self) -> Analysis | None:
        """The analysis this plan asks for (None: the experiment's own)."""
        if self.analysis is None and self.sized:
            return Analysis.GROUP_SEQUENTIAL
        return self.analysis

    def goal(self, name: str) -> PlannedGoal | None:
        return next((g for g in self.goals if g.name == name), None)

    @property
    def summed(self) -> bool:
        """Whether the plan needs sums beside the counts (a value goal or a covariate): only
        ``exact`` counting can keep them."""
        return self.covariate is not None or any(g.valued for g in self.goals)

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
            "analysis": self.analysis.value if self.analysis else None,
            "spending": self.spending.value if self.spending else None,
            "planned_participants": self.planned_participants,
            "mde": self.mde,
            "covariate": self.covariate.to_json() if self.covariate else None,
            "description": self.description,
        }

    def declared(self) -> dict[str, Any]:
        """What a team writes in a plans file: no null, no default, whole weights as whole
        numbers; what ``plan show`` prints, and it parses back to this very plan."""
        shown: dict[str, Any] = {"variants": list(self.variants), "control": self.control}
        if self.weights is not None:
            shown["weights"] = {v: _whole(w) for v, w in self.weights.items()}
        if self.goals:
            shown["goals"] = [g.declared() for g in self.goals]
        optional = {
            "analysis": self.analysis.value if self.analysis else None,
            "spending": self.spending.value if self.spending else None,
            "planned_participants": self.planned_participants,
            "mde": self.mde,
            "covariate": self.covariate.declared() if self.covariate else None,
            "description": self.description,
        }
        shown.update((key, value) for key, value in optional.items() if value is not None)
        return shown

    def encode(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def parse(body: Any, max_variants: int, max_goals: int) -> Plan:
    """A plan from its JSON object; :class:`InvalidFields` listing every bad field, so that
    one answer (or one ``plan apply``) shows all there is to fix."""
    if not isinstance(body, dict):
        raise InvalidInput("body", 'expected a JSON object with at least "variants"')
    problems = _Problems()
    for key in sorted(set(body) - set(FIELDS)):
        problems.add(key, f"unknown field {key!r}; known: {', '.join(FIELDS)}")
    variants = problems.check(_names, "variants", body.get("variants"), 2, max_variants)
    control = problems.check(_control, body.get("control"), variants)
    goals = _goals(body.get("goals"), max_goals, problems)
    weights = body.get("weights")
    if weights is not None and variants is not None:  # else nothing to check them against
        weights = problems.check(parse_weights, weights, variants)
    analysis = body.get("analysis")
    if analysis is not None:
        analysis = problems.check(parse_analysis, analysis)
    planned = body.get("planned_participants")
    if planned is not None and (
        isinstance(planned, bool)
        or not isinstance(planned, int)
        or not 2 <= planned <= MAX_PARTICIPANTS
    ):
        problems.add(
            "planned_participants",
            f"must be a whole number of participants (all variants) from 2 to {MAX_PARTICIPANTS}",
        )
    mde = problems.check(_fraction, "mde", body.get("mde"), low=0.0, high=10.0, open_low=True)
    spending = body.get("spending")
    if spending is not None:
        spending = problems.check(_one_of, "spending", Spending, spending)
    covariate = _covariate(body.get("covariate"), problems)
    description = problems.check(parse_description, body.get("description"))
    _check_design(body, analysis, spending, planned, mde, variants, problems)
    problems.raise_any()
    assert variants is not None and control is not None  # else raised above
    return Plan(
        variants=variants,
        control=control,
        goals=goals,
        weights=weights,
        analysis=analysis,
        spending=spending,
        planned_participants=planned,
        mde=mde,
        covariate=covariate,
        description=description,
    )


def _covariate(value: Any, problems: _Problems) -> Covariate | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        problems.add("covariate", "'covariate' must be a name or an object with 'name' and 'cap'")
        return None
    for key in sorted(set(value) - set(COVARIATE_FIELDS)):
        problems.add(
            f"covariate.{key}",
            f"unknown covariate field {key!r}; known: {', '.join(COVARIATE_FIELDS)}",
        )
    name = problems.check(check_name, "covariate.name", value.get("name"))
    cap = problems.check(_cap, "covariate.cap", value.get("cap"))
    return None if name is None else Covariate(name, cap)


def _cap(field: str, value: Any) -> float | None:
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if not ok or not (math.isfinite(value) and 0 < value <= defaults.MAX_VALUE):
        raise InvalidInput(field, f"must be a number above 0 and at most {defaults.MAX_VALUE:g}")
    return float(value)


def _check_design(
    body: dict[str, Any],
    analysis: Analysis | None,
    spending: Spending | None,
    planned: Any,
    mde: float | None,
    variants: tuple[str, ...] | None,
    problems: _Problems,
) -> None:
    """What a group-sequential design needs: a size, and one some look can decide at."""
    sized = planned is not None or mde is not None
    method = analysis if analysis is not None or not sized else Analysis.GROUP_SEQUENTIAL
    if analysis == Analysis.GROUP_SEQUENTIAL and not sized and "analysis" in body:
        problems.add(
            "analysis",
            "group_sequential spends alpha toward a planned size: declare planned_participants "
            "or mde",
        )
    if spending is not None and method != Analysis.GROUP_SEQUENTIAL:
        problems.add("spending", "applies to group_sequential analysis only")
    least = defaults.MIN_TRIALS * len(variants) if variants else None
    if (
        method == Analysis.GROUP_SEQUENTIAL
        and least is not None
        and isinstance(planned, int)
        and 2 <= planned < least
    ):
        problems.add(
            "planned_participants",
            f"no look can decide below {defaults.MIN_TRIALS} participants per variant: plan at "
            f"least {least:,} for {len(variants or ())} variants",
        )


class _Problems:
    """Every invalid field of one plan, in the order the fields are checked."""

    def __init__(self) -> None:
        self.found: list[InvalidInput] = []

    def add(self, field: str, message: str) -> None:
        self.found.append(InvalidInput(field, message))

    def check(self, parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``parse(*args, **kwargs)``, or None with its error kept."""
        try:
            return parse(*args, **kwargs)
        except InvalidInput as exc:
            self.found.append(exc)
            return None

    def raise_any(self) -> None:
        if self.found:
            raise InvalidFields(self.found)


def _control(control: Any, variants: tuple[str, ...] | None) -> str | None:
    if control is None:
        return variants[0] if variants else None
    control = check_name("control", control)
    if variants is not None and control not in variants:
        raise InvalidInput("control", f"{control!r} is not one of the plan's variants")
    return control


def _whole(number: float) -> float | int:
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def decode(raw: str) -> Plan:
    """A stored plan (written by :meth:`Plan.encode`, so trusted)."""
    return from_json(json.loads(raw))


def from_json(data: dict[str, Any]) -> Plan:
    """A plan as :meth:`Plan.to_json` wrote it (stored, or in a results answer)."""
    return Plan(
        variants=tuple(data["variants"]),
        control=data["control"],
        goals=tuple(
            PlannedGoal(
                g["name"],
                Role(g["role"]),
                Direction(g["direction"]),
                g["margin"],
                GoalType(g.get("type", GoalType.BINARY)),
                g.get("cap"),
                g.get("negative", False),
            )
            for g in data["goals"]
        ),
        weights=data["weights"],
        analysis=Analysis(data["analysis"]) if data["analysis"] else None,
        spending=Spending(data["spending"]) if data.get("spending") else None,
        planned_participants=data["planned_participants"],
        mde=data["mde"],
        covariate=Covariate(**data["covariate"]) if data.get("covariate") else None,
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


def _goals(value: Any, most: int, problems: _Problems) -> tuple[PlannedGoal, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most:
        problems.add("goals", f"'goals' must be a list of at most {most} goals")
        return ()
    goals = [_goal(f"goals[{i}]", item, problems) for i, item in enumerate(value)]
    found = tuple(g for g in goals if g is not None)
    problems.check(_unique, "goals", (g.name for g in found))
    return found


def _goal(where: str, item: Any, problems: _Problems) -> PlannedGoal | None:
    if isinstance(item, str):  # a bare name: a primary goal, higher is better
        item = {"name": item}
    if not isinstance(item, dict):
        problems.add(where, f"'{where}' must be a goal name or an object with 'name'")
        return None
    for key in sorted(set(item) - set(GOAL_FIELDS)):
        problems.add(
            f"{where}.{key}", f"unknown goal field {key!r}; known: {', '.join(GOAL_FIELDS)}"
        )
    name = problems.check(_goal_name, f"{where}.name", item.get("name"))
    role = problems.check(_one_of, f"{where}.role", Role, item.get("role", Role.PRIMARY))
    direction = problems.check(
        _one_of, f"{where}.direction", Direction, item.get("direction", Direction.INCREASE)
    )
    margin = problems.check(_fraction, f"{where}.margin", item.get("margin"), low=0.0, high=1.0)
    kind = problems.check(_one_of, f"{where}.type", GoalType, item.get("type", GoalType.BINARY))
    cap = problems.check(_cap, f"{where}.cap", item.get("cap"))
    negative = item.get("negative", False)
    if not isinstance(negative, bool):
        problems.add(f"{where}.negative", "must be true or false")
        negative = False
    if kind != GoalType.VALUE:
        for key in ("cap", "negative"):
            if key in item:
                problems.add(f"{where}.{key}", 'applies to goals of "type": "value" only')
    if name is None or role is None or direction is None or kind is None:
        return None
    return PlannedGoal(name, role, direction, margin or 0.0, kind, cap, negative)


def parse_analysis(value: Any) -> Analysis:
    """An analysis method as a plan or ``PATCH`` names it."""
    return _one_of("analysis", Analysis, value)


def _one_of(field: str, kind: type[E], value: Any) -> E:
    if not isinstance(value, str) or value not in tuple(kind):
        raise InvalidInput(field, f"must be one of: {', '.join(kind)}")
    return kind(value)


def _goal_name(field: str, value: Any) -> str:
    name = check_name(field, value)
    if name == defaults.PARTICIPATE:
        raise InvalidInput(
            field, f"{name!r} is counted for every experiment: not a goal to declare"
        )
    return name


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
    """What applying ``wanted`` over ``current`` changes, one line per field (empty: nothing);
    with no current plan, the fields ``wanted`` declares."""
    if current is None:
        return [f"+ {key}: {_shown(value)}" for key, value in wanted.declared().items()]
    before, after = current.to_json(), wanted.to_json()
    return [
        f"~ {key}: {_shown(before[key])} -> {_shown(after[key])}"
        for key in after
        if before[key] != after[key]
    ]


DESIGN = ("analysis", "spending", "planned_participants", "mde", "control", "primary goals")
"""What a group-sequential test's bounds and family rest on: fixed once a look is taken."""


def design_change(current: Plan, wanted: Plan) -> str | None:
    """The first field of :data:`DESIGN` that ``wanted`` changes (None: the same design).
    Changed after a look, it would test the same counts again under other bounds."""

    def primary(plan: Plan) -> frozenset[str]:
        return frozenset(g.name for g in plan.goals if g.role == Role.PRIMARY)

    values = {
        "analysis": (current.method, wanted.method),
        "spending": (current.spending, wanted.spending),
        "planned_participants": (current.planned_participants, wanted.planned_participants),
        "mde": (current.mde, wanted.mde),
        "control": (current.control, wanted.control),
        "primary goals": (primary(current), primary(wanted)),
    }
    return next((field for field in DESIGN if values[field][0] != values[field][1]), None)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


def tracked_names(plan: Plan) -> str:
    """The names track.lua checks an event's against when the plan sums nothing: a newline,
    then each variant after a ``v`` and each goal after a ``g``, each followed by a newline.
    Names hold no control character, so ``"\\nv" + name + "\\n"`` is found in it only if the
    plan declares that variant."""
    variants = "".join(f"v{name}\n" for name in plan.variants)
    return "\n" + variants + "".join(f"g{name}\n" for name in plan.goal_names)


def meta_fields(plan: Plan) -> dict[str, str]:
    """The meta-hash fields a plan sets (an empty value removes one), itself included."""
    fields = {
        Meta.PLAN: plan.encode(),
        Meta.NAMES: "" if plan.summed else tracked_names(plan),
        Meta.CONTROL: plan.control,
        Meta.WEIGHTS: json.dumps(plan.weights) if plan.weights else "",
        Meta.DESCRIPTION: plan.description or "",
    }
    if plan.method is not None:
        fields[Meta.ANALYSIS] = plan.method
    return fields


def left_out(
    plan: Plan, variants: Iterable[str], goals: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The counted variants and goals ``plan`` does not name, sorted: the comparison
    plan.lua makes before it writes, made here for a dry run to predict its refusal."""
    return (
        tuple(sorted(set(variants) - set(plan.variants))),
        tuple(sorted(set(goals) - set(plan.goal_names))),
    )


def refusal(
    experiment: str, variants: Iterable[str], goals: Iterable[str], declared: bool = False
) -> Conflict:
    """The 409 for a plan that leaves out counted names, dry run or not; ``declared``: the
    experiment has a plan already, so ``drop_undeclared`` cannot help."""
    variants, goals = list(variants), list(goals)
    missing = [*(f"variant {v!r}" for v in variants), *(f"goal {g!r}" for g in goals)]
    drop = (
        ""
        if declared
        else ", drop them and their counts (drop_undeclared=true; plan apply --drop-undeclared)"
    )
    return Conflict(
        f"the plan leaves out what {experiment!r} has already counted: "
        + ", ".join(missing)
        + f"; name them in the plan{drop}, or delete the experiment first",
        {"variants": variants, "goals": goals},
    )


def without_undeclared(stored: Stored, plan: Plan) -> Stored:
    """``stored`` once plan.lua has dropped what ``plan`` leaves out (``drop_undeclared``):
    the names, their counts and their days of history. A dry run's prediction."""
    kept = set(kept_fields(plan.variants, plan.goal_names))

    def day(snapshot: str) -> str:
        counts = json.loads(snapshot)
        return json.dumps({k: v for k, v in counts.items() if k in kept})

    return replace(
        stored,
        variants=tuple(v for v in stored.variants if v in plan.variants),
        goals=tuple(g for g in stored.goals if g in plan.goal_names),
        counts={k: v for k, v in stored.counts.items() if k in kept},
        history={d: day(s) for d, s in stored.history.items()},
    )


def stored_with(
    stored: Stored, experiment: str, plan: Plan, new: tuple[str, int, str], now: int, today: int
) -> Stored:
    """``stored`` as it would read once ``plan`` is declared (what plan.lua writes: the
    creation fields if the experiment is new, then the plan's meta fields): a dry run's answer."""
    meta = dict(stored.meta)
    if not meta:
        mode, window, method = new
        meta = {
            Meta.NAME: experiment,
            Meta.COUNTING: mode,
            Meta.WINDOW: str(window),
            Meta.CREATED: str(now),
            Meta.ANALYSIS: method,
            Meta.DAY: str(today),
        }
    for field, value in meta_fields(plan).items():
        if value:
            meta[field] = value
        else:
            meta.pop(field, None)
    return replace(stored, meta=meta)


GOVERNED = ("control", "weights", "description", "analysis")
"""Settings a plan owns: once declared, they change with the plan, not with PATCH."""
