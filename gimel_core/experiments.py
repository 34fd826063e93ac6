"""Stored experiments: reading their counts, listing them, settings, reset and delete.

Reading is one script call per experiment (``read.lua``: settings, names, history and every
count), all in one round trip; the results are analysed by :mod:`gimel_core.analysis`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from . import analysis, dedup, defaults, keys, scripts, settings
from .config import Config
from .errors import StoreUnavailable, UnknownExperiment
from .results import Abuse, ExperimentCounts, ExperimentResult, History, HistoryPoint, Listing
from .scripts import ClearTag, Meta, Scripts
from .store import StoreBacked

_CLEAR_ATTEMPTS = 20


class Experiments(StoreBacked):
    """The experiments stored in one Redis."""

    def __init__(
        self, scripts_: Scripts, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.scripts = scripts_
        self.client = scripts_.client
        self.config = config
        self.clock = clock

    # -- reading -----------------------------------------------------------------------

    def listing(self, namespace: str, archived: bool = False) -> Listing:
        """Experiments of a namespace (with archived ones if asked) and the abuse counts.

        Two round trips whatever the number of experiments: their names, then their data.
        """
        pipe = self.client.pipeline(transaction=False)
        for key in keys.registries(namespace):
            pipe.smembers(key)
        pipe.hgetall(keys.abuse())
        *shards, abuse = pipe.execute()
        names = sorted(_text(name) for members in shards for name in members)
        found = [
            exp
            for exp in self._results(namespace, names)
            if exp.exists and (archived or not exp.settings.archived)
        ]
        return Listing(found, _abuse(abuse))

    def scoped(self, namespace: str, names: list[str], scope: str) -> Listing:
        """The named experiments (unknown ones with no goals) and the abuse counts."""
        found = self._results(namespace, names)
        return Listing(found, _abuse(self.client.hgetall(keys.abuse())), scope)

    def experiment(self, namespace: str, name: str) -> ExperimentResult:
        (result,) = self._results(namespace, [name])
        if not result.exists:
            raise UnknownExperiment(name)
        return result

    def counts(self, namespace: str, names: Iterable[str]) -> list[ExperimentCounts]:
        """What is stored of each named experiment: one round trip for any number (and, once
        per experiment counted before history was kept, one more to index it)."""
        names = list(names)
        stored = self.scripts.run([scripts.read(namespace, exp) for exp in names]) if names else []
        today = int(self.clock()) // DAY
        pending: dict[str, list[tuple[str, str]]] = {}  # experiment -> its hll counters
        calls = []
        for exp, one in zip(names, stored, strict=True):
            mode = one.meta.get(Meta.COUNTING)
            if mode is not None and Meta.DAY not in one.meta:
                cells = _counters(one.variants, one.goals) if mode == "hll" else []
                hlls = [(keys.hll(namespace, exp, g, v), keys.counts_field(g, v)) for g, v in cells]
                pending[exp] = cells
                calls.append(scripts.migrate(namespace, exp, today, hlls))
        migrated = {
            exp: dict(zip(pending[exp], found, strict=True))
            for exp, found in zip(pending, self.scripts.run(calls) if calls else [], strict=True)
        }
        return [
            _experiment_counts(exp, one, migrated.get(exp))
            for exp, one in zip(names, stored, strict=True)
        ]

    def _results(self, namespace: str, names: Iterable[str]) -> list[ExperimentResult]:
        return [analysis.analyse(counts) for counts in self.counts(namespace, names)]

    def history(self, namespace: str, name: str) -> History:
        """One point per UTC day the experiment received events, then now: one round trip."""
        (counts,) = self.counts(namespace, [name])
        if counts.counting is None:
            raise UnknownExperiment(name)
        today = int(self.clock()) // DAY
        points = [
            HistoryPoint(_date(day), result)
            for day, result in analysis.analyse_history(counts, today)
        ]
        return History(name, counts.settings.analysis, points)

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- changing ----------------------------------------------------------------------

    def update_settings(self, namespace: str, experiment: str, body: Any) -> None:
        """Validate and store control, weights, description, archived (PATCH)."""
        variants = self.client.smembers(keys.variants(namespace, experiment))
        if not variants:
            raise UnknownExperiment(experiment)
        fields = settings.parse(body, (_text(v) for v in variants))
        if not self.scripts.run_one(scripts.settings(namespace, experiment, fields)):
            raise UnknownExperiment(experiment)

    def delete(self, namespace: str, experiment: str) -> None:
        """Delete an experiment and all its counters atomically; UnknownExperiment if absent."""
        self._clear("delete", namespace, experiment)

    def reset(self, namespace: str, experiment: str) -> None:
        """Zero an experiment's counters atomically, keeping its settings and names."""
        self._clear("reset", namespace, experiment)

    def _clear(self, action: str, namespace: str, experiment: str) -> None:
        for _ in range(_CLEAR_ATTEMPTS):
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(keys.meta(namespace, experiment), Meta.WINDOW)
            pipe.smembers(keys.variants(namespace, experiment))
            pipe.smembers(keys.goals(namespace, experiment))
            raw_window, raw_variants, raw_goals = pipe.execute()
            variants, goals = sorted(raw_variants), sorted(raw_goals)
            names = tuple(_text(v) for v in variants), tuple(_text(g) for g in goals)
            window = int(raw_window) if raw_window else self.config.dedup_window
            now = self.clock()
            data_keys = [
                *(keys.hll(namespace, experiment, g, v) for g, v in _counters(*names)),
                keys.counts(namespace, experiment),
                keys.history(namespace, experiment),
                keys.hll_index(namespace, experiment),
                *(keys.seen(namespace, experiment, b) for b in dedup.stored_buckets(window, now)),
            ]
            call = scripts.clear(
                action, namespace, experiment, variants, goals, data_keys, int(now)
            )
            result = self.scripts.run_one(call)
            if result is ClearTag.MISSING:
                raise UnknownExperiment(experiment)
            if result is ClearTag.DONE:
                return
            # CHANGED: a new variant or goal arrived meanwhile, so read again
        raise StoreUnavailable(f"the experiment kept changing during {action}; try again")


