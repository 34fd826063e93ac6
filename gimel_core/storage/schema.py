"""Every fact Python and the Lua scripts share, in one place: the scripts spell none of them.

- the stored layout: the meta hash's fields (:class:`Meta`), the day length (:data:`DAY`),
  the KEYS every experiment script starts with (:func:`experiment_keys`);
- the words: counting modes and registrations (:mod:`gimel_core.vocabulary`), the
  ``participate`` pseudo-goal, clear.lua's actions, the reply tags;
- exact mode's de-dup constants (:mod:`gimel_core.dedup`, :mod:`gimel_core.keys`);
- each script's ARGV (:data:`ARGV`): ``NamedTuple`` classes whose fields are the slots, in
  order. The call builder fills them by name; the script gets the same names as locals.

:data:`PRELUDE` is generated from these, and :func:`binding` from a script's ARGV; the runner
puts both before each script (then ``prelude.lua``, the functions scripts share).
"""

import re
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

from .. import dedup, defaults, keys
from ..vocabulary import GoalType, Mode, Moment, Registration

DAY = 86_400
"""Seconds in a UTC day: history's interval, and what a day number (``now // DAY``) counts."""


class Meta:
    """Field names of an experiment's meta hash (``keys.meta``)."""

    NAME = "name"
    COUNTING = "counting"
    WINDOW = "window"
    """De-dup window of an exact experiment, seconds; 0 (``dedup.LIFE``): for its life."""
    CREATED = "created"
    RESET_AT = "reset_at"
    DAY = "day"
    """UTC day number (unix seconds // :data:`DAY`) of the last event: history snapshots it."""
    ANALYSIS = "analysis"
    """``sequential`` or ``fixed``; recorded when the experiment is created."""
    SEQUENTIAL_TUNING = "sequential_tuning"
    IMPORTED_AT = "imported_at"
    IMPORTED_PREFIX = "imported:"
    """``imported:<counts field>``: the legacy count imported last (import-legacy)."""
    PLAN = "plan"
    """The experiment's plan as canonical JSON (``gimel_core.plans``); absent: undeclared."""
    NAMES = "names"
    """Written with a plan that sums nothing (no value goal, no covariate): its names as
    track.lua looks an event's up, without decoding the plan (``plans.tracked_names``)."""
    CONTROL = "control"
    WEIGHTS = "weights"
    DESCRIPTION = "description"
    ARCHIVED = "archived"


def meta_fields() -> dict[str, str]:
    """Every meta field by its lower-case name, as the prelude's ``META`` table has them."""
    return {k.lower(): v for k, v in vars(Meta).items() if k.isupper()}


class ClearAction(StrEnum):
    """What clear.lua does."""

    DELETE = "delete"
    """Everything, and the registry entry."""
    RESET = "reset"
    """Counters only: settings, variant and goal names stay."""


class TrackTag(IntEnum):
    """First element of track.lua's reply, telling its three shapes apart."""

    COUNTED = 0
    RECORDED_OTHERWISE = 1
    SHARD_FULL = 2


class OffPlan(IntEnum):
    """Why track.lua answered an event without counting it: its number or covariate does not
    fit the plan. When any was, the Counted reply ends with one count per reason, in this order."""

    NOT_VALUE_GOAL = 1
    """A value on ``participate`` or on a goal not declared ``"type": "value"``."""
    NO_VALUE = 2
    """An event of a value goal without a value."""
    NEGATIVE = 3
    """A value or total below 0 on a goal not declared ``"negative": true``."""
    NOT_SUMMED = 4
    """A value in an experiment that keeps no sums (undeclared, or counted in hll mode)."""
    NO_COVARIATE = 5
    """A covariate, but the plan declares none."""


class ClearTag(IntEnum):
    """clear.lua's reply."""

    DONE = 1
    MISSING = 0
    CHANGED = -1
    """A variant or goal appeared since the caller read the sets: read again and retry."""


def experiment_keys(namespace: str, experiment: str) -> list[str]:
    """KEYS[1..4] of track, plan, clear and import: meta hash, registry shard, variants, goals."""
    return [
        keys.meta(namespace, experiment),
        keys.experiment_registry(namespace, experiment),
        keys.variants(namespace, experiment),
        keys.goals(namespace, experiment),
    ]


TRACK_SOURCES = 8
"""KEYS index (1-based) of track.lua's per-source counts of the current hour (``keys.sources``),
after the experiment's seven (the last its registry shard's open budget, ``keys.open_budget``)."""

