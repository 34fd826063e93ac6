"""Sample-ratio mismatch: is the split of participants the one the team declared?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .proportions import unit

SRM_ALPHA = 0.001
"""An SRM p-value below this flags a mismatch (strict: many experiments are watched daily)."""


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
        return unit(1.0 - total * math.exp(log_front))
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
    return unit(math.exp(log_front) * h)


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
    counts: Sequence[int],
    weights: Sequence[float] | None = None,
    variances: Sequence[float] | None = None,
) -> float | None:
    """P-value of the observed split of participants against the expected weights.

    ``variances`` are the counting variances of the log of each count
    (:func:`.counting_error.count_variance`): the participants of different variants are
    disjoint sets of uuids, so their counting errors are independent. Deviations
    d = o - w * sum(o) have covariance N (diag(w) - w w') (multinomial) plus, with counting
    error, the projection of diag(variance_i E_i^2); the statistic d' C^-1 d on k - 1 cells
    is chi-square with k - 1 degrees of freedom. Without counting error (None or zeros) it is
    exactly Pearson's X^2. A cell expected empty but holding participants is a mismatch for
    certain (p = 0). None with fewer than two variants or no participants.
    """
    if weights is None:
        weights = [1.0] * len(counts)
    if variances is None:
        variances = [0.0] * len(counts)
    if len(weights) != len(counts) or len(variances) != len(counts):
        raise ValueError("one weight and one variance per count")
    cells = []
    cell_variances = []
    for count, weight, variance in zip(counts, weights, variances, strict=True):
        count = max(0, int(count))
        if weight > 0.0:
            cells.append((count, weight))
            cell_variances.append(variance)
        elif count > 0:
            return 0.0
    total = sum(count for count, _ in cells)
    k = len(cells)
    if k < 2 or total == 0:
        return None
    weight_sum = sum(weight for _, weight in cells)
    w = [weight / weight_sum for _, weight in cells]
    d = [count - total * wi for (count, _), wi in zip(cells, w, strict=True)]
    if not any(cell_variances):
        stat = sum(di * di / (total * wi) for di, wi in zip(d, w, strict=True))
    else:
        # counting variance of each cell, at its expected count
        delta = [v * (total * wi) ** 2 for v, wi in zip(cell_variances, w, strict=True)]
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


def expected_split(
    trials: Mapping[str, int], weights: Mapping[str, float] | None
) -> dict[str, float]:
    """Share of participants each variant should get: equal, or as the weights declare.

    Weights are normalised to sum to 1; a variant seen but not weighted is expected empty,
    and a weighted variant nobody saw is still part of the split.
    """
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
