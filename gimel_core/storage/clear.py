"""clear.lua: delete or reset one experiment atomically, or do nothing."""

from __future__ import annotations

from collections.abc import Sequence

from .. import keys
from .runner import Call
from .schema import ClearAction, ClearArgv, ClearTag, experiment_keys


def clear(
    action: ClearAction,
    namespace: str,
    experiment: str,
    variants: list[bytes],
    goals: list[bytes],
    data_keys: list[str],
    now: int,
    buckets: Sequence[str] = (),
) -> Call[ClearTag]:
    """Delete or zero an experiment, if its names are still these; ``buckets``: its de-dup
    buckets (``keys.seen``), each removed with its whole tree."""
    head = [*experiment_keys(namespace, experiment), keys.open_budget(namespace, experiment)]
    argv = ClearArgv(
        action=action,
        experiment=experiment,
        now=now,
        bucket_count=len(buckets),
        variant_count=len(variants),
    )
    args = [*argv, *variants, *goals]
    return Call("clear", [*head, *data_keys, *buckets], args, lambda reply: ClearTag(int(reply)))
