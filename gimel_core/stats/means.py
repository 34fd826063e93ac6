"""Means from per-arm sums: revenue per visitor and CUPED, with no user rows kept.

An arm is summarised by its participants ``n`` and, over them, ``sum y`` and ``sum y^2``,
``y`` a participant's total on a goal (0 without one; 0/1 for a binary goal); with a
pre-experiment covariate ``x`` also ``sum x``, ``sum x^2`` and ``sum xy``. These sums add up
across days and shards, and are all the statistics below need.

Against the control (arm 0), the relative uplift ``m1 / m0 - 1`` has the delta-method variance
``v1 / (m0^2 n1) + v0 m1^2 / (m0^4 n0)``, ``v`` the sample variances (n - 1 denominator).
Its fixed-horizon test is Welch's: the two-sided p-value and interval come from Student's t
(:mod:`.student`) with the Welch-Satterthwaite degrees of freedom of the two means,
``(v1/n1 + v0/n0)^2 / (v1^2 / (n1^2 (n1-1)) + v0^2 / (n0^2 (n0-1)))``, applied to the
relative uplift and its variance. Its always-valid interval and p-value are the confidence
sequence of :mod:`.sequential` (normal, with its mixture tuned to ``tuning`` participants).

CUPED (Deng, Xu, Kohavi and Walker 2013, "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data", WSDM '13) replaces ``y`` by ``y - theta x``.
``theta = cov(x, y) / var(x)`` is estimated once from both arms pooled (their sums added, so
one theta serves both and the difference stays unbiased), each arm's adjusted variance is
``v_y + theta^2 v_x - 2 theta c_xy``, and with the optimal theta that is ``(1 - rho^2) v_y``.
The uplift is the difference of the adjusted means over the control's unadjusted mean, its
variance the formula above with adjusted variances and unadjusted means, and the tests then
run unchanged (the Welch degrees of freedom from the adjusted variances).

Every figure follows GrowthBook's engine (``gbstats`` 0.8.0: ``SampleMeanStatistic`` and
``RegressionAdjustedStatistic`` under ``TwoSidedTTest`` and ``SequentialTwoSidedTTest``, relative
difference), which the tests use as the oracle. Two departures, both in degenerate data: a
variance below ``ROUNDING`` times the arm's mean square is rounding noise of sums of equal
values and counts as zero (gbstats trusts it and reports p-values near 0), and a covariate
without variance gives theta 0 by that same rule; an adjusted control mean of exactly 0 does
not stop the test, since the uplift divides by the unadjusted one.

As everywhere in :mod:`gimel_core.stats`, a statistic that does not exist is ``None``, never
NaN or infinity: fewer than 2 participants in an arm, a control mean of 0, a variance of 0
(a constant ``y``), or sums no sample can produce (negative counts or squares, non-finite
values, or a variance below 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import student
from .sequential import ALPHA, TUNING, always_valid

ROUNDING = 1e-12
"""A variance at most this fraction of the mean square is taken as 0 (float cancellation)."""


def _sample_variance(n: int, total: float, squares: float) -> float | None:
    """The n - 1 variance from sums; None below 2 participants, at 0 or at rounding noise."""
    if n < 2:
        return None
    variance = (squares - total * total / n) / (n - 1)
    if not math.isfinite(variance) or variance <= ROUNDING * squares / n:
        return None
    return variance


@dataclass(frozen=True, slots=True)
class Sums:
    """One arm's sums: ``n`` participants, their values ``y`` and covariate ``x`` (0 if none)."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    @property
    def valid(self) -> bool:
        """Sums some sample could produce: finite, ``n >= 0``, squares >= 0."""
        values = (self.sum_y, self.sum_y2, self.sum_x, self.sum_x2, self.sum_xy)
        return (
            self.n >= 0
            and all(math.isfinite(v) for v in values)
            and self.sum_y2 >= 0.0
            and self.sum_x2 >= 0.0
        )

    @property
    def mean(self) -> float | None:
        """Mean of y; None without participants."""
        return self.sum_y / self.n if self.valid and self.n > 0 else None

    @property
    def variance(self) -> float | None:
        """Sample variance of y (n - 1 denominator); None below 2 participants or at 0."""
        return _sample_variance(self.n, self.sum_y, self.sum_y2) if self.valid else None

    def __add__(self, other: Sums) -> Sums:
        """Both arms pooled, as one sample."""
        return Sums(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_y2 + other.sum_y2,
            self.sum_x + other.sum_x,
            self.sum_x2 + other.sum_x2,
            self.sum_xy + other.sum_xy,
        )


@dataclass(frozen=True, slots=True)
class Inference:
    """An interval for the uplift and the two-sided p-value of "no difference"."""

    ci: tuple[float, float]
    p_value: float


@dataclass(frozen=True, slots=True)
class Uplift:
    """The relative uplift of an arm over the control, with what its tests need.

    ``variance`` is the uplift's delta-method variance, ``dof`` the Welch-Satterthwaite
    degrees of freedom of the two means, ``participants`` both arms' together.
    """

    uplift: float
    variance: float
    dof: float
    participants: int

    def fixed(self, alpha: float = ALPHA) -> Inference:
        """Welch's two-sided test: valid at one look planned in advance."""
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        se = math.sqrt(self.variance)
        half = student.quantile(1.0 - alpha / 2.0, self.dof) * se
        p_value = student.two_sided_p(self.uplift / se, self.dof)
        return Inference((self.uplift - half, self.uplift + half), p_value)

    def sequential(self, tuning: float = TUNING, alpha: float = ALPHA) -> Inference:
        """The always-valid interval and p-value (:mod:`.sequential`): valid at every look."""
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not tuning > 0:
            raise ValueError("tuning must be positive")
        half, p_value = always_valid(self.uplift, self.variance, self.participants, tuning, alpha)
        return Inference((self.uplift - half, self.uplift + half), p_value)


