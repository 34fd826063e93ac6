"""Counting events and reading counts back, over Redis.

Each event is one atomic script call (``lua/track.lua``). An experiment's counting mode
and de-dup window are recorded when its first event arrives; the process remembers them
per experiment, and the script tells it when it guessed wrong.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from . import defaults, keys, settings, stats
from .config import Config
from .errors import Refused, StoreUnavailable, UnknownExperiment
from .events import Event
from .store import load_script, unavailable

_MODES_CACHE_LIMIT = 10_000
_CLEAR_ATTEMPTS = 20


def digest(goal: str, variant: str, uuid: str) -> bytes:
    """8-byte de-dup record of one uuid for one counter (exact mode).

    Names cannot contain control characters, so NUL separates them unambiguously. With 64
    bits, two uuids of one experiment collide with probability about n^2 / 3.7e19: for a
    million uuids in one window, 3 in 100 million.
    """
    data = f"{goal}\0{variant}\0{uuid}".encode()
    return hashlib.blake2b(data, digest_size=8).digest()


def bucket_length(window: int) -> int:
    return max(1, math.ceil(window / defaults.DEDUP_BUCKETS))


def seen_buckets(window: int, now: float) -> range:
    """De-dup buckets that may hold a record younger than ``window``, newest first."""
    length = bucket_length(window)
    current = int(now) // length
    oldest = (int(now) - window) // length
    return range(current, oldest - 1, -1)


class Counters:
    """Gimel's counting logic over one Redis client."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.client = client
        self.config = config
        self._track = load_script(client, "track")
        self._clear_script = load_script(client, "clear")
        self._settings = load_script(client, "settings")
        self._counts = load_script(client, "counts")
        # (namespace, experiment) -> (mode, window) as recorded in Redis.
        self._modes: dict[tuple[str, str], tuple[str, int]] = {}
        self._namespaces: set[str] = set()  # namespaces known to be admitted
        self._namespace = load_script(client, "namespace")

    # -- writing -----------------------------------------------------------------------

    def track(self, event: Event) -> bool:
        """Count one event; True if it was new. Refused if past a cap or an allowlist."""
        tally = self.track_many([event])
        if tally.refused:
            raise tally.refused[0]
        return tally.new > 0

    def track_many(self, events: list[Event]) -> Tally:
        """Count events: one script call per experiment, one pipeline, one round trip per node.

        Counting is idempotent (PFADD, or de-dup before the counter), so a batch that
        failed half-way can simply be sent again. Events past a cap or outside the
        allowlists are not counted; they are tallied (and added to the ``dropped`` counts).
        """
        tally = Tally()
        groups: dict[tuple[str, str], list[Event]] = {}
        with unavailable():
            for event in events:
                ident = (event.namespace, event.experiment)
                if ident not in groups:
                    refusal = self._admit(*ident)
                    if refusal:
                        tally.refuse(refusal)
                        continue
                groups.setdefault(ident, []).append(event)
            pending = [(ident, group, *self._assumed(ident)) for ident, group in groups.items()]
            for _ in range(3):
                if len(pending) == 1:  # the common case, one event: no pipeline needed
                    replies = [self._track(*self._call(*pending[0]))]
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for ident, group, mode, window in pending:
                        keys_, args = self._call(ident, group, mode, window)
                        # execute_command: cluster pipelines refuse .evalsha() but route
                        # this by its first key like any other command.
                        pipe.execute_command("EVALSHA", self._track.sha, len(keys_), *keys_, *args)
                    replies = pipe.execute(raise_on_error=False)
                retry = []
                for (ident, group, mode, window), reply in zip(pending, replies, strict=True):
                    if isinstance(reply, redis.exceptions.NoScriptError):
                        retry.append((ident, group, mode, window))
                        self.client.script_load(self._track.script)  # lost on a restart
                    elif isinstance(reply, Exception):
                        raise reply
                    elif isinstance(reply[0], bytes) and len(reply) == 2:
                        # recorded with another mode or window: rebuild the keys, call again
                        retry.append((ident, group, reply[0].decode(), int(reply[1])))
                    elif isinstance(reply[0], bytes):
                        for _ in group:
                            tally.refuse(_refused("experiments", ident[1], self.config))
                    else:
                        self._remember(ident, mode, window)
                        new, dropped_variants, dropped_goals = (int(n) for n in reply)
                        tally.new += new
                        tally.counted += len(group) - dropped_variants - dropped_goals
                        for _ in range(dropped_variants):
                            tally.refuse(_refused("variants", ident[1], self.config))
                        for _ in range(dropped_goals):
                            tally.refuse(_refused("goals", ident[1], self.config))
                if not retry:
                    break
                pending = retry
            else:
                raise StoreUnavailable("experiment settings kept changing during tracking")
            if tally.refused:
                for reason, n in Counter(r.reason for r in tally.refused).items():
                    self.client.hincrby(keys.abuse(), f"dropped:{reason}", n)
        return tally

    def _admit(self, namespace: str, experiment: str) -> Refused | None:
        """Allowlists and the cap on namespaces (checked in Redis once per process)."""
        allowed = self.config.allowed_namespaces
        if allowed is not None and namespace not in allowed:
            return Refused("namespace", "allowlist", f"namespace {namespace!r} is not allowed")
        allowed = self.config.allowed_experiments
        if allowed is not None and experiment not in allowed:
            return Refused("experiment", "allowlist", f"experiment {experiment!r} is not allowed")
        if namespace not in self._namespaces:
            known = self._namespace(
                keys=[keys.namespaces()], args=[namespace, self.config.max_namespaces]
            )
            if not known:
                return _refused("namespaces", namespace, self.config)
            if len(self._namespaces) < _MODES_CACHE_LIMIT:
                self._namespaces.add(namespace)
        return None

    def count_filtered(self, n: int) -> None:
        """Tally requests from bots, answered 200 but not counted."""
        with unavailable():
            self.client.hincrby(keys.abuse(), "filtered", n)

    def abuse_counts(self) -> dict[str, Any]:
        with unavailable():
            return _abuse(self.client.hgetall(keys.abuse()))

    def _assumed(self, ident: tuple[str, str]) -> tuple[str, int]:
        return self._modes.get(ident) or (self.config.counting, self.config.dedup_window)

    def _remember(self, ident: tuple[str, str], mode: str, window: int) -> None:
        if len(self._modes) >= _MODES_CACHE_LIMIT:
            self._modes.clear()
        self._modes[ident] = (mode, window)

    def _call(
        self, ident: tuple[str, str], events: list[Event], mode: str, window: int
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of track.lua for events of one experiment."""
        ns, exp = ident
        now = int(time.time())
        keys_ = [
            keys.meta(ns, exp),
            keys.experiment_registry(ns, exp),
            keys.variants(ns, exp),
            keys.goals(ns, exp),
        ]
        args: list[Any] = [
            exp,
            mode,
            window,
            self.config.counting,
            self.config.dedup_window,
            now,
            0,  # exact: expiry of the current de-dup bucket, set below
            math.ceil(self.config.max_experiments / keys.SHARDS),
            self.config.max_variants,
            self.config.max_goals,
        ]
        if mode == "hll":
            slots: dict[tuple[str, str], int] = {}
            for e in events:
                slot = slots.get((e.event, e.variant))
                if slot is None:
                    keys_.append(keys.hll(ns, exp, e.event, e.variant))
                    slot = slots[e.event, e.variant] = len(keys_)
                args += [e.variant, e.event, e.uuid, slot]
            return keys_, args
        buckets = seen_buckets(window, now)
        args[6] = (buckets[0] + 1) * bucket_length(window) + window
        keys_ += [keys.counts(ns, exp), *(keys.seen(ns, exp, b) for b in buckets)]
        for e in events:
            args += [
                e.variant,
                e.event,
                digest(e.event, e.variant, e.uuid),
                keys.counts_field(e.event, e.variant),
            ]
        return keys_, args

    def delete(self, namespace: str, experiment: str) -> None:
        """Delete an experiment and all its counters atomically; UnknownExperiment if absent."""
        self._modes.pop((namespace, experiment), None)
        self._clear("delete", namespace, experiment)

    def reset(self, namespace: str, experiment: str) -> None:
        """Zero an experiment's counters atomically, keeping its settings and names."""
        self._clear("reset", namespace, experiment)

    def _clear(self, action: str, namespace: str, experiment: str) -> None:
        with unavailable():
            for _ in range(_CLEAR_ATTEMPTS):
                pipe = self.client.pipeline(transaction=False)
                pipe.hget(keys.meta(namespace, experiment), "window")
                pipe.smembers(keys.variants(namespace, experiment))
                pipe.smembers(keys.goals(namespace, experiment))
                raw_window, raw_variants, raw_goals = pipe.execute()
                variants, goals = sorted(raw_variants), sorted(raw_goals)
                names = [_text(v) for v in variants], [_text(g) for g in goals]
                result = self._clear_script(
                    keys=[
                        keys.meta(namespace, experiment),
                        keys.experiment_registry(namespace, experiment),
                        keys.variants(namespace, experiment),
                        keys.goals(namespace, experiment),
                        *self._data_keys(namespace, experiment, *names, raw_window),
                    ],
                    args=[action, experiment, int(time.time()), len(variants), *variants, *goals],
                )
                if result == 0:
                    raise UnknownExperiment(experiment)
                if result == 1:
                    return
                # -1: a new variant or goal arrived meanwhile, so read again
        raise StoreUnavailable(f"the experiment kept changing during {action}; try again")

    def update_settings(self, namespace: str, experiment: str, body: Any) -> None:
        """Validate and store control, weights, description, archived (PATCH)."""
        with unavailable():
            variants = self.client.smembers(keys.variants(namespace, experiment))
            if not variants:
                raise UnknownExperiment(experiment)
            fields = settings.parse(body, (_text(v) for v in variants))
            changed = self._settings(
                keys=[keys.meta(namespace, experiment)],
                args=[item for pair in fields.items() for item in pair],
            )
        if not changed:
            raise UnknownExperiment(experiment)

    def _data_keys(
        self, ns: str, exp: str, variants: list[str], goals: list[str], raw_window: Any
    ) -> list[str]:
        counters = [
            keys.hll(ns, exp, goal, variant)
            for goal in (defaults.PARTICIPATE, *goals)
            for variant in variants
        ]
        window = int(raw_window) if raw_window else self.config.dedup_window
        live = seen_buckets(window, time.time())
        # A bucket lives until (bucket + 1) * length + window, so one older than the checked
        # ones may still exist; one newer covers clock skew between processes.
        buckets = range(live[0] + 1, live[-1] - 2, -1)
        return [*counters, keys.counts(ns, exp), *(keys.seen(ns, exp, b) for b in buckets)]

    # -- reading -----------------------------------------------------------------------

    def experiment_names(self, namespace: str) -> tuple[list[str], dict[str, Any]]:
        """Names of a namespace's experiments, and the abuse counts, in one round trip."""
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for key in keys.registries(namespace):
                pipe.smembers(key)
            pipe.hgetall(keys.abuse())
            *shards, abuse = pipe.execute()
        return sorted(_text(name) for members in shards for name in members), _abuse(abuse)

    def listing(
        self, namespace: str, archived: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Experiments of a namespace (with archived ones if asked) and the abuse counts.

        Three round trips whatever the number of experiments.
        """
        names, abuse = self.experiment_names(namespace)
        found = self.results(namespace, names)
        return [e for e in found if e["counting"] and (archived or not e["archived"])], abuse

    def results(
        self, namespace: str, names: Iterable[str], retry: bool = True
    ) -> list[dict[str, Any]]:
        """Counts and statistics of each named experiment, in the original JSON shape.

        Two round trips whatever the number of experiments: meta and names of every
        experiment, then every counter. Unknown names come back with no goals.
        """
        names = list(names)
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for exp in names:
                pipe.hgetall(keys.meta(namespace, exp))
                pipe.smembers(keys.variants(namespace, exp))
                pipe.smembers(keys.goals(namespace, exp))
            replies = pipe.execute()
            layouts = []
            pipe = self.client.pipeline(transaction=False)
            for i, exp in enumerate(names):
                meta = {_text(k): _text(v) for k, v in replies[3 * i].items()}
                variants = sorted(_text(v) for v in replies[3 * i + 1])
                goals = sorted(_text(g) for g in replies[3 * i + 2])
                layouts.append((exp, meta, variants, goals))
                if meta.get("counting") == "exact":
                    pipe.hgetall(keys.counts(namespace, exp))
                elif meta.get("counting") == "hll":
                    hlls = [
                        keys.hll(namespace, exp, goal, variant)
                        for goal in (defaults.PARTICIPATE, *goals)
                        for variant in variants
                    ]
                    # One call per experiment rather than one PFCOUNT per counter.
                    pipe.execute_command("EVALSHA", self._counts.sha, len(hlls), *hlls)
            replies = pipe.execute(raise_on_error=False)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                if not retry:
                    raise StoreUnavailable("the counts script could not be loaded")
                self.client.script_load(self._counts.script)  # lost on a Redis restart
                return self.results(namespace, names, retry=False)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        counts = iter(replies)
        return [_experiment(layout, counts) for layout in layouts]

    def experiment(self, namespace: str, name: str) -> dict[str, Any]:
        (result,) = self.results(namespace, [name])
        if result["counting"] is None:
            raise UnknownExperiment(name)
        return result

    def ping(self) -> bool:
        with unavailable():
            return bool(self.client.ping())


@dataclass
class Tally:
    """What became of a list of events."""

    counted: int = 0
    """Events counted (duplicates included: they are delivered, just not new)."""
    new: int = 0
    refused: list[Refused] = field(default_factory=list)

    def refuse(self, refusal: Refused) -> None:
        self.refused.append(refusal)


def _refused(reason: str, name: str, config: Config) -> Refused:
    cap = {
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
    }[reason]
    field_, limit, variable, what = cap
    return Refused(field_, reason, f"not counted: at most {limit} {what} ({variable})")


def _abuse(raw: dict[Any, Any]) -> dict[str, Any]:
    counts = {_text(k): int(v) for k, v in raw.items()}
    return {
        "filtered": counts.get("filtered", 0),
        "dropped": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if ":" in k},
    }


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _experiment(layout: tuple[str, dict[str, str], list[str], list[str]], counts: Any) -> dict:
    """One experiment's object: the original fields, then counting, settings and statistics."""
    exp, meta, variants, goals = layout
    mode = meta.get("counting")
    table: dict[tuple[str, str], int] = {}
    if mode == "exact":
        stored = next(counts)
        for goal in (defaults.PARTICIPATE, *goals):
            for variant in variants:
                table[goal, variant] = int(stored.get(keys.counts_field(goal, variant).encode(), 0))
    elif mode == "hll":
        hll_counts = iter(next(counts))
        for goal in (defaults.PARTICIPATE, *goals):
            for variant in variants:
                table[goal, variant] = int(next(hll_counts))
    trials = {variant: table[defaults.PARTICIPATE, variant] for variant in variants}
    chosen = settings.stored(meta)
    result = {
        "experiment": exp,
        "goals": [
            {
                "goal": goal,
                "results": [
                    {"label": variant, "successes": table[goal, variant], "trials": trials[variant]}
                    for variant in variants
                ],
            }
            for goal in goals
        ],
        "counting": mode,
        "participants": trials,
        **chosen,
        "dedup_window": int(meta["window"]) if mode == "exact" and meta.get("window") else None,
        "created": _timestamp(meta.get("created")),
        "reset_at": _timestamp(meta.get("reset_at")),
    }
    if mode is None:
        return result
    return stats.annotate(result, trials, control=chosen["control"], weights=chosen["weights"])


def _timestamp(raw: str | None) -> int | None:
    return int(raw) if raw else None