SOURCES_EXPIRING = "expiring"
"""The field of an hour's per-source counts present once track.lua gave the key its expiry
(so that it does once an hour, not with each new source): no source's salted hash, 16 hex
digits, is this text."""

TRACK_FIRST_COUNTER = 9
"""KEYS index (1-based) of track.lua's first HyperLogLog (hll) or de-dup bucket (exact)."""


# -- the open-registration budget (track.lua, plan.lua) ---------------------------------


class OpenBudget:
    """Fields of a registry shard's budget hash (``keys.open_budget``). Every other field is
    the meta key of one undeclared experiment, valued ``"<bytes> <name>"``: what it holds."""

    TOTAL = "total"
    """Bytes the shard's undeclared experiments hold, all told."""
    PRUNED = "pruned"
    """Hour (unix seconds // :data:`PRUNE_INTERVAL`) of the last pass that forgot expired,
    deleted and declared experiments."""


PRUNE_INTERVAL = 3_600
"""Seconds between two passes over a shard's budget hash (each reads every entry)."""


class Cost:
    """Bytes an undeclared experiment is charged, on top of the length of the names it
    stores (as keys, set members or hash fields): an upper estimate of what Redis takes,
    checked against MEMORY USAGE by tests/test_budget.py."""

    KEY = 128
    """A key of its own: the keyspace entry, its expiry, the object header."""
    MEMBER = 64
    """A set member or hash field with its value."""
    HLL = 12_304
    """A HyperLogLog at its largest (dense: 16,384 six-bit registers and a header)."""
    META = 512
    """An experiment's meta fields (mode, window, created, analysis, day)."""


def cost_table() -> dict[str, int]:
    return {k.lower(): v for k, v in vars(Cost).items() if k.isupper()}


# -- the sums beside the counts (exact mode) ------------------------------------------

_COUNT = keys.counts_field("g", "v")
MOMENT_SUFFIX = {m.value: keys.moment_field("g", "v", m).removeprefix(_COUNT) for m in Moment}
"""What a (goal, variant) count's field is followed by to name one of its sums."""
SUM_FIELD = "^[^{0}]*{0}[^{0}]*{0}".format(_COUNT.removeprefix("g").removesuffix("v"))
"""Lua pattern of a sum's field among the counts hash's (a count's holds one separator)."""


# -- each script's ARGV: one slot per field, in order; ``int`` slots reach Lua as numbers ----


class TrackArgv(NamedTuple):
    """What changes from one call to the next (then :class:`TrackSettings`)."""

    experiment: str
    keys_mode: str
    """The counting mode the keys were built for."""
    keys_window: int
    """The de-dup window they were built for (``dedup.LIFE``: none, for life)."""
    now: int
    """Unix seconds."""
    bucket_expiry: int
    """exact with a window: when the current de-dup bucket may go (unix seconds); else 0."""
    counters: int
    """hll: the number of HyperLogLogs in KEYS (their counts fields follow); exact: 0."""


class TrackSettings(NamedTuple):
    """What a new experiment is created with, and the caps on names: the same for every call
    of a process, so written into track.lua's text (:data:`BAKED`), not sent with each call."""

    new_mode: str
    new_window: int
    new_analysis: str
    max_experiments: int
    """Most experiments in this registry shard (caps against a client inventing names)."""
    max_variants: int
    max_goals: int
    registration: str
    """``open`` counts undeclared experiments (creating them), ``declared`` only planned ones."""
    # -- the bytes public traffic can make Redis hold ------------------------------------
    open_budget: int
    """Bytes the undeclared experiments of one registry shard may hold (GIMEL_OPEN_BUDGET_BYTES
    spread over the shards); what would pass it is dropped."""
    idle_seconds: int
    """An undeclared experiment's keys expire this long after the first event of its last
    active day (GIMEL_OPEN_IDLE_DAYS)."""
    max_records: int
    """exact: most uuid records an experiment holds (GIMEL_DEDUP_MAX_RECORDS; with a window,
    each of its buckets a ``DEDUP_BUCKETS + 1``-th); new uuids past it are dropped."""


class TrackSource(NamedTuple):
    """Whose events these are, and how many new ones a source may add this hour (after
    :class:`TrackArgv`; ``gimel_core.sources``)."""

    source: str
    """The request's salted source hash; empty: not budgeted."""
    source_budget: int
    source_expiry: int
    """When the hour's per-source counts go (unix seconds): the end of the hour."""


NO_SOURCE = TrackSource("", 0, 0)
"""Events counted under no budget."""