def _uplift(
    n1: int,
    mean1: float,
    adjusted1: float,
    var1: float,
    n0: int,
    mean0: float,
    adjusted0: float,
    var0: float,
) -> Uplift | None:
    """gbstats' relative difference: adjusted means over the control's unadjusted mean."""
    if mean0 == 0.0:
        return None
    uplift = (adjusted1 - adjusted0) / mean0
    # Divisions one at a time and no powers: tiny or huge sums give inf (then None), not an error.
    ratio = mean1 / mean0
    a1, a0 = var1 / n1, var0 / n0
    variance = (a1 + a0 * ratio * ratio) / mean0 / mean0
    w1, w0 = a1 / (a1 + a0), a0 / (a1 + a0)  # Welch-Satterthwaite, in shares of the sum
    dof = 1.0 / (w1 * w1 / (n1 - 1) + w0 * w0 / (n0 - 1))
    if not all(math.isfinite(v) for v in (uplift, variance, dof)) or not variance > 0.0:
        return None
    return Uplift(uplift, variance, dof, n1 + n0)


def relative_uplift(arm: Sums, control: Sums) -> Uplift | None:
    """``mean / control mean - 1`` with its variance, unadjusted.

    None when it does not exist: invalid sums, an arm below 2 participants or of a variance 0,
    or a control mean of 0.
    """
    mean1, mean0 = arm.mean, control.mean
    var1, var0 = arm.variance, control.variance
    if mean1 is None or mean0 is None or var1 is None or var0 is None:
        return None
    return _uplift(arm.n, mean1, mean1, var1, control.n, mean0, mean0, var0)


@dataclass(frozen=True, slots=True)
class Cuped:
    """The CUPED-adjusted comparison of an arm with the control.

    ``theta`` is the pooled regression slope of y on x (0 when x has no variance, which
    leaves every figure unadjusted); ``mean`` and ``control_mean`` the adjusted means
    ``mean y - theta mean x``. ``unadjusted`` is :func:`relative_uplift`'s figure, None where
    only the adjusted one exists (an arm whose y is constant while y - theta x is not), and
    ``variance_reduction`` is ``1 - adjusted.variance / unadjusted.variance``, about ``rho^2``
    (the squared correlation of x and y) on large samples; below 0 if the adjustment hurts.
    """

    theta: float
    mean: float
    control_mean: float
    adjusted: Uplift
    unadjusted: Uplift | None
    variance_reduction: float | None


def _moments(arm: Sums) -> tuple[float | None, float | None, float]:
    """Variance of x and of y, and their covariance (n - 1 denominators)."""
    n = arm.n
    covariance = (arm.sum_xy - arm.sum_x * arm.sum_y / n) / (n - 1) if n >= 2 else 0.0
    return _sample_variance(n, arm.sum_x, arm.sum_x2), arm.variance, covariance


def theta(arm: Sums, control: Sums) -> float:
    """The CUPED slope ``cov(x, y) / var(x)`` of both arms pooled, as gbstats computes it.

    The pooled sums make one sample of both arms (the difference in means between them is
    part of it), so theta is the same for both. 0 when x or y has no variance pooled, or
    for sums that no sample could produce.
    """
    pooled = arm + control
    if not pooled.valid:
        return 0.0
    x_variance, y_variance, covariance = _moments(pooled)
    if x_variance is None or y_variance is None:
        return 0.0
    slope = covariance / x_variance
    return slope if math.isfinite(slope) else 0.0


def cuped(arm: Sums, control: Sums) -> Cuped | None:
    """The uplift with y regressed on the covariate x (Deng et al. 2013), and its gain.

    None when the adjusted uplift does not exist: invalid sums, an arm below 2 participants,
    a control mean of 0, or an adjusted variance of 0 in an arm (y exactly linear in x, or
    constant with x absent). Without a covariate (x all 0) theta is 0 and the figures are
    :func:`relative_uplift`'s.
    """
    if not (arm.valid and control.valid) or arm.n < 2 or control.n < 2:
        return None
    mean1, mean0 = arm.sum_y / arm.n, control.sum_y / control.n
    slope = theta(arm, control)
    adjusted_means = []
    adjusted_variances = []
    for sums, mean in ((arm, mean1), (control, mean0)):
        x_variance, y_variance, covariance = _moments(sums)
        variance = (
            (y_variance or 0.0) + slope * slope * (x_variance or 0.0) - 2.0 * slope * covariance
        )
        if not variance > ROUNDING * (y_variance or 0.0) or not math.isfinite(variance):
            return None
        adjusted_means.append(mean - slope * sums.sum_x / sums.n)
        adjusted_variances.append(variance)
    adjusted = _uplift(
        arm.n,
        mean1,
        adjusted_means[0],
        adjusted_variances[0],
        control.n,
        mean0,
        adjusted_means[1],
        adjusted_variances[1],
    )
    if adjusted is None:
        return None
    unadjusted = relative_uplift(arm, control)
    reduction = None if unadjusted is None else 1.0 - adjusted.variance / unadjusted.variance
    return Cuped(slope, adjusted_means[0], adjusted_means[1], adjusted, unadjusted, reduction)
