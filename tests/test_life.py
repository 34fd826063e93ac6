"""Exact means exact: an ``exact`` experiment remembers every uuid for its whole life.

A visitor whose events are sent again days later (a cleared queue, a second device with the
same ``user_id``) counts once, as ``hll`` counts it, so the two modes agree; a window
(GIMEL_DEDUP_WINDOW in seconds) stays an option, and an experiment keeps the window it was
created with. Reset and delete forget every record. Time goes through the clock seam
(``create_app(clock=...)``); events through ``POST /track``, counts through the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import dedup, keys
from gimel_core.storage.schema import DAY

EXP = "life"
RESENT_ON = (1, 3, 30)
"""Days after the first send on which every event is sent again."""


class Clock:
    """The app's time, moved by whole days (Redis's own clock is not: nothing must expire)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _post(client: FlaskClient, uuids: list[str]) -> None:
    """Each uuid enters ``a`` or ``b`` and reaches ``signup``: two events each."""
    events = [
        {"experiment": EXP, "variant": "ab"[i % 2], "event": event, "uuid": uuid}
        for i, uuid in enumerate(uuids)
        for event in ("participate", "signup")
    ]
    for first in range(0, len(events), 500):  # a batch's most events
        answer = client.post("/track", json=events[first : first + 500])
        assert answer.status_code == 200, answer.get_json()


def _counts(client: FlaskClient) -> tuple[int, int]:
    """Participants and signups, over both variants."""
    body = client.get(f"/experiments/{EXP}", headers=AUTH).get_json()
    (signup,) = body["goals"]
    return sum(body["participants"].values()), sum(r["successes"] for r in signup["results"])


def _seen_keys(raw_redis: Any) -> list[bytes]:
    return [k for k in raw_redis.keys("*") if b":seen:" in k]


UUIDS = [f"visitor-{i}" for i in range(500)]


def _resends(make_app: Callable[..., Flask], **config: Any) -> list[tuple[int, int]]:
    """Counts after the first send, then after each re-send of every event."""
    clock = Clock()
    client = make_app(clock=clock, **config).test_client()
    start = clock.now
    _post(client, UUIDS)
    found = [_counts(client)]
    for day in RESENT_ON:
        clock.now = start + day * DAY
        _post(client, UUIDS)
        found.append(_counts(client))
    return found


def test_a_uuid_resent_on_day_1_3_and_30_counts_once_in_both_modes(
    make_app: Callable[..., Flask],
) -> None:
    exact = _resends(make_app, counting="exact")
    hll = _resends(make_app, counting="hll")
    print(f"\nafter day 0, {RESENT_ON}: exact {exact}, hll {hll}")
    assert exact == [(500, 500)] * (1 + len(RESENT_ON))  # counted once, for life
    assert hll == exact  # 500 uniques: a sparse HyperLogLog counts them exactly


def test_with_a_one_day_window_the_day_3_resend_counts_again(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    found = _resends(make_app, counting="exact", dedup_window=DAY)
    assert found[:2] == [(500, 500), (500, 500)]  # day 1: inside the window (and a quarter)
    assert found[2] == (1_000, 1_000)  # day 3: forgotten, counted again
    assert found[3] == (1_500, 1_500)
    window = raw_redis.hget(keys.meta("alephbet", EXP), "window")
    assert window == str(DAY).encode()


def test_an_experiment_keeps_the_window_it_was_created_with(
    make_app: Callable[..., Flask],
) -> None:
    """Created under the old default (a day), it keeps its day; a new one remembers for life."""
    clock = Clock()
    start = clock.now
    old = make_app(clock=clock, counting="exact", dedup_window=DAY).test_client()
    _post(old, UUIDS)
    now = make_app(clock=clock, counting="exact").test_client()  # GIMEL_DEDUP_WINDOW unset
    clock.now = start + 3 * DAY
    _post(now, UUIDS)
    assert _counts(now) == (1_000, 1_000)
    body = now.get(f"/experiments/{EXP}", headers=AUTH).get_json()
    assert body["dedup_window"] == DAY

    assert now.delete(f"/experiments/{EXP}", headers=AUTH).status_code == 200
    _post(now, UUIDS)
    assert now.get(f"/experiments/{EXP}", headers=AUTH).get_json()["dedup_window"] is None


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_reset_and_delete_forget_every_record(
    make_app: Callable[..., Flask], raw_redis: Any, action: str
) -> None:
    clock = Clock()
    client = make_app(clock=clock, counting="exact").test_client()
    many = [f"u-{i}" for i in range(1_500)]  # 3,000 records: several sets
    _post(client, many)
    assert len(_seen_keys(raw_redis)) == dedup.sets(3_000) + 1  # its sets and its count
    clock.now += 30 * DAY
    if action == "reset":
        assert client.post(f"/experiments/{EXP}/reset", headers=AUTH).status_code == 200
    else:
        assert client.delete(f"/experiments/{EXP}", headers=AUTH).status_code == 200
    assert _seen_keys(raw_redis) == []
    _post(client, many[:100])
    assert _counts(client) == (100, 100)  # forgotten: counted again


def test_an_undeclared_experiments_records_go_with_it_and_a_declared_ones_stay(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    """Open registration: an undeclared experiment expires when idle, its records with it;
    declaring it keeps them for good."""
    idle = 30 * DAY + DAY  # a day longer than its other keys, renewed later in a day
    clock = Clock()
    client = make_app(clock=clock, counting="exact").test_client()
    _post(client, [f"u-{i}" for i in range(1_000)])
    found = _seen_keys(raw_redis)
    assert len(found) == dedup.sets(2_000) + 1
    assert all(idle - 60 < raw_redis.ttl(k) <= idle for k in found)
    for key in found:  # as if nearly 30 days had passed
        raw_redis.expire(key, 100)
    clock.now += DAY  # a visitor seen before, on a new day: every record is renewed
    _post(client, ["u-0"])
    assert all(idle - 60 < raw_redis.ttl(k) <= idle for k in _seen_keys(raw_redis))

    plan = {"variants": ["a", "b"], "goals": ["signup"]}
    assert client.put(f"/experiments/{EXP}", json=plan, headers=AUTH).status_code == 200
    assert {raw_redis.ttl(k) for k in _seen_keys(raw_redis)} == {-1}
    _post(client, [f"x-{i}" for i in range(500)])
    assert {raw_redis.ttl(k) for k in _seen_keys(raw_redis)} == {-1}
    assert _counts(client) == (1_500, 1_500)


def test_the_records_cap_bounds_an_experiment_and_a_fifth_of_it_a_windows_bucket(
    make_app: Callable[..., Flask],
) -> None:
    cap = 1_000
    for window, held in [(dedup.LIFE, cap), (DAY, cap // 5)]:
        client = make_app(counting="exact", dedup_window=window, dedup_max_records=cap)
        test = client.test_client()
        test.delete(f"/experiments/{EXP}", headers=AUTH)
        _post(test, [f"u-{i}" for i in range(1_000)])  # 2,000 records
        assert sum(_counts(test)) == held
