"""Group-sequential bounds: a test planned for a known size, safe to look at after every day.

Alpha spending (Lan & DeMets 1983, "Discrete sequential boundaries for clinical trials",
Biometrika 70:659-663): a spending function ``f(alpha, t)`` says how much of the level alpha
may have been spent by information fraction ``t`` (participants so far over the planned size);
each look's bound is set so that the chance of a first crossing there, under the null, is the
look's share ``f(t_k) - f(t_k-1)``. The looks need not be planned in advance, only the size.
Spending functions: Lan-DeMets' O'Brien-Fleming type (spends almost nothing early), Pocock type
(spends evenly), and Kim & DeMets' power family ``alpha t^rho`` (1987, "Design and analysis of
group sequential tests based on the type I error spending rate function", Biometrika 74:149-154),
which is what spotify-confidence offers.

The chance of a first crossing is computed by recursive numerical integration of the score
statistic ``S_k = Z_k sqrt(t_k)`` (a Brownian motion in ``t``: independent normal increments
of variance ``t_k - t_k-1`` and mean ``drift (t_k - t_k-1)``), following Armitage, McPherson
& Rowe (1969, JRSS A 132:235-244) and Jennison & Turnbull (2000), "Group Sequential Methods
with Applications to Clinical Trials", ch. 19: the sub-density of ``S_k`` on the continuation
region, one look after another. Here each look's region is a uniform grid from the bound down
to the lower truncation ``-Z_CAP sqrt(t_k)``, its step a fraction of the increments' standard
deviations; the top end carries the closed 4th-order end weights of the extended Simpson rule
(Press et al., Numerical Recipes 4.1.14) and the interior weight 1, which is spectrally
accurate for the smooth densities inside. Grid steps are powers of two of one base, so the
normal kernel between two grids depends on one integer offset: a few hundred ``exp`` calls a
look instead of one per pair of points.

Conventions, chosen to agree with spotify-confidence 4.1.0 (a port of the R ldbounds package:
Reboussin, DeMets, Kim & Lan 2000), the oracle of the tests:
- two-sided designs are two one-sided tests at ``alpha / 2`` each; the bound is the upper one.
- the density is truncated below at ``-Z_CAP`` (8), and no bound is above ``Z_CAP``: a look
  whose bound would be higher, or (after the first look) whose share of alpha is below
  ``SPEND_TOL``, gets ``Z_CAP`` (a z-value, so results stay finite JSON; never crossed in
  practice, ``P(Z > 8)`` is 6e-16). A capped look spends what ``Z_CAP`` spends, and the next
  look the rest; a look below ``SPEND_TOL`` leaves its share unspent, as ldbounds does.
- a look less than ``MERGE`` of information after the previous one repeats that look's bound
  (no new information, the same test); ``crossing`` counts it as the same look.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from math import comb
from operator import mul
from statistics import NormalDist

Spending = Callable[[float, float], float]

SPENDING: tuple[str, ...] = ("obrien_fleming", "pocock")
"""The spending functions a plan may name; the first is the default."""
Z_CAP = 8.0
"""The lower truncation of the density and the highest bound, in z (ldbounds' ``ztrun``)."""
SPEND_TOL = 1e-7
"""A share of alpha below this does not test at its look (ldbounds' tolerance)."""
MERGE = 1e-5
"""Looks closer than this in information fraction are one look."""

_STEPS = 4
"""Grid points per standard deviation of the narrower of a grid's two increments."""
_REACH = 7.5
"""Kernel terms beyond this many standard deviations are below 1e-12 of the mass and left out."""
_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _end_weights(m: int) -> tuple[float, ...]:
    """Gregory's end weights: ``h * sum_j w_j g(j h)``, ``w_j = 1`` for ``j >= m``, integrates
    ``g`` over ``[0, inf)`` exactly for polynomials of degree below ``m`` (by Euler-Maclaurin,
    ``sum_j c_j j^p`` must cancel the Bernoulli terms ``B_(p+1) / (p + 1)``, ``c_j = w_j - 1``).
    """
    bern = [Fraction(1), Fraction(-1, 2)]  # B_0, B_1 (the sign that makes the sum start at 0)
    for n in range(2, m + 1):
        bern.append(-sum(comb(n + 1, k) * bern[k] for k in range(n)) / (n + 1))
    rhs = [bern[p + 1] / (p + 1) for p in range(m)]  # what sum_j c_j j^p must equal
    rows = [[Fraction(j**p) for j in range(m)] + [rhs[p]] for p in range(m)]
    for col in range(m):  # Gauss-Jordan on exact fractions: m is small, done once
        pivot = next(r for r in range(col, m) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(m):
            if r != col and rows[r][col] != 0:
                rows[r] = [a - rows[r][col] * b for a, b in zip(rows[r], rows[col], strict=True)]
    return tuple(float(1 + rows[j][m]) for j in range(m))


_TOP_WEIGHTS = _end_weights(8)


def _obrien_fleming(alpha: float, t: float) -> float:
    if t <= 0.0:
        return 0.0
    # 2 - 2 Phi(z_{alpha/2} / sqrt t), written with erfc so that tiny spends keep their digits.
    return math.erfc(_NORMAL.inv_cdf(1.0 - alpha / 2.0) / math.sqrt(t) / _SQRT2)


def _pocock(alpha: float, t: float) -> float:
    return alpha * math.log1p((math.e - 1.0) * t)


def spending_function(name: str) -> Spending:
    """The spending function a plan names: ``(alpha, t) -> alpha spent by fraction t``."""
    known = {"obrien_fleming": _obrien_fleming, "pocock": _pocock}
    if name not in known:
        raise ValueError(f"unknown spending function {name!r}: use one of {', '.join(SPENDING)}")
    return known[name]


def power_family(rho: float) -> Spending:
    """Kim & DeMets' ``alpha t^rho``: rho 1 spends like Pocock, 3 like O'Brien-Fleming."""
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    return lambda alpha, t: alpha * t**rho


def _upper(x: float) -> float:
    """P(Z > x) for a standard normal Z, accurate in the far tail."""
    return 0.5 * math.erfc(x / _SQRT2)


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    ts = [float(t) for t in fractions]
    if not ts:
        raise ValueError("fractions: at least one look is needed")
    if not all(0.0 < t <= 1.0 for t in ts):
        raise ValueError(f"fractions must lie in (0, 1], got {ts}")
    if any(b <= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"fractions must be strictly increasing, got {ts}")
    return ts


class _Grid:
    """The sub-density of S_k on its continuation region, times the quadrature weights.

    Point ``j`` is ``top - j * step``; ``mass[j]`` is weight times density there.
    """

    __slots__ = ("top", "step", "mass")

    def __init__(self, top: float, step: float, mass: list[float]) -> None:
        self.top = top
        self.step = step
        self.mass = mass


def _step(base: float, sd: float) -> float:
    """The largest ``base / 2^m`` at most ``sd / _STEPS``: steps of grids stay commensurate."""
    step = base
    target = sd / _STEPS
    while step > target:
        step /= 2.0
    return step


def _points(top: float, bottom: float, step: float) -> int:
    return int((top - bottom) / step) + 1


def _weighted(values: list[float], step: float) -> list[float]:
    for j, w in enumerate(_TOP_WEIGHTS[: len(values)]):
        values[j] *= w
    return [v * step for v in values]


def _first(t: float, top: float, step: float, shift: float) -> _Grid:
    sd = math.sqrt(t)
    n = _points(top, -Z_CAP * sd, step)
    c = _INV_SQRT_2PI / sd
    dens = [c * math.exp(-0.5 * ((top - j * step - shift) / sd) ** 2) for j in range(n)]
    return _Grid(top, step, _weighted(dens, step))


def _next(prev: _Grid, t: float, var: float, top: float, step: float, shift: float) -> _Grid:
    """The next look's grid: ``sum_j mass_j * phi((s - u_j - shift) / sd) / sd`` at each point.

    ``s_i - u_j - shift = delta + (j * rp - i * rn) * fine`` on the finer of the two steps, so
    the kernel is tabulated once per integer offset and each point is one C-level dot product.
    """
    sd = math.sqrt(var)
    n = _points(top, -Z_CAP * math.sqrt(t), step)
    fine = min(prev.step, step)
    rp, rn = round(prev.step / fine), round(step / fine)
    delta = top - prev.top - shift
    reach = _REACH * sd
    e_lo = math.ceil((-reach - delta) / fine)
    e_hi = math.floor((reach - delta) / fine)
    c = _INV_SQRT_2PI / sd
    kernel = [c * math.exp(-0.5 * ((delta + e * fine) / sd) ** 2) for e in range(e_lo, e_hi + 1)]
    mass = prev.mass
    last = len(mass) - 1
    dens = []
    for i in range(n):
        base = i * rn
        j0 = max(0, -(-(e_lo + base) // rp))
        j1 = min(last, (e_hi + base) // rp)
        if j1 < j0:
            dens.append(0.0)
            continue
        k0 = j0 * rp - base - e_lo
        dens.append(sum(map(mul, mass[j0 : j1 + 1], kernel[k0 : k0 + (j1 - j0) * rp + 1 : rp])))
    return _Grid(top, step, _weighted(dens, step))


def _cross(prev: _Grid, var: float, bound: float, shift: float) -> tuple[float, float]:
    """P(first crossing of ``bound`` at this look) and the sub-density of S there."""
    sd = math.sqrt(var)
    lowest = bound - shift - _REACH * sd
    j1 = min(len(prev.mass) - 1, int((prev.top - lowest) / prev.step))
    prob = dens = 0.0
    for j in range(j1 + 1):
        x = (bound - (prev.top - j * prev.step) - shift) / sd
        m = prev.mass[j]
        prob += m * 0.5 * math.erfc(x / _SQRT2)
        dens += m * math.exp(-0.5 * x * x)
    # The grid stops at the truncation: whatever lies below `lowest` cannot reach the bound.
    return prob, dens * _INV_SQRT_2PI / sd


def _solve(prev: _Grid, var: float, spend: float, lo: float, hi: float) -> float:
    """The score-scale bound spending ``spend`` at this look: safeguarded Newton in [lo, hi].

    ``hi`` is where S_k alone would spend ``spend``; earlier looks only lower the chance of a
    first crossing, so the bound is below it, and usually close to it: Newton starts there.
    """
    b = hi
    for _ in range(60):
        prob, dens = _cross(prev, var, b, 0.0)
        gap = prob - spend
        if gap > 0:
            lo = b
        else:
            hi = b
        nxt = b + gap / dens if dens > 0 else (lo + hi) / 2
        if not lo <= nxt <= hi:
            nxt = (lo + hi) / 2
        if abs(nxt - b) < 1e-10:
            return nxt
        b = nxt
    return b


def bounds(
    fractions: Sequence[float],
    alpha: float = 0.05,
    spending: str | Spending = "obrien_fleming",
    sides: int = 2,
) -> tuple[float, ...]:
    """The upper z bound at each look of a test at total level ``alpha``.

    Each side is a one-sided test at ``alpha / sides``; a two-sided test rejects when
    ``|Z_k| >= bound_k``. ``fractions`` are the looks' information fractions.
    """
    ts = _check_fractions(fractions)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides}")
    spend = spending_function(spending) if isinstance(spending, str) else spending
    level = alpha / sides

    out: list[float] = []
    looks = _merged(ts)
    sds = [math.sqrt(t - p) for t, p in zip(looks, [0.0, *looks], strict=False)]
    base = max(sds)
    grid: _Grid | None = None
    spent = 0.0
    t_prev = 0.0
    zs: dict[float, float] = {}
    for k, t in enumerate(looks):
        target = spend(level, t)
        share = target - spent
        root = math.sqrt(t)
        var = t - t_prev
        step = _step(base, min(sds[k : k + 2]))
        if grid is None:
            z = -_NORMAL.inv_cdf(share) if 0.0 < share < 1.0 else Z_CAP
            if z > Z_CAP:
                z, target = Z_CAP, _upper(Z_CAP)
        elif share < SPEND_TOL:
            z = Z_CAP
        else:
            cap = Z_CAP * root
            prob, _ = _cross(grid, var, cap, 0.0)
            if prob >= share:
                z, target = Z_CAP, spent + prob
            else:
                fixed = root * -_NORMAL.inv_cdf(share)
                z = _solve(grid, var, share, -Z_CAP * root, min(cap, fixed)) / root
        spent = target
        zs[t] = z
        if k + 1 < len(looks):
            top = z * root
            grid = (
                _first(t, top, step, 0.0) if grid is None else _next(grid, t, var, top, step, 0.0)
            )
        t_prev = t
    current = zs[looks[0]]
    for t in ts:
        current = zs.get(t, current)
        out.append(current)
    return tuple(out)


def _merged(ts: list[float]) -> list[float]:
    """The looks that count: one closer than MERGE to the last counted look is that look."""
    looks: list[float] = []
    for t in ts:
        if not looks or t - looks[-1] > MERGE:
            looks.append(t)
    return looks


def crossing(fractions: Sequence[float], bounds: Sequence[float], drift: float = 0.0) -> float:
    """P(Z_k >= bound_k at some look) when ``E[Z_k] = drift * sqrt(t_k)``.

    At drift 0 this is the alpha one side spends; at the planned effect, one side's power.
    """
    ts = _check_fractions(fractions)
    zs = [float(z) for z in bounds]
    if len(zs) != len(ts):
        raise ValueError(f"one bound per look: {len(ts)} fractions, {len(zs)} bounds")
    if not all(math.isfinite(z) for z in zs):
        raise ValueError(f"bounds must be finite, got {zs}")
    pairs: list[tuple[float, float]] = []
    for t, z in zip(ts, zs, strict=True):
        if not pairs or t - pairs[-1][0] > MERGE:
            pairs.append((t, z))
    sds = [
        math.sqrt(t - p) for (t, _), p in zip(pairs, [0.0, *(t for t, _ in pairs)], strict=False)
    ]
    base = max(sds)
    total = 0.0
    grid: _Grid | None = None
    t_prev = 0.0
    for k, (t, z) in enumerate(pairs):
        var = t - t_prev
        shift = drift * var
        top = z * math.sqrt(t)
        if grid is None:
            total += _upper((top - shift) / math.sqrt(t))
        else:
            total += _cross(grid, var, top, shift)[0]
        if k + 1 < len(pairs):
            step = _step(base, min(sds[k : k + 2]))
            grid = (
                _first(t, top, step, shift)
                if grid is None
                else _next(grid, t, var, top, step, shift)
            )
        t_prev = t
    return total


def required_drift(fractions: Sequence[float], bounds: Sequence[float], power: float) -> float:
    """The drift at which one side crosses with chance ``power``: sizes and MDEs follow from it.

    A bracketing secant (Illinois) search: ``crossing`` is smooth and increasing in the drift,
    so it needs a handful of evaluations where bisection would need thirty.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    lo, hi = 0.0, 1.0
    f_lo = crossing(fractions, bounds, lo) - power
    if f_lo >= 0:
        return 0.0
    f_hi = crossing(fractions, bounds, hi) - power
    while f_hi < 0:
        lo, f_lo = hi, f_hi
        hi *= 2.0
        f_hi = crossing(fractions, bounds, hi) - power
    side = 0
    x = hi
    for _ in range(100):
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        fx = crossing(fractions, bounds, x) - power
        if abs(fx) < 1e-12 or hi - lo < 1e-12:
            break
        if fx > 0:
            hi, f_hi = x, fx
            if side == 1:
                f_lo /= 2
            side = 1
        else:
            lo, f_lo = x, fx
            if side == -1:
                f_hi /= 2
            side = -1
    return x
