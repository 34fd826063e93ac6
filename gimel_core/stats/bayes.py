"""Bayesian chance to beat the control: P(rate_variant > rate_control), Beta(1, 1) priors.

With counting error (``hll``) each posterior is multiplied by a log-normal counting factor
whose log has the arm's counting variance (:func:`.counting_error.rate_variance`).
"""

from __future__ import annotations

import math
from functools import lru_cache

from .proportions import clamp, unit

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
_LOG_1E250 = 250.0 * math.log(10.0)
# Chance to beat: exact sum below this smallest Beta parameter (cost: that many terms), an
# Edgeworth expansion above (error < 0.001 there). Below it, with counting noise: the
# noise-to-posterior variance ratio under which the noise is ignored (error < 0.001), and the
# skewness and kurtosis under which Edgeworth is still used (else: saddlepoint).
_EXACT_BELOW = 20
_NEGLIGIBLE_NOISE = 0.005
_EDGEWORTH_SKEW = 0.3
_EDGEWORTH_KURTOSIS = 0.2


def _exact_sum(a_a: float, b_a: float, a_b: int, b_b: float) -> float:
    """P(X_B > X_A) for X ~ Beta, a_b an integer: the closed form as a sum of a_b terms.

    Term i is B(a_a + i, b_a + b_b) / ((b_b + i) B(1 + i, b_b) B(a_a, b_a)) (Evan Miller's
    formula); consecutive terms have a rational ratio, so only the first needs lgamma.
    """
    log_first = (
        math.lgamma(b_a + b_b)
        + math.lgamma(a_a + b_a)
        - math.lgamma(a_a + b_a + b_b)
        - math.lgamma(b_a)
    )
    n = a_a + b_a + b_b
    term = total = 1.0
    log_scale = 0.0
    for i in range(a_b - 1):
        term *= (a_a + i) * (b_b + i) / ((n + i) * (1.0 + i))
        total += term
        if total > 1e250:  # only with astronomically large counts
            term *= 1e-250
            total *= 1e-250
            log_scale += _LOG_1E250
    return math.exp(min(0.0, log_first + math.log(total) + log_scale))


def _beta_exact(a_v: int, b_v: int, a_c: int, b_c: int) -> float:
    """P(X_v > X_c) exactly, summing over the smallest of the four parameters."""
    smallest = min(a_v, b_v, a_c, b_c)
    if smallest == a_v:
        p = _exact_sum(a_c, b_c, a_v, b_v)
    elif smallest == a_c:
        p = 1.0 - _exact_sum(a_v, b_v, a_c, b_c)
    elif smallest == b_c:  # 1 - X ~ Beta(b, a) reverses the comparison
        p = _exact_sum(b_v, a_v, b_c, a_c)
    else:
        p = 1.0 - _exact_sum(b_c, a_c, b_v, a_v)
    return unit(p)


def _beta_cumulants(a: float, b: float) -> tuple[float, float, float, float]:
    """Mean, variance, third and fourth cumulants of Beta(a, b)."""
    n = a + b
    ab = a * b
    v = ab / (n * n * (n + 1.0))
    k3 = 2.0 * (b - a) * v / (n * (n + 2.0))
    k4 = 6.0 * v * v * ((a - b) ** 2 * (n + 1.0) - ab * (n + 2.0)) / (ab * (n + 2.0) * (n + 3.0))
    return a / n, v, k3, k4


@lru_cache(maxsize=8)
def _noise_coefficients(s2: float) -> tuple[float, ...]:
    """Moments of W, log W ~ N(0, s2), as they enter the central moments of X * W."""
    omega1 = math.expm1(s2)
    omega = 1.0 + omega1
    mu = math.sqrt(omega)
    c2 = omega * omega1  # central moments of W
    c3 = omega**1.5 * omega1 * omega1 * (omega + 2.0)
    c4 = omega * omega * omega1 * omega1 * (omega**4 + 2.0 * omega**3 + 3.0 * omega * omega - 3.0)
    return (
        mu,
        c2,
        c3,
        c4,
        mu * mu + c2,  # E (mu + V)^2
        mu**3 + 3.0 * mu * c2 + c3,  # E (mu + V)^3
        3.0 * (2.0 * mu * c2 + c3),  # 3 E (mu + V)^2 V
        mu**4 + 6.0 * mu * mu * c2 + 4.0 * mu * c3 + c4,  # E (mu + V)^4
        4.0 * (3.0 * mu * mu * c2 + 3.0 * mu * c3 + c4),  # 4 E (mu + V)^3 V
        6.0 * (mu * mu * c2 + 2.0 * mu * c3 + c4),  # 6 E (mu + V)^2 V^2
    )


