"""Gimel's words: every closed set of values the model, the API and the dashboard share.

Each concept is one ``StrEnum``: a member *is* its string (``Mode.HLL == "hll"``), so it is
stored, compared and encoded as that string, while mypy catches a misspelt member. The
OpenAPI document's enums, the Lua prelude and the dashboard's ``vocabulary.js`` are checked
against (or generated from) these classes.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How an experiment counts unique events."""

    HLL = "hll"
    """Redis HyperLogLog: at most 12 KB a counter, about 0.8% standard error, no uuid kept."""
    EXACT = "exact"
    """An integer counter plus a de-dup record per uuid."""


class Registration(StrEnum):
    """Which experiments public traffic is counted in."""

    OPEN = "open"
    """Any experiment a page names (under the caps)."""
    DECLARED = "declared"
    """Only experiments declared with a plan."""


class Analysis(StrEnum):
    """How p-values and intervals are computed."""

    SEQUENTIAL = "sequential"
    """Always-valid confidence sequences: safe to look at every day."""
    FIXED = "fixed"
    """Fixed horizon: valid at one look planned in advance."""
    GROUP_SEQUENTIAL = "group_sequential"
    """Alpha spent over daily looks toward the plan's size: safe to look at every day, and
    decides in about as many participants as the fixed horizon needs."""


class Spending(StrEnum):
    """How a group-sequential plan spends its alpha over the looks."""

    OBRIEN_FLEMING = "obrien_fleming"
    """Lan-DeMets O'Brien-Fleming type: little early, most at the planned size (the default)."""
    POCOCK = "pocock"
    """Lan-DeMets Pocock type: evenly, for an earlier stop at some cost in the final look."""


class GoalType(StrEnum):
    """What a goal counts."""

    BINARY = "binary"
    """Whether a participant converted: a unique count."""
    VALUE = "value"
    """How much each participant's events add up to (revenue per visitor): per-variant sums of
    each participant's total and its square (exact counting only)."""


class Moment(StrEnum):
    """The sums kept per variant beside the counts (exact mode), suffixes of the counts
    hash's fields (``keys.moment_field``): all the mean and CUPED statistics need."""

    Y = "y"
    """A value goal: the sum over participants of their (capped) totals."""
    Y2 = "y2"
    """A value goal: the sum of the squares of those totals."""
    X = "x"
    """``participate``: the sum of the participants' covariate."""
    X2 = "x2"
    """``participate``: the sum of its squares."""
    XY = "xy"
    """Any goal: the sum of covariate times outcome (the total, or 1 for a conversion)."""


class Role(StrEnum):
    """What a goal is for in the decision."""

    PRIMARY = "primary"
    GUARDRAIL = "guardrail"
    SECONDARY = "secondary"


class Direction(StrEnum):
    """Which way is better for a goal."""

    INCREASE = "increase"
    DECREASE = "decrease"


class VerdictKind(StrEnum):
    """The verdict on a variant against the control, for one goal."""

    WIN = "win"
    LOSE = "lose"
    EVEN = "even"
    WAIT = "wait"
    HARM = "harm"
    """Guardrails: the variant does harm beyond the margin."""
    SAFE = "safe"
    """Guardrails: the variant stays within the margin."""


class DecisionKind(StrEnum):
    """The experiment's one decision line."""

    CHECK_SPLIT = "check_split"
    SHIP = "ship"
    KEEP_CONTROL = "keep_control"
    NO_DIFFERENCE = "no_difference"
    KEEP_RUNNING = "keep_running"


class AlertKind(StrEnum):
    """What an alert announces about an experiment."""

    DECIDED = "decided"
    """The decision line left ``keep_running``: ``ship``, ``keep_control`` or ``no_difference``."""
    HARM = "harm"
    """A guardrail turned to ``harm``."""
    SRM = "srm"
    """The split of participants is not the declared one (an always-valid test)."""
    SILENT = "silent"
    """No events for hours: tracking may be broken."""
    SIZE_REACHED = "size_reached"
    """The plan's number of participants is reached."""


VOCABULARY: dict[str, type[StrEnum]] = {
    "Mode": Mode,
    "Registration": Registration,
    "Analysis": Analysis,
    "Spending": Spending,
    "Role": Role,
    "Direction": Direction,
    "VerdictKind": VerdictKind,
    "DecisionKind": DecisionKind,
    "GoalType": GoalType,
    "AlertKind": AlertKind,
}
"""Every concept by name: what the dashboard's vocabulary and the OpenAPI enums are checked
against."""
