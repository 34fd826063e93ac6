"""A figure measured over repeated rounds: its median, with the min and max beside it.

On a shared machine one round can be twice as slow as the next; a figure printed alone hides
that. Each bench keeps the median of its rounds under the figure's own key (what a target is
judged on, and what `bench.compare` reads) and the extremes under ``<key>_min`` and
``<key>_max``, so the table shows how noisy the run was.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def spread(key: str, values: Sequence[float]) -> dict[str, float]:
    """``key``: the median of ``values``; ``key_min``, ``key_max``: how far the rounds went."""
    if not values:
        raise ValueError(f"no rounds measured for {key}")
    return {
        key: statistics.median(values),
        f"{key}_min": min(values),
        f"{key}_max": max(values),
    }


def shown(figures: Mapping[str, float], key: str, fmt: str = "{:.1f}", unit: str = "") -> str:
    """``key``'s median with its rounds' range, e.g. ``6.8 ms (min 5.9, max 9.1)``."""
    low, high = (fmt.format(figures[f"{key}_{end}"]) for end in ("min", "max"))
    return f"{fmt.format(figures[key])}{unit} (min {low}, max {high})"


def timed_ms(
    call: Callable[[], object], times: int, before: Callable[[], None] | None = None
) -> list[float]:
    """Milliseconds of each of ``times`` calls of ``call``, ``before`` run untimed before each."""
    taken = []
    for _ in range(times):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        taken.append((time.perf_counter() - started) * 1000)
    return taken
