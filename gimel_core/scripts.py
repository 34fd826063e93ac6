"""Gimel's Lua scripts: the names they share with Python, and one typed call per script.

Each ``lua/<name>.lua`` file starts by naming its ``KEYS`` and ``ARGV``; here, each has one
function that builds those from Python values and parses the reply into a small typed value
(a :class:`Call`). :meth:`Scripts.run` sends any list of calls in one round trip (directly
for one, pipelined for more) and reloads a script Redis has lost (NOSCRIPT, after a restart
or a failover) once, the same way for both.

The names both sides use (the ``participate`` pseudo-goal, the meta hash's fields, the
counting modes, reply tags) are defined here only: every script is prefixed with
:data:`PRELUDE`, generated from these constants, and spells none of them itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import redis

from . import dedup, defaults, keys
from .errors import StoreUnavailable
from .vocabulary import Mode, Registration


class Meta:
    """Field names of an experiment's meta hash (``keys.meta``)."""

    NAME = "name"
    COUNTING = "counting"
    WINDOW = "window"
    """De-dup window of an exact experiment, seconds."""
    CREATED = "created"
    RESET_AT = "reset_at"
    DAY = "day"
    """UTC day number (unix seconds // 86400) of the last event: history snapshots it."""
    ANALYSIS = "analysis"
    """``sequential`` or ``fixed``; recorded when the experiment is created."""
    SEQUENTIAL_TUNING = "sequential_tuning"
    IMPORTED_AT = "imported_at"
    IMPORTED_PREFIX = "imported:"
    """``imported:<counts field>``: the legacy count imported last (import-legacy)."""
    PLAN = "plan"
    """The experiment's plan as canonical JSON (``gimel_core.plans``); absent: undeclared."""
    CONTROL = "control"
    WEIGHTS = "weights"
    DESCRIPTION = "description"
    ARCHIVED = "archived"


CLEAR_ACTIONS = ("delete", "reset")
"""What clear.lua does: delete an experiment, or zero its counters and keep its settings."""


class TrackTag(IntEnum):
    """First element of track.lua's reply, telling its three shapes apart."""

    COUNTED = 0
    RECORDED_OTHERWISE = 1
    SHARD_FULL = 2


class ClearTag(IntEnum):
    """clear.lua's reply."""

    DONE = 1
    MISSING = 0
    CHANGED = -1
    """A variant or goal appeared since the caller read the sets: read again and retry."""


