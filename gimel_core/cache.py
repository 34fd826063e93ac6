"""What a process keeps of the results it computed, so that a dashboard refreshing a page where
little changed costs a read, not the statistics.

One :class:`Caches` per app, made by ``create_app`` and handed to
:class:`~gimel_core.experiments.Experiments`: a test or a benchmark that wants a cold process
builds its own (or calls :meth:`Caches.clear`), with nothing module-global to reset. Every
value kept is immutable (frozen result rows, tuples), so the threads of ``gimel serve`` share
them freely.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from functools import lru_cache, partial
from typing import Any, Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])

ANALYSED_BYTES = 2_000_000
"""Bound on the ``read.lua`` replies kept with their analysis (the results kept grow with
them): a few pages of a dashboard, a few tens of megabytes at most, whatever the experiments."""

_ABSENT: Any = object()


class Cache(Generic[K, V]):
    """At most ``limit`` of entries, each weighing ``weigh(key, value)`` (1 unless told), the
    oldest evicted first; none heavier than ``largest`` is kept (one huge entry would push out
    a whole page of ordinary ones). Safe across threads: reads need no lock, and eviction and
    insertion happen as one step."""

    def __init__(
        self,
        limit: int,
        weigh: Callable[[K, V], int] | None = None,
        largest: int | None = None,
    ) -> None:
        self.limit = limit
        self.largest = limit if largest is None else largest
        self._weigh = weigh
        self._items: dict[K, V] = {}
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The weight of what is kept: never above ``limit``."""
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` (evicting the oldest as needed); False if it was not kept: already
        there, or too heavy."""
        weight = 1 if self._weigh is None else self._weigh(key, value)
        if weight > self.largest or weight > self.limit:
            return False
        with self._lock:
            if key in self._items:
                return False
            while self._items and self._size + weight > self.limit:
                oldest = next(iter(self._items))
                evicted = self._items.pop(oldest)
                self._size -= 1 if self._weigh is None else self._weigh(oldest, evicted)
            self._items[key] = value
            self._size += weight
            return True

    def through(self, key: K, compute: Callable[[], V]) -> V:
        """The value kept for ``key``, else ``compute()``, kept."""
        found = self._items.get(key, _ABSENT)
        if found is _ABSENT:
            found = compute()
            self.put(key, found)
        return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


def memo(cache: Cache[K, V] | None, key: K, compute: Callable[[], V]) -> V:
    """``cache.through(key, compute)``, or ``compute()`` where nothing is kept."""
    return compute() if cache is None else cache.through(key, compute)


class Memo:
    """Calls of pure functions of hashable values, at most ``limit`` of them, the least
    recently used forgotten first: ``functools.lru_cache``, whose lookup (in C, safe across
    threads) is what the statistics' inner loops can afford, one per :class:`Caches` rather
    than one per function in a module."""

    def __init__(self, limit: int) -> None:
        self.call = lru_cache(maxsize=limit)(_call)
        """``call(function, *args)``: ``function(*args)``, kept."""

    def __len__(self) -> int:
        return self.call.cache_info().currsize

    def clear(self) -> None:
        self.call.cache_clear()


def _call(function: Callable[..., V], *args: Hashable) -> V:
    return function(*args)


def memoized(memo: Memo | None, function: F) -> F:
    """``function``, its calls kept in ``memo`` if there is one (a C-level partial of the
    lru_cache: no Python frame on a hit)."""
    return function if memo is None else cast(F, partial(memo.call, function))


class Caches:
    """Everything one process keeps between requests, each part bounded."""

    def __init__(self, analysed_bytes: int = ANALYSED_BYTES) -> None:
        self.analysed: Cache[tuple[str, str, bytes, int], Any] = Cache(
            analysed_bytes, weigh=lambda key, _: len(key[2]), largest=analysed_bytes // 8
        )
        """(namespace, experiment, read.lua's reply, UTC day) -> what it was analysed into.
        The reply holds every count, setting and day of history, so an unchanged reply on the
        same day means unchanged results (but for the planning figures, which
        ``analysis.replan`` refreshes); a day that closes may be a group-sequential look."""
        self.snapshots: Cache[str, Mapping[str, int]] = Cache(65_536)
        """A day's stored snapshot -> its decoded counts: it never changes once written."""
        self.past: Cache[tuple[object, ...], Any] = Cache(256)
        """An experiment's recorded days -> their results, running values and (once encoded)
        JSON: a recorded day never changes, so a dashboard reopening a history recomputes and
        encodes only "now"."""
        self.goals = Memo(4096)
        """One goal's counts and settings -> its rows and verdicts (a few KB each)."""
        self.looks = Memo(262_144)
        """One sequential look's counts -> its always-valid interval and p-value."""
        self.bounds = Memo(1024)
        """A group-sequential schedule and level -> its bounds (a new one per look a day)."""

    def clear(self) -> None:
        """Forget everything (a cold process)."""
        parts = (self.analysed, self.snapshots, self.past, self.goals, self.looks, self.bounds)
        for part in parts:
            part.clear()
