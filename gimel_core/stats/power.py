"""Power, minimum detectable effect and days remaining: what an experiment's plan can show.

The test planned for is the one Gimel reports on the relative uplift ``r - 1``, ``r`` the ratio
of the variant's mean (a goal's conversion rate) to the control's: a z-test of ``r - 1`` with
the delta-method variance (GrowthBook's relative variance, as :mod:`.sequential` computes it)

    v1 / (m0^2 n1) + v0 r^2 / (m0^2 n0)  +  r^2 (c1 + c0)

where ``m0`` is the control's mean, ``v1`` and ``v0`` the per-participant variances of the two
arms (a rate's ``p (1 - p)``, at the control rate and at the rate the effect implies), ``n1`` and
``n0`` their participants, and ``c1``, ``c0`` each arm's counting variance of its log rate
(:func:`.counting_error.rate_variance`: 0 for exact counts). The counting error does not shrink
with more participants, so in ``hll`` mode power levels off and some effects are never reached.

Sequential analysis pays for its freedom to look every day with a wider interval: at ``N``
participants in the two arms its half-width is ``se * sqrt((x + 1) / x * (ln(x + 1) - 2 ln
alpha))``, ``x = N rho^2`` (:mod:`.sequential`), against ``se * z`` fixed. As GrowthBook's power
calculator does, the standard error is padded by the ratio of the two and the fixed-design
formula applied, i.e. the power of one look at the planned size: a lower bound (every earlier
look is another chance to stop) that stays comparable to the fixed figure.

Group-sequential analysis pays for its looks with a final bound above ``z``: the standard error
is padded by the ratio of the bound at the planned size (``final_bound``, from the looks so
far and the daily looks still to come) to ``z``, the power of the final look alone. That is a
lower bound too (an earlier look may stop first), within a few points of the design's power
for O'Brien-Fleming spending, which spends almost nothing early.

Power is the textbook two-sided one, ``P(Z > z - d / se) + P(Z < -z - d / se)`` for an effect
``d``; the MDE and the participants needed ask for a significant result in the effect's own
direction, ``d / se >= z + z_power`` (a result of the wrong sign detects nothing), as
GrowthBook's MDE does. Both at level alpha per comparison of a variant with the control (no
adjustment across variants: pass a smaller alpha for one). A rate's variance in the variant is
taken at the rate the effect implies, where GrowthBook's calculator keeps the control's (pass
``variance`` to get its figures). These are normal approximations, like every statistic here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from ..vocabulary import Analysis, Direction, Mode
from .counting_error import rate_variance
from .sequential import ALPHA, TUNING, _mixture_precision

POWER = 0.8
"""The power a plan aims at, unless told otherwise."""
MAX_PARTICIPANTS = 10**12
"""Beyond this many participants an effect counts as out of reach."""
MAX_LIFT = 1e6
"""The largest relative increase searched for a metric that is not a rate."""

_NORMAL = NormalDist()
_STEP = 1.5
"""Ratio of successive sizes or effects scanned before bisecting (see :func:`_first`)."""


@dataclass(frozen=True, slots=True)
class Design:
    """What a plan fixes about one goal's comparison of one variant with the control.

    ``mean`` is the control's mean: a goal's conversion rate. ``variance`` is None for a rate
    (binomial: ``p (1 - p)`` in each arm at its own rate) or the per-participant variance of a
    metric that is not a rate, the same in both arms. Participants are split evenly over
    ``variants`` (control included) unless ``shares`` gives the (variant, control) fractions of
    all participants. ``counting`` is the experiment's counting mode: ``hll`` adds the
    HyperLogLog counting error of both counts of each arm at the size considered.
    """

    mean: float
    variance: float | None = None
    variants: int = 2
    shares: tuple[float, float] | None = None
    alpha: float = ALPHA
    analysis: Analysis = Analysis.SEQUENTIAL
    tuning: float = TUNING
    counting: Mode | None = None
    final_bound: float | None = None
    """Group-sequential analysis: the bound at the planned size (None: as fixed)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.analysis not in tuple(Analysis):
            raise ValueError(f"analysis must be one of {', '.join(Analysis)}")
        if not self.tuning > 0:
            raise ValueError("tuning must be positive")
        if self.final_bound is not None and not self.final_bound > 0:
            raise ValueError("final_bound must be positive")
        if self.variants < 2:
            raise ValueError("an experiment compares at least two variants")
        if self.variance is not None:
            if not self.variance >= 0.0:
                raise ValueError("variance must be >= 0")
            if self.counting == Mode.HLL:
                raise ValueError("hll counting error is modelled for conversion rates only")
        if self.shares is not None and not (
            self.shares[0] > 0
            and self.shares[1] > 0
            and self.shares[0] + self.shares[1] <= 1.0 + 1e-9
        ):
            raise ValueError("shares must be positive fractions of all participants")

    def arms(self, participants: float) -> tuple[float, float]:
        """Participants of the variant and of the control among ``participants`` in all."""
        if self.shares is None:
            return participants / self.variants, participants / self.variants
        return participants * self.shares[0], participants * self.shares[1]