def _lua(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _table(items: dict[str, Any]) -> str:
    fields = (f"{k} = {_lua(v) if isinstance(v, str) else v}" for k, v in items.items())
    return "{" + ", ".join(fields) + "}"


PRELUDE = "\n".join(
    [
        "-- Prepended by gimel_core/scripts.py: the names Python and the scripts share.",
        f"local PARTICIPATE = {_lua(defaults.PARTICIPATE)}",
        "local META = " + _table({k.lower(): v for k, v in vars(Meta).items() if k.isupper()}),
        f"local MODE = {_table({m.value: m.value for m in Mode})}",
        f"local REGISTRATION = {_table({r.value: r.value for r in Registration})}",
        f"local TRACK = {_table({t.name.lower(): int(t) for t in TrackTag})}",
        f"local CLEAR = {_table({t.name.lower(): int(t) for t in ClearTag})}",
        f"local ACTION = {_table({a: a for a in CLEAR_ACTIONS})}",
        "local DEDUP = "
        + _table(
            {
                "load": dedup.LOAD,
                "sets": dedup.SETS,
                "path_digits": dedup.PATH_DIGITS,
                "separator": keys.SEEN_SEPARATOR,
                "size": keys.SEEN_SIZE,
            }
        ),
        "",
    ]
)


@cache
def _source(name: str) -> tuple[str, str]:
    """The script as Redis runs it (prelude + file), and its SHA1."""
    body = resources.files("gimel_core").joinpath("lua", f"{name}.lua").read_text("utf-8")
    text = PRELUDE + body
    return text, hashlib.sha1(text.encode()).hexdigest()


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: its keys and arguments, and how to read its reply."""

    script: str
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]


class Scripts:
    """Runs calls over one client (a single server or a cluster)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def run_one(self, call: Call[T]) -> T:
        return self.run([call])[0]

    def run(self, calls: Sequence[Call[Any]]) -> list[Any]:
        """Every call in one round trip per node; their parsed replies, in order."""
        replies = self._send(calls)
        lost = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if lost:  # flushed or restarted since the last call: load once, send those again
            for name in {calls[i].script for i in lost}:
                self.client.script_load(_source(name)[0])
            for i, reply in zip(lost, self._send([calls[i] for i in lost]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, redis.exceptions.NoScriptError):
                raise StoreUnavailable("a Lua script could not be loaded")
            if isinstance(reply, Exception):
                raise reply
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    def _send(self, calls: Sequence[Call[Any]]) -> list[Any]:
        if len(calls) == 1:  # the common case, one event: no pipeline
            try:
                return [self.client.execute_command(*_command(calls[0]))]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            # execute_command: cluster pipelines refuse .evalsha(), but route this by its
            # first key like any other command.
            pipe.execute_command(*_command(call))
        return cast(list[Any], pipe.execute(raise_on_error=False))


def _command(call: Call[Any]) -> list[Any]:
    return ["EVALSHA", _source(call.script)[1], len(call.keys), *call.keys, *call.args]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def experiment_keys(namespace: str, experiment: str) -> list[str]:
    """KEYS[1..4] of track, clear and import: meta hash, registry shard, variants, goals."""
    return [
        keys.meta(namespace, experiment),
        keys.experiment_registry(namespace, experiment),
        keys.variants(namespace, experiment),
        keys.goals(namespace, experiment),
    ]


# -- track.lua --------------------------------------------------------------------------------


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


def _track_reply(reply: list[Any]) -> TrackReply:
    tag = int(reply[0])
    if tag == TrackTag.COUNTED:
        return Counted(int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))
    if tag == TrackTag.RECORDED_OTHERWISE:
        return RecordedOtherwise(_text(reply[1]), int(reply[2]))
    return ShardFull()


TRACK_FIRST_COUNTER = 7
"""KEYS index (1-based) of track.lua's first HyperLogLog (hll) or de-dup bucket (exact)."""

TrackEvent = tuple[str, str, str, int]
"""(variant, goal, uuid, the KEYS index of its HyperLogLog): one hll event."""

ExactEvent = tuple[str, str, str, bytes, str]
"""(variant, goal, member, legacy digest, field of the counts hash): one exact event, its
uuid as a ``dedup.Record``."""


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
    args = _track_args(experiment, "hll", 0, new, now, 0)
    args += [len(counters), *(field for _, field in counters)]
    for event in events:
        args += event
    return Call("track", [*head, *(key for key, _ in counters)], args, _track_reply)


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
    args = [*_track_args(experiment, "exact", window, new, now, bucket_expiry), 0]
    for event in events:
        args += event
    return Call("track", [*head, *buckets], args, _track_reply)


def _track_args(
    experiment: str, mode: str, window: int, new: TrackSettings, now: int, bucket_expiry: int
) -> list[Any]:
    return [
        experiment,
        mode,
        window,
        new.mode,
        new.window,
        now,
        bucket_expiry,
        new.max_experiments_per_shard,
        new.max_variants,
        new.max_goals,
        new.analysis,
        new.registration,
    ]


# -- read.lua and migrate.lua ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """One experiment as read.lua returns it."""

    meta: dict[str, str]
    variants: tuple[str, ...]
    goals: tuple[str, ...]
    history: dict[str, str]
    """UTC day number -> the JSON snapshot of that day."""
    counts: dict[str, int]
    """counts field (``keys.counts_field``) -> count."""


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def stored(reply: bytes) -> Stored:
    """A reply of :func:`read`, parsed."""
    # Names are valid UTF-8 (checked where they come in); surrogateescape keeps anything
    # older readable rather than failing the whole listing.
    meta, variants, goals, history, counts = (
        item or [] for item in json.loads(reply.decode("utf-8", "surrogateescape"))
    )
    return Stored(
        meta=_pairs(meta),
        variants=tuple(sorted(variants)),
        goals=tuple(sorted(goals)),
        history=_pairs(history),
        counts={k: int(v) for k, v in _pairs(counts).items()},
    )


def read(namespace: str, experiment: str) -> Call[bytes]:
    """Everything results and history are computed from, in one call: the reply as it came
    (one JSON string; :func:`stored` parses it), so that it can also key a cache."""
    return Call(
        "read",
        [
            keys.meta(namespace, experiment),
            keys.variants(namespace, experiment),
            keys.goals(namespace, experiment),
            keys.history(namespace, experiment),
            keys.hll_index(namespace, experiment),
            keys.counts(namespace, experiment),
        ],
        [],
        bytes,
    )


def migrate(
    namespace: str, experiment: str, today: int, hlls: list[tuple[str, str]]
) -> Call[list[int]]:
    """Index an experiment counted before history was kept (``hlls``: its HyperLogLogs as
    (key, counts field); none for exact) and start its history; their counts, in order."""
    head = [keys.meta(namespace, experiment), keys.hll_index(namespace, experiment)]
    args = [today, *(field for _, field in hlls)]
    return Call("migrate", [*head, *(key for key, _ in hlls)], args, lambda r: [int(n) for n in r])


# -- plan.lua --------------------------------------------------------------------------------


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
    args: list[Any] = [experiment, *new, now]
    args += [len(variants), *variants, len(goals), *goals]
    args += [item for pair in fields.items() for item in pair]

    def parse(reply: list[Any]) -> Declared | Undeclared:
        if int(reply[0]):
            return Declared(bool(int(reply[1])))
        return Undeclared(tuple(map(_text, reply[1])), tuple(map(_text, reply[2])))

    return Call("plan", experiment_keys(namespace, experiment), args, parse)


# -- namespace.lua ----------------------------------------------------------------------------


def admit_namespace(namespace: str, most: int) -> Call[bool]:
    """True if the namespace is known, or new and under the cap (then it is recorded)."""
    return Call("namespace", [keys.namespaces()], [namespace, most], bool)


# -- settings.lua -----------------------------------------------------------------------------


def settings(namespace: str, experiment: str, fields: dict[str, str]) -> Call[bool]:
    """Set meta fields of an existing experiment (an empty value removes one); False if absent."""
    args = [item for pair in fields.items() for item in pair]
    return Call("settings", [keys.meta(namespace, experiment)], args, bool)


# -- clear.lua --------------------------------------------------------------------------------


def clear(
    action: str,
    namespace: str,
    experiment: str,
    variants: list[bytes],
    goals: list[bytes],
    data_keys: list[str],
    now: int,
    buckets: Sequence[str] = (),
) -> Call[ClearTag]:
    """Delete (``delete``) or zero (``reset``) an experiment, if its names are still these;
    ``buckets``: its de-dup buckets (``keys.seen``), each removed with its whole tree."""
    head = experiment_keys(namespace, experiment)
    args = [action, experiment, now, len(buckets), len(variants), *variants, *goals]
    return Call("clear", [*head, *data_keys, *buckets], args, lambda reply: ClearTag(int(reply)))


# -- import.lua -------------------------------------------------------------------------------


def import_counters(
    namespace: str,
    experiment: str,
    mode: str,
    now: int,
    window: int,
    counters: list[tuple[str, str, bytes | int]],
) -> Call[str | None]:
    """Import legacy counters ((goal, variant, value)); the mode already recorded if it differs."""
    head = experiment_keys(namespace, experiment)
    args: list[Any] = [mode, experiment, now, window]
    if mode == "hll":
        extra = [keys.import_scratch(namespace, experiment), keys.hll_index(namespace, experiment)]
        extra += [keys.hll(namespace, experiment, g, v) for g, v, _ in counters]
        for goal, variant, value in counters:
            args += [goal, variant, keys.counts_field(goal, variant), value]
    else:
        extra = [keys.counts(namespace, experiment)]
        for goal, variant, value in counters:
            args += [goal, variant, keys.counts_field(goal, variant), value]

    def parse(reply: Any) -> str | None:
        return _text(reply[0]) if isinstance(reply, list) else None

    return Call("import", [*head, *extra], args, parse)
