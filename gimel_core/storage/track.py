"""track.lua: count one experiment's events, creating the experiment if need be."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .. import defaults, keys
from ..vocabulary import Mode
from .runner import Call, text
from .schema import (
    NO_SOURCE,
    OffPlan,
    TrackArgv,
    TrackSettings,
    TrackSource,
    TrackTag,
    experiment_keys,
)


@dataclass(frozen=True, slots=True)
class Counted:
    new: int
    """Events that were new (a duplicate counts 0)."""
    dropped_variants: int
    """Events dropped because their variant would pass the cap."""
    dropped_goals: int
    undeclared: int = 0
    """Events dropped because their experiment, variant or goal is not declared."""
    over_source: int = 0
    """Events dropped because their source added its budget of new events this hour."""
    over_open: int = 0
    """Events dropped because what they would add passes the open budget."""
    over_records: int = 0
    """New uuids dropped because the current de-dup bucket is full (exact)."""
    off_plan: tuple[int, ...] = ()
    """Events answered but not counted because their number or covariate does not fit the
    plan, by :class:`OffPlan` reason (index ``reason - 1``; empty: none)."""

    def off(self, reason: OffPlan) -> int:
        return self.off_plan[reason - 1] if self.off_plan else 0


@dataclass(frozen=True, slots=True)
class RecordedOtherwise:
    """The experiment was recorded with another mode or window: rebuild the keys, call again."""

    mode: str
    window: int


@dataclass(frozen=True, slots=True)
class ShardFull:
    """A new experiment would pass the cap of its registry shard; nothing written."""


TrackReply = Counted | RecordedOtherwise | ShardFull


def _reply(packed: bytes) -> TrackReply:
    reply = packed.split()  # one text of numbers (and a mode) separated by spaces
    tag = int(reply[0])
    if tag == TrackTag.COUNTED:
        off_plan = tuple(int(n) for n in reply[8:])
        new, variants, goals, undeclared, over_source, over_open, over_records = map(
            int, reply[1:8]
        )
        return Counted(
            new,
            variants,
            goals,
            undeclared,
            over_source,
            over_open,
            over_records,
            off_plan if any(off_plan) else (),
        )
    if tag == TrackTag.RECORDED_OTHERWISE:
        return RecordedOtherwise(text(reply[1]), int(reply[2]))
    return ShardFull()


Numbers = str
"""An event's value, total and covariate as one text (:func:`numbers`): one ARGV slot, so that
the events that carry none (most) cost no more to send than before there were numbers."""

NO_NUMBERS: Numbers = ""
"""Those of an event that carries none (most)."""

TrackEvent = tuple[str, str, str, int, Numbers]
"""(variant, goal, uuid, the KEYS index of its HyperLogLog, numbers): one hll event."""

ExactEvent = tuple[str, str, str, str, Numbers]
"""(variant, goal, member, field of the counts hash, numbers): one exact event, its uuid as
a ``dedup.Record``'s member (``schema.TrackEventArgv``)."""


def numbers(value: float | None, total: float, covariate: float | None) -> Numbers:
    """An event's numbers as track.lua reads them: ``value,total,covariate``, each the shortest
    text that is the same double (``repr``: never a comma), empty where none; a total only
    with a value."""
    return ",".join(
        (
            "" if value is None else repr(value),
            "" if value is None else repr(total),
            "" if covariate is None else repr(covariate),
        )
    )


def _sources(namespace: str, experiment: str, now: int, source: TrackSource) -> str:
    """KEYS[TRACK_SOURCES]: the current clock hour's per-source counts holding the source's."""
    return keys.sources(namespace, experiment, now // defaults.SOURCE_WINDOW, source.source)


def source_budget(source: str, budget: int, now: int) -> TrackSource:
    """The ARGV that counts events under ``source``'s budget for the current hour."""
    hour = now // defaults.SOURCE_WINDOW
    return TrackSource(source, budget, (hour + 1) * defaults.SOURCE_WINDOW)


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
    source: TrackSource = NO_SOURCE,
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
    args: list[Any] = [*call, *source]
    args += [field for _, field in counters]
    for event in events:
        args += event
    head = [*_head(namespace, experiment, Mode.HLL), _sources(namespace, experiment, now, source)]
    return Call("track", [*head, *(key for key, _ in counters)], args, _reply, settings=new)


def track_exact(
    namespace: str,
    experiment: str,
    window: int,
    new: TrackSettings,
    now: int,
    buckets: list[str],
    bucket_expiry: int,
    events: list[ExactEvent],
    source: TrackSource = NO_SOURCE,
) -> Call[TrackReply]:
    """Count ``events`` of one exact experiment; ``buckets``: the de-dup buckets to look
    in (``keys.seen``, :func:`dedup.lookup_buckets`), current first; ``bucket_expiry``: when
    the current one may go."""
    call = TrackArgv(
        experiment=experiment,
        keys_mode=Mode.EXACT,
        keys_window=window,
        now=now,
        bucket_expiry=bucket_expiry,
        counters=0,
    )
    args: list[Any] = [*call, *source]
    for event in events:
        args += event
    head = [*_head(namespace, experiment, Mode.EXACT), _sources(namespace, experiment, now, source)]
    return Call("track", [*head, *buckets], args, _reply, settings=new)
