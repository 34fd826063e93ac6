"""import-legacy: bring counts from the original Gimel (or its windowed successor) along.

The original wrote ``<ns>:counters:<experiment>:<goal>:<variant>`` without escaping, so a
``:`` in a goal or variant name makes the split ambiguous. Variants are known exactly from
the ``participate`` counters ("participate" has no ``:``), which resolves most goals; a
key that still has more than one reading is reported, never guessed.

Names are checked as /track checks them (:func:`events.check_name`); the original checked
none, so a name with control or escape characters, or longer than 128 characters, is given a
safe name instead, and every such rename is reported.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from . import defaults, keys
from .errors import InvalidInput
from .events import check_name
from .storage.import_legacy import import_counters
from .storage.runner import Scripts
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
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(name as the original stored it, name imported) for every name /track would refuse."""

    @property
    def mode(self) -> str | None:
        kinds = {"hll" if isinstance(v, bytes) else "exact" for v in self.counters.values()}
        return kinds.pop() if len(kinds) == 1 else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


SUFFIX_LENGTH = 8
"""Hex digits of the hash a renamed name ends with when cut short or already taken."""


def _char(c: str) -> str:
    """``c`` if a name may hold it, else its escape (``\\x1b``, ``\\u202e``) as text."""
    try:
        check_name("name", c)
    except InvalidInput:
        return c.encode("unicode_escape").decode("ascii")
    return c


def _safe_name(name: str, taken: set[str]) -> str:
    """A valid name for a refused one: forbidden characters written as escapes, then, if that
    is too long or already a name, cut and ended with a hash of the original (so it stays
    unique, and the same on every run)."""
    text = "".join(map(_char, name)) or "_"
    if len(text) > defaults.MAX_NAME_LENGTH or text in taken:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        text = text[: defaults.MAX_NAME_LENGTH - SUFFIX_LENGTH - 1] + "~" + digest[:SUFFIX_LENGTH]
    try:
        return check_name("name", text)
    except InvalidInput:  # NFC made it longer again
        return check_name("name", text[: defaults.MAX_NAME_LENGTH // 2])


def safe_names(names: Iterable[str]) -> dict[str, str]:
    """Old name -> name to import, for each name that /track would refuse or normalize."""
    ordered = sorted(set(names))
    valid: dict[str, str] = {}
    for name in ordered:
        try:
            valid[name] = check_name("name", name)
        except InvalidInput:
            pass
    renames = {old: new for old, new in valid.items() if new != old}  # NFC
    taken = set(valid.values())
    for name in ordered:
        if name not in valid:
            renames[name] = _safe_name(name, taken)
            taken.add(renames[name])
    return renames


def _rename_counters(exp: LegacyExperiment) -> None:
    goals = safe_names(goal for goal, _ in exp.counters)
    variants = safe_names(variant for _, variant in exp.counters)
    if not goals and not variants:
        return
    exp.renamed += sorted({*goals.items(), *variants.items()})
    counters: dict[tuple[str, str], bytes | int] = {}
    for (goal, variant), value in exp.counters.items():
        new = (goals.get(goal, goal), variants.get(variant, variant))
        if new in counters:
            exp.problems.append(
                f"{goal!r}/{variant!r}: the same as another after renaming: skipped"
            )
        else:
            counters[new] = value
    exp.counters = counters


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
    renames = safe_names(names)
    for name in names:
        exp = LegacyExperiment(namespace, renames.get(name, name))
        if name in renames:
            exp.renamed.append((name, renames[name]))
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
        _rename_counters(exp)
        if exp.counters and exp.mode is None:
            exp.problems.append("mixes HyperLogLogs and integer counters: not imported")
        found.append(exp)
    return found


def write(target: redis.Redis, exp: LegacyExperiment, window: int, analysis: str) -> str | None:
    """Import one experiment into Gimel's layout; returns a problem, or None when done.
    ``window`` and ``analysis``: what the experiment is created with if it is new here."""
    mode = exp.mode
    if mode is None or not exp.counters:
        return "nothing to import"
    counters = [(goal, variant, value) for (goal, variant), value in sorted(exp.counters.items())]
    call = import_counters(
        exp.namespace, exp.name, mode, int(time.time()), (window, analysis), counters
    )
    with unavailable():
        recorded = Scripts(target).run_one(call)
    if recorded is not None:
        return f"already here with counting {recorded}, legacy counters are {mode}"
    return None
