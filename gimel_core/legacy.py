"""import-legacy: bring counts from the original Gimel (or its windowed successor) along.

The original wrote ``<ns>:counters:<experiment>:<goal>:<variant>`` without escaping, so a
``:`` in a goal or variant name makes the split ambiguous. Variants are known exactly from
the ``participate`` counters ("participate" has no ``:``), which resolves most goals; a
key that still has more than one reading is reported, never guessed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from . import defaults, keys, scripts
from .scripts import Scripts
from .store import unavailable

PARTICIPATE_PREFIX = defaults.PARTICIPATE + ":"


@dataclass
class LegacyExperiment:
    namespace: str
    name: str
    counters: dict[tuple[str, str], bytes | int] = field(default_factory=dict)
    """(goal, variant) -> HyperLogLog bytes or integer count."""
    ambiguous: list[str] = field(default_factory=list)
    """Counter keys whose goal and variant cannot be told apart."""
    problems: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str | None:
        kinds = {"hll" if isinstance(v, bytes) else "exact" for v in self.counters.values()}
        return kinds.pop() if len(kinds) == 1 else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def split_counter(remainder: str, variants: set[str]) -> tuple[str, str] | None:
    """(goal, variant) of ``<goal>:<variant>``, or None if more than one reading fits."""
    if remainder.startswith(PARTICIPATE_PREFIX):
        return defaults.PARTICIPATE, remainder[len(PARTICIPATE_PREFIX) :]
    if remainder.count(":") == 1:
        goal, variant = remainder.split(":")
        return goal, variant
    readings = [
        (remainder[: -len(v) - 1], v)
        for v in variants
        if remainder.endswith(":" + v) and len(remainder) > len(v) + 1
    ]
    return readings[0] if len(readings) == 1 else None


def scan(source: redis.Redis, namespace: str) -> list[LegacyExperiment]:
    """Read every experiment of one legacy namespace (nothing is written)."""
    found = []
    names = sorted(_text(n) for n in source.smembers(keys.legacy_experiments(namespace)))
    for name in names:
        exp = LegacyExperiment(namespace, name)
        prefix = keys.legacy_counter_prefix(namespace, name)
        counter_keys = sorted(
            _text(k) for k in source.smembers(keys.legacy_counter_keys(namespace, name))
        )
        remainders = {k: k[len(prefix) :] for k in counter_keys if k.startswith(prefix)}
        exp.problems += [f"{k}: not under {prefix}" for k in counter_keys if k not in remainders]
        variants = {
            r[len(PARTICIPATE_PREFIX) :]
            for r in remainders.values()
            if r.startswith(PARTICIPATE_PREFIX)
        }
        values: list[Any] = source.mget(list(remainders)) if remainders else []
        for (key, remainder), value in zip(remainders.items(), values, strict=True):
            parts = split_counter(remainder, variants)
            if parts is None:
                exp.ambiguous.append(key)
            elif value is None:
                exp.problems.append(f"{key}: listed but missing (expired?)")
            elif value.startswith(b"HYLL"):
                exp.counters[parts] = value
            else:
                try:
                    exp.counters[parts] = int(value)
                except ValueError:
                    exp.problems.append(f"{key}: neither a HyperLogLog nor an integer")
        if exp.counters and exp.mode is None:
            exp.problems.append("mixes HyperLogLogs and integer counters: not imported")
        found.append(exp)
    return found


def write(target: redis.Redis, exp: LegacyExperiment, window: int) -> str | None:
    """Import one experiment into Gimel's layout; returns a problem, or None when done."""
    mode = exp.mode
    if mode is None or not exp.counters:
        return "nothing to import"
    counters = [(goal, variant, value) for (goal, variant), value in sorted(exp.counters.items())]
    call = scripts.import_counters(
        exp.namespace, exp.name, mode, int(time.time()), window, counters
    )
    with unavailable():
        recorded = Scripts(target).run_one(call)
    if recorded is not None:
        return f"already here with counting {recorded}, legacy counters are {mode}"
    return None
