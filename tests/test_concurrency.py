"""Concurrency and load: 8 senders x 5,000 events over real HTTP, 20% of them duplicates.

Each sender posts its events in batches of 250 to one threaded HTTP server, and also sends
single GETs in lock-step with the other senders (a barrier), all eight carrying the same
event at the same instant. Duplicates are events sent again: by the same sender, by
another one at about the same time, inside one batch, or at the barrier. Exact counts must
equal the ground truth exactly; HyperLogLog counts must be within 2% of it.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

import pytest
from flask import Flask

from conftest import AUTH
from helpers import serving

SENDERS = 8
EVENTS_PER_SENDER = 5_000
BATCH = 250
BARRIER_ROUNDS = 25
"""Single GETs per sender, each round all senders sending one same event at once."""
DUPLICATES = 0.2
EXPERIMENTS = ("load-a", "load-b")  # two experiments: two slots, on the cluster two nodes
VARIANTS = ("red", "blue")
CONVERTED = 0.3
"""Share of fresh events that are a goal (``signup``) of a uuid that participated."""

Event = tuple[str, str, str, str]  # experiment, variant, event, uuid


def plan(seed: int = 1234) -> list[list[Event]]:
    """Each sender's batch events, in sending order: fresh events and 20% duplicates.

    Deterministic: the same events, and so the same HyperLogLog registers, on every run.
    """
    rng = random.Random(seed)
    total = SENDERS * EVENTS_PER_SENDER
    # barrier events are 1 fresh + (SENDERS - 1) duplicates per round
    duplicates = round(total * DUPLICATES) - BARRIER_ROUNDS * (SENDERS - 1)
    batch_events = EVENTS_PER_SENDER - BARRIER_ROUNDS
    fresh_per_sender = batch_events - duplicates // SENDERS
    fresh: list[list[Event]] = []
    for s in range(SENDERS):
        events: list[Event] = []
        while len(events) < fresh_per_sender:
            exp, variant = rng.choice(EXPERIMENTS), rng.choice(VARIANTS)
            uuid = f"{s}-{len(events)}-{rng.getrandbits(32):08x}"
            events.append((exp, variant, "participate", uuid))
            if rng.random() < CONVERTED and len(events) < fresh_per_sender:
                events.append((exp, variant, "signup", uuid))
        fresh.append(events)
    plans = []
    for s in range(SENDERS):
        events = list(fresh[s])
        for _ in range(batch_events - len(events)):
            # a duplicate: mostly another sender's event, sent around the same time
            source = fresh[rng.randrange(SENDERS)]
            position = min(len(source) - 1, max(0, len(events) + rng.randint(-300, 300)))
            events.insert(rng.randint(0, len(events)), source[position])
        plans.append(events)
    return plans


def barrier_event(round_no: int) -> Event:
    return (EXPERIMENTS[round_no % 2], VARIANTS[round_no % 2], "participate", f"same-{round_no}")


def ground_truth(plans: list[list[Event]]) -> tuple[Counter[tuple[str, str, str]], int]:
    sent = [e for p in plans for e in p]
    sent += [barrier_event(r) for r in range(BARRIER_ROUNDS) for _ in range(SENDERS)]
    unique = set(sent)
    return Counter((exp, event, variant) for exp, variant, event, _ in unique), len(sent)


def sender(host: str, events: list[Event], barrier: threading.Barrier, errors: list[str]) -> None:
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        # batches, with a barrier round of single GETs after every few of them
        batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        rounds = iter(range(BARRIER_ROUNDS))
        for n, batch in enumerate(batches):
            body = json.dumps(
                [{"experiment": x, "variant": v, "event": e, "uuid": u} for x, v, e, u in batch]
            )
            conn.request("POST", "/track", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or answer != {"accepted": len(batch)}:
                errors.append(f"batch {n}: {response.status} {answer}")
            for round_no in rounds if n == len(batches) - 1 else _take(rounds, 2):
                exp, variant, event, uuid = barrier_event(round_no)
                query = urlencode(
                    {"experiment": exp, "variant": variant, "event": event, "uuid": uuid}
                )
                barrier.wait(timeout=60)
                conn.request("GET", "/track?" + query)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"GET round {round_no}: {response.status}")
    except Exception as exc:  # reported by the test, never lost in a thread
        errors.append(f"{type(exc).__name__}: {exc}")
        barrier.abort()
    finally:
        conn.close()


def _take(rounds: Iterator[int], n: int) -> list[int]:
    return [r for _, r in zip(range(n), rounds, strict=False)]


def results(host: str) -> dict[tuple[str, str, str], int]:
    """(experiment, goal or participate, variant) -> count, read over HTTP with the key."""
    counts: dict[tuple[str, str, str], int] = {}
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        for exp in EXPERIMENTS:
            conn.request("GET", "/experiments/" + quote(exp, safe=""), headers=AUTH)
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            for goal in body["goals"]:
                for row in goal["results"]:
                    counts[exp, "participate", row["label"]] = row["trials"]
                    counts[exp, goal["goal"], row["label"]] = row["successes"]
    finally:
        conn.close()
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("counting", ["exact", "hll"])
def test_eight_concurrent_senders_with_duplicates_count_the_ground_truth(
    make_app: Callable[..., Flask], counting: str
) -> None:
    plans = plan()
    truth, sent = ground_truth(plans)
    assert sent == SENDERS * EVENTS_PER_SENDER
    assert 1 - sum(truth.values()) / sent == pytest.approx(DUPLICATES, abs=0.001)
    app = make_app(counting=counting)
    errors: list[str] = []
    barrier = threading.Barrier(SENDERS)
    with serving(app) as host:
        threads = [
            threading.Thread(target=sender, args=(host, plans[s], barrier, errors))
            for s in range(SENDERS)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.monotonic() - started
        assert not errors, errors[:5]
        counts = results(host)
    print(f"\n{counting}: {sent} events ({sum(truth.values())} unique) in {elapsed:.1f} s")
    assert set(counts) == set(truth)
    if counting == "exact":
        assert counts == dict(truth)
    else:
        worst = max(abs(counts[k] - n) / n for k, n in truth.items())
        print(f"hll: largest error {worst:.2%} over {len(truth)} counters")
        for key, expected in truth.items():
            assert counts[key] == pytest.approx(expected, rel=0.02), key
