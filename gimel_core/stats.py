"""Statistics on aggregated unique counts, in the standard library only.

``annotate`` adds to one experiment's results, per goal and variant, the conversion rate
with a 95% Wilson interval and, against the control, the relative uplift (with a 95%
interval), the two-sided p-value of the pooled two-proportion z-test, the same p-value
Holm-adjusted across the variants of the goal, and the Bayesian chance to beat the control
(Beta(1, 1) priors); per experiment, a sample-ratio-mismatch (SRM) test.

Counting error (``hll`` experiments). A Redis HyperLogLog count is modelled as the true count
times ``exp(e)``, ``e ~ N(0, RSE**2)``, ``RSE = 1.04 / sqrt(16384)``, independently per counter
(to first order the same as ``1 + e``). A rate is a ratio of two counts, so its log carries an
extra variance ``2 * RSE**2``; the delta method propagates that into every statistic: the
Wilson half-width is widened by it, the z-test and the uplift interval add it to the binomial
variance, SRM uses a chi-square statistic whose covariance is the multinomial one plus
``(RSE * count)**2`` per cell, and the posterior of each rate is the Beta posterior times the
log-normal counting factor. ``exact`` experiments use the textbook formulas unchanged.

Conventions: no NaN or infinity is ever returned (the output becomes JSON); a statistic that
does not exist is ``None``: a rate of a variant without trials, an uplift against a zero
control rate, a comparison of the control with itself, an SRM test of fewer than two
variants. Successes above trials (independent HLL counters, or goals without participation)
are counted as trials: every rate is capped at 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

HLL_RSE = 1.04 / math.sqrt(16384)  # relative standard error of a Redis HyperLogLog count
CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
SRM_ALPHA = 0.001
CONTROL_NAMES = ("control", "original")

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


# -- small pure functions --------------------------------------------------------------------


def _clamp(successes: int, trials: int) -> tuple[int, int]:
    n = int(trials)
    s = int(successes)
    if n < 0:
        n = 0
    if s > n:
        s = n
    elif s < 0:
        s = 0
    return s, n


def _unit(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def wilson(successes: int, trials: int, rse: float = 0.0, z: float = Z) -> list[float] | None:
    """Wilson score interval of a proportion, widened by counting error of relative size rse.

    Wilson rather than Wald: it stays inside [0, 1] and keeps its coverage at 0 or n
    successes. With rse > 0 the rate's counting variance 2 (rse p)^2 is added, in quadrature,
    to the half-width, so the interval is never narrower than the exact one.
    """
    s, n = _clamp(successes, trials)
    return _wilson(s, n, rse, z) if n else None


def _wilson(s: int, n: int, rse: float, z: float = Z) -> list[float]:
    p = s / n
    z2n = z * z / n
    denom = 1.0 + z2n
    center = (p + 0.5 * z2n) / denom
    half = z / denom * math.sqrt((p * (1.0 - p) + 0.25 * z2n) / n)
    if rse:
        half = math.hypot(half, z * _SQRT2 * rse * p)
    # Exact bounds at 0 and n successes (rounding would leave 1e-17).
    low = 0.0 if s == 0 or center <= half else center - half
    high = 1.0 if s == n or center + half >= 1.0 else center + half
    return [low, high]


def two_proportion_p(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, rse: float = 0.0
) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (counting variance added).

    Under the null both rates equal the pooled rate p; each observed rate then also carries
    the counting variance 2 (rse p)^2. Equal rates (including all-zero) give 1.
    """
    s1, n1 = _clamp(successes_a, trials_a)
    s0, n0 = _clamp(successes_b, trials_b)
    return _z_test(s1, n1, s0, n0, rse) if n1 and n0 else None


def _z_test(s1: int, n1: int, s0: int, n0: int, rse: float) -> float:
    diff = abs(s1 / n1 - s0 / n0)
    if diff == 0.0:
        return 1.0
    pooled = (s1 + s0) / (n1 + n0)
    var = pooled * ((1.0 - pooled) * (1.0 / n1 + 1.0 / n0) + 4.0 * rse * rse * pooled)
    return min(1.0, math.erfc(diff / math.sqrt(var) / _SQRT2))


