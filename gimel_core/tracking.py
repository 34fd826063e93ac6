"""Counting events: admission (allowlists and caps), then one atomic script call.

An event goes: :meth:`Tracker.track` -> :meth:`Tracker._admit` (allowlists, the namespace
cap) -> one ``track.lua`` call (:mod:`gimel_core.storage.track`), which records a new
experiment, admits its variant and goal under their caps, and counts the uuid (PFADD, or
de-dup then a counter in exact mode). A batch groups its events by experiment and sends one
call per experiment in one pipeline.

An experiment's counting mode and de-dup window are recorded when its first event arrives;
the process remembers them per experiment, and the script tells it when it guessed wrong.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import dedup, keys
from .config import Config
from .errors import Refused, StoreUnavailable
from .events import Event
from .storage.namespace import admit_namespace
from .storage.runner import Call, Scripts
from .storage.schema import DAY, NO_SOURCE, TRACK_FIRST_COUNTER, OffPlan, TrackSettings
from .storage.track import (
    NO_NUMBERS,
    Counted,
    ExactEvent,
    Numbers,
    RecordedOtherwise,
    ShardFull,
    TrackEvent,
    TrackReply,
    numbers,
    source_budget,
    track_exact,
    track_hll,
)
from .store import StoreBacked
from .vocabulary import Mode

_CACHE_LIMIT = 10_000
_ATTEMPTS = 3
"""Calls per experiment before giving up (its mode changed under us each time)."""


@dataclass
class Tally:
    """What became of a list of events."""

    counted: int = 0
    """Events counted (duplicates included: they are delivered, just not new)."""
    new: int = 0
    refused: list[Refused] = field(default_factory=list)
    undeclared: int = 0
    """Events answered but not counted: their experiment, variant or goal is not declared."""
    over_budget: int = 0
    """Events answered but not counted: their source added its budget this hour."""
    off_plan: list[Refused] = field(default_factory=list)
    """Events answered but not counted: their value or covariate does not fit the plan."""


Ident = tuple[str, str]
"""(namespace, experiment)"""
_Pending = tuple[Ident, list[Event], str | None, Tally]
"""One script call to make: the experiment, its events, their source, the tally to add to."""


class Tracker(StoreBacked):
    """Counts events in Redis."""

    def __init__(
        self, scripts_: Scripts, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(scripts_, config, clock)
        self.new = TrackSettings(
            new_mode=config.counting,
            new_window=config.dedup_window,
            new_analysis=config.analysis,
            max_experiments=math.ceil(config.max_experiments / keys.SHARDS),
            max_variants=config.max_variants,
            max_goals=config.max_goals,
            registration=config.registration,
            open_budget=math.ceil(config.open_budget_bytes / keys.SHARDS),
            idle_seconds=config.open_idle_days * DAY,
            max_records=config.dedup_max_records,
        )
        self.budget = config.source_budget
        self._modes: dict[Ident, tuple[str, int]] = {}  # as recorded in Redis
        self._namespaces: set[str] = set()  # known to be admitted

    def track(self, event: Event, source: str | None = None) -> Tally:
        """Count one event (``new`` 1 if it was new). Refused if past a cap or an allowlist.

        ``source``: the salted hash of the client's address (``gimel_core.sources``), whose
        budget of new events per experiment and hour the event counts against; None: none."""
        (outcome,) = self.track_each([(event, source)])
        if isinstance(outcome, Refused):
            raise outcome
        return outcome

    def track_each(self, events: list[tuple[Event, str | None]]) -> list[Tally | Refused]:
        """Count events of separate requests, each with its source (as :meth:`track`), in one
        round trip: one script call per event, so each has its own answer (its tally, or why
        it was refused), exactly as if each had been sent alone."""
        outcomes: list[Tally | Refused] = []
        pending: list[_Pending] = []
        for event, source in events:
            ident = (event.namespace, event.experiment)
            tally = Tally()
            refusal = self._admit(*ident)
            if refusal is _UNDECLARED:  # answered, not counted: no refusal
                tally.undeclared = 1
            elif refusal is None:
                pending.append((ident, [event], source, tally))
            outcomes.append(tally if refusal is None or refusal is _UNDECLARED else refusal)
        self._count(pending)
        dropped: Counter[str] | None = None  # made for the rare call that drops an event
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Refused):
                dropped = dropped or Counter()
                dropped[outcome.reason] += 1
                continue
            if outcome.refused or outcome.undeclared or outcome.over_budget or outcome.off_plan:
                dropped = (dropped or Counter()) + _dropped(outcome.refused[:1], outcome)
            if outcome.refused:  # past a cap, found by the script
                outcomes[i] = outcome.refused[0]
        self._record_dropped(dropped)
        return outcomes

    def track_many(self, events: list[Event], source: str | None = None) -> Tally:
        """Count events: one script call per experiment, one pipeline, one round trip per node.

        Counting is idempotent (PFADD, or de-dup before the counter), so a batch that
        failed half-way can simply be sent again. Events past a cap or outside the
        allowlists are not counted; they are tallied (and added to the ``dropped`` counts), as
        are events the registration mode or a plan leaves out (``undeclared``) and those past
        their source's budget (``over_budget``; ``source`` as in :meth:`track`).
        """
        tally = Tally()
        groups: dict[Ident, list[Event]] = {}
        for event in events:
            ident = (event.namespace, event.experiment)
            if ident not in groups:
                refusal = self._admit(*ident)
                if refusal is _UNDECLARED:
                    tally.undeclared += 1
                    continue
                if refusal:
                    tally.refused.append(refusal)
                    continue
            groups.setdefault(ident, []).append(event)
        self._count([(ident, group, source, tally) for ident, group in groups.items()])
        self._record_dropped(_dropped(tally.refused, tally))
        return tally

    def count_filtered(self, n: int) -> None:
        """Tally requests from bots, answered 200 but not counted."""
        self.client.hincrby(keys.abuse(), "filtered", n)

    # -- one experiment -----------------------------------------------------------------

    def _count(self, pending: list[_Pending]) -> None:
        """One script call per item, all in one round trip, each reply added to its item's
        tally; sent again for the experiments whose mode was recorded otherwise than assumed
        (at most :data:`_ATTEMPTS` times)."""
        todo = [(*item, *self._assumed(item[0])) for item in pending]
        for _ in range(_ATTEMPTS):
            if not todo:
                return
            calls = [
                self._call(ident, events, mode, window, source)
                for ident, events, source, _, mode, window in todo
            ]
            retry = []
            for item, reply in zip(todo, self.scripts.run(calls), strict=True):
                ident, events, source, tally, mode, window = item
                moved = self._settle(ident, events, mode, window, reply, tally)
                if moved:
                    retry.append((ident, events, source, tally, moved.mode, moved.window))
            todo = retry
        if todo:
            raise StoreUnavailable("experiment settings kept changing during tracking")

    def _settle(
        self,
        ident: Ident,
        events: list[Event],
        mode: str,
        window: int,
        reply: TrackReply,
        tally: Tally,
    ) -> RecordedOtherwise | None:
        """Add a reply to the tally; the recorded mode if the call must be made again."""
        if isinstance(reply, RecordedOtherwise):
            return reply
        if isinstance(reply, ShardFull):
            tally.refused += [_refused("experiments", ident[1], self.config)] * len(events)
            return None
        assert isinstance(reply, Counted)
        self._remember(ident, mode, window)
        tally.new += reply.new
        if reply.new == len(events):  # the usual reply: every event new, none dropped
            tally.counted += reply.new
            return None
        dropped = {
            "variants": reply.dropped_variants,
            "goals": reply.dropped_goals,
            "budget": reply.over_open,
            "records": reply.over_records,
        }
        off_plan = sum(reply.off_plan)
        tally.counted += (
            len(events) - reply.undeclared - reply.over_source - sum(dropped.values()) - off_plan
        )
        tally.undeclared += reply.undeclared
        tally.over_budget += reply.over_source
        for reason, n in dropped.items():
            if n:  # a refusal's message is built only when there is one
                tally.refused += [_refused(reason, ident[1], self.config)] * n
        if off_plan:
            for why in OffPlan:
                tally.off_plan += [OFF_PLAN[why]] * reply.off(why)
        return None

    def _call(
        self, ident: Ident, events: list[Event], mode: str, window: int, source: str | None
    ) -> Call[TrackReply]:
        ns, exp = ident
        now = int(self.clock())
        budget = NO_SOURCE if source is None else source_budget(source, self.budget, now)
        if mode == Mode.HLL:
            counters: dict[tuple[str, str], int] = {}  # (goal, variant) -> KEYS index
            hll_events: list[TrackEvent] = []
            for e in events:
                slot = counters.get((e.event, e.variant))
                if slot is None:
                    slot = counters[e.event, e.variant] = TRACK_FIRST_COUNTER + len(counters)
                extra = NO_NUMBERS if e.value is None and e.covariate is None else _numbers(e)
                hll_events.append((e.variant, e.event, e.uuid, slot, extra))
            hlls = [(keys.hll(ns, exp, g, v), keys.counts_field(g, v)) for g, v in counters]
            return track_hll(ns, exp, self.new, now, hlls, hll_events, budget)
        exact_events: list[ExactEvent] = []
        for e in events:
            member = dedup.record(e.event, e.variant, e.uuid).member
            field_ = keys.counts_field(e.event, e.variant)
            extra = NO_NUMBERS if e.value is None and e.covariate is None else _numbers(e)
            exact_events.append((e.variant, e.event, member, field_, extra))
        buckets = [keys.seen(ns, exp, b) for b in dedup.lookup_buckets(window, now)]
        expiry = dedup.expiry(window, now)
        return track_exact(ns, exp, window, self.new, now, buckets, expiry, exact_events, budget)

    # -- admission and caches -----------------------------------------------------------

    def _admit(self, namespace: str, experiment: str) -> Refused | None:
        """Allowlists and the cap on namespaces (checked in Redis once per process).

        In declared registration no namespace is created by an event: one is known only once
        an experiment in it is declared (:data:`_UNDECLARED` until then).
        """
        allowed = self.config.allowed_namespaces
        if allowed is not None and namespace not in allowed:
            return Refused("namespace", "allowlist", f"namespace {namespace!r} is not allowed")
        allowed = self.config.allowed_experiments
        if allowed is not None and experiment not in allowed:
            return Refused("experiment", "allowlist", f"experiment {experiment!r} is not allowed")
        if namespace not in self._namespaces:
            declared_only = self.config.registration == "declared"
            most = 0 if declared_only else self.config.max_namespaces
            if not self.scripts.run_one(admit_namespace(namespace, most)):
                return (
                    _UNDECLARED if declared_only else _refused("namespaces", namespace, self.config)
                )
            if len(self._namespaces) < _CACHE_LIMIT:
                self._namespaces.add(namespace)
        return None

    def _record_dropped(self, dropped: Counter[str] | None) -> None:
        """Add to the ``dropped`` counts, by reason: one round trip, none when nothing was."""
        if not dropped:
            return
        pipe = self.client.pipeline(transaction=False)
        for reason, n in dropped.items():
            pipe.hincrby(keys.abuse(), f"dropped:{reason}", n)
        pipe.execute()

    def _assumed(self, ident: Ident) -> tuple[str, int]:
        return self._modes.get(ident) or (self.config.counting, self.config.dedup_window)

    def _remember(self, ident: Ident, mode: str, window: int) -> None:
        if len(self._modes) >= _CACHE_LIMIT:
            self._modes.clear()
        self._modes[ident] = (mode, window)


UNDECLARED = "undeclared"
"""``meta.dropped`` reason of events for names no plan declares (answered 200, not counted)."""
OVER_BUDGET = "source"
"""``meta.dropped`` reason of events past their source's budget (answered 200, not counted)."""
_UNDECLARED = Refused("namespace", UNDECLARED, "not counted: no experiment is declared here")
VALUE, COVARIATE = "value", "covariate"
"""``meta.dropped`` reasons of events whose value or covariate does not fit the plan (answered
200, not counted)."""
OFF_PLAN = {
    OffPlan.NOT_VALUE_GOAL: Refused(
        "value",
        VALUE,
        'not counted: a value on participate or on a goal not declared "type": "value"',
    ),
    OffPlan.NO_VALUE: Refused(
        "value", VALUE, "not counted: an event of a value goal needs a 'value'"
    ),
    OffPlan.NEGATIVE: Refused(
        "value",
        VALUE,
        'not counted: a value or total below 0 on a goal not declared "negative": true',
    ),
    OffPlan.NOT_SUMMED: Refused(
        "value",
        VALUE,
        "not counted: this experiment keeps no values (only one declared by a plan and "
        "counted in exact mode does)",
    ),
    OffPlan.NO_COVARIATE: Refused(
        "covariate", COVARIATE, "not counted: a covariate, but the plan declares none"
    ),
}


