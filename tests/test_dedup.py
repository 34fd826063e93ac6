"""Exact mode's de-dup records in sets of integers (gimel_core/dedup.py): intsets at every
size, de-dup across sets as they split and across buckets, expiry of every set, delete and
reset that leave no key behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from conftest import AUTH
from gimel_core import dedup, defaults, keys
from gimel_core.events import Event
from gimel_core.tracking import Tracker

NS, EXP = defaults.NAMESPACE, "big"
WINDOW = 86_400
"""A day: these tests follow records over a window's time buckets (tests/test_life.py: for life)."""
LENGTH = dedup.bucket_length(WINDOW)


class Clock:
    """The app's time: the middle of a bucket, near Redis's own clock (expiry is real)."""

    def __init__(self) -> None:
        self.now = (time.time() // LENGTH) * LENGTH + LENGTH / 2

    def __call__(self) -> float:
        return self.now


def _tracker(app: Flask) -> Tracker:
    tracker: Tracker = app.extensions["gimel"].tracker
    return tracker


def _send(tracker: Tracker, uuids: list[str], goal: str = "participate", size: int = 500) -> int:
    """Track the uuids in batches; how many were new."""
    new = 0
    for i in range(0, len(uuids), size):
        batch = [Event(NS, EXP, "v", goal, u) for u in uuids[i : i + size]]
        new += tracker.track_many(batch).new
    return new


def _bucket(clock: Clock) -> int:
    return dedup.seen_buckets(WINDOW, clock())[0]


def _sets(raw_redis: Any, bucket: int) -> list[bytes]:
    size = keys.seen_size(NS, EXP, bucket).encode()
    return [k for k in raw_redis.keys(keys.seen(NS, EXP, bucket) + ":*") if k != size]


def _count(client: Any, goal: str = "participate") -> int:
    body = client.get(f"/experiments/{EXP}", headers=AUTH).get_json()
    if goal == "participate":
        return int(body["participants"]["v"])
    (found,) = [g for g in body["goals"] if g["goal"] == goal]
    return int(found["results"][0]["successes"])


def test_records_are_intsets_in_as_many_sets_as_the_uuids_need(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    clock = Clock()
    app = make_app(counting="exact", dedup_window=WINDOW, clock=clock)
    tracker = _tracker(app)
    # The end of a round of splits (31 sets, 16 to 30 split from 0 to 14): the set not split
    # yet (15) holds a sixteenth of the records, about twice LOAD, the most any set holds.
    n = dedup.LOAD * 31 - 1
    uuids = [f"visitor-{i}" for i in range(n)]
    assert _send(tracker, uuids) == n

    bucket = _bucket(clock)
    found = _sets(raw_redis, bucket)
    assert len(found) == dedup.sets(n) == 31
    sizes = {int(k.rsplit(b":", 1)[1]): raw_redis.scard(k) for k in found}
    assert sum(sizes.values()) == n  # each record in one set
    assert sizes[15] == max(sizes.values()) > 1.7 * dedup.LOAD
    assert max(sizes.values()) <= 512  # Redis 6.2's default set-max-intset-entries
    assert {raw_redis.object("encoding", k) for k in found} == {b"intset"}
    assert raw_redis.get(keys.seen_size(NS, EXP, bucket)) == str(n).encode()
    # Python finds each record where the script put it (the layout dedup.py documents).
    for uuid in uuids[::97]:
        record = dedup.record("participate", "v", uuid)
        index = dedup.set_index(n, record.path)
        assert raw_redis.sismember(keys.seen_set(NS, EXP, bucket, index), record.member)

    assert _send(tracker, uuids[::-1]) == 0  # every one a duplicate, from any set
    assert _count(app.test_client()) == n


def test_duplicates_are_found_across_sets_as_they_split_and_across_buckets(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    clock = Clock()
    app = make_app(counting="exact", dedup_window=WINDOW, clock=clock)
    tracker = _tracker(app)
    unique: set[str] = set()
    new = 0
    for step in range(12):  # each batch: 400 new uuids, 50 twice, one of 7 seen so far again
        fresh = [f"u{step}-{i}" for i in range(400)]
        batch = fresh + fresh[::8] + sorted(unique)[step % 7 :: 7]
        new += _send(tracker, batch, size=len(batch))
        unique |= set(fresh)
        if step == 5:
            clock.now += LENGTH  # the next bucket: those seen before are in the older one
    assert new == len(unique) == 4_800
    older, current = _bucket(clock) - 1, _bucket(clock)
    assert len(_sets(raw_redis, older)) == dedup.sets(2_400) == 13
    assert len(_sets(raw_redis, current)) == dedup.sets(2_400)
    assert _send(tracker, sorted(unique)) == 0
    assert _count(app.test_client()) == 4_800


def test_every_set_expires_with_its_bucket(make_app: Callable[..., Flask], raw_redis: Any) -> None:
    clock = Clock()
    tracker = _tracker(make_app(counting="exact", dedup_window=WINDOW, clock=clock))
    _send(tracker, [f"a-{i}" for i in range(1_500)])
    clock.now += LENGTH
    _send(tracker, [f"b-{i}" for i in range(700)], goal="signup")
    for bucket, when in [(_bucket(clock) - 1, clock.now - LENGTH), (_bucket(clock), clock.now)]:
        written = [*_sets(raw_redis, bucket), keys.seen_size(NS, EXP, bucket).encode()]
        assert len(written) == dedup.sets(1_500 if when < clock.now else 700) + 1
        expected = dedup.expiry(WINDOW, when) - time.time()
        assert expected > WINDOW
        for key in written:  # every set and the count, to the second of their bucket's end
            assert abs(raw_redis.ttl(key) - expected) <= 5, key


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_reset_and_delete_leave_no_key_of_the_sets_behind(
    make_app: Callable[..., Flask], raw_redis: Any, action: str
) -> None:
    clock = Clock()
    app = make_app(counting="exact", dedup_window=WINDOW, clock=clock)
    client, tracker = app.test_client(), _tracker(app)
    tracker.track(Event(NS, "other", "v", "participate", "someone"))  # must stay untouched
    before = set(raw_redis.keys("*"))
    _send(tracker, [f"a-{i}" for i in range(1_000)])
    clock.now += LENGTH
    _send(tracker, [f"b-{i}" for i in range(2_100)])
    clock.now += LENGTH / 4  # later in that bucket: both are still in the window
    added = {k for k in raw_redis.keys("*") if k not in before}
    assert len([k for k in added if b":seen:" in k]) == dedup.sets(1_000) + dedup.sets(2_100) + 2

    if action == "delete":
        assert client.delete(f"/experiments/{EXP}", headers=AUTH).status_code == 200
        assert set(raw_redis.keys("*")) == before
        return
    assert client.post(f"/experiments/{EXP}/reset", headers=AUTH).status_code == 200
    assert {k for k in raw_redis.keys("*") if k not in before} == {
        keys.meta(NS, EXP).encode(),
        keys.variants(NS, EXP).encode(),
        keys.experiment_registry(NS, EXP).encode(),
    } - before  # names and settings stay, nothing of the records
    assert _send(tracker, [f"a-{i}" for i in range(600)]) == 600  # forgotten: counted again
    assert _count(client) == 600


@pytest.mark.single_redis
def test_a_uuid_costs_at_most_16_bytes(make_app: Callable[..., Flask], raw_redis: Any) -> None:
    """INFO memory, as bench/track.py measures it: records only, client buffers and the slow
    log left out (63 B a uuid in one hashtable set per bucket)."""
    clock = Clock()
    app = make_app(counting="exact", dedup_window=WINDOW, clock=clock)
    tracker = _tracker(app)

    def used() -> int:
        app.extensions["gimel"].client.close()
        deadline = time.monotonic() + 5
        while len(raw_redis.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        raw_redis.slowlog_reset()
        return int(raw_redis.info("memory")["used_memory"])

    tracker.track(Event(NS, EXP, "v", "participate", "first"))
    before = used()
    assert _send(tracker, [f"{i:08d}-uuid-4c1e-9f7a" for i in range(20_000)], size=1_000) == 20_000
    per_uuid = (used() - before) / 20_000
    print(f"\nexact mode: {per_uuid:.1f} B per uuid at 20,000")
    assert per_uuid <= 16


names = st.text(min_size=1, max_size=40)


@given(names, names, st.integers(0, 2**40), st.integers(0, dedup.SETS))
def test_the_sets_of_an_experiment_share_its_slot(
    namespace: str, experiment: str, bucket: int, index: int
) -> None:
    slot = key_slot(keys.meta(namespace, experiment).encode())
    for key in [
        keys.seen_set(namespace, experiment, bucket, index),
        keys.seen_size(namespace, experiment, bucket),
    ]:
        assert key_slot(key.encode()) == slot


@given(names, names, names)
def test_a_record_is_an_int64_whose_last_digits_are_its_path(
    goal: str, variant: str, uuid: str
) -> None:
    record = dedup.record(goal, variant, uuid)
    value = int.from_bytes(dedup.digest(goal, variant, uuid), "big")
    assert 0 <= int(record.member) < 2**63  # an intset member, stored in 8 bytes
    assert record.path == int(record.member) % 10**dedup.PATH_DIGITS == value % dedup.SETS
    assert int(record.member) // 10**dedup.PATH_DIGITS == value >> (64 - dedup.REST_BITS)
