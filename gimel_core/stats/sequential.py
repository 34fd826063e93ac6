"""Always-valid inference for the relative uplift: an interval and a p-value to look at daily.

A fixed-horizon interval or p-value holds at one look planned in advance. Looked at every day
and stopped at the first "significant" day, an A/A test is declared a winner far more often
than 5%. A confidence sequence is a sequence of intervals that all hold at once with chance
1 - alpha, at every look, so a dashboard may be watched and stopped at will.

The one here is the asymptotic confidence sequence of Waudby-Smith, Arnold, Wu, Lindon, Ramdas
and Howard (2023), "Time-uniform central limit theory and asymptotic confidence sequences",
arXiv:2103.06476v7, as GrowthBook's ``SequentialTwoSidedTTest`` computes it for a binomial
metric (``gbstats`` on PyPI is the oracle of the tests). With ``N = n + n0`` participants in
both arms, ``se`` the delta-method standard error of the uplift and ``x = N rho^2``:

- half-width (their eq. 9): ``se * sqrt((x + 1) / x * (ln(x + 1) - 2 ln alpha))``;
- rho (their eq. 161) makes that boundary tightest at ``N = tuning`` participants (GrowthBook's
  N*, 5000 by default): ``rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / tuning``;
- p-value (their eq. 155), 1/E for the mixture e-value
  ``E = exp(x / (x + 1) * z^2 / 2) / sqrt(x + 1)``, ``z = uplift / se``, capped at 1.

The two are dual: p <= alpha exactly when the interval excludes 0. Both are asymptotic (normal
approximation of the estimate at each look), like every other statistic of this package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .proportions import clamp

ALPHA = 0.05
"""1 - CONFIDENCE: the chance that any interval of the sequence, at any look, misses."""
TUNING = 5000
"""GrowthBook's default N*: the total participants at which the interval is tightest."""


@dataclass(frozen=True, slots=True)
class Sequential:
    """One look: the relative uplift, its variance, its always-valid interval and p-value.

    ``variance`` is the uplift's delta-method variance, counting error included.
    """

    uplift: float
    variance: float
    ci: list[float]
    p_value: float


@dataclass(frozen=True, slots=True)
class Running:
    """The always-valid values through one look, given every look before it.

    ``collapsed`` is True at a look where the intersection of the intervals came out empty:
    ``ci`` is then that look's own interval (see :func:`running`).
    """

    ci: list[float] | None
    p_value: float | None
    collapsed: bool = False


def _mixture_precision(participants: int, tuning: float = TUNING, alpha: float = ALPHA) -> float:
    """``x = N rho^2``: the weight of the data against the normal mixture over effects.

    rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N* (eq. 161 of Waudby-Smith et al.).
    """
    log_alpha = math.log(alpha)
    return participants * (-2.0 * log_alpha + math.log1p(-2.0 * log_alpha)) / tuning


def sequential_uplift(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    tuning: float = TUNING,
    rse: float = 0.0,
    alpha: float = ALPHA,
) -> Sequential | None:
    """The uplift rate/control_rate - 1 with its confidence sequence at this look.

    Variance by the delta method on the ratio of rates r (GrowthBook's relative variance):
    ``p(1-p) / (n p0^2) + p0(1-p0) p^2 / (n0 p0^4)``, i.e. r^2 times the variance of log r.
    The counting error adds 2 rse^2 per arm to the variance of log r, as in
    :func:`.proportions.uplift_interval`, so ``4 rse^2 r^2`` here. The interval is symmetric on
    the ratio's scale (as GrowthBook's): with few participants its lower end can pass -1.

    None when the statistic does not exist: an arm without trials, a zero control rate, or a
    rate of 0 or 1 in either arm, whose estimated binomial variance 0 the normal approximation
    would trust blindly (GrowthBook declines those too).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if not tuning > 0:
        raise ValueError("tuning must be positive")
    if not rse >= 0.0:
        raise ValueError("rse must be >= 0")
    s1, n1 = clamp(successes, trials)
    s0, n0 = clamp(control_successes, control_trials)
    if not (0 < s1 < n1 and 0 < s0 < n0):
        return None
    p1 = s1 / n1
    p0 = s0 / n0
    ratio = p1 / p0
    uplift = (s1 * n0) / (s0 * n1) - 1.0
    variance = (
        p1 * (1.0 - p1) / (n1 * p0 * p0)
        + p0 * (1.0 - p0) * ratio * ratio / (n0 * p0 * p0)
        + 4.0 * rse * rse * ratio * ratio
    )
    half, p_value = always_valid(uplift, variance, n1 + n0, tuning, alpha)
    return Sequential(uplift, variance, [uplift - half, uplift + half], p_value)


def always_valid(
    estimate: float,
    variance: float,
    participants: int,
    tuning: float = TUNING,
    alpha: float = ALPHA,
) -> tuple[float, float]:
    """The confidence sequence's half-width and p-value for an asymptotically normal estimate
    of ``variance`` (> 0) at ``participants`` in both arms, against a null of 0.

    Any such estimate (a rate's uplift here, a mean's in :mod:`.means`) gets the same
    boundary, as GrowthBook's ``SequentialTwoSidedTTest`` gives every statistic.
    """
    x = _mixture_precision(participants, tuning, alpha)
    half = math.sqrt(variance * (x + 1.0) / x * (math.log1p(x) - 2.0 * math.log(alpha)))
    # ln E, kept in logs: exp(z^2 ...) overflows long before the p-value stops being 0.
    log_e = 0.5 * (x / (x + 1.0) * estimate * estimate / variance - math.log1p(x))
    p_value = 1.0 if log_e <= 0.0 else math.exp(-log_e)
    return half, p_value


def running(looks: Iterable[Sequential | None]) -> list[Running]:
    """The always-valid values after each of successive looks (daily snapshots, in order).

    Every interval of a confidence sequence holds at once with chance 1 - alpha, so on that
    event the uplift is in their intersection too: the running intersection is as valid as
    each look and never wider. The p-value is 1/E for an e-process E, and Ville's inequality
    bounds the chance that E ever exceeds 1/alpha by alpha, so the running minimum of the
    p-values is valid too and never rises. Both assume the looks are of one experiment since
    its last reset, the counts cumulative.

    An empty intersection means the sequence missed at some look: a chance of alpha at most
    if the model holds, more often a sign that the effect changed over time (a novelty effect,
    another audience) or of counts off by more than the model allows. Rather than invent an
    interval, the running one then collapses to the latest look's, computed on the most
    data and valid by itself, with ``collapsed`` set; later looks intersect with that.

    A look without a statistic (None) carries the previous values over.
    """
    out: list[Running] = []
    through: Running | None = None
    for look in looks:
        through = step(through, look)
        out.append(through)
    return out


def step(through: Running | None, look: Sequential | None) -> Running:
    """The running values after one more look, from those through the previous one (None
    before the first): :func:`running`, one look at a time."""
    ci = through.ci if through else None
    p_value = through.p_value if through else None
    if look is None:
        return Running(ci, p_value)
    low, high = look.ci
    collapsed = False
    if ci is not None:
        low, high = max(low, ci[0]), min(high, ci[1])
        if low > high:
            low, high = look.ci
            collapsed = True
    p_value = look.p_value if p_value is None else min(p_value, look.p_value)
    return Running([low, high], p_value, collapsed)
