"""What public traffic can make Redis hold, in bytes, and what it can no longer lock out.

Each test replays an attack (bounded: a few thousand events) against a real Redis and prints
what Redis then holds (``MEMORY USAGE`` of every key, and ``INFO memory``):

- open registration: every event a new counter with the longest names (128 four-byte
  characters) is held to the namespace's open budget (GIMEL_OPEN_BUDGET_BYTES);
- undeclared experiments expire when idle (GIMEL_OPEN_IDLE_DAYS), leaving nothing behind;
- junk names, experiments and namespaces never stop a team declaring its plan;
- a declared exact experiment keeps at most GIMEL_DEDUP_MAX_RECORDS uuids per de-dup bucket.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import dedup, defaults, keys
from gimel_core.config import Config, registration_beyond_loopback
from gimel_core.errors import ConfigError
from gimel_core.storage.schema import DAY, OpenBudget
from gimel_core.vocabulary import Registration
from helpers import snapshot, track

NS = defaults.NAMESPACE
START = 1_796_083_200  # 2026-12-01T00:00:00Z
LONGEST = defaults.MAX_NAME_LENGTH


class Clock:
    """The app's time, moved by the test (the create_app(clock=...) seam)."""

    def __init__(self) -> None:
        self.now = float(START + 9 * 3600)

    def __call__(self) -> float:
        return self.now


def junk(rng: random.Random) -> str:
    """A name of 128 random four-byte characters (CJK, 512 bytes; 1,536 escaped in a key)."""
    return "".join(chr(rng.randrange(0x20000, 0x2A6E0)) for _ in range(LONGEST))


def held(raw_redis: Any) -> int:
    """Bytes every key takes, by MEMORY USAGE (SAMPLES 0: every element)."""
    return sum(raw_redis.memory_usage(key, samples=0) or 0 for key in raw_redis.keys("*"))


def used_memory(raw_redis: Any) -> int:
    info = raw_redis.info("memory")
    if "used_memory" in info:
        return int(info["used_memory"])
    return sum(int(node["used_memory"]) for node in info.values())  # a cluster: every node


def post(client: FlaskClient, events: list[dict[str, str]]) -> dict[str, Any]:
    response = client.post("/track", json=events)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def dropped(client: FlaskClient) -> dict[str, int]:
    return client.get("/experiments", headers=AUTH).get_json()[0]["meta"]["dropped"]


def experiment_keys(raw_redis: Any, experiment: str) -> list[bytes]:
    """Every key of one experiment (its registry shard and budget hash are shared)."""
    base = keys.meta(NS, experiment).removesuffix(":meta")
    return [k for k in raw_redis.keys("*") if k.decode().startswith(base + ":")]


# -- F2: the open budget --------------------------------------------------------------------


