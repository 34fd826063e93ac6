"""What a process keeps of the results it computed: never stale, safe across threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from conftest import AUTH
from gimel_core import experiments
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
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gimel serve runs several threads a worker: the kept results are evicted and filled
    from all of them at once (a small bound makes every read evict)."""
    monkeypatch.setattr(experiments, "_ANALYSED_BYTES", 8_000)
    # Switch threads as often as the interpreter can, so reads, evictions and inserts of
    # different threads interleave as much as they ever will.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    monkeypatch.setattr(experiments, "_kept", [0])
    monkeypatch.setattr(experiments, "_ANALYSED", {})
    app = make_app(counting="exact")
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
    assert experiments._kept[0] <= experiments._ANALYSED_BYTES