def standard_error(design: Design, lift: float, participants: float) -> float | None:
    """Standard error of the uplift estimate, padded for sequential analysis, with ``lift``
    the true relative effect and ``participants`` over all variants.

    ``z`` times it is the half-width of the interval the analysis reports at that size
    (:func:`.sequential.sequential_uplift` for ``sequential``). None where the statistic does
    not exist: no participant in an arm, a mean <= 0, a rate outside (0, 1) or an effect that
    takes it outside [0, 1].
    """
    m0 = design.mean
    m1 = m0 * (1.0 + lift)
    n1, n0 = design.arms(participants)
    if not (m0 > 0.0 and n1 >= 1.0 and n0 >= 1.0):
        return None
    if design.variance is None:
        if not (m0 < 1.0 and 0.0 <= m1 <= 1.0):
            return None
        v0, v1 = m0 * (1.0 - m0), m1 * (1.0 - m1)
    else:
        v0 = v1 = design.variance
    r = 1.0 + lift
    variance = (v1 / n1 + v0 * r * r / n0) / (m0 * m0)
    if design.counting == Mode.HLL:
        t1, t0 = round(n1), round(n0)
        counting = rate_variance(round(m1 * t1), t1, Mode.HLL) + rate_variance(
            round(m0 * t0), t0, Mode.HLL
        )
        variance += r * r * counting
    if design.analysis == Analysis.SEQUENTIAL:
        variance *= _padding(n1 + n0, design.tuning, design.alpha)
    elif design.analysis == Analysis.GROUP_SEQUENTIAL and design.final_bound is not None:
        z = _NORMAL.inv_cdf(1.0 - design.alpha / 2.0)
        variance *= (design.final_bound / z) ** 2
    return math.sqrt(variance)


def _padding(participants: float, tuning: float, alpha: float) -> float:
    """(sequential half-width / fixed half-width)^2 at this many participants in both arms."""
    x = participants * _mixture_precision(1, tuning, alpha)  # x = N rho^2
    z = _NORMAL.inv_cdf(1.0 - alpha / 2.0)
    return (x + 1.0) / x * (math.log1p(x) - 2.0 * math.log(alpha)) / (z * z)


def power(design: Design, lift: float, participants: float) -> float | None:
    """Chance that the analysis finds a true relative effect ``lift`` (signed: -0.05 is a 5%
    decrease) significant at ``participants`` over all variants. alpha at ``lift`` 0."""
    se = standard_error(design, lift, participants)
    if se is None:
        return None
    z = _NORMAL.inv_cdf(1.0 - design.alpha / 2.0)
    if se == 0.0:
        return 1.0 if lift else design.alpha
    d = abs(lift) / se
    return min(1.0, _NORMAL.cdf(d - z) + _NORMAL.cdf(-d - z))


def mde(
    design: Design,
    participants: float,
    target: float = POWER,
    direction: Direction = Direction.INCREASE,
) -> float | None:
    """Minimum detectable effect: the smallest relative change (a positive fraction, in the
    goal's ``direction``) found significant in that direction with chance ``target`` at
    ``participants`` over all variants. (A significant result of the wrong sign detects
    nothing; :func:`power`, the textbook two-sided power, also counts it: 1e-6 at 80%.)

    None when no change reaches it: too few participants for the metric's noise (or, in
    ``hll`` mode, for the counting error), or a rate that cannot move that far.
    """
    _check_target(design, target)
    if direction not in tuple(Direction):
        raise ValueError(f"direction must be one of {', '.join(Direction)}")
    sign = 1.0 if direction == Direction.INCREASE else -1.0
    if direction == Direction.DECREASE:
        high = 1.0
    elif design.variance is None:
        if not 0.0 < design.mean < 1.0:
            return None
        high = 1.0 / design.mean - 1.0
    else:
        high = MAX_LIFT

    def reaches(lift: float) -> bool:
        return _detects(design, sign * lift, participants, target)

    return _first(reaches, 1e-9, high, integer=False)