def test_long_junk_names_in_open_registration_stop_at_the_namespace_budget(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    """2,000 events, each a new (variant, goal) counter of 512-byte names, in 20 experiments:
    15.6 KB each unbounded (31 MB); held to the budget instead."""
    budget = 1_600_000  # 100,000 bytes per registry shard
    client = make_app(open_budget_bytes=budget).test_client()
    rng = random.Random(20)
    # Each event a new (variant, goal) pair under the caps: 20 variants x 50 goals a name.
    pairs = []
    for _ in range(20):
        experiment = junk(rng)
        variants = [junk(rng) for _ in range(defaults.MAX_VARIANTS)]
        goals = [junk(rng) for _ in range(defaults.MAX_GOALS)]
        pairs += [(experiment, v, g) for v, g in zip(variants * 5, goals * 2, strict=True)]
    rng.shuffle(pairs)
    before, memory_before = held(raw_redis), used_memory(raw_redis)
    tally: dict[str, int] = {}
    for first in range(0, len(pairs), 200):  # 200 events a POST: under GIMEL_BATCH_MAX_BYTES
        events = [
            {"experiment": e, "variant": v, "event": g, "uuid": f"u{rng.random()}"}
            for e, v, g in pairs[first : first + 200]
        ]
        body = post(client, events)
        for drop in body.get("dropped", []):
            tally[drop["error"]] = tally.get(drop["error"], 0) + 1
    grown, memory = held(raw_redis) - before, used_memory(raw_redis) - memory_before
    counters = len(raw_redis.keys("gimel:{*:hll:*"))
    charged = sum(
        int(raw_redis.hget(key, OpenBudget.TOTAL) or 0) for key in raw_redis.keys("*:open")
    )
    print(
        f"\nopen budget {budget:,} B: 2,000 junk events -> {counters} counters, "
        f"{grown:,} B held (MEMORY USAGE), used_memory +{memory:,} B, {charged:,} B charged"
    )
    assert 0 < charged <= budget
    assert grown <= budget  # the charge is an upper estimate of what Redis holds
    assert counters < 2_000
    budget_drops = dropped(client).get("budget", 0)
    assert budget_drops == 2_000 - counters and any("GIMEL_OPEN_BUDGET_BYTES" in e for e in tally)


def test_the_budget_leaves_declared_experiments_alone(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    client = make_app(open_budget_bytes=160_000).test_client()  # 10,000 bytes a shard
    plan = {"variants": ["red", "blue"], "goals": ["signup"]}
    assert client.put("/experiments/checkout", json=plan, headers=AUTH).status_code == 201
    rng = random.Random(3)
    # The shard of "checkout" is full of junk: an undeclared experiment of it can add nothing.
    same_shard = next(
        n for n in (junk(rng) for _ in range(500)) if keys.shard(n) == keys.shard("checkout")
    )
    post(client, [{"experiment": same_shard, "variant": "a", "event": "participate", "uuid": "1"}])
    refused = post(
        client,
        [
            {"experiment": same_shard, "variant": junk(rng), "event": "participate", "uuid": "2"}
            for _ in range(20)
        ],
    )
    assert len(refused["dropped"]) >= 19
    events = [
        {"experiment": "checkout", "variant": v, "event": g, "uuid": f"{v}{i}"}
        for v in ("red", "blue")
        for g in ("participate", "signup")
        for i in range(50)
    ]
    assert post(client, events) == {"accepted": 200}
    found = client.get("/experiments/checkout", headers=AUTH).get_json()
    assert found["participants"] == {"blue": 50, "red": 50}
    assert all(raw_redis.ttl(k) == -1 for k in experiment_keys(raw_redis, "checkout"))


# -- F2: idle expiry --------------------------------------------------------------------------


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_an_undeclared_experiment_expires_when_idle_and_leaves_nothing_behind(
    make_app: Callable[..., Flask], raw_redis: Any, counting: str
) -> None:
    clock = Clock()
    idle = 7
    app = make_app(counting=counting, open_idle_days=idle, max_experiments=keys.SHARDS, clock=clock)
    client = app.test_client()
    name = "junk"
    for day, uuid in enumerate(["a", "b"]):
        clock.now = START + day * DAY + 9 * 3600
        assert track(client, name, "v", "participate", uuid).status_code == 200
        assert track(client, name, "v", "signup", uuid).status_code == 200
    own = experiment_keys(raw_redis, name)
    kinds = {k.decode().split(":")[-1] for k in own if b":seen:" not in k}
    assert {"meta", "variants", "goals", "history"} <= kinds
    ttls = {k: raw_redis.ttl(k) for k in own if b":seen:" not in k}
    # Every key expires, idle days after the first event of its last active day.
    assert all(idle * DAY - 60 < ttl <= idle * DAY for ttl in ttls.values()), ttls
    print(f"\nundeclared {counting} experiment: {len(own)} keys, TTLs {sorted(set(ttls.values()))}")

    # A new day's first event renews them all.
    for key in ttls:
        raw_redis.expire(key, 100)
    clock.now += DAY
    assert track(client, name, "v", "participate", "c").status_code == 200
    assert all(raw_redis.ttl(k) > idle * DAY - 60 for k in ttls)

    # Idle: Redis lets them go (here and now, rather than in a week).
    for key in experiment_keys(raw_redis, name):
        raw_redis.pexpire(key, 1)
    time.sleep(0.01)
    assert all(raw_redis.exists(k) == 0 for k in own)
    assert client.get("/experiments", headers=AUTH).get_json()[1:] == []  # listed no more
    assert client.get(f"/experiments/{name}", headers=AUTH).status_code == 404
    assert client.delete(f"/experiments/{name}", headers=AUTH).status_code == 404

    # Its name still holds its registry shard's only place (the cap: one a shard) until
    # the next pass over the budget, which the full shard sets off: it is then forgotten.
    registry = keys.experiment_registry(NS, name).encode()
    assert raw_redis.smembers(registry) == {name.encode()}
    other = next(f"e{i}" for i in range(1_000) if keys.shard(f"e{i}") == keys.shard(name))
    clock.now += 3_600
    assert track(client, other, "v", "participate", "d").status_code == 200
    assert raw_redis.smembers(registry) == {other.encode()}
    budget = raw_redis.hgetall(keys.open_budget(NS, name))
    assert keys.meta(NS, name).encode() not in budget
    assert [e["experiment"] for e in client.get("/experiments", headers=AUTH).get_json()[1:]] == [
        other
    ]


# -- F3: a team can always declare its plan -------------------------------------------------


PLAN = {"variants": ["red", "blue"], "goals": ["signup"]}


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_a_junk_variant_no_longer_locks_a_team_out_of_its_plan(
    make_app: Callable[..., Flask], raw_redis: Any, counting: str
) -> None:
    client = make_app(counting=counting).test_client()
    for variant, uuid in [("red", "r1"), ("blue", "b1"), ("red", "r2")]:
        assert track(client, "checkout", variant, "participate", uuid).status_code == 200
    assert track(client, "checkout", "red", "signup", "r1").status_code == 200
    assert track(client, "checkout", "evil", "participate", "x").status_code == 200  # the attack
    assert track(client, "checkout", "red", "spam", "x").status_code == 200

    refused = client.put("/experiments/checkout", json=PLAN, headers=AUTH)
    assert refused.status_code == 409
    assert "drop_undeclared=true" in refused.get_json()["error"]

    before = snapshot(raw_redis)
    url = "/experiments/checkout?drop_undeclared=true"
    predicted = client.put(url + "&dry_run=true", json=PLAN, headers=AUTH)
    assert predicted.status_code == 200, predicted.get_json()
    assert snapshot(raw_redis) == before  # a dry run

    declared = client.put(url, json=PLAN, headers=AUTH)
    assert declared.status_code == 200, declared.get_json()
    assert declared.get_json() == predicted.get_json()  # the dry run predicted it whole
    found = declared.get_json()
    assert found["participants"] == {"blue": 1, "red": 2}
    assert [g["goal"] for g in found["goals"]] == ["signup"]
    stored = b" ".join(raw_redis.keys("*")) + b" ".join(
        b"".join(map(bytes, raw_redis.hgetall(k).keys()))
        for k in raw_redis.keys("*")
        if raw_redis.type(k) == b"hash"
    )
    assert b"evil" not in stored and b"spam" not in stored  # the junk's counters are gone
    assert all(
        raw_redis.ttl(k) == -1 for k in experiment_keys(raw_redis, "checkout") if b":seen:" not in k
    )
    assert not raw_redis.keys("*:open")  # out of the open budget

    # Declared: its names are the team's; the flag drops none of them.
    again = client.put(url, json={"variants": ["red", "green"]}, headers=AUTH)
    assert again.status_code == 409 and "drop_undeclared" not in again.get_json()["error"]


def test_full_caps_of_experiments_and_namespaces_never_stop_a_declaration(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    """3 POSTs of random experiment names fill a namespace; 1 POST of 100 namespaces fills
    the cap on namespaces. Declaring still works, in both, and counts."""
    client = make_app().test_client()
    rng = random.Random(7)
    for _ in range(3):
        post(
            client,
            [
                {
                    "experiment": f"x{rng.random()}",
                    "variant": "v",
                    "event": "participate",
                    "uuid": "u",
                }
                for _ in range(500)
            ],
        )
    post(
        client,
        [
            {
                "namespace": f"ns{i}",
                "experiment": "e",
                "variant": "v",
                "event": "participate",
                "uuid": "u",
            }
            for i in range(defaults.MAX_NAMESPACES + 1)
        ],
    )
    assert track(client, "new-one", "v", "participate", "u").status_code == 422  # cap full
    assert dropped(client)["experiments"] > 0 and dropped(client)["namespaces"] > 0

    for namespace in (NS, "team"):
        url = f"/experiments/checkout?namespace={namespace}"
        assert client.put(url, json=PLAN, headers=AUTH).status_code == 201
        events = [
            {
                "namespace": namespace,
                "experiment": "checkout",
                "variant": v,
                "event": "participate",
                "uuid": v,
            }
            for v in ("red", "blue")
        ]
        assert post(client, events) == {"accepted": 2}
        found = client.get(url, headers=AUTH).get_json()
        assert found["participants"] == {"blue": 1, "red": 1}


# -- F8: de-dup records of an exact experiment --------------------------------------------


def test_random_uuids_stop_at_the_records_cap_of_a_declared_exact_experiment(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    cap = 1_000
    client = make_app(counting="exact", dedup_max_records=cap).test_client()
    assert client.put("/experiments/checkout", json=PLAN, headers=AUTH).status_code == 201
    rng = random.Random(8)
    before = held(raw_redis)
    sent = 0
    for _ in range(6):  # 3,000 random uuids, from one client
        events = [
            {
                "experiment": "checkout",
                "variant": "red",
                "event": "participate",
                "uuid": f"{rng.random()}",
            }
            for _ in range(500)
        ]
        body = post(client, events)
        sent += len(events)
    records = sum(int(raw_redis.get(k)) for k in raw_redis.keys("*:seen:*:size"))
    grown = held(raw_redis) - before
    found = client.get("/experiments/checkout", headers=AUTH).get_json()
    print(
        f"\nexact, cap {cap:,} records a bucket: {sent:,} random uuids -> {records:,} records, "
        f"{grown:,} B held; at most {defaults.DEDUP_BUCKETS + 1} buckets"
    )
    assert records == cap and found["participants"]["red"] == cap
    assert dropped(client) == {"records": sent - cap}
    assert "GIMEL_DEDUP_MAX_RECORDS" in body["dropped"][0]["error"]
    # A uuid already recorded is still recognised: counted once, not dropped.
    first = raw_redis.smembers(next(iter(raw_redis.keys("*:seen:*:0"))))
    assert first and len(first) <= dedup.LOAD * 2


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "env", "registration"),
    [
        ("127.0.0.1", {}, None),
        ("::1", {}, None),
        ("[::1]", {}, None),
        ("localhost", {}, None),
        ("127.0.0.2", {}, None),
        ("0.0.0.0", {}, Registration.DECLARED),
        ("::", {}, Registration.DECLARED),
        ("192.168.1.5", {}, Registration.DECLARED),
        ("gimel.example.com", {}, Registration.DECLARED),
        ("0.0.0.0", {"GIMEL_REGISTRATION": "open"}, None),  # said so: kept
    ],
)
def test_gimel_serve_beyond_loopback_counts_only_declared_experiments_unless_told(
    host: str, env: dict[str, str], registration: Registration | None
) -> None:
    assert registration_beyond_loopback(host, env) == registration


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GIMEL_OPEN_BUDGET_BYTES", "lots"),
        ("GIMEL_OPEN_BUDGET_BYTES", "10"),
        ("GIMEL_OPEN_IDLE_DAYS", "0"),
        ("GIMEL_OPEN_IDLE_DAYS", "1.5"),
        ("GIMEL_DEDUP_MAX_RECORDS", "-1"),
    ],
)
def test_a_bad_bound_stops_start_up_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_the_bounds_are_read_from_the_environment() -> None:
    config = Config.from_env(
        {
            "GIMEL_OPEN_BUDGET_BYTES": "2000000",
            "GIMEL_OPEN_IDLE_DAYS": "7",
            "GIMEL_DEDUP_MAX_RECORDS": "5000",
        }
    )
    assert (config.open_budget_bytes, config.open_idle_days, config.dedup_max_records) == (
        2_000_000,
        7,
        5_000,
    )
    assert Config.from_env({}).open_budget_bytes == defaults.OPEN_BUDGET_BYTES


def test_an_experiment_older_than_the_budget_is_entered_on_its_next_day(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    """Undeclared experiments stored before the budget existed have no entry in it: their
    next day's first event makes one, so that their registry entry goes once they expire."""
    clock = Clock()
    client = make_app(clock=clock).test_client()
    assert track(client, "old", "v", "participate", "a").status_code == 200
    budget = keys.open_budget(NS, "old")
    raw_redis.delete(budget)  # as if stored before
    clock.now += DAY
    assert track(client, "old", "v", "participate", "b").status_code == 200
    held, name = raw_redis.hget(budget, keys.meta(NS, "old")).split(b" ")
    assert name == b"old" and int(held) >= 0  # its day of history, charged
