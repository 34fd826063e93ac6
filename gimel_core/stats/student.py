"""Student's t distribution at real degrees of freedom (Welch's), in the standard library only.

The two-sided tail ``P(|T| > t) = I_x(dof / 2, 1 / 2)``, ``x = dof / (dof + t^2)``, is the
regularized incomplete beta function, computed by its continued fraction (modified Lentz), or
through ``1 - I_{1-x}(1 / 2, dof / 2)`` on the side where that one converges. Two guards keep
it near machine precision where the textbook code loses digits: ``1 - x`` is computed as
``t^2 / (dof + t^2)`` (not by subtraction), and ``ln B(dof / 2, 1 / 2)`` takes
``ln Gamma(a + 1/2) - ln Gamma(a)`` from Stirling's series for large ``a`` instead of the
difference of two huge ``lgamma`` values. Beyond ``_LARGE_DOF`` the continued fraction itself
loses digits (its terms approach 1), so Fisher's expansion to the order ``1 / dof^2`` takes
over (its next term is below 1e-13 there):

    F(t) = Phi(t) - phi(t) ((t^3 + t) / (4 dof) + (3t^7 - 7t^5 - 5t^3 - 3t) / (96 dof^2))

Against scipy's ``t`` (Boost's) the tail agrees within about 1e-13 at any ``dof >= 0.5``.
The quantile is found by safeguarded Newton steps on that tail.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_NORMAL = NormalDist()
_LARGE_DOF = 1e5
"""Above this many degrees of freedom the tail comes from Fisher's expansion."""
_TINY = 1e-300
_LN_SQRT_PI = 0.5 * math.log(math.pi)


def _stirling_tail(z: float) -> float:
    """``ln Gamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2)`` for z >= 20 (error below 1e-17)."""
    z2 = z * z
    return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / (1680 * z2)) / z2) / z2) / z


def _log_gamma_half_ratio(a: float) -> float:
    """``ln Gamma(a + 1/2) - ln Gamma(a)`` without the cancellation of two large lgammas."""
    if a < 20.0:
        return math.lgamma(a + 0.5) - math.lgamma(a)
    return (
        a * math.log1p(0.5 / a)
        + 0.5 * math.log(a)
        - 0.5
        + _stirling_tail(a + 0.5)
        - _stirling_tail(a)
    )


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (_TINY if abs(d) < _TINY else d)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (_TINY if abs(d) < _TINY else d)
            c = 1.0 + aa / c
            c = _TINY if abs(c) < _TINY else c
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def two_sided_p(t: float, dof: float) -> float:
    """``P(|T| > |t|)`` for T Student-distributed with ``dof`` (> 0, real) degrees of freedom."""
    if not dof > 0.0:
        raise ValueError("dof must be positive")
    t2 = t * t
    if t2 == 0.0:
        return 1.0
    if math.isinf(t2):
        return 0.0
    if dof > _LARGE_DOF:
        at = abs(t)
        correction = (at**3 + at) / (4.0 * dof) + (
            3.0 * at**7 - 7.0 * at**5 - 5.0 * at**3 - 3.0 * at
        ) / (96.0 * dof * dof)
        return max(0.0, 2.0 * (_NORMAL.cdf(-at) + _NORMAL.pdf(at) * correction))
    a = 0.5 * dof
    x = dof / (dof + t2)
    y = t2 / (dof + t2)
    log_front = (
        -a * math.log1p(t2 / dof) + 0.5 * math.log(y) - (_LN_SQRT_PI - _log_gamma_half_ratio(a))
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + 2.5):
        p = front * _beta_fraction(a, 0.5, x) / a
    else:
        p = 1.0 - front * _beta_fraction(0.5, a, y) / 0.5
    return min(1.0, max(0.0, p))


def _density(t: float, dof: float) -> float:
    a = 0.5 * dof
    return math.exp(
        _log_gamma_half_ratio(a)
        - _LN_SQRT_PI
        - 0.5 * math.log(dof)
        - (a + 0.5) * math.log1p(t * t / dof)
    )


def quantile(p: float, dof: float) -> float:
    """The ``p``-quantile of Student's t with ``dof`` degrees of freedom, ``0 < p < 1``."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if not dof > 0.0:
        raise ValueError("dof must be positive")
    if p == 0.5:
        return 0.0
    tail = 2.0 * min(p, 1.0 - p)  # solve two_sided_p(t) = tail for t > 0
    low, high = 0.0, max(1.0, abs(_NORMAL.inv_cdf(p)))
    while two_sided_p(high, dof) > tail:
        low, high = high, 2.0 * high
    t = 0.5 * (low + high)
    for _ in range(200):
        gap = two_sided_p(t, dof) - tail
        if gap > 0.0:
            low = t
        else:
            high = t
        slope = -2.0 * _density(t, dof)
        step = gap / slope if slope < 0.0 else 0.0
        following = t - step
        if not low < following < high:
            following = 0.5 * (low + high)
        if abs(following - t) <= 1e-15 * following or high - low <= 1e-15 * high:
            t = following
            break
        t = following
    return t if p > 0.5 else -t
