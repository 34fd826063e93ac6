"""Always-valid sample-ratio mismatch: a p-value of the split that may be checked every hour.

The fixed test (:func:`.srm.srm_p_value`) is honest at one look; checked hourly for a month,
its chance of crying wolf grows with every look. This is the sequential Dirichlet-multinomial
test of

    Lindon, M. and Malek, A. (2022). "Anytime-Valid Inference for Multinomial Count Data".
    Advances in Neural Information Processing Systems 35 (NeurIPS 2022).

Under the declared split w (the null), each new participant joins variant i with chance w_i.
The alternative puts a Dirichlet(c w) prior on the shares. After counts x (n in all), the
Bayes factor of the alternative to the null is

    BF = Gamma(c) / Gamma(c + n) * prod_i Gamma(c w_i + x_i) / Gamma(c w_i) / prod_i w_i^x_i,

a function of the cumulative counts alone (per-look multinomial coefficients cancel). Under
the null it is a nonnegative martingale with mean 1, so by Ville's inequality the chance that
it ever reaches 1 / alpha is at most alpha, however many looks are taken and whenever they
are: p = min over looks of 1 / BF is a p-value valid at every look.

The counts must be exact unique counts (``exact`` mode): a HyperLogLog count's error (about
0.8%, :data:`.counting_error.HLL_RSE`) does not average out as participants arrive, and in a
large experiment the test would read it as a mismatch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

SRM_CONCENTRATION = 100.0
"""Concentration c of the Dirichlet prior around the declared split: its shares' standard
deviation is sqrt(w (1 - w) / (c + 1)), 5 points at 50/50, the size of the mismatches a broken
assignment or redirect makes. The paper's reference implementation defaults to 10,000 (0.5
points, tuned for very large traffic); at 2,000 participants a day it finds a 45/55 split
in about 55 hours against 20 with 100 (``python -m bench.srm``); in a simulation of the same
test, a 49.5/50.5 split at 200,000 a day takes 100 about a quarter longer (25 hours, 20)."""


def sequential_srm_p_value(
    counts: Sequence[int],
    weights: Sequence[float] | None = None,
    previous: float = 1.0,
    concentration: float = SRM_CONCENTRATION,
) -> float | None:
    """The always-valid SRM p-value after this look: min(previous, 1 / BF).

    ``counts`` are the participants per variant so far (cumulative, exact), ``weights`` the
    declared split (equal if None, normalised), ``previous`` the p-value the last look
    returned (1 at the first). Keep the result and pass it back at the next look: the running
    minimum is what stays valid. A variant weighted 0 holding participants is a mismatch
    for certain (0). None while the test does not exist (fewer than two weighted variants,
    or no participants): keep ``previous`` then.
    """
    if weights is None:
        weights = [1.0] * len(counts)
    if len(weights) != len(counts):
        raise ValueError(f"one weight per count: {len(counts)} counts, {len(weights)} weights")
    if not (0.0 <= previous <= 1.0):
        raise ValueError(f"previous must be a p-value in [0, 1], not {previous!r}")
    if not (math.isfinite(concentration) and concentration > 0.0):
        raise ValueError(f"concentration must be a finite number > 0, not {concentration!r}")
    pairs = [(_count(c), _weight(w)) for c, w in zip(counts, weights, strict=True)]
    if any(count > 0 and weight == 0.0 for count, weight in pairs):
        return 0.0
    cells = [(count, weight) for count, weight in pairs if weight > 0.0]
    total = sum(count for count, _ in cells)
    if len(cells) < 2 or total == 0:
        return None
    weight_sum = sum(weight for _, weight in cells)
    log_bf = math.lgamma(concentration) - math.lgamma(concentration + total)
    for count, weight in cells:
        share = weight / weight_sum
        prior = concentration * share
        log_bf += math.lgamma(prior + count) - math.lgamma(prior) - count * math.log(share)
    return min(previous, math.exp(-log_bf)) if log_bf > 0.0 else previous


def _count(value: object) -> int:
    count = int(value) if isinstance(value, numbers.Integral) else -1
    if count < 0:
        raise ValueError(f"counts must be integers >= 0, not {value!r}")
    return count


def _weight(value: object) -> float:
    weight = float(value) if isinstance(value, numbers.Real) else math.nan
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"weights must be finite numbers >= 0, not {value!r}")
    return weight
