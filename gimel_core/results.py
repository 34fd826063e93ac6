"""The results model: what was counted, and what the statistics and verdicts make of it.

Storage reads :class:`ExperimentCounts`; :func:`gimel_core.analysis.analyse` turns them into an
:class:`ExperimentResult`; the API's JSON, the CLI's table and CSV, and the dashboard are all
rendered from that one object, so they can never disagree. ``to_json`` writes the original
Gimel's results shape (``experiment``, ``goals[].goal``, ``goals[].results[].label``,
``successes``, ``trials``) with Gimel's fields added; ``from_json`` reads it back (the CLI
reading a deployed Gimel over HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from enum import Enum, StrEnum
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Any,
    NamedTuple,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from . import defaults, plans
from .plans import Plan
from .vocabulary import (
    Analysis,
    DecisionKind,
    Direction,
    GoalType,
    Mode,
    Moment,
    Role,
    Spending,
    VerdictKind,
)

if TYPE_CHECKING:  # the statistics are imported where results are computed, not tracked
    from .stats.means import Sums

Interval = tuple[float, float]
"""A 95% interval, (low, high): a JSON list of two numbers."""

T = TypeVar("T")


_AS_IS = frozenset({str, int, float, bool, type(None), dict, list})
"""Types whose values are their own JSON (a dict here maps names to numbers)."""
_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """A field's JSON value: an enum as its string, a tuple as a list, a part as its JSON."""
    if type(value) in _AS_IS:
        return value
    if type(value) is tuple:  # not a row, a NamedTuple
        return [item if type(item) in _AS_IS else _plain(item) for item in value]
    if isinstance(value, Enum):
        return value._value_
    to_json = getattr(value, "to_json", None)
    return value if to_json is None else to_json()


def _names(cls: type) -> tuple[str, ...]:
    """A dataclass's or a NamedTuple's fields' names, in their declared order."""
    named: tuple[str, ...] | None = getattr(cls, "_fields", None)
    return named if named is not None else tuple(f.name for f in fields(cls))


def _defaulted(cls: type) -> frozenset[str]:
    """The fields that have a default."""
    if hasattr(cls, "_field_defaults"):
        return frozenset(cls._field_defaults)
    return frozenset(f.name for f in fields(cls) if _has_default(f))


def _encoder(cls: type, but: str | None = None) -> Callable[[Any], dict[str, Any]]:
    """The function writing ``cls``'s fields (but ``but``) as JSON, in their declared order.

    Written once from the field list and the fields' declared types, as ``dataclasses``
    writes ``__init__``: every answer runs it for every row, and a dict display of the
    fields costs half of a loop over them calling :func:`_plain`.
    """
    hints = get_type_hints(cls)
    items = ", ".join(f"{n!r}: {_written(hints[n], 'obj.' + n)}" for n in _names(cls) if n != but)
    namespace: dict[str, Any] = {"_plain": _plain}
    exec(f"def to_json(obj):\n    return {{{items}}}\n", namespace)
    encode: Callable[[Any], dict[str, Any]] = namespace["to_json"]
    return encode


def _written(hint: Any, value: str) -> str:
    """The expression writing ``value``, declared as ``hint``, as JSON: a scalar as it is, an
    optional value guarded, a tuple of scalars as a list, a vocabulary's value as its
    string, a part by its ``to_json``, a tuple of parts as a list of theirs; anything else
    through :func:`_plain`."""
    args = get_args(hint)
    if get_origin(hint) in (Union, UnionType):
        if len(args) != 2 or type(None) not in args:
            return f"_plain({value})"
        inner = _written(next(a for a in args if a is not type(None)), value)
        return value if inner == value else f"(None if {value} is None else {inner})"
    if hint in _SCALARS:
        return value
    if get_origin(hint) is tuple:
        if all(a in _SCALARS or a is Ellipsis for a in args):
            return f"list({value})"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{_written(args[0], 'item')} for item in {value}]"
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return f"str({value})"  # its value, and a plain string (given one) as it is
    if isinstance(hint, type) and not issubclass(hint, Enum) and hasattr(hint, "to_json"):
        return f"{value}.to_json()"
    return f"_plain({value})"


