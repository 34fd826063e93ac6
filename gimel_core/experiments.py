"""Stored experiments: reading their counts, listing them, settings, reset and delete.

Reading is two round trips whatever the number of experiments (meta and names of every
experiment, then every counter); the results are analysed by :mod:`gimel_core.analysis`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from . import analysis, dedup, defaults, keys, scripts, settings
from .config import Config
from .errors import StoreUnavailable, UnknownExperiment
from .results import Abuse, ExperimentCounts, ExperimentResult, Listing
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

        Three round trips whatever the number of experiments.
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
        """What is stored of each named experiment: two round trips for any number."""
        names = list(names)
        pipe = self.client.pipeline(transaction=False)
        for exp in names:
            pipe.hgetall(keys.meta(namespace, exp))
            pipe.smembers(keys.variants(namespace, exp))
            pipe.smembers(keys.goals(namespace, exp))
        replies = pipe.execute()
        layouts = []
        reads: list[scripts.Call[Any]] = []
        for i, exp in enumerate(names):
            meta = {_text(k): _text(v) for k, v in replies[3 * i].items()}
            variants = tuple(sorted(_text(v) for v in replies[3 * i + 1]))
            goals = tuple(sorted(_text(g) for g in replies[3 * i + 2]))
            layouts.append((exp, meta, variants, goals))
            mode = meta.get(Meta.COUNTING)
            if mode == "exact":
                reads.append(scripts.command(dict, "HGETALL", keys.counts(namespace, exp)))
            elif mode == "hll":
                # One call per experiment rather than one PFCOUNT per counter.
                hlls = [keys.hll(namespace, exp, g, v) for g, v in _counters(variants, goals)]
                reads.append(scripts.hll_counts(hlls))
        stored = iter(self.scripts.run(reads) if reads else [])
        found = []
        for exp, meta, variants, goals in layouts:
            mode = meta.get(Meta.COUNTING)
            table: dict[tuple[str, str], int] = {}
            if mode == "exact":
                fields = next(stored)
                for goal, variant in _counters(variants, goals):
                    field = keys.counts_field(goal, variant).encode()
                    table[goal, variant] = int(fields.get(field, 0))
            elif mode == "hll":
                table = dict(zip(_counters(variants, goals), next(stored), strict=True))
            found.append(
                ExperimentCounts(
                    name=exp,
                    counting=mode,
                    variants=variants,
                    goals=goals,
                    counts=table,
                    settings=settings.stored(meta),
                    dedup_window=int(meta[Meta.WINDOW])
                    if mode == "exact" and meta.get(Meta.WINDOW)
                    else None,
                    created=_timestamp(meta.get(Meta.CREATED)),
                    reset_at=_timestamp(meta.get(Meta.RESET_AT)),
                )
            )
        return found

    def _results(self, namespace: str, names: Iterable[str]) -> list[ExperimentResult]:
        return [analysis.analyse(counts) for counts in self.counts(namespace, names)]

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


def _counters(variants: tuple[str, ...], goals: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (goal, variant) counter of an experiment, participation first."""
    return [(goal, variant) for goal in (defaults.PARTICIPATE, *goals) for variant in variants]


def _abuse(raw: dict[Any, Any]) -> Abuse:
    counts = {_text(k): int(v) for k, v in raw.items()}
    dropped = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if ":" in k}
    return Abuse(counts.get("filtered", 0), dropped)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _timestamp(raw: str | None) -> int | None:
    return int(raw) if raw else None
