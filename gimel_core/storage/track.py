"""track.lua: count one experiment's events, creating the experiment if need be."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .. import keys
from ..vocabulary import Mode
from .runner import Call, text
from .schema import TrackArgv, TrackSettings, TrackTag, experiment_keys


@dataclass(frozen=True, slots=True)
class Counted:
    new: int
    """Events that were new (a duplicate counts 0)."""
    dropped_variants: int
    """Events dropped because their variant would pass the cap."""
    dropped_goals: int
    undeclared: int = 0
    """Events dropped because their experiment, variant or goal is not declared."""
    over_budget: int = 0
    """Events dropped because what they would add passes the open budget."""
    over_records: int = 0
    """New uuids dropped because the current de-dup bucket is full (exact)."""


@dataclass(frozen=True, slots=True)
class RecordedOtherwise:
    """The experiment was recorded with another mode or window: rebuild the keys, call again."""

    mode: str
    window: int


@dataclass(frozen=True, slots=True)
class ShardFull:
    """A new experiment would pass the cap of its registry shard; nothing written."""


TrackReply = Counted | RecordedOtherwise | ShardFull


def _reply(reply: list[Any]) -> TrackReply:
    tag = int(reply[0])
    if tag == TrackTag.COUNTED:
        return Counted(*(int(n) for n in reply[1:7]))
    if tag == TrackTag.RECORDED_OTHERWISE:
        return RecordedOtherwise(text(reply[1]), int(reply[2]))
    return ShardFull()


TrackEvent = tuple[str, str, str, int]
"""(variant, goal, uuid, the KEYS index of its HyperLogLog): one hll event."""

ExactEvent = tuple[str, str, str, str]
"""(variant, goal, member, field of the counts hash): one exact event, its uuid as a
``dedup.Record``'s member."""


@lru_cache(maxsize=4_096)
def _head(namespace: str, experiment: str, mode: str) -> tuple[str, ...]:
    """KEYS[1..7]: the same for every call of an experiment, so built once per process."""
    sixth = keys.hll_index if mode == Mode.HLL else keys.counts
    history = keys.history(namespace, experiment)
    budget = keys.open_budget(namespace, experiment)
    return (*experiment_keys(namespace, experiment), history, sixth(namespace, experiment), budget)


def track_hll(
    namespace: str,
    experiment: str,
    new: TrackSettings,
    now: int,
    counters: list[tuple[str, str]],
    events: list[TrackEvent],
) -> Call[TrackReply]:
    """Count ``events`` of one hll experiment; ``counters``: (HyperLogLog key, counts field),
    in the order their KEYS indexes (from TRACK_FIRST_COUNTER) were given to the events."""
    call = TrackArgv(
        experiment=experiment,
        keys_mode=Mode.HLL,
        keys_window=0,
        now=now,
        bucket_expiry=0,
        counters=len(counters),
    )
    args: list[Any] = [*call, *new]
    args += [field for _, field in counters]
    for event in events:
        args += event
    head = _head(namespace, experiment, Mode.HLL)
    return Call("track", [*head, *(key for key, _ in counters)], args, _reply)


def track_exact(
    namespace: str,
    experiment: str,
    window: int,
    new: TrackSettings,
    now: int,
    buckets: list[str],
    bucket_expiry: int,
    events: list[ExactEvent],
) -> Call[TrackReply]:
    """Count ``events`` of one exact experiment; ``buckets``: the de-dup buckets in the
    window (``keys.seen``), current first; ``bucket_expiry``: when the current one may go."""
    call = TrackArgv(
        experiment=experiment,
        keys_mode=Mode.EXACT,
        keys_window=window,
        now=now,
        bucket_expiry=bucket_expiry,
        counters=0,
    )
    args: list[Any] = [*call, *new]
    for event in events:
        args += event
    return Call("track", [*_head(namespace, experiment, Mode.EXACT), *buckets], args, _reply)
