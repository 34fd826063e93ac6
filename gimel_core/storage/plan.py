"""plan.lua: store an experiment's plan, creating the experiment if need be."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
) -> Call[Declared | Undeclared]:
    """Store a plan (``fields``: the meta fields it sets) if it names every counted name;
    ``new``: counting mode, de-dup window and analysis if the experiment is created."""
    mode, window, analysis = new
    args: list[Any] = [
        *PlanArgv(
            experiment=experiment,
            new_mode=mode,
            new_window=window,
            new_analysis=analysis,
            now=now,
            variant_count=len(variants),
        )
    ]
    args += [*variants, len(goals), *goals]
    args += [item for pair in fields.items() for item in pair]

    def parse(reply: list[Any]) -> Declared | Undeclared:
        if int(reply[0]):
            return Declared(bool(int(reply[1])))
        return Undeclared(tuple(map(text, reply[1])), tuple(map(text, reply[2])))

    return Call("plan", experiment_keys(namespace, experiment), args, parse)