def _dropped(refused: list[Refused], tally: Tally) -> Counter[str]:
    """The events of ``tally`` answered but not counted, and ``refused``, by reason."""
    dropped = Counter(r.reason for r in (*refused, *tally.off_plan))
    if tally.undeclared:
        dropped[UNDECLARED] = tally.undeclared
    if tally.over_budget:
        dropped[OVER_BUDGET] = tally.over_budget
    return dropped


def _numbers(e: Event) -> Numbers:
    return numbers(e.value, e.total, e.covariate)


def _refused(reason: str, name: str, config: Config) -> Refused:
    field_, limit, variable, what = {
        "namespaces": ("namespace", config.max_namespaces, "GIMEL_MAX_NAMESPACES", "namespaces"),
        "experiments": (
            "experiment",
            config.max_experiments,
            "GIMEL_MAX_EXPERIMENTS",
            "experiments in this namespace",
        ),
        "variants": (
            "variant",
            config.max_variants,
            "GIMEL_MAX_VARIANTS",
            f"variants in experiment {name!r}",
        ),
        "goals": ("event", config.max_goals, "GIMEL_MAX_GOALS", f"goals in experiment {name!r}"),
        "budget": (
            "experiment",
            config.open_budget_bytes,
            "GIMEL_OPEN_BUDGET_BYTES",
            "bytes held by this namespace's undeclared experiments",
        ),
        "records": (
            "uuid",
            config.dedup_max_records,
            "GIMEL_DEDUP_MAX_RECORDS",
            f"uuid records of experiment {name!r} (with a window: a fifth per de-dup bucket)",
        ),
    }[reason]
    return Refused(field_, reason, f"not counted: at most {limit} {what} ({variable})")
