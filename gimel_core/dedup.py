"""Exact mode's de-duplication record: which uuids a counter has seen.

Time. By default (:data:`LIFE`) an experiment remembers every uuid for its whole life, until
it is reset or deleted: all its records are in one bucket (:data:`LIFE_BUCKET`) that never
expires, so a visitor sent again on day 3 or day 30 counts once, as in ``hll`` mode. With a
window (GIMEL_DEDUP_WINDOW in seconds), the window is split into ``defaults.DEDUP_BUCKETS``
time buckets, each expiring a window after it closes, so a record lives between one and 1.25
windows. A uuid is new if no bucket of the window holds its record, nor the next bucket
(:func:`lookup_buckets`); it is recorded in the current bucket.

Space. Redis keeps a set of integers as an intset, 8 bytes a member, while it has at most
``set-max-intset-entries`` members (512 by default, Redis 6.2 to 7.x, ElastiCache, Valkey);
past that it becomes a hashtable, about 65 bytes a member. So a bucket's records are spread
over as many small sets as it needs, by linear hashing:

- a record is an integer below 2^63 (:attr:`Record.member`, sent as a decimal string: Lua's
  numbers are doubles, exact to 53 bits only, so the scripts never compute with it and only
  read its last six decimal digits, which are its *path*: 19 bits of the digest; the digits
  before them are 43 more);
- a bucket with ``count`` records (``keys.seen_size``) has ``1 + count // LOAD`` sets
  (``keys.seen_set``); with ``low`` the largest power of two not above that, a path's set is
  ``path % low``, or ``path % (2 * low)`` for the sets already split this round
  (:func:`set_index`). Each :data:`LOAD` records add one set, made by splitting one set in
  two by one more bit of the path, which track.lua reads off the members' last digits;
- so a set holds LOAD records on average and about 2 x LOAD at most before its turn to be
  split (400 for 200: 512 is more than five standard deviations away), and its key's own
  cost (about 150 B: keyspace entry, key, object, expiry entry) is shared by hundreds of
  records at any size. A lookup is one SISMEMBER per bucket and event, as with one set per
  bucket, plus one MGET of the buckets' counts per call; a delete knows every set of a
  bucket from its count, with no scan.

Should a set still pass 512 (chance, or uuids chosen to share a path), it becomes a
hashtable: correct, only larger, until it is split, which rebuilds both halves as intsets.
Past :data:`SETS` sets (about 100 million records in one bucket) sets only grow.

Measured (``python -m bench``, ``INFO memory``, records in one bucket): 8.8 to 8.9 B per uuid
from 10k to 1M uuids, against 63 B for one hashtable set per bucket; ``python -m bench.dedup``
measures 1M uuids in 5 counters each, for life.

Collisions: two uuids of one counter are confused only if their 62 bits (path and rest) are
equal: probability about n^2 / 2^63 over n uuids in one window (for life: in all), 1e-7 at 1M
and 1e-5 at 10M.
Members below 2^31 would take 4 bytes, but even
with the set's index as bits of the record beside them (some 43 bits at a million uuids,
about 5,000 sets), a window would hold 0.05 confused pairs at 1M uuids and 0.5 at 10M:
counts that are no longer exact.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from . import defaults

LOAD = 200
"""Records per set on average: each LOAD records of a bucket add one set."""

PATH_BITS = 19
"""Bits of the digest that choose a record's set, its path."""

PATH_DIGITS = 6
"""A member's last decimal digits that spell its path (2^19 < 10^6)."""

SETS = 2**PATH_BITS
"""Most sets in one bucket: then every path has its own."""

LIFE = 0
"""The window of an experiment that remembers every uuid for its life (GIMEL_DEDUP_WINDOW
unset or ``life``): what its meta hash records."""

LIFE_NAME = "life"
"""How GIMEL_DEDUP_WINDOW spells :data:`LIFE` (unset means it too)."""

LIFE_BUCKET = 0
"""The one bucket of a :data:`LIFE` experiment. A window's buckets are numbered from the
epoch (``now // length``), so none of them is 0."""

REST_BITS = 43
"""Bits of the digest in a member beside its path: 2^43 x 10^6 + 10^6 < 2^63, an int64."""


def digest(goal: str, variant: str, uuid: str) -> bytes:
    """8-byte digest of one uuid for one counter, which its record is made of.

    Names cannot contain control characters, so NUL separates them unambiguously. With 64
    bits, two uuids of one experiment collide with probability about n^2 / 3.7e19: for a
    million uuids in one window, 3 in 100 million.
    """
    data = f"{goal}\0{variant}\0{uuid}".encode()
    return hashlib.blake2b(data, digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class Record:
    """How track.lua stores and finds one uuid's record."""

    member: str
    """62 bits of the digest as a decimal integer below 2^63 whose last six digits are its
    path: an intset member."""

    @property
    def path(self) -> int:
        """Chooses the record's set in a bucket (:func:`set_index`)."""
        return int(self.member[-PATH_DIGITS:])


def record(goal: str, variant: str, uuid: str) -> Record:
    raw = digest(goal, variant, uuid)
    value = int.from_bytes(raw, "big")
    path, rest = value % SETS, value >> (64 - REST_BITS)
    return Record(str(rest * 10**PATH_DIGITS + path))


def sets(count: int) -> int:
    """Sets of a bucket holding ``count`` records."""
    return min(1 + count // LOAD, SETS)


def set_index(count: int, path: int) -> int:
    """The set of a path in a bucket of ``count`` records (track.lua computes the same)."""
    n = sets(count)
    low = 1 << (n.bit_length() - 1)
    index = path % low
    return path % (2 * low) if index < n - low else index


def bucket_length(window: int) -> int:
    return max(1, math.ceil(window / defaults.DEDUP_BUCKETS))


def seen_buckets(window: int, now: float) -> range:
    """De-dup buckets that may hold a record younger than ``window``, newest first."""
    if window == LIFE:
        return range(LIFE_BUCKET, LIFE_BUCKET - 1, -1)
    length = bucket_length(window)
    current = int(now) // length
    oldest = (int(now) - window) // length
    return range(current, oldest - 1, -1)


def lookup_buckets(window: int, now: float) -> list[int]:
    """Buckets a call looks a uuid up in: the current one first (where a new record goes),
    the older ones of the window, then the next one. A call whose ``now`` lies before a
    bucket boundary can run after one whose ``now`` lies past it (a retry after a timeout
    sends the same ``now`` again; a request can queue behind a slow one; another process's
    clock can run ahead), and that one recorded its uuids in the next bucket: without it,
    each of them would be counted again. For life: its one bucket."""
    live = seen_buckets(window, now)
    return list(live) if window == LIFE else [*live, live[0] + 1]


def expiry(window: int, now: float) -> int:
    """When the current bucket may go: a window after it closes (unix seconds); 0 for life,
    never (an undeclared experiment's records go with it when it is idle: track.lua).

    Every key of the bucket (its sets and its count) gets this same time whenever it was
    written, so a bucket is never seen in part."""
    if window == LIFE:
        return 0
    return (int(now) // bucket_length(window) + 1) * bucket_length(window) + window


def stored_buckets(window: int, now: float) -> range:
    """Every bucket that may still exist, for delete and reset: the live ones, one older
    (a bucket lives until it closes plus a window), and one newer (clock skew)."""
    live = seen_buckets(window, now)
    if window == LIFE:
        return live
    return range(live[0] + 1, live[-1] - 2, -1)