def _experiment_counts(
    name: str, stored: scripts.Stored, migrated: dict[tuple[str, str], int] | None
) -> ExperimentCounts:
    meta, variants, goals = stored.meta, stored.variants, stored.goals
    mode = meta.get(Meta.COUNTING)
    cells = _counters(variants, goals)
    if migrated is not None and mode == "hll":
        table = migrated
    else:
        table = {(g, v): stored.counts.get(keys.counts_field(g, v), 0) for g, v in cells}
    return ExperimentCounts(
        name=name,
        counting=mode,
        variants=variants,
        goals=goals,
        counts=table if mode else {},
        settings=settings.stored(meta),
        dedup_window=int(meta[Meta.WINDOW]) if mode == "exact" and meta.get(Meta.WINDOW) else None,
        created=_timestamp(meta.get(Meta.CREATED)),
        reset_at=_timestamp(meta.get(Meta.RESET_AT)),
        history=_history(stored.history, variants, goals),
    )


def _counters(variants: tuple[str, ...], goals: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (goal, variant) counter of an experiment, participation first."""
    return [(goal, variant) for goal in (defaults.PARTICIPATE, *goals) for variant in variants]


DAY = 86_400
"""Seconds in a UTC day: history's interval (track.lua divides by the same)."""


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).date().isoformat()


def _history(
    raw: dict[bytes, bytes], variants: tuple[str, ...], goals: tuple[str, ...]
) -> tuple[tuple[int, dict[tuple[str, str], int]], ...]:
    """Daily snapshots, oldest first, as (goal, variant) counts (0 where not counted yet)."""
    if not raw:
        return ()
    fields = {keys.counts_field(g, v): (g, v) for g, v in _counters(variants, goals)}
    days = []
    for day, snapshot in sorted((int(d), s) for d, s in raw.items()):
        stored = _decoded(snapshot)
        days.append((day, {cell: int(stored.get(f, 0)) for f, cell in fields.items()}))
    return tuple(days)


@lru_cache(maxsize=65_536)
def _decoded(snapshot: bytes) -> dict[str, int]:
    """A day's snapshot never changes once written: decode it once per process."""
    decoded: dict[str, int] = json.loads(snapshot)
    return decoded


def _abuse(raw: dict[Any, Any]) -> Abuse:
    counts = {_text(k): int(v) for k, v in raw.items()}
    dropped = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if ":" in k}
    return Abuse(counts.get("filtered", 0), dropped)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _timestamp(raw: str | None) -> int | None:
    return int(raw) if raw else None
