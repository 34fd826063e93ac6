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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import defaults, plans
from .plans import Plan


@dataclass(frozen=True, slots=True)
class Settings:
    """What the team declared for an experiment (``PATCH /experiments/<name>``)."""

    control: str | None = None
    weights: dict[str, float] | None = None
    description: str | None = None
    archived: bool = False
    analysis: str = "fixed"
    """``sequential`` (always-valid p-values and intervals) or ``fixed`` (fixed horizon)."""
    sequential_tuning: int = defaults.SEQUENTIAL_TUNING
    plan: Plan | None = None
    """Declared with ``PUT /experiments/<name>``; None for an experiment visitors created."""


@dataclass(frozen=True, slots=True)
class ExperimentCounts:
    """One experiment as stored: names, settings and unique counts, no statistics."""

    name: str
    counting: str | None
    """``hll`` or ``exact``; None for an experiment that does not exist."""
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

    def count(self, goal: str, variant: str) -> int:
        return self.counts.get((goal, variant), 0)

    def on(self, day: int, counts: Mapping[tuple[str, str], int]) -> ExperimentCounts:
        """This experiment as it stood at the end of ``day`` (its history until then)."""
        return replace(self, counts=counts, history=tuple(h for h in self.history if h[0] < day))

    @property
    def participants(self) -> dict[str, int]:
        return {v: self.count(defaults.PARTICIPATE, v) for v in self.variants}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one variant against the control for one goal, as a sentence."""

    kind: str
    """``win`` (the variant beats the control), ``lose``, ``even`` or ``wait``."""
    text: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


@dataclass(slots=True)
class VariantResult:
    """One variant on one goal. Built by :mod:`gimel_core.analysis`, read-only after that."""

    label: str
    successes: int
    trials: int
    conversion_rate: float | None = None
    ci: list[float] | None = None
    uplift: float | None = None
    uplift_ci: list[float] | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    chance_to_beat_control: float | None = None
    verdict: Verdict | None = None
    """None for the control itself."""
    running_uplift_ci: list[float] | None = None
    """Sequential analysis: the intersection of this look's interval with every earlier day's."""
    running_p_value: float | None = None
    """Sequential analysis: the least p-value of this look and every earlier day's."""

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "successes": self.successes,
            "trials": self.trials,
            "conversion_rate": self.conversion_rate,
            "ci": self.ci,
            "uplift": self.uplift,
            "uplift_ci": self.uplift_ci,
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "chance_to_beat_control": self.chance_to_beat_control,
            "verdict": self.verdict.to_json() if self.verdict else None,
            "running_uplift_ci": self.running_uplift_ci,
            "running_p_value": self.running_p_value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantResult:
        verdict = data.get("verdict")
        return cls(
            label=data["label"],
            successes=data["successes"],
            trials=data["trials"],
            conversion_rate=data.get("conversion_rate"),
            ci=data.get("ci"),
            uplift=data.get("uplift"),
            uplift_ci=data.get("uplift_ci"),
            p_value=data.get("p_value"),
            p_value_adjusted=data.get("p_value_adjusted"),
            chance_to_beat_control=data.get("chance_to_beat_control"),
            verdict=Verdict(verdict["kind"], verdict["text"]) if verdict else None,
            running_uplift_ci=data.get("running_uplift_ci"),
            running_p_value=data.get("running_p_value"),
        )


@dataclass(frozen=True, slots=True)
class GoalResult:
    goal: str
    results: tuple[VariantResult, ...]
    role: str = "primary"
    """From the plan: ``primary`` (decides), ``guardrail`` (must do no harm), ``secondary``."""
    direction: str = "increase"
    margin: float = 0.0
    """Guardrails: the relative harm tolerated."""

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "results": [row.to_json() for row in self.results],
            "role": self.role,
            "direction": self.direction,
            "margin": self.margin,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GoalResult:
        return cls(
            data["goal"],
            tuple(VariantResult.from_json(r) for r in data["results"]),
            data.get("role", "primary"),
            data.get("direction", "increase"),
            data.get("margin", 0.0),
        )