def participants_needed(
    design: Design, lift: float, target: float = POWER, limit: int = MAX_PARTICIPANTS
) -> int | None:
    """The fewest participants over all variants at which the effect ``lift`` is found
    significant in its direction with chance ``target`` (as in :func:`mde`, its inverse).

    None beyond ``limit``: in ``hll`` mode the counting error sets a floor under the standard
    error, so an effect too close to it is never reached.
    """
    _check_target(design, target)
    if lift == 0.0:
        return None
    smallest = design.variants if design.shares is None else 1.0 / min(design.shares)

    def reaches(n: float) -> bool:
        return _detects(design, lift, n, target)

    found = _first(reaches, math.ceil(smallest), float(limit), integer=True)
    return None if found is None else int(found)


def days_remaining(needed: int | None, observed: int, days: float) -> float | None:
    """Days until ``needed`` participants at the rate of the ``observed`` ones over the
    ``days`` the experiment has run. 0 once reached; None without a target or a rate."""
    if needed is None:
        return None
    if observed >= needed:
        return 0.0
    if observed <= 0 or not days > 0:
        return None
    return (needed - observed) * days / observed


@dataclass(frozen=True, slots=True)
class Outlook:
    """A plan's figures for one goal: the MDE at the planned size, the power for the declared
    MDE there, the participants that MDE needs and the days until then (None: not known)."""

    mde: float | None
    power: float | None
    needed: int | None
    days_remaining: float | None


def outlook(
    design: Design,
    planned_participants: int | None,
    declared_mde: float | None,
    observed: int,
    days: float,
    direction: Direction = Direction.INCREASE,
    target: float = POWER,
) -> Outlook:
    """The figures of one goal's decision line, from its plan and its history so far.

    Days remaining count toward the participants the declared MDE needs (more for sequential
    analysis and for ``hll`` counts) or, without a declared MDE, toward the planned size.
    """
    if direction not in tuple(Direction):
        raise ValueError(f"direction must be one of {', '.join(Direction)}")
    lift = None
    if declared_mde is not None:
        lift = declared_mde if direction == Direction.INCREASE else -declared_mde
    at_plan = None
    power_at_plan = None
    if planned_participants is not None:
        at_plan = mde(design, planned_participants, target, direction)
        if lift is not None:
            power_at_plan = power(design, lift, planned_participants)
    needed = planned_participants if lift is None else participants_needed(design, lift, target)
    return Outlook(at_plan, power_at_plan, needed, days_remaining(needed, observed, days))


def _detects(design: Design, lift: float, participants: float, target: float) -> bool:
    """Whether the chance of a significant result in the effect's own direction is at least
    ``target``: ``|lift| / se >= z_{1 - alpha/2} + z_target``."""
    se = standard_error(design, lift, participants)
    if se is None:
        return False
    needed = _NORMAL.inv_cdf(1.0 - design.alpha / 2.0) + _NORMAL.inv_cdf(target)
    return abs(lift) >= needed * se


def _check_target(design: Design, target: float) -> None:
    if not design.alpha < target < 1.0:
        raise ValueError("target power must be in (alpha, 1)")


def _first(
    reaches: Callable[[float], bool], low: float, high: float, integer: bool
) -> float | None:
    """The smallest x in [low, high] where ``reaches`` holds, or None.

    Scanned upward in steps of ``_STEP`` (power need not rise forever: in ``hll`` mode the
    counting error and the sequential padding grow with the size), then bisected between the
    last point short of it and the first reaching it: to the integer, or to 1e-12 relative.
    """
    previous = None
    x = low
    while True:
        if reaches(x):
            break
        if x >= high:
            return None
        previous = x
        x = min(high, math.ceil(x * _STEP) if integer else x * _STEP)
    if previous is None:
        return x
    lo, hi = previous, x
    while hi - lo > (1.0 if integer else 1e-12 * hi):
        mid = math.floor((lo + hi) / 2) if integer else (lo + hi) / 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi
