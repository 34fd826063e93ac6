"""import_legacy.lua: merge one experiment's counters from the original Gimel's layout."""

from __future__ import annotations

from typing import Any

from .. import keys
from ..vocabulary import Mode
from .runner import Call, text
from .schema import ImportArgv, experiment_keys


def import_counters(
    namespace: str,
    experiment: str,
    mode: str,
    now: int,
    new: tuple[int, str],
    counters: list[tuple[str, str, bytes | int]],
) -> Call[str | None]:
    """Import legacy counters ((goal, variant, value)); ``new``: de-dup window and analysis
    if the experiment is created. The mode already recorded if it differs."""
    window, analysis = new
    head = experiment_keys(namespace, experiment)
    argv = ImportArgv(
        mode=mode, experiment=experiment, now=now, new_window=window, new_analysis=analysis
    )
    args: list[Any] = [*argv]
    if mode == Mode.HLL:
        extra = [keys.import_scratch(namespace, experiment), keys.hll_index(namespace, experiment)]
        extra += [keys.hll(namespace, experiment, g, v) for g, v, _ in counters]
    else:
        extra = [keys.counts(namespace, experiment)]
    for goal, variant, value in counters:
        args += [goal, variant, keys.counts_field(goal, variant), value]

    def parse(reply: Any) -> str | None:
        return text(reply[0]) if isinstance(reply, list) else None

    return Call("import_legacy", [*head, *extra], args, parse)