@dataclass(frozen=True, slots=True)
class Srm:
    """Sample-ratio mismatch: the participants' split against the expected one."""

    p_value: float | None
    expected: dict[str, float]
    mismatch: bool

    def to_json(self) -> dict[str, Any]:
        return {"p_value": self.p_value, "expected": self.expected, "mismatch": self.mismatch}


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
        return {
            "goal": self.goal,
            "mde": self.mde,
            "power": self.power,
            "needed": self.needed,
            "days_remaining": self.days_remaining,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The one line a team acts on, for the whole experiment."""

    kind: str
    """``ship``, ``keep_control``, ``no_difference``, ``keep_running`` or ``check_split``."""
    text: str
    variant: str | None = None
    """The variant to ship (``ship``), or the one that must not be (``keep_control``)."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "variant": self.variant}


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    experiment: str
    counting: str | None
    goals: tuple[GoalResult, ...] = ()
    participants: dict[str, int] = field(default_factory=dict)
    control: str | None = None
    settings: Settings = Settings()
    dedup_window: int | None = None
    created: int | None = None
    reset_at: int | None = None
    srm: Srm | None = None
    """None for an experiment that does not exist."""
    decision: Decision | None = None
    planning: Planning | None = None

    @property
    def exists(self) -> bool:
        return self.counting is not None

    def to_json(self, summary: bool = False) -> dict[str, Any]:
        """The API's JSON; ``summary``: ``goal_names``, the goals' names alone, in place of
        ``goals`` (``GET /experiments?view=summary``), every other field the same."""
        goals: dict[str, Any] = (
            {"goal_names": [goal.goal for goal in self.goals]}
            if summary
            else {"goals": [goal.to_json() for goal in self.goals]}
        )
        body: dict[str, Any] = {
            "experiment": self.experiment,
            **goals,
            "counting": self.counting,
            "participants": self.participants,
            "control": self.control,
            "weights": self.settings.weights,
            "description": self.settings.description,
            "archived": self.settings.archived,
            "analysis": self.settings.analysis,
            "sequential_tuning": self.settings.sequential_tuning,
            "plan": self.settings.plan.to_json() if self.settings.plan else None,
            "dedup_window": self.dedup_window,
            "created": self.created,
            "reset_at": self.reset_at,
        }
        if self.srm is not None:
            body["srm"] = self.srm.to_json()
            body["decision"] = self.decision.to_json() if self.decision else None
            body["planning"] = self.planning.to_json() if self.planning else None
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExperimentResult:
        srm, decision, planning = data.get("srm"), data.get("decision"), data.get("planning")
        return cls(
            experiment=data["experiment"],
            counting=data.get("counting"),
            goals=tuple(GoalResult.from_json(g) for g in data.get("goals", [])),
            participants=dict(data.get("participants") or {}),
            control=data.get("control"),
            settings=Settings(
                control=data.get("control"),
                weights=data.get("weights"),
                description=data.get("description"),
                archived=bool(data.get("archived")),
                analysis=data.get("analysis", "fixed"),
                sequential_tuning=data.get("sequential_tuning", defaults.SEQUENTIAL_TUNING),
                plan=plans.from_json(data["plan"]) if data.get("plan") else None,
            ),
            dedup_window=data.get("dedup_window"),
            created=data.get("created"),
            reset_at=data.get("reset_at"),
            srm=Srm(srm["p_value"], srm["expected"], srm["mismatch"]) if srm else None,
            decision=Decision(**decision) if decision else None,
            planning=Planning(**planning) if planning else None,
        )


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
    analysis: str
    points: list[HistoryPoint]

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "interval": "day",
            "analysis": self.analysis,
            "points": [point.to_json() for point in self.points],
        }

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
        return cls(data["experiment"], data["analysis"], points)
