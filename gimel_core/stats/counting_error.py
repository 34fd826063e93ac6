"""How much a stored count can be off: the counting error every statistic carries.

A Redis HyperLogLog count is modelled as the true count times ``exp(e)``,
``e ~ N(0, HLL_RSE**2)``, independently per counter (to first order the same as ``1 + e``).
A rate is a ratio of two counts, so its log carries an extra variance ``2 * HLL_RSE**2``; the
delta method propagates that into every statistic. ``exact`` counts carry none.
"""

from __future__ import annotations

import math

HLL_RSE = 1.04 / math.sqrt(16384)
"""Relative standard error of a Redis HyperLogLog count (16,384 registers)."""


def relative_error(counting: str | None) -> float:
    """The relative standard error of one count in this counting mode."""
    return HLL_RSE if counting == "hll" else 0.0