def _decoded(
    cls: type[T],
    data: Mapping[str, Any],
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
    **given: Any,
) -> T:
    """A ``cls`` from its JSON: each field read by its name (its default when absent; a list
    as a tuple), through ``convert`` where a field is more than a JSON value (an enum, a
    part); ``given`` sets a field from elsewhere."""
    convert = convert or {}
    values = dict(given)
    defaulted = _defaulted(cls)
    for name in _names(cls):
        if name in given or (name not in data and name in defaulted):
            continue
        value = data[name]
        if value is not None and name in convert:
            value = convert[name](value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def _has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


@dataclass(frozen=True, slots=True)
class Settings:
    """What the team declared for an experiment (``PATCH /experiments/<name>``)."""

    control: str | None = None
    weights: dict[str, float] | None = None
    description: str | None = None
    archived: bool = False
    analysis: Analysis = defaults.ANALYSIS
    """Recorded when the experiment is created; ``fixed`` or ``sequential`` (always valid)."""
    sequential_tuning: int = defaults.SEQUENTIAL_TUNING
    plan: Plan | None = None
    """Declared with ``PUT /experiments/<name>``; None for an experiment visitors created."""


@dataclass(frozen=True, slots=True)
class ExperimentCounts:
    """One experiment as stored: names, settings and unique counts, no statistics."""

    name: str
    counting: Mode | None
    """None for an experiment that does not exist."""
    variants: tuple[str, ...] = ()
    goals: tuple[str, ...] = ()
    """Goal names, without the ``participate`` pseudo-goal."""
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(goal, variant) -> unique count; goal ``participate`` holds the trials."""
    settings: Settings = Settings()
    dedup_window: int | None = None
    created: int | None = None
    reset_at: int | None = None
    history: tuple[tuple[int, Mapping[tuple[str, str], int]], ...] = ()
    """(UTC day number, counts at the end of that day), oldest first; the counts above are now."""
    elapsed_days: float | None = None
    """Days since the experiment was created (or last reset), when it was read."""
    last_day: int | None = None
    """UTC day number of the last event counted."""
    today: int | None = None
    """UTC day number when it was read: the counts are a closed day's once ``last_day`` is
    before it (a group-sequential look)."""

    moments: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    """(goal, variant, ``Moment``) -> a sum kept beside the counts (value goals, covariate)."""
    history_moments: Mapping[int, Mapping[tuple[str, str, str], float]] = field(
        default_factory=dict
    )
    """UTC day number -> the sums at the end of that day (as :attr:`history` has the counts)."""

    def count(self, goal: str, variant: str) -> int:
        return self.counts.get((goal, variant), 0)

    def moment(self, goal: str, variant: str, moment: Moment) -> float:
        return self.moments.get((goal, variant, moment), 0.0)

    def sums(self, goal: str, variant: str) -> Sums:
        """One variant's sums on one goal over its participants: each participant's total
        (a value goal) or conversion (0 or 1), with the covariate's sums (0 without one)."""
        from .stats.means import Sums

        n = self.count(defaults.PARTICIPATE, variant)
        declared = self.settings.plan.goal(goal) if self.settings.plan else None
        if declared is not None and declared.valued:
            y, y2 = self.moment(goal, variant, Moment.Y), self.moment(goal, variant, Moment.Y2)
        else:
            y = y2 = float(min(self.count(goal, variant), n))
        return Sums(
            n,
            y,
            y2,
            self.moment(defaults.PARTICIPATE, variant, Moment.X),
            self.moment(defaults.PARTICIPATE, variant, Moment.X2),
            self.moment(goal, variant, Moment.XY),
        )

    def on(self, day: int, counts: Mapping[tuple[str, str], int]) -> ExperimentCounts:
        """This experiment as it stood at the end of ``day`` (its history until then)."""
        history = tuple(h for h in self.history if h[0] < day)
        moments = self.history_moments.get(day, {})
        return replace(
            self, counts=counts, moments=moments, history=history, last_day=day, today=day + 1
        )

    @property
    def participants(self) -> dict[str, int]:
        return {v: self.count(defaults.PARTICIPATE, v) for v in self.variants}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one variant against the control for one goal, as a sentence."""

    kind: VerdictKind
    text: str

    def to_json(self) -> dict[str, str]:
        return _VERDICT(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return _decoded(cls, data, {"kind": VerdictKind})


_VERDICT = _encoder(Verdict)


class Adjusted(NamedTuple):
    """A row's CUPED-adjusted figures (:func:`gimel_core.stats.means.cuped`): the regression
    on the plan's covariate removes the part of the goal's variance that the visitors'
    pre-experiment number predicts. The control's row has its ``mean`` only."""

    mean: float | None = None
    """The adjusted mean, ``mean y - theta (mean x - pooled mean x)``: on the raw means' scale."""
    uplift: float | None = None
    uplift_ci: Interval | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    chance_to_beat_control: float | None = None
    variance_reduction: float | None = None
    """``1 - adjusted variance / unadjusted variance`` of the uplift (below 0: it hurt)."""

    def to_json(self) -> dict[str, Any]:
        return _ADJUSTED(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Adjusted:
        return _decoded(cls, data)


_ADJUSTED = _encoder(Adjusted)


class VariantResult(NamedTuple):
    """One variant on one goal, built by :mod:`gimel_core.analysis` with its final values:
    immutable, so one row is shared by the requests and threads that read it. A NamedTuple
    rather than a frozen dataclass: a page builds hundreds of rows, and a tuple is built
    several times faster than a frozen dataclass sets its fields one by one."""

    label: str
    successes: int
    trials: int
    conversion_rate: float | None = None
    ci: Interval | None = None
    uplift: float | None = None
    uplift_ci: Interval | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    chance_to_beat_control: float | None = None
    verdict: Verdict | None = None
    """None for the control itself."""
    running_uplift_ci: Interval | None = None
    """Sequential analysis: the intersection of this look's interval with every earlier day's."""
    running_p_value: float | None = None
    """Sequential analysis: the least p-value of this look and every earlier day's."""
    bound: float | None = None
    """Group-sequential analysis: the ``|z|`` the last look had to reach, at the level the
    family-wise correction tested this comparison at (``p_value`` is that look's nominal one)."""
    sum: float | None = None
    """Value goals: the sum of the participants' (capped) totals."""
    mean: float | None = None
    """Value goals: per participant, those without a value counting 0 (``ci`` is its 95%
    interval, ``conversion_rate`` is None)."""
    adjusted: Adjusted | None = None
    """A plan with a covariate: the CUPED figures; the verdict uses them."""

    def to_json(self) -> dict[str, Any]:
        return _ROW(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantResult:
        convert = {"verdict": Verdict.from_json, "adjusted": Adjusted.from_json}
        return _decoded(cls, data, convert)


_ROW = _encoder(VariantResult)


@dataclass(frozen=True, slots=True)
class GoalResult:
    goal: str
    results: tuple[VariantResult, ...]
    role: Role = Role.PRIMARY
    """From the plan: ``primary`` (decides), ``guardrail`` (must do no harm), ``secondary``."""
    direction: Direction = Direction.INCREASE
    margin: float = 0.0
    """Guardrails: the relative harm tolerated."""
    type: GoalType = GoalType.BINARY
    """``binary`` (a rate of converted participants) or ``value`` (a mean per participant)."""

    def to_json(self) -> dict[str, Any]:
        return _GOAL(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GoalResult:
        rows = tuple(VariantResult.from_json(r) for r in data["results"])
        convert = {"role": Role, "direction": Direction, "type": GoalType}
        return _decoded(cls, data, convert, results=rows)


_GOAL = _encoder(GoalResult)


@dataclass(frozen=True, slots=True)
class Srm:
    """Sample-ratio mismatch: the participants' split against the expected one."""

    p_value: float | None
    expected: dict[str, float]
    mismatch: bool

    def to_json(self) -> dict[str, Any]:
        return _SRM(self)


_SRM = _encoder(Srm)


@dataclass(frozen=True, slots=True)
class Planning:
    """What the plan says about the experiment's primary goal: the minimum detectable effect
    at the planned size, the power there for the declared MDE, the participants the declared
    MDE needs and the days until then at the rate seen so far (None: not known)."""

    goal: str
    mde: float | None
    power: float | None
    needed: int | None
    days_remaining: float | None

    def to_json(self) -> dict[str, Any]:
        return _PLANNING(self)


_PLANNING = _encoder(Planning)


@dataclass(frozen=True, slots=True)
class Looks:
    """A group-sequential experiment's looks so far: the closed UTC days that added
    participants, each at its information fraction of the planned size, with the bound a
    single comparison's ``|z|`` had to reach there (:mod:`gimel_core.looks`)."""

    planned: int | None
    """The participants the fractions count toward (None: not known before the first look)."""
    spending: Spending
    dates: tuple[str, ...] = ()
    fractions: tuple[float, ...] = ()
    bounds: tuple[float, ...] = ()
    final: bool = False
    """The planned size was reached at the last look: its verdicts stand."""
    next_look: str | None = None
    """The UTC date whose close is the next look (None once final)."""

    def to_json(self) -> dict[str, Any]:
        return _LOOKS(self)


_LOOKS = _encoder(Looks)


@dataclass(frozen=True, slots=True)
class Decision:
    """The one line a team acts on, for the whole experiment."""

    kind: DecisionKind
    text: str
    variant: str | None = None
    """The variant to ship (``ship``), or the one that must not be (``keep_control``)."""

    def to_json(self) -> dict[str, Any]:
        return _DECISION(self)


_DECISION = _encoder(Decision)


@dataclass(frozen=True, slots=True)
class Covariate:
    """The plan's covariate, named in the results with what its adjustment assumes."""

    name: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return _COVARIATE(self)


_COVARIATE = _encoder(Covariate)


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """One experiment's results. Its JSON lists the fields in this order, with the settings'
    fields in place of ``settings`` (``control`` is the one in use, declared or chosen) and
    ``srm``, ``decision``, ``planning`` and ``looks`` only for an experiment that exists."""

    experiment: str
    goals: tuple[GoalResult, ...] = ()
    counting: Mode | None = None
    """None for an experiment that does not exist."""
    participants: dict[str, int] = field(default_factory=dict)
    control: str | None = None
    settings: Settings = Settings()
    method: Analysis | None = None
    """The analysis that produced the intervals and p-values: the declared one, or the
    confidence sequence (``sequential``) where a group-sequential plan has no size yet."""
    dedup_window: int | None = None
    created: int | None = None
    reset_at: int | None = None
    covariate: Covariate | None = None
    """The plan's covariate, when it declares one (every row then has ``adjusted``)."""
    srm: Srm | None = None
    """None for an experiment that does not exist."""
    decision: Decision | None = None
    planning: Planning | None = None
    looks: Looks | None = None
    """Group-sequential analysis: its looks so far."""

    @property
    def exists(self) -> bool:
        return self.counting is not None

    def to_json(self, summary: bool = False) -> dict[str, Any]:
        """The API's JSON; ``summary``: ``goal_names``, the goals' names alone, in place of
        ``goals`` (``GET /experiments?view=summary``), every other field the same."""
        body: dict[str, Any] = {}
        for name in _EXPERIMENT if self.srm is not None else _EXPERIMENT[:-4]:
            if name == "settings":
                body.update(_SETTINGS(self.settings))
            elif name == "goals" and summary:
                body["goal_names"] = [goal.goal for goal in self.goals]
            else:
                body[name] = _plain(getattr(self, name))
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExperimentResult:
        settings = _decoded(
            Settings,
            data,
            {"analysis": Analysis, "plan": plans.from_json},
            control=data.get("control"),
        )
        convert: dict[str, Callable[[Any], Any]] = {
            "goals": lambda goals: tuple(GoalResult.from_json(g) for g in goals),
            "counting": Mode,
            "participants": dict,
            "srm": lambda srm: _decoded(Srm, srm),
            "decision": lambda decision: _decoded(Decision, decision, {"kind": DecisionKind}),
            "planning": lambda planning: _decoded(Planning, planning),
            "method": Analysis,
            "looks": lambda looks: _decoded(Looks, looks, {"spending": Spending}),
            "covariate": lambda covariate: _decoded(Covariate, covariate),
        }
        return _decoded(cls, data, convert, settings=settings)


_EXPERIMENT = _names(ExperimentResult)
_SETTINGS = _encoder(Settings, but="control")


@dataclass(frozen=True, slots=True)
class Abuse:
    """Events answered but not counted on purpose."""

    filtered: int = 0
    """From known bots."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Past a cap or outside an allowlist, by reason."""


@dataclass(frozen=True, slots=True)
class Listing:
    """``GET /experiments``: a ``meta`` element first, then one object per experiment."""

    experiments: list[ExperimentResult]
    abuse: Abuse = Abuse()
    scope: str | None = None
    next: str | None = None
    """The cursor of the next page (``meta.next``), while more experiments remain."""

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "scope": self.scope,
            "filtered": self.abuse.filtered,
            "dropped": self.abuse.dropped,
        }
        if self.next is not None:
            meta["next"] = self.next
        return meta

    def encode(self, summary: bool = False, pieces: list[str] | None = None) -> bytes:
        """``to_json``, encoded as ``json.dumps`` does; ``pieces``: the experiments already
        encoded, in order (a page's budget measured them so), put in as they are."""
        if pieces is None or len(pieces) != len(self.experiments):
            return json.dumps(self.to_json(summary)).encode()
        head = json.dumps({"meta": self.meta()})
        return ("[" + ", ".join([head, *pieces]) + "]").encode()

    def to_json(self, summary: bool = False) -> list[dict[str, Any]]:
        """``summary``: each experiment without its goals' results (``view=summary``)."""
        return [{"meta": self.meta()}, *(exp.to_json(summary) for exp in self.experiments)]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Listing:
        meta = data[0].get("meta", {}) if data else {}
        return cls(
            experiments=[ExperimentResult.from_json(exp) for exp in data[1:]],
            abuse=Abuse(meta.get("filtered", 0), dict(meta.get("dropped") or {})),
            scope=meta.get("scope"),
            next=meta.get("next"),
        )


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    date: str
    """UTC date, YYYY-MM-DD: the counts as they stood at the end of that day (or now)."""
    result: ExperimentResult

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "participants": self.result.participants,
            "goals": [goal.to_json() for goal in self.result.goals],
        }


@dataclass(frozen=True, slots=True)
class History:
    """``GET /experiments/<name>/history``: one point per day with events, then now."""

    experiment: str
    analysis: Analysis
    points: list[HistoryPoint]
    kept: dict[str, str] | None = field(default=None, compare=False, repr=False)
    """Where the JSON of the recorded days' points is kept once encoded (they never change,
    ``analysis.analyse_history``); None: nowhere."""

    def to_json(self) -> dict[str, Any]:
        return {**self._about(), "points": [point.to_json() for point in self.points]}

    def _about(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "interval": "day", "analysis": _plain(self.analysis)}

    def encode(self) -> bytes:
        """``json.dumps(self.to_json())``, the recorded days' points encoded only once."""
        *past, now = self.points
        recorded = self.kept.get("past") if self.kept is not None else None
        if recorded is None:
            recorded = "".join(json.dumps(point.to_json()) + ", " for point in past)
            if self.kept is not None:
                self.kept["past"] = recorded
        empty = json.dumps({**self._about(), "points": []})  # ends in "[]}"
        return (empty[:-2] + recorded + json.dumps(now.to_json()) + "]}").encode()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        points = []
        for point in data["points"]:
            result = ExperimentResult(
                experiment=data["experiment"],
                counting=None,
                goals=tuple(GoalResult.from_json(g) for g in point["goals"]),
                participants=dict(point["participants"]),
            )
            points.append(HistoryPoint(point["date"], result))
        return cls(data["experiment"], Analysis(data["analysis"]), points)