def _cumulants(a: float, b: float, s2: float) -> tuple[float, float, float, float]:
    """Mean, variance, third and fourth cumulants of X * W, X ~ Beta(a, b), log W ~ N(0, s2)."""
    m, v, k3, k4 = _beta_cumulants(a, b)
    if s2 == 0.0:
        return m, v, k3, k4
    # Y - m mu = U (mu + V) + m V, with U = X - m and V = W - mu central and independent.
    mu, c2, c3, c4, e2, e3, e21, e4, e31, e22 = _noise_coefficients(s2)
    mm = m * m
    mu2 = v * e2 + mm * c2
    mu3 = k3 * e3 + v * m * e21 + mm * m * c3
    mu4 = (k4 + 3.0 * v * v) * e4 + k3 * m * e31 + v * mm * e22 + mm * mm * c4
    return m * mu, mu2, mu3, mu4 - 3.0 * mu2 * mu2


def _edgeworth(k1: float, k2: float, k3: float, k4: float) -> float:
    """P(D > 0) from the cumulants of D, by the second-order Edgeworth expansion."""
    sd = math.sqrt(k2)
    z = -k1 / sd
    g1 = k3 / (k2 * sd)
    g2 = k4 / (k2 * k2)
    z2 = z * z
    density = math.exp(-0.5 * z2) / _SQRT2PI
    cdf = 0.5 * math.erfc(-z / _SQRT2) - density * (
        g1 / 6.0 * (z2 - 1.0)
        + g2 / 24.0 * z * (z2 - 3.0)
        + g1 * g1 / 72.0 * z * (z2 * z2 - 10.0 * z2 + 15.0)
    )
    return unit(1.0 - cdf)


def _polygammas(x: float) -> tuple[float, float, float, float]:
    """Digamma and its first three derivatives: recurrence up to 10, then asymptotic series."""
    r0 = r1 = r2 = r3 = 0.0
    while x < 10.0:
        inv = 1.0 / x
        inv2 = inv * inv
        r0 -= inv
        r1 += inv2
        r2 -= 2.0 * inv2 * inv
        r3 += 6.0 * inv2 * inv2
        x += 1.0
    inv = 1.0 / x
    f = inv * inv
    psi = (
        math.log(x)
        - 0.5 * inv
        - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    )
    psi1 = inv + f / 2 + f * inv * (1 / 6 - f * (1 / 30 - f * (1 / 42 - f * (1 / 30 - f * 5 / 66))))
    psi2 = -f - f * inv - f * f * (1 / 2 - f * (1 / 6 - f * (1 / 6 - f * (3 / 10 - f * 5 / 6))))
    psi3 = 2 * f * inv + 3 * f * f + f * f * inv * (2 - f * (1 - f * (4 / 3 - f * (3 - f * 10))))
    return psi + r0, psi1 + r1, psi2 + r2, psi3 + r3


def _lgamma_diff(x: float, t: float) -> float:
    """lgamma(x + t) - lgamma(x) without cancellation when x is large."""
    y = x + t
    if x < 10.0 or y < 10.0:
        return math.lgamma(y) - math.lgamma(x)

    def tail(z: float) -> float:
        f = 1.0 / (z * z)
        return (1 / 12 - f * (1 / 360 - f * (1 / 1260 - f / 1680))) / z

    return (x - 0.5) * math.log1p(t / x) + t * math.log(y) - t + tail(y) - tail(x)


def _log_beta_cgf(a: float, b: float, t: float) -> tuple[float, float, float, float, float]:
    """Cumulant generating function of log X, X ~ Beta(a, b), and its first four derivatives.

    E[X^t] = B(a + t, b) / B(a, b). For a small integer b the polygamma differences are
    finite sums, exact and cheap.
    """
    n = a + b
    if b == int(b) and b <= 64:
        k0 = k1 = k2 = k3 = k4 = 0.0
        for j in range(int(b)):
            x = a + t + j
            inv = 1.0 / x
            inv2 = inv * inv
            k0 -= math.log1p(t / (a + j))
            k1 -= inv
            k2 += inv2
            k3 -= 2.0 * inv2 * inv
            k4 += 6.0 * inv2 * inv2
        return k0, k1, k2, k3, k4
    pa = _polygammas(a + t)
    pn = _polygammas(n + t)
    k0 = _lgamma_diff(a, t) - _lgamma_diff(n, t)
    return k0, pa[0] - pn[0], pa[1] - pn[1], pa[2] - pn[2], pa[3] - pn[3]


