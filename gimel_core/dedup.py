"""Exact mode's de-duplication record: which uuids a counter has seen inside the window.

Each (goal, variant, uuid) is remembered as an 8-byte digest in one Redis set per time
bucket (``keys.seen``); the window is split into ``defaults.DEDUP_BUCKETS`` buckets, each
expiring a window after it closes, so a record lives between one and 1.25 windows.
"""

from __future__ import annotations

import hashlib
import math

from . import defaults


def digest(goal: str, variant: str, uuid: str) -> bytes:
    """8-byte de-dup record of one uuid for one counter.

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


def expiry(window: int, now: float) -> int:
    """When the current bucket may go: a window after it closes (unix seconds)."""
    return (int(now) // bucket_length(window) + 1) * bucket_length(window) + window


def stored_buckets(window: int, now: float) -> range:
    """Every bucket that may still exist, for delete and reset: the live ones, one older
    (a bucket lives until it closes plus a window), and one newer (clock skew)."""
    live = seen_buckets(window, now)
    return range(live[0] + 1, live[-1] - 2, -1)