class TrackEventArgv(NamedTuple):
    """One event's slots, repeated per event after the head (track.lua unpacks them by these
    names); numbers as decimal text, empty when the event has none."""

    variant: str
    goal: str
    member: str
    """hll: the uuid; exact: its de-dup record (``dedup.Record.member``)."""
    target: str
    """hll: the KEYS index of its HyperLogLog; exact: its field in the counts hash."""
    numbers: str
    """``value,total,covariate`` (the visitor's total on the goal before this event, sent with a
    value only), each decimal text or empty; empty when the event carries none (most)."""


TRACK_STRIDE = len(TrackEventArgv._fields)


class PlanArgv(NamedTuple):
    experiment: str
    new_mode: str
    new_window: int
    new_analysis: str
    now: int
    drop_undeclared: int
    """1: names counted that neither this plan nor the one before names are removed, with
    their counters, instead of refusing the plan."""
    variant_count: int
    """The plan's variants follow, then its goals' count and goals, then (when dropping)
    the count of the counts fields the plan keeps and those fields, then meta fields."""


class ClearArgv(NamedTuple):
    action: str
    """A :class:`ClearAction`."""
    experiment: str
    now: int
    """Recorded as ``reset_at``."""
    bucket_count: int
    """De-dup buckets at the end of KEYS."""
    variant_count: int
    """The variants the caller read follow, then the goals it read."""


class NamespaceArgv(NamedTuple):
    namespace: str
    most: int
    """Most namespaces."""


class WatchTag(IntEnum):
    """watch_save.lua's reply."""

    SAVED = 1
    LOST = 0
    """The lease is another watcher's now (or expired): nothing was written."""
    CHANGED = -1
    """The experiment was deleted or reset since it was read: nothing was written."""


class WatchClaimArgv(NamedTuple):
    token: str
    """The watcher's token: it takes a free lease, or renews its own."""
    lease_ms: int


class WatchSaveArgv(NamedTuple):
    token: str
    """The lease's token: written only while the lease is still this one."""
    epoch: str
    """The experiment's ``reset_at`` (else ``created``) when it was read."""
    release: int
    """1: give the lease up once saved."""
    log_most: int
    """Delivery records the log keeps."""
    set_count: int
    """From ARGV[fields_at]: set_count field, value pairs to set, then delete_count fields to
    delete, then delivery records to log (oldest first)."""
    delete_count: int


class ImportArgv(NamedTuple):
    mode: str
    experiment: str
    now: int
    new_window: int
    new_analysis: str
    """Window and analysis of an experiment the import creates."""


ARGV: dict[str, tuple[tuple[Any, ...], str | None]] = {
    "track": ((TrackArgv, TrackSource), "fields_at"),
    "read": ((), None),
    "plan": ((PlanArgv,), "variants_at"),
    "settings": ((), "fields_at"),
    "clear": ((ClearArgv,), "names_at"),
    "namespace": ((NamespaceArgv,), None),
    "import_legacy": ((ImportArgv,), "counters_at"),
    "watch_claim": ((WatchClaimArgv,), None),
    "watch_save": ((WatchSaveArgv,), "fields_at"),
}
"""Script -> its ARGV's named slots (the fields of these NamedTuples, one after the other), and
the name of the local holding the index where the variable-length tail starts (None: none)."""


BAKED: dict[str, Any] = {"track": TrackSettings}
"""Script -> the NamedTuple of its settings: the same in every call a process makes, so each
is a constant in the script's text (one script for each value of them; a process has one),
costing no ARGV slot, no parsing and no conversion in each call."""


def slots(script: str) -> list[tuple[str, type]]:
    """A script's named ARGV slots, in order, with their types."""
    return [(name, head.__annotations__[name]) for head in ARGV[script][0] for name in head._fields]


# -- Lua source ------------------------------------------------------------------------