def uplift_interval(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    rse: float = 0.0,
    z: float = Z,
) -> list[float] | None:
    """Interval of the relative uplift rate/control_rate - 1 (Katz log method).

    The log of a ratio of rates has variance 1/s - 1/n per arm (binomial, delta method) plus
    2 rse^2 per arm for the counting error. None when either arm has no success.
    """
    s1, n1 = _clamp(successes, trials)
    s0, n0 = _clamp(control_successes, control_trials)
    return _uplift_ci(s1, n1, s0, n0, rse, z) if s1 and s0 else None


def _uplift_ci(s1: int, n1: int, s0: int, n0: int, rse: float, z: float = Z) -> list[float]:
    log_ratio = math.log((s1 * n0) / (s0 * n1))
    se = math.sqrt(1.0 / s1 - 1.0 / n1 + 1.0 / s0 - 1.0 / n0 + 4.0 * rse * rse)
    return [math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjustment; None entries stay None and are not counted in the family."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    present.sort()
    adjusted: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        scaled = (m - rank) * p
        if scaled > running:
            running = scaled if scaled < 1.0 else 1.0
        adjusted[i] = running
    return adjusted


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x): series below a + 1, continued fraction above."""
    if a <= 0.0:
        raise ValueError("a must be positive")
    if x <= 0.0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * 1e-16:
                break
        return _unit(1.0 - total * math.exp(log_front))
    # Modified Lentz for the continued fraction of Q.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return _unit(math.exp(log_front) * h)


def chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-square distribution with df degrees of freedom."""
    if x <= 0.0:
        return 1.0
    if df == 1:
        return math.erfc(math.sqrt(0.5 * x))
    if df == 2:
        return math.exp(-0.5 * x)
    return gamma_q(0.5 * df, 0.5 * x)


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a few variants: tiny systems)."""
    n = len(rhs)
    a = [row[:] + [rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if a[col][col] == 0.0:
            raise ZeroDivisionError("singular covariance")
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            if f:
                for c in range(col, n + 1):
                    a[r][c] -= f * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


def srm_p_value(
    counts: Sequence[int], weights: Sequence[float] | None = None, rse: float = 0.0
) -> float | None:
    """P-value of the observed split of participants against the expected weights.

    Deviations d = o - w * sum(o) have covariance N (diag(w) - w w') (multinomial) plus, with
    counting error, the projection of diag((rse E_i)^2); the statistic d' C^-1 d on k - 1
    cells is chi-square with k - 1 degrees of freedom. With rse = 0 it is exactly Pearson's
    X^2. A cell expected empty but holding participants is a mismatch for certain (p = 0).
    None with fewer than two variants or no participants.
    """
    if weights is None:
        weights = [1.0] * len(counts)
    if len(weights) != len(counts):
        raise ValueError("one weight per count")
    cells = []
    for count, weight in zip(counts, weights, strict=True):
        count = max(0, int(count))
        if weight > 0.0:
            cells.append((count, weight))
        elif count > 0:
            return 0.0
    total = sum(count for count, _ in cells)
    k = len(cells)
    if k < 2 or total == 0:
        return None
    weight_sum = sum(weight for _, weight in cells)
    w = [weight / weight_sum for _, weight in cells]
    d = [count - total * wi for (count, _), wi in zip(cells, w, strict=True)]
    if rse == 0.0:
        stat = sum(di * di / (total * wi) for di, wi in zip(d, w, strict=True))
    else:
        delta = [(rse * total * wi) ** 2 for wi in w]  # counting variance of each cell
        delta_sum = sum(delta)
        cov = [
            [
                total * ((wi if i == j else 0.0) - wi * wj)
                + ((delta[i] if i == j else 0.0) - wi * delta[j] - delta[i] * wj)
                + delta_sum * wi * wj
                for j, wj in enumerate(w[:-1])
            ]
            for i, wi in enumerate(w[:-1])
        ]
        x = _solve(cov, d[:-1])
        stat = max(0.0, sum(di * xi for di, xi in zip(d, x, strict=False)))
    return chi2_sf(stat, k - 1)


# -- chance to beat the control ----------------------------------------------------------------


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
    return _unit(p)


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
    return _unit(1.0 - cdf)


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
    return _unit(p)


def chance_to_beat(
    successes: int, trials: int, control_successes: int, control_trials: int, rse: float = 0.0
) -> float | None:
    """Posterior probability that the variant's rate exceeds the control's, Beta(1, 1) priors.

    Exact (a finite sum) when a Beta parameter is small, a second-order Edgeworth expansion
    otherwise: within 0.001 of the exact value at any counts, in a few microseconds. With
    counting error each posterior is multiplied by its log-normal counting factor (variance
    of the log 2 rse^2); where that noise meets a strongly skewed posterior, a saddlepoint
    approximation takes over (within 0.005; slower, ~50-100 microseconds, and rare: a rate
    near 1 in a small hll experiment, or a tiny variant against a huge control).
    """
    s1, n1 = _clamp(successes, trials)
    s0, n0 = _clamp(control_successes, control_trials)
    return _chance(s1, n1, s0, n0, rse) if n1 and n0 else None


def _chance(s1: int, n1: int, s0: int, n0: int, rse: float) -> float:
    a_v, b_v, a_c, b_c = 1 + s1, 1 + n1 - s1, 1 + s0, 1 + n0 - s0
    s2 = 2.0 * rse * rse
    if a_v < _EXACT_BELOW or b_v < _EXACT_BELOW or a_c < _EXACT_BELOW or b_c < _EXACT_BELOW:
        if s2 == 0.0:
            return _beta_exact(a_v, b_v, a_c, b_c)
        # Counting noise is negligible when it is small next to the posterior variance of
        # log(rate), about b / (a (a + b + 1)), in both arms; or next to their sum, if no
        # posterior has the sharp edge at rate 1 that a noise of any size smooths (b < 3).
        var_v = b_v / (a_v * (n1 + 3))
        var_c = b_c / (a_c * (n0 + 3))
        if (s2 < _NEGLIGIBLE_NOISE * var_v and s2 < _NEGLIGIBLE_NOISE * var_c) or (
            b_v >= 3 and b_c >= 3 and s2 < 0.5 * _NEGLIGIBLE_NOISE * (var_v + var_c)
        ):
            return _beta_exact(a_v, b_v, a_c, b_c)
        v, c = _cumulants(a_v, b_v, s2), _cumulants(a_c, b_c, s2)
        k1 = v[0] - c[0]
        k2 = v[1] + c[1]
        if k1 * k1 > 499.0 * k2:  # decided: by Cantelli's inequality, P or 1 - P < 0.002
            bound = k2 / (k2 + k1 * k1)
            p = _edgeworth(k1, k2, v[2] - c[2], v[3] + c[3])
            return min(p, bound) if k1 < 0.0 else max(p, 1.0 - bound)
        if (abs(v[2]) + abs(c[2])) / k2**1.5 >= _EDGEWORTH_SKEW or (abs(v[3]) + abs(c[3])) / (
            k2 * k2
        ) >= _EDGEWORTH_KURTOSIS:
            return _saddlepoint(a_v, b_v, a_c, b_c, 2.0 * s2)
    elif s2 == 0.0:
        v, c = _beta_cumulants(a_v, b_v), _beta_cumulants(a_c, b_c)
    else:
        v, c = _cumulants(a_v, b_v, s2), _cumulants(a_c, b_c, s2)
    return _edgeworth(v[0] - c[0], v[1] + c[1], v[2] - c[2], v[3] + c[3])


# -- annotate ----------------------------------------------------------------------------------


def choose_control(variants: Iterable[str], declared: str | None = None) -> str | None:
    """The declared control if present, else "control", else "original", else the first name."""
    names = sorted(set(variants))
    for candidate in (declared, *CONTROL_NAMES):
        if candidate is not None and candidate in names:
            return candidate
    return names[0] if names else None


def _expected_split(
    trials: Mapping[str, int], weights: Mapping[str, float] | None
) -> dict[str, float]:
    if weights is None:
        return {name: 1.0 / len(trials) for name in sorted(trials)}
    for name, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0.0):
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, not {weight!r}")
    names = sorted(set(trials) | {name for name, weight in weights.items() if weight > 0.0})
    total = sum(weights.get(name, 0.0) for name in names)
    if total <= 0.0:
        raise ValueError("weights must have a positive sum")
    return {name: weights.get(name, 0.0) / total for name in names}


def _srm(trials: Mapping[str, int], weights: Mapping[str, float] | None, rse: float) -> dict:
    expected = _expected_split(trials, weights)
    p = srm_p_value([trials.get(name, 0) for name in expected], list(expected.values()), rse)
    return {"p_value": p, "expected": expected, "mismatch": p is not None and p < SRM_ALPHA}


def _annotate_goal(goal: Mapping[str, Any], control: str | None, rse: float) -> dict:
    rows = [
        (row, *_clamp(row.get("successes", 0), row.get("trials", 0)))
        for row in goal.get("results", [])
    ]
    base = next((row for row in rows if row[0].get("label") == control), None)
    s0, n0 = (base[1], base[2]) if base is not None else (0, 0)
    out = []
    p_values: list[float | None] = []
    for entry in rows:
        row, s, n = entry
        uplift = uplift_ci = p_value = chance = None
        if entry is not base and n and n0:
            if s0:
                uplift = (s * n0) / (s0 * n) - 1.0
                if s:
                    uplift_ci = _uplift_ci(s, n, s0, n0, rse)
            p_value = _z_test(s, n, s0, n0, rse)
            chance = _chance(s, n, s0, n0, rse)
        p_values.append(p_value)
        out.append(
            {
                **row,
                "conversion_rate": s / n if n else None,
                "ci": _wilson(s, n, rse) if n else None,
                "uplift": uplift,
                "uplift_ci": uplift_ci,
                "p_value": p_value,
                "p_value_adjusted": None,
                "chance_to_beat_control": chance,
            }
        )
    if len(out) > 2:
        for row, adjusted in zip(out, holm(p_values), strict=True):
            row["p_value_adjusted"] = adjusted
    else:  # one comparison at most: nothing to adjust
        for row in out:
            row["p_value_adjusted"] = row["p_value"]
    return {**goal, "results": out}


def annotate(
    experiment: Mapping[str, Any],
    trials: Mapping[str, int],
    *,
    control: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict:
    """A copy of one experiment's results with the statistics added (the input is untouched).

    ``trials`` are the participants per variant (also for experiments without goals), used
    by the SRM test against ``weights`` (an equal split when None; normalised to sum to 1;
    a variant with weight 0 or missing from ``weights`` is expected to have no participants,
    and a weighted variant missing from ``trials`` has none). Every result row gains
    ``conversion_rate``, ``ci``, ``uplift``, ``uplift_ci``, ``p_value``, ``p_value_adjusted``
    (Holm, across the variants of the goal) and ``chance_to_beat_control``, all None for the
    control itself; the experiment gains ``control`` and ``srm``. Counting error is modelled
    when ``experiment["counting"] == "hll"``.
    """
    rse = HLL_RSE if experiment.get("counting") == "hll" else 0.0
    goals = list(experiment.get("goals", []))
    labels = {row.get("label") for goal in goals for row in goal.get("results", [])}
    names = {name for name in labels if isinstance(name, str)} | set(trials)
    chosen = choose_control(names, control)
    return {
        **experiment,
        "goals": [_annotate_goal(goal, chosen, rse) for goal in goals],
        "control": chosen,
        "srm": _srm(trials, weights, rse),
    }
