"""track.lua: count one experiment's events, creating the experiment if need be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import defaults, keys
from ..vocabulary import Mode
from .runner import Call, text
from .schema import TrackArgv, TrackTag, experiment_keys


@dataclass(frozen=True, slots=True)
class Counted:
    new: int
    """Events that were new (a duplicate counts 0)."""
    dropped_variants: int
    """Events dropped because their variant would pass the cap."""
    dropped_goals: int
    undeclared: int = 0
    """Events dropped because their experiment, variant or goal is not declared."""


@dataclass(frozen=True, slots=True)
class RecordedOtherwise:
    """The experiment was recorded with another mode or window: rebuild the keys, call again."""

    mode: str
    window: int


@dataclass(frozen=True, slots=True)
class ShardFull:
    """A new experiment would pass the cap of its registry shard; nothing written."""


TrackReply = Counted | RecordedOtherwise | ShardFull


@dataclass(frozen=True, slots=True)
class TrackSettings:
    """What a new experiment is created with, and the caps on names."""

    mode: str
    window: int
    analysis: str
    max_experiments_per_shard: int
    max_variants: int
    max_goals: int
    registration: str = defaults.REGISTRATION
    """``open``: count undeclared experiments too; ``declared``: only those with a plan."""


def _reply(reply: list[Any]) -> TrackReply:
    tag = int(reply[0])
    if tag == TrackTag.COUNTED:
        return Counted(int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))
    if tag == TrackTag.RECORDED_OTHERWISE:
        return RecordedOtherwise(text(reply[1]), int(reply[2]))
    return ShardFull()


TrackEvent = tuple[str, str, str, int]
"""(variant, goal, uuid, the KEYS index of its HyperLogLog): one hll event."""

ExactEvent = tuple[str, str, str, str]
"""(variant, goal, member, field of the counts hash): one exact event, its uuid as a
``dedup.Record``'s member."""


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
    head = [
        *experiment_keys(namespace, experiment),
        keys.history(namespace, experiment),
        keys.hll_index(namespace, experiment),
    ]
    args = _argv(experiment, Mode.HLL, 0, new, now, 0, len(counters))
    args += [field for _, field in counters]
    for event in events:
        args += event
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
    head = [
        *experiment_keys(namespace, experiment),
        keys.history(namespace, experiment),
        keys.counts(namespace, experiment),
    ]
    args = _argv(experiment, Mode.EXACT, window, new, now, bucket_expiry, 0)
    for event in events:
        args += event
    return Call("track", [*head, *buckets], args, _reply)


def _argv(
    experiment: str,
    mode: str,
    window: int,
    new: TrackSettings,
    now: int,
    bucket_expiry: int,
    counters: int,
) -> list[Any]:
    return [
        *TrackArgv(
            experiment=experiment,
            keys_mode=mode,
            keys_window=window,
            new_mode=new.mode,
            new_window=new.window,
            now=now,
            bucket_expiry=bucket_expiry,
            max_experiments=new.max_experiments_per_shard,
            max_variants=new.max_variants,
            max_goals=new.max_goals,
            new_analysis=new.analysis,
            registration=new.registration,
            counters=counters,
        )
    ]
