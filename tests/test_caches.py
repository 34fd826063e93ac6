"""What a process keeps of the results it computed: never stale, safe across threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from conftest import AUTH
from gimel_core.cache import Cache, Caches
from helpers import track


def test_a_counted_event_is_in_the_next_read(client: Any) -> None:
    """The cache is keyed by everything stored: one more visitor is a new analysis."""
    for i in range(30):
        track(client, "exp", "a" if i % 2 else "b", "participate", f"u{i}")
    first = client.get("/experiments", headers=AUTH).get_json()[1]
    again = client.get("/experiments", headers=AUTH).get_json()[1]
    assert again == first  # unchanged: the same answer (from what was kept)
    track(client, "exp", "a", "participate", "u-new")
    track(client, "exp", "a", "signup", "u-new")
    after = client.get("/experiments", headers=AUTH).get_json()[1]
    assert after["participants"]["a"] == first["participants"]["a"] + 1
    assert [g["goal"] for g in after["goals"]] == ["signup"]


@pytest.mark.single_redis
def test_threads_reading_while_the_cache_evicts_all_get_right_answers(
    make_app: Callable[..., Flask],
) -> None:
    """gimel serve runs several threads a worker: the kept results are evicted and filled
    from all of them at once (a small bound makes every read evict)."""
    caches = Caches(analysed_bytes=8_000)
    # Switch threads as often as the interpreter can, so reads, evictions and inserts of
    # different threads interleave as much as they ever will.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    app = make_app(counting="exact", caches=caches)
    client = app.test_client()
    names = [f"exp {i:02}" for i in range(24)]
    for n, name in enumerate(names):
        for i in range(n + 1):
            track(client, name, "a", "participate", f"u{i}")
    errors: list[BaseException] = []

    def read(offset: int) -> None:
        try:
            mine = app.test_client()
            for k in range(40):
                name = names[(offset + k) % len(names)]
                body = mine.get(f"/experiments/{name}", headers=AUTH).get_json()
                assert body["participants"] == {"a": names.index(name) + 1}, body
                listing = mine.get("/experiments?limit=100&view=summary", headers=AUTH)
                assert listing.status_code == 200 and len(listing.get_json()) == 25
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i * 3,)) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(previous)
    assert not errors, errors[0]
    assert 0 < caches.analysed.size <= caches.analysed.limit == 8_000
    assert caches.analysed.size == sum(len(raw) for _, _, raw, _ in caches.analysed._items)


def test_each_app_keeps_its_own_results(make_app: Callable[..., Flask]) -> None:
    """The app factory makes what an app keeps: two apps share nothing, and clearing one
    empties every part of it at once."""
    first, second = make_app(counting="exact"), make_app(counting="exact")
    client = first.test_client()
    for i in range(4):
        track(client, "exp", "a" if i % 2 else "b", "participate", f"u{i}")
    assert client.get("/experiments/exp", headers=AUTH).status_code == 200
    kept = first.extensions["gimel"].caches
    assert kept is not second.extensions["gimel"].caches
    assert len(kept.analysed) == 1 and len(second.extensions["gimel"].caches.analysed) == 0
    kept.clear()
    assert len(kept.analysed) == kept.analysed.size == len(kept.goals) == 0


def test_a_cache_stays_within_its_bound_and_keeps_no_giant() -> None:
    """Weighed entries: the oldest go first, the total never passes the bound, and one entry
    heavier than ``largest`` is not kept at all (it would push out all the others)."""
    cache: Cache[str, str] = Cache(10, weigh=lambda _, value: len(value), largest=5)
    assert cache.put("a", "xxxx") and cache.put("b", "xxxx")
    assert not cache.put("c", "x" * 6)  # too heavy alone
    assert cache.put("d", "xxx")  # 4 + 4 + 3 > 10: "a", the oldest, goes
    assert (cache.get("a"), cache.get("b"), cache.get("d"), cache.size) == (None, "xxxx", "xxx", 7)
    assert not cache.put("b", "yyyy") and cache.get("b") == "xxxx"  # kept already
    calls = []
    assert cache.through("e", lambda: calls.append(1) or "e") == "e"
    assert cache.through("e", lambda: calls.append(1) or "again") == "e" and calls == [1]