def _lua(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _literal(value: str | int) -> str:
    """A text or a number as Lua source."""
    return _lua(value) if isinstance(value, str) else str(value)


def _table(items: Mapping[str, str | int]) -> str:
    fields = (f"{k} = {_literal(v)}" for k, v in items.items())
    return "{" + ", ".join(fields) + "}"


TABLES: dict[str, Mapping[str, str | int]] = {
    "META": meta_fields(),
    "MODE": {m.value: m.value for m in Mode},
    "REGISTRATION": {r.value: r.value for r in Registration},
    "TRACK": {t.name.lower(): int(t) for t in TrackTag},
    "OFF_PLAN": {t.name.lower(): int(t) for t in OffPlan},
    "GOAL_TYPE": {t.value: t.value for t in GoalType},
    "MOMENT": MOMENT_SUFFIX,
    "CLEAR": {t.name.lower(): int(t) for t in ClearTag},
    "WATCH": {t.name.lower(): int(t) for t in WatchTag},
    "ACTION": {a.value: a.value for a in ClearAction},
    "OPEN": {"total": OpenBudget.TOTAL, "pruned": OpenBudget.PRUNED},
    "COST": cost_table(),
    "DEDUP": {
        "load": dedup.LOAD,
        "buckets": defaults.DEDUP_BUCKETS,
        "sets": dedup.SETS,
        "path_digits": dedup.PATH_DIGITS,
        "separator": keys.SEEN_SEPARATOR,
        "size": keys.SEEN_SIZE,
    },
}
"""The prelude's tables of names: a script reads ``META.name`` as it would a Python constant.
:func:`inline` writes each such field as its value, so no call builds them."""

PRELUDE = "\n".join(
    [
        "-- Generated by gimel_core/storage/schema.py: the facts Python and the scripts share.",
        f"local DAY = {DAY}",
        f"local PARTICIPATE = {_lua(defaults.PARTICIPATE)}",
        f"local TRACK_STRIDE = {TRACK_STRIDE}",
        f"local SUM_FIELD = {_lua(SUM_FIELD)}",
        f"local TRACK_SOURCES = {TRACK_SOURCES}",
        f"local SOURCES_EXPIRING = {_lua(SOURCES_EXPIRING)}",
        f"local TRACK_FIRST_COUNTER = {TRACK_FIRST_COUNTER}",
        f"local PRUNE_INTERVAL = {PRUNE_INTERVAL}",
        *(f"local {name} = {_table(fields)}" for name, fields in TABLES.items()),
        "",
    ]
)

_FIELD = re.compile(r"\b(" + "|".join(TABLES) + r")\.([A-Za-z_]\w*)")
_COMMENT = re.compile(r"--[^\n]*")


def inline(script: str) -> str:
    """``script`` with every ``TABLE.field`` of :data:`TABLES` written as its value, and the
    table's line in the prelude dropped where nothing else reads it (``pairs(OFF_PLAN)`` does):
    a Lua table constructor runs on every call, ``META.name`` is then a constant. A field no
    table has is a ``KeyError`` here, when the script is loaded, instead of nil in Redis."""

    def value(found: re.Match[str]) -> str:
        item = TABLES[found[1]][found[2]]
        return _lua(item) if isinstance(item, str) else str(item)

    script = _FIELD.sub(value, script)
    code = _COMMENT.sub("", script)
    for name in TABLES:
        if len(re.findall(rf"\b{name}\b", code)) == 1:  # its definition only
            script = script.replace(f"local {name} = {_table(TABLES[name])}\n", "", 1)
    return script


_FUNCTION = re.compile(r"(?:^--[^\n]*\n)*^local function (\w+)\(.*?^end\n\n?", re.M | re.S)


def called(shared: str, body: str) -> str:
    """``shared`` (prelude.lua) without the functions ``body`` never calls, directly or through
    another: Lua makes a closure of each ``local function`` on every call of a script."""
    functions = {found[1]: found[0] for found in _FUNCTION.finditer(shared)}
    calling, kept = body, set()
    while more := {n for n in functions if n not in kept and re.search(rf"\b{n}\(", calling)}:
        kept |= more
        calling = "".join(functions[n] for n in more)
    for name, text in functions.items():
        if name not in kept:
            shared = shared.replace(text, "", 1)
    return shared


def binding(script: str, settings: tuple[Any, ...] | None = None) -> str:
    """The Lua lines that name a script's ARGV (and where its tail starts), from :data:`ARGV`,
    and its settings (:data:`BAKED`), written as their values."""
    named, tail = slots(script), ARGV[script][1]
    lines = ["-- Generated from gimel_core/storage/schema.py's ARGV."]
    baked = BAKED.get(script)
    if baked is not None:
        if not isinstance(settings, baked):
            raise TypeError(f"{script}.lua is written with its {baked.__name__}")
        for name, value in settings._asdict().items():
            lines.append(f"local {name} = {_literal(value)}")
    elif settings is not None:
        raise TypeError(f"{script}.lua has no settings")
    for i, (name, kind) in enumerate(named, 1):
        value = f"ARGV[{i}]"
        # An int slot is always a number's text (runner packs it): `+ 0` reads it once,
        # where Lua 5.1's tonumber reads it twice (lua_isnumber, then lua_tonumber).
        lines.append(f"local {name} = " + (f"{value} + 0" if kind is int else value))
    if tail:
        lines.append(f"local {tail} = {len(named) + 1}")
    return "\n".join(lines) + "\n"
