"""Every Redis key Gimel uses is built here, and only here.

Layout (``<x>`` is :func:`escape` of a user-supplied name)::

    gimel:{<ns>:<shard>}:experiments              set   experiment names of that shard
    gimel:{<ns>:<shard>}:<exp>:meta               hash  counting mode, window, settings
    gimel:{<ns>:<shard>}:<exp>:variants           set   variant names
    gimel:{<ns>:<shard>}:<exp>:goals              set   goal names (without "participate")
    gimel:{<ns>:<shard>}:<exp>:hll:<goal>:<var>   HyperLogLog of uuids (hll mode)
    gimel:{<ns>:<shard>}:<exp>:counts             hash  "<goal>:<var>" -> count (exact mode),
                                                        "<goal>:<var>:<moment>" -> a sum
    gimel:{<ns>:<shard>}:<exp>:seen:<bucket>:<i>  set   one set of a de-dup bucket (exact mode)
    gimel:{<ns>:<shard>}:<exp>:seen:<bucket>:size string  records in that bucket (exact mode)
    gimel:{<ns>:<shard>}:<exp>:index              hash  "<goal>:<var>" -> HyperLogLog key (hll)
    gimel:{<ns>:<shard>}:<exp>:history            hash  UTC day -> JSON of the counts that day
    gimel:{<ns>:<shard>}:<exp>:sources:<hour>:<xx> hash  source hash -> new events that hour
    gimel:{<ns>:<shard>}:<exp>:alerts             hash  what the watcher announced, and what
                                                        it still has to deliver (watch.py)
    gimel:{<ns>:<shard>}:<exp>:deliveries         list  the latest delivery attempts, newest first
    gimel:{<ns>:<shard>}:<exp>:watching           string  the lease of the watcher at work on it
    gimel:{<ns>:<shard>}:open                     hash  bytes undeclared experiments hold

The ``{...}`` hash tag puts an experiment's keys and its registry shard in one Redis
Cluster slot, so every script touches a single slot. Experiments of a namespace are
spread over :data:`SHARDS` registry shards (``shard`` = CRC32 of the name), so a busy
namespace still spreads over a cluster. Names are read back from the sets, never parsed
out of keys.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

PREFIX = "gimel"
"""First component of every key; lets Gimel share a Redis with other tools."""

SHARDS = 16
"""Registry shards per namespace (hash-tag spread of one namespace over a cluster)."""

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@lru_cache(maxsize=65_536)
def escape(name: str) -> str:
    """Injective encoding of a name into a key component: no ``:``, ``{``, ``}`` or spaces.

    Bytes outside ``[A-Za-z0-9-_.]`` become ``%XX`` (as in URLs), so ``%`` itself is
    escaped too and two different names can never produce the same component.
    """
    raw = name.encode("utf-8")
    if all(b in _SAFE for b in raw):
        return name
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def shard(experiment: str) -> int:
    return zlib.crc32(experiment.encode("utf-8")) % SHARDS


def _tag(namespace: str, shard_no: int) -> str:
    return f"{PREFIX}:{{{escape(namespace)}:{shard_no}}}"


def registry(namespace: str, shard_no: int) -> str:
    """Set of the experiment names of one shard of a namespace."""
    return f"{_tag(namespace, shard_no)}:experiments"


def open_budget(namespace: str, experiment: str) -> str:
    """Hash of the bytes the undeclared experiments of this experiment's registry shard hold
    (the open-registration budget, ``track.lua``); same slot as the experiment's keys."""
    return f"{_tag(namespace, shard(experiment))}:open"


def registries(namespace: str) -> list[str]:
    """All registry shards of a namespace, in shard order."""
    return [registry(namespace, n) for n in range(SHARDS)]


@lru_cache(maxsize=16_384)
def _base(namespace: str, experiment: str) -> str:
    return f"{_tag(namespace, shard(experiment))}:{escape(experiment)}"


@lru_cache(maxsize=16_384)
def experiment_registry(namespace: str, experiment: str) -> str:
    """The registry shard that lists this experiment (same slot as its keys)."""
    return registry(namespace, shard(experiment))


def meta(namespace: str, experiment: str) -> str:
    return f"{_base(namespace, experiment)}:meta"


def variants(namespace: str, experiment: str) -> str:
    return f"{_base(namespace, experiment)}:variants"


def goals(namespace: str, experiment: str) -> str:
    return f"{_base(namespace, experiment)}:goals"


def hll(namespace: str, experiment: str, goal: str, variant: str) -> str:
    return f"{_base(namespace, experiment)}:hll:{escape(goal)}:{escape(variant)}"


def counts(namespace: str, experiment: str) -> str:
    return f"{_base(namespace, experiment)}:counts"