def _saddlepoint(a_v: float, b_v: float, a_c: float, b_c: float, noise: float) -> float:
    """P(log X_v - log X_c + N > 0), N ~ N(0, noise), by the second-order Lugannani-Rice formula.

    Used only where counting noise and a strongly skewed posterior (few successes or few
    failures) meet; the cumulant generating function is exact, so the approximation error is
    that of Lugannani-Rice (below 0.005, checked against numerical integration).
    """

    def cgf(t: float) -> tuple[float, float, float, float, float]:
        v = _log_beta_cgf(a_v, b_v, t)
        c = _log_beta_cgf(a_c, b_c, -t)
        return (
            v[0] + c[0] + noise * t * t / 2.0,
            v[1] - c[1] + noise * t,
            v[2] + c[2] + noise,
            v[3] - c[3],
            v[4] + c[4],
        )

    def tail(x: float) -> tuple[float, float]:
        lo, hi = -a_v, a_c
        t = 0.0
        k = cgf(t)
        for _ in range(200):
            g = k[1] - x
            if g > 0.0:
                hi = t
            else:
                lo = t
            step = t - g / k[2]  # Newton, kept inside the bracket by bisection
            if abs(step - t) <= 1e-14 * (1.0 + abs(t)):
                break
            if not lo < step < hi:
                step = 0.5 * (lo + hi)
            t = step
            k = cgf(t)
        k0, _, k2, k3, k4 = k
        w2 = max(0.0, 2.0 * (t * x - k0))
        w = math.copysign(math.sqrt(w2), t)
        u = t * math.sqrt(k2)
        l3 = k3 / k2**1.5
        l4 = k4 / (k2 * k2)
        if w == 0.0 or u == 0.0:
            return 0.5, 0.0
        corr = (
            1.0 / u
            - 1.0 / w
            + (l4 / 8.0 - 5.0 * l3 * l3 / 24.0) / u
            - l3 / (2.0 * u * u)
            - 1.0 / u**3
            + 1.0 / w**3
        )
        return 0.5 * math.erfc(w / _SQRT2) + math.exp(-0.5 * w2) / _SQRT2PI * corr, w

    p, w = tail(0.0)
    if abs(w) < 0.03:  # the formula is 0/0 at the mean: interpolate from both sides
        h = 0.04 * math.sqrt(cgf(0.0)[2])
        p = 0.5 * (tail(-h)[0] + tail(h)[0])
    return unit(p)


def chance_to_beat(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    variance: float = 0.0,
    control_variance: float = 0.0,
) -> float | None:
    """Posterior probability that the variant's rate exceeds the control's, Beta(1, 1) priors.

    Exact (a finite sum) when a Beta parameter is small, a second-order Edgeworth expansion
    otherwise: within 0.001 of the exact value at any counts, in a few microseconds. With
    counting error each posterior is multiplied by its log-normal counting factor (the
    variance of its log: ``variance``, ``control_variance``); where that noise meets a
    strongly skewed posterior, a saddlepoint approximation takes over (within 0.005; slower,
    ~50-100 microseconds, and rare: a rate near 1 in a small hll experiment, or a tiny variant
    against a huge control).
    """
    s1, n1 = clamp(successes, trials)
    s0, n0 = clamp(control_successes, control_trials)
    if not (n1 and n0):
        return None
    a_v, b_v, a_c, b_c = 1 + s1, 1 + n1 - s1, 1 + s0, 1 + n0 - s0
    s2_v, s2_c = variance, control_variance
    if a_v < _EXACT_BELOW or b_v < _EXACT_BELOW or a_c < _EXACT_BELOW or b_c < _EXACT_BELOW:
        if s2_v == 0.0 and s2_c == 0.0:
            return _beta_exact(a_v, b_v, a_c, b_c)
        # Counting noise is negligible when it is small next to the posterior variance of
        # log(rate), about b / (a (a + b + 1)), in both arms; or next to their sum, if no
        # posterior has the sharp edge at rate 1 that a noise of any size smooths (b < 3).
        var_v = b_v / (a_v * (n1 + 3))
        var_c = b_c / (a_c * (n0 + 3))
        if (s2_v < _NEGLIGIBLE_NOISE * var_v and s2_c < _NEGLIGIBLE_NOISE * var_c) or (
            b_v >= 3 and b_c >= 3 and s2_v + s2_c < _NEGLIGIBLE_NOISE * (var_v + var_c)
        ):
            return _beta_exact(a_v, b_v, a_c, b_c)
        v, c = _cumulants(a_v, b_v, s2_v), _cumulants(a_c, b_c, s2_c)
        k1 = v[0] - c[0]
        k2 = v[1] + c[1]
        if k1 * k1 > 499.0 * k2:  # decided: by Cantelli's inequality, P or 1 - P < 0.002
            bound = k2 / (k2 + k1 * k1)
            p = _edgeworth(k1, k2, v[2] - c[2], v[3] + c[3])
            return min(p, bound) if k1 < 0.0 else max(p, 1.0 - bound)
        if (abs(v[2]) + abs(c[2])) / k2**1.5 >= _EDGEWORTH_SKEW or (abs(v[3]) + abs(c[3])) / (
            k2 * k2
        ) >= _EDGEWORTH_KURTOSIS:
            return _saddlepoint(a_v, b_v, a_c, b_c, s2_v + s2_c)
    elif s2_v == 0.0 and s2_c == 0.0:
        v, c = _beta_cumulants(a_v, b_v), _beta_cumulants(a_c, b_c)
    else:
        v, c = _cumulants(a_v, b_v, s2_v), _cumulants(a_c, b_c, s2_c)
    return _edgeworth(v[0] - c[0], v[1] + c[1], v[2] - c[2], v[3] + c[3])
