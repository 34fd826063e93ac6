"""plan.lua: store an experiment's plan, creating the experiment if need be."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import dedup, defaults, keys
from ..vocabulary import Moment
from .runner import Call, text
from .schema import PlanArgv, experiment_keys


@dataclass(frozen=True, slots=True)
class Declared:
    created: bool
    """The experiment did not exist before this plan."""


@dataclass(frozen=True, slots=True)
class Undeclared:
    """Counted names the plan leaves out; nothing written."""

    variants: tuple[str, ...]
    goals: tuple[str, ...]


def declare(
    namespace: str,
    experiment: str,
    new: tuple[str, int, str],
    now: int,
    variants: Sequence[str],
    goals: Sequence[str],
    fields: dict[str, str],
    drop_undeclared: bool = False,
) -> Call[Declared | Undeclared]:
    """Store a plan (``fields``: the meta fields it sets) if it names every counted name;
    ``new``: counting mode, de-dup window and analysis if the experiment is created.
    ``drop_undeclared``: an experiment no plan declared yet loses what the plan leaves out
    instead (names, counters, history), in the same call."""
    mode, window, analysis = new
    args: list[Any] = [
        *PlanArgv(
            experiment=experiment,
            new_mode=mode,
            new_window=window,
            new_analysis=analysis,
            now=now,
            drop_undeclared=int(drop_undeclared),
            variant_count=len(variants),
        )
    ]
    args += [*variants, len(goals), *goals]
    kept = kept_fields(variants, goals) if drop_undeclared else []
    args += [len(kept), *kept]
    args += [item for pair in fields.items() for item in pair]

    def parse(reply: list[Any]) -> Declared | Undeclared:
        if int(reply[0]):
            return Declared(bool(int(reply[1])))
        return Undeclared(tuple(map(text, reply[1])), tuple(map(text, reply[2])))

    counters = [keys.history, keys.hll_index, keys.counts]
    budget = keys.open_budget(namespace, experiment)
    named = [
        *experiment_keys(namespace, experiment),
        *(key(namespace, experiment) for key in counters),
        keys.seen(namespace, experiment, dedup.LIFE_BUCKET),
    ]
    return Call("plan", [*named, budget], args, parse)


def kept_fields(variants: Sequence[str], goals: Sequence[str]) -> list[str]:
    """The counts fields a plan's names own, their counts (``keys.counts_field``) and sums
    (``keys.moment_field``): every other goes when undeclared names are dropped."""
    return [
        field
        for v in variants
        for g in (defaults.PARTICIPATE, *goals)
        for field in (keys.counts_field(g, v), *(keys.moment_field(g, v, m) for m in Moment))
    ]