def counts_field(goal: str, variant: str) -> str:
    """Field of the ``counts`` hash holding one (goal, variant) exact count."""
    return f"{escape(goal)}:{escape(variant)}"


def moment_field(goal: str, variant: str, moment: str) -> str:
    """Field of the ``counts`` hash holding one sum (a ``vocabulary.Moment``) of a (goal,
    variant): ``<goal>:<variant>:<moment>``, which no count's field can be (escaped names
    hold no ``:``)."""
    return f"{counts_field(goal, variant)}:{moment}"


def hll_index(namespace: str, experiment: str) -> str:
    """Hash of an hll experiment's counters: counts field -> HyperLogLog key (for history)."""
    return f"{_base(namespace, experiment)}:index"


def history(namespace: str, experiment: str) -> str:
    """Hash of daily snapshots: UTC day number -> JSON of {counts field: count} at its end."""
    return f"{_base(namespace, experiment)}:history"


def seen(namespace: str, experiment: str, bucket: int) -> str:
    """A de-dup bucket: its sets and count hang from this key (:func:`seen_set`,
    :func:`seen_size`); nothing is stored at the key itself."""
    return f"{_base(namespace, experiment)}:seen:{bucket}"


def sources(namespace: str, experiment: str, hour: int, source: str) -> str:
    """Hash of one clock hour (unix seconds // 3600) and 256th of the sources (the first two
    hex digits of their salted hash): source -> new events it added to the experiment
    (``gimel_core.sources``); it expires when the hour ends. Redis keeps a hash of up to 512
    fields (128 on Redis 7 and Valkey) as one list it searches end to end, twice an event:
    split in 256, an hour's lists stay short up to tens of thousands of sources."""
    return f"{_base(namespace, experiment)}:sources:{hour}:{source[:2]}"


def alerts(namespace: str, experiment: str) -> str:
    """Hash of the watcher's state for one experiment: the alerts announced, those still to
    deliver, the running SRM p-value, when its events last changed (``gimel_core.watch``)."""
    return f"{_base(namespace, experiment)}:alerts"


def deliveries(namespace: str, experiment: str) -> str:
    """List of the latest delivery attempts of the experiment's alerts (JSON), newest first."""
    return f"{_base(namespace, experiment)}:deliveries"


def watching(namespace: str, experiment: str) -> str:
    """A watcher's lease on the experiment (a random token, with an expiry): one watcher at a
    time checks it and delivers its alerts, so two never send the same alert."""
    return f"{_base(namespace, experiment)}:watching"


SEEN_SEPARATOR = ":"
"""Between a bucket's key and one of its sets or its count. The scripts append those to the
bucket keys they are given (which sets a bucket has is only known in Redis), with this."""

SEEN_SIZE = "size"
"""Last component of a bucket's count of records (set numbers are digits only)."""


def seen_set(namespace: str, experiment: str, bucket: int, index: int) -> str:
    """One set of a de-dup bucket (``dedup.set_index``): 64-bit integers, an intset."""
    return f"{seen(namespace, experiment, bucket)}{SEEN_SEPARATOR}{index}"


def seen_size(namespace: str, experiment: str, bucket: int) -> str:
    """How many records a de-dup bucket holds, which says how many sets it has."""
    return f"{seen(namespace, experiment, bucket)}{SEEN_SEPARATOR}{SEEN_SIZE}"


def namespaces() -> str:
    """Set of every namespace that has received an event (capped)."""
    return f"{PREFIX}:namespaces"


def abuse() -> str:
    """Hash of events not counted on purpose: ``filtered`` (bots), ``dropped:<reason>``."""
    return f"{PREFIX}:abuse"


def check_probe(token: str) -> str:
    """Short-lived key `gimel check` writes and deletes to prove the store is writable."""
    return f"{PREFIX}:check:{token}"


def import_scratch(namespace: str, experiment: str) -> str:
    """Scratch key for a HyperLogLog copied in by import-legacy before it is merged."""
    return f"{_base(namespace, experiment)}:import"


# -- the original Gimel's layout (read only, by import-legacy) ----------------------------
# "<ns>:experiments" (set), "<ns>:<exp>:counter_keys" (set of counter keys) and counters
# "<ns>:counters:<exp>:<goal>:<variant>", HyperLogLogs in the original and integer
# counters in its windowed successor. Its names were not escaped, which is why goal and
# variant cannot always be told apart (see legacy.py).


def legacy_experiments(namespace: str) -> str:
    return f"{namespace}:experiments"


def legacy_counter_keys(namespace: str, experiment: str) -> str:
    return f"{namespace}:{experiment}:counter_keys"


def legacy_counter_prefix(namespace: str, experiment: str) -> str:
    return f"{namespace}:counters:{experiment}:"
