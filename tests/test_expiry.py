"""Expiry: exact mode forgets a uuid after its de-dup window, and nothing else of a declared
experiment ever expires.

A de-dup record is the only data Gimel keeps about a uuid, and the README promises it
expires: the window is split into ``defaults.DEDUP_BUCKETS`` time buckets and each bucket's
set lives until its last record is one window old, so window..1.25 window after the event.
A declared experiment's counters, names and settings must never expire (an undeclared one
goes when idle: tests/test_budget.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from conftest import AUTH
from gimel_core import defaults
from helpers import track

PLANS = {
    "button": {"variants": ["red", "blue"], "goals": ["signup", "buy"]},
    "other": {"variants": ["a", "b"]},
}


@pytest.mark.parametrize("window", [3600, defaults.DEDUP_WINDOW])
def test_dedup_records_expire_after_the_window_and_nothing_else_expires(
    make_app: Callable[..., Flask], raw_redis: Any, window: int
) -> None:
    client = make_app(counting="exact", dedup_window=window).test_client()
    for name, plan in PLANS.items():
        assert client.put(f"/experiments/{name}", json=plan, headers=AUTH).status_code == 201

    started = time.time()
    for variant, uuid in [("red", "u1"), ("red", "u2"), ("blue", "u3")]:
        assert track(client, "button", variant, "participate", uuid).status_code == 200
        assert track(client, "button", variant, "signup", uuid).status_code == 200
    assert track(client, "button", "red", "signup", "u1").status_code == 200  # a duplicate
    batch = client.post(
        "/track",
        json=[
            {"experiment": "button", "variant": "blue", "event": "buy", "uuid": "u3"},
            {"experiment": "other", "variant": "a", "event": "participate", "uuid": "u4"},
        ],
    )
    assert batch.get_json() == {"accepted": 2}

    seen = sorted(raw_redis.keys("*:seen:*"))
    ttls = {key: raw_redis.pttl(key) / 1000 for key in seen}
    elapsed = time.time() - started
    # Each experiment's events of this test fall in one bucket (or two, at a bucket edge).
    assert 2 <= len(seen) <= 4, seen
    # The bucket of an event at `now` lives until its end plus one window: more than a window
    # and at most one bucket longer. PTTL is read up to `elapsed` seconds after the event.
    longest = window + math.ceil(window / defaults.DEDUP_BUCKETS)
    assert longest <= 1.25 * window
    for key, ttl in ttls.items():
        assert window - elapsed < ttl <= longest + elapsed, (key, ttl, window)

    others = set(raw_redis.keys("*")) - set(seen)
    assert any(b":button:counts" in key for key in others)  # the counts exist, and...
    assert {key: raw_redis.ttl(key) for key in others} == dict.fromkeys(others, -1)  # ...stay
