"""One source cannot steer a decision: the per-source budget on a daily-salted address hash.

The attack: a declared experiment with 1,000 participants per arm from 2,000 addresses, then
fake visitors with fresh uuids from one address. Without a budget, 210 GETs (70 fake red
visitors who sign up, 70 fake blue ones) turn the decision into "Ship red", and 160 GETs set
off the sample-ratio alarm; with it, neither moves.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from serving import GimelServe

from conftest import API_KEY, AUTH
from gimel_core import defaults, keys
from gimel_core.config import Config
from gimel_core.errors import ConfigError
from gimel_core.sources import Sources
from gimel_core.storage.schema import SOURCES_EXPIRING, OpenBudget
from helpers import track_url


def this_hour() -> int:
    """Ten minutes into the current clock hour, read when a test starts (not when the module
    is imported: a run can cross an hour, and Redis expires a source's counts by its own
    clock at the end of the app's hour). In an hour's last minute, waits for the next."""
    left = 3_600 - time.time() % 3_600
    if left < 60:
        time.sleep(left + 0.1)
    return int(time.time()) // 3_600 * 3_600 + 600


BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
PLAN = {
    "variants": ["blue", "red"],
    "control": "blue",
    "goals": [{"name": "signup", "role": "primary"}],
}
ATTACKER = "203.0.113.66"
BUDGET = defaults.SOURCE_BUDGET


class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = this_hour() if now is None else now

    def __call__(self) -> float:
        return self.now


def get(client: FlaskClient, address: str, variant: str, event: str, uuid: str) -> None:
    answer = client.get(
        track_url(experiment="checkout", variant=variant, event=event, uuid=uuid),
        environ_base={"REMOTE_ADDR": address, "HTTP_USER_AGENT": BROWSER},
    )
    assert answer.status_code == 200, answer.get_json()


def visitors(client: FlaskClient) -> None:
    """1,000 participants per arm, each from an address of its own; 100 per arm sign up."""
    for i in range(2_000):
        variant = ("blue", "red")[i % 2]
        address = f"198.18.{i // 250}.{i % 250 + 1}"
        get(client, address, variant, "participate", f"visitor-{i}")
        if i // 2 % 10 == 0:
            get(client, address, variant, "signup", f"visitor-{i}")


def result(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/experiments/checkout", headers=AUTH)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.get_json()
    return body


def dropped(client: FlaskClient) -> dict[str, int]:
    listing = client.get("/experiments", headers=AUTH).get_json()
    meta: dict[str, Any] = listing[0]["meta"]
    return dict(meta["dropped"])


def steer(client: FlaskClient) -> None:
    """210 GETs from one address: 70 fake red visitors who sign up, 70 fake blue ones."""
    for i in range(70):
        get(client, ATTACKER, "red", "participate", f"fake-red-{i}")
        get(client, ATTACKER, "red", "signup", f"fake-red-{i}")
        get(client, ATTACKER, "blue", "participate", f"fake-blue-{i}")


def unbalance(client: FlaskClient) -> None:
    """160 GETs from one address: fake red participants."""
    for i in range(160):
        get(client, "203.0.113.67", "red", "participate", f"fake-srm-{i}")


@pytest.fixture
def declared(make_app: Callable[..., Flask]) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        app = make_app(clock=Clock(), registration="declared", counting="exact", **overrides)
        client = app.test_client()
        put = client.put("/experiments/checkout", json=PLAN, headers=AUTH)
        assert put.status_code == 201, put.get_json()
        visitors(client)
        return client

    return make


def test_one_source_cannot_steer_the_decision_nor_set_off_the_alarm(
    declared: Callable[..., FlaskClient],
) -> None:
    client = declared()
    before = result(client)
    assert before["participants"] == {"blue": 1_000, "red": 1_000}  # every visitor counted
    assert "source" not in dropped(client)
    assert before["decision"]["kind"] == "keep_running"

    steer(client)
    after = result(client)
    assert after["decision"]["kind"] == before["decision"]["kind"]
    assert not after["srm"]["mismatch"]
    added = sum(after["participants"].values()) - 2_000
    assert added <= BUDGET
    assert dropped(client)["source"] == 210 - BUDGET
    p_value = after["goals"][0]["results"][1]["p_value"]
    print(
        f"\n210 GETs from one source: {210 - BUDGET} dropped, decision "
        f"{after['decision']['kind']} (p={p_value:.3f}), SRM p={after['srm']['p_value']:.3f}"
    )

    unbalance(client)
    alarm = result(client)
    assert not alarm["srm"]["mismatch"]
    assert alarm["decision"]["kind"] == before["decision"]["kind"]
    assert dropped(client)["source"] == 210 - BUDGET + 160 - BUDGET
    print(
        f"160 GETs from another source: {160 - BUDGET} dropped, SRM p={alarm['srm']['p_value']:.3f}"
    )


@pytest.mark.single_redis
def test_without_a_budget_one_source_steers(declared: Callable[..., FlaskClient]) -> None:
    """The finding itself, with the budget off: what the test above holds back."""
    client = declared(source_budget=0)
    steer(client)
    steered = result(client)
    assert steered["decision"]["kind"] == "ship" and steered["decision"]["variant"] == "red"
    unbalance(client)
    assert result(client)["srm"]["mismatch"]
    assert "source" not in dropped(client)


def everything(raw_redis: Any) -> Iterator[tuple[bytes, bytes | None]]:
    """Every key with each of its fields, members and values, as bytes."""
    for key in raw_redis.keys("*"):
        kind = raw_redis.type(key)
        if kind == b"hash":
            for field, value in raw_redis.hgetall(key).items():
                yield key, field + b"=" + value
        elif kind == b"set":
            for member in raw_redis.smembers(key):
                yield key, member
        elif kind == b"string":
            yield key, raw_redis.get(key)
        else:
            yield key, None


def test_the_counts_last_the_hour_and_hold_no_address_nor_salt(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    clock = Clock()
    app = make_app(clock=clock, source_secret="a-secret-of-twenty-chars")
    client = app.test_client()
    for i in range(BUDGET + 5):
        get(client, ATTACKER, "red", "participate", f"u{i}")
    sources: Sources = app.wsgi_app.sources  # type: ignore[attr-defined]
    salt = sources._salt[1]
    source = sources.hash(ATTACKER)
    now = int(clock.now)
    hour = keys.sources("alephbet", "checkout", now // 3_600, source)
    expiring = SOURCES_EXPIRING.encode()  # the key has its expiry: set once an hour
    assert raw_redis.hgetall(hour) == {source.encode(): str(BUDGET).encode(), expiring: b"1"}
    end = (now // 3_600 + 1) * 3_600
    assert end - time.time() - 5 <= raw_redis.ttl(hour) <= 3_600
    forbidden = [ATTACKER.encode(), salt, salt.hex().encode(), b"a-secret-of-twenty-chars"]
    for key, value in everything(raw_redis):
        for secret in forbidden:
            assert secret not in key and (value is None or secret not in value), key
        if source.encode() in key or (value is not None and source.encode() in value):
            assert 0 < raw_redis.ttl(key) <= 3_600, key

    # A source's one event: its hour's key expires too.
    answer = client.get(
        track_url(experiment="solo", variant="red", event="participate", uuid="u"),
        environ_base={"REMOTE_ADDR": "198.51.100.7", "HTTP_USER_AGENT": BROWSER},
    )
    assert answer.get_json() == {"ok": True}
    solo = keys.sources("alephbet", "solo", now // 3_600, sources.hash("198.51.100.7"))
    assert raw_redis.hlen(solo) == 2  # its source, and the field saying the key expires
    assert end - time.time() - 5 <= raw_redis.ttl(solo) <= 3_600

    clock.now += 3_600  # the next hour: a fresh budget, in a key of its own
    get(client, ATTACKER, "red", "participate", "next-hour")
    later = sources.hash(ATTACKER)  # another source once the hour starts a new UTC day
    assert later == source or now // 3_600 % 24 == 23
    assert raw_redis.hgetall(keys.sources("alephbet", "checkout", now // 3_600 + 1, later)) == {
        later.encode(): b"1",
        expiring: b"1",
    }


def test_an_hours_sources_are_split_in_256_by_their_hash(
    make_app: Callable[..., Flask], raw_redis: Any
) -> None:
    """Redis searches a small hash end to end: each 256th of the sources (by the first two hex
    digits of their hash) has a hash of its own, and every source's count is in its own."""
    clock = Clock()
    app = make_app(clock=clock)
    client = app.test_client()
    addresses = [f"198.51.100.{i}" for i in range(1, 97)]
    for i, address in enumerate(addresses):
        get(client, address, "red", "participate", f"u{i}")
    sources: Sources = app.wsgi_app.sources  # type: ignore[attr-defined]
    hour = int(clock.now) // 3_600
    digits = set()
    for address in addresses:
        source = sources.hash(address)
        digits.add(source[:2])
        key = keys.sources("alephbet", "checkout", hour, source)
        assert key.endswith(f":{source[:2]}")
        assert raw_redis.hget(key, source) == b"1"
    split = raw_redis.keys("*:sources:*")
    assert len(split) == len(digits) > 64
    held = sum(raw_redis.hlen(key) - 1 for key in split)  # each: its sources, and "expiring"
    assert held == len(addresses)


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_only_new_events_cost(make_app: Callable[..., Flask], counting: str) -> None:
    """A browser that resends its event (same uuid) spends nothing of its source's budget."""
    client = make_app(clock=Clock(), counting=counting).test_client()
    for _ in range(BUDGET * 2):
        get(client, ATTACKER, "red", "participate", "the-same-visitor")
    for i in range(BUDGET - 1):  # the participant above was the first new event
        get(client, ATTACKER, "red", "signup", f"u{i}")
    assert "source" not in dropped(client)
    get(client, ATTACKER, "red", "signup", "one-too-many")
    assert dropped(client) == {"source": 1}


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_a_spent_source_adds_no_name_nor_byte_to_an_undeclared_experiment(
    make_app: Callable[..., Flask], raw_redis: Any, counting: str
) -> None:
    """In open registration, a source past its budget cannot fill the variants cap nor the
    open budget with names it may not count; another source still can add one."""
    client = make_app(clock=Clock(), counting=counting).test_client()
    for i in range(BUDGET):
        get(client, ATTACKER, "red", "participate", f"u{i}")
    names = raw_redis.smembers(keys.variants("alephbet", "checkout"))
    budget = keys.open_budget("alephbet", "checkout")
    held = raw_redis.hget(budget, OpenBudget.TOTAL)
    for i in range(10):
        get(client, ATTACKER, f"junk-{i}", "participate", f"junk-{i}")
    assert dropped(client) == {"source": 10}
    assert raw_redis.smembers(keys.variants("alephbet", "checkout")) == names == {b"red"}
    assert raw_redis.hget(budget, OpenBudget.TOTAL) == held
    get(client, "198.51.100.7", "blue", "participate", "a-visitor")
    assert raw_redis.smembers(keys.variants("alephbet", "checkout")) == {b"red", b"blue"}
    assert int(raw_redis.hget(budget, OpenBudget.TOTAL)) > int(held)


def test_the_hash_is_not_the_address_and_changes_with_the_day() -> None:
    clock = Clock()
    config = Config(source_secret="a-secret-of-twenty-chars")
    sources = Sources(config, clock)
    today = sources.hash(ATTACKER)
    assert len(today) == 16 and ATTACKER not in today
    assert sources.hash(ATTACKER) == today != sources.hash("203.0.113.65")
    clock.now += 86_400
    assert sources.hash(ATTACKER) != today
    clock.now -= 86_400
    assert sources.hash(ATTACKER) == today
    # Every Lambda container and gimel serve worker derives the same salt from the secret,
    # else from the API key; another secret gives other hashes.
    assert Sources(config, clock).hash(ATTACKER) == today
    assert Sources(Config(source_secret="another-secret-twenty"), clock).hash(ATTACKER) != today
    keyed = Sources(Config(api_keys=(API_KEY,)), clock)
    assert keyed.hash(ATTACKER) == Sources(Config(api_keys=(API_KEY,)), clock).hash(ATTACKER)


def test_the_address_a_request_is_budgeted_under() -> None:
    plain = Sources(Config(), time.time)
    assert plain.address({"REMOTE_ADDR": "203.0.113.5"}) == "203.0.113.5"
    # A forwarded header is ignored unless configured: a client writes what it likes there.
    assert plain.address({"REMOTE_ADDR": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == (
        "203.0.113.5"
    )
    # This machine, and an unknown peer, are no source.
    for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1", ""):
        assert plain.address({"REMOTE_ADDR": local}) is None
    assert plain.address({}) is None
    # An IPv6 subscriber has a /64 of its own: it is one source.
    one = plain.address({"REMOTE_ADDR": "2001:db8:1:2::1"})
    assert one == plain.address({"REMOTE_ADDR": "2001:db8:1:2:ffff:ffff:ffff:ffff"})
    assert one != plain.address({"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert plain.address({"REMOTE_ADDR": "::ffff:203.0.113.5"}) == "203.0.113.5"

    proxied = Sources(
        Config(trusted_proxy_header="X-Forwarded-For", trusted_proxy_hops=2), time.time
    )
    # Two proxies of ours each appended their peer: the client is second from the right,
    # whatever the client itself put in front.
    environ = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.9, 10.0.0.1"}
    assert proxied.address(environ) == "198.51.100.9"
    # Fewer entries than proxies: the request did not come through them all.
    assert proxied.address({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == (
        "10.0.0.2"
    )

    keyed = Sources(Config(api_keys=(API_KEY,)), time.time)
    assert keyed.of({"REMOTE_ADDR": "203.0.113.5", "HTTP_X_API_KEY": API_KEY}) is None
    assert keyed.of({"REMOTE_ADDR": "203.0.113.5", "HTTP_X_API_KEY": "wrong"}) is not None
    assert Sources(Config(source_budget=0), time.time).of({"REMOTE_ADDR": "203.0.113.5"}) is None


def test_a_server_relaying_with_the_key_is_not_budgeted(make_app: Callable[..., Flask]) -> None:
    client = make_app(clock=Clock()).test_client()
    batch = [
        {"experiment": "relay", "variant": "a", "event": "participate", "uuid": f"u{i}"}
        for i in range(BUDGET * 2)
    ]
    relayed = client.post(
        "/track", json=batch, headers=AUTH, environ_base={"REMOTE_ADDR": "203.0.113.8"}
    )
    assert relayed.get_json() == {"accepted": BUDGET * 2}
    batch = [dict(e, uuid=f"v{i}") for i, e in enumerate(batch)]
    public = client.post("/track", json=batch, environ_base={"REMOTE_ADDR": "203.0.113.8"})
    assert public.get_json() == {"accepted": BUDGET, "over_budget": BUDGET}


def test_the_cost_of_a_source_per_request() -> None:
    sources = Sources(Config(api_keys=(API_KEY,)), time.time)
    environ = {"REMOTE_ADDR": "203.0.113.5", "HTTP_USER_AGENT": BROWSER}
    rounds = 100_000
    started = time.perf_counter()
    for _ in range(rounds):
        sources.of(environ)
    cost = (time.perf_counter() - started) / rounds * 1e6
    print(f"\nsource hash per request: {cost:.2f} µs")
    assert cost < 20


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GIMEL_SOURCE_BUDGET", "-1"),
        ("GIMEL_SOURCE_BUDGET", "lots"),
        ("GIMEL_SOURCE_SECRET", "short"),
        ("GIMEL_TRUSTED_PROXY_HEADER", "X-Forwarded-For: 1.2.3.4"),
        ("GIMEL_TRUSTED_PROXY_HOPS", "2"),
    ],
)
def test_bad_settings_are_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_settings_are_read() -> None:
    config = Config.from_env(
        {
            "GIMEL_SOURCE_BUDGET": "0",
            "GIMEL_TRUSTED_PROXY_HEADER": "X-Real-IP",
            "GIMEL_TRUSTED_PROXY_HOPS": "2",
        }
    )
    assert (config.source_budget, config.trusted_proxy_header, config.trusted_proxy_hops) == (
        0,
        "X-Real-IP",
        2,
    )
    assert Config.from_env({}).source_budget == defaults.SOURCE_BUDGET


# -- the two ways in: gimel serve behind a proxy, and Lambda ----------------------------------

EVENTS = Path(__file__).parent / "events"


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[ModuleType]:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("GIMEL_COUNTING", "exact")
    sys.modules.pop("handler", None)
    module = importlib.import_module("handler")
    yield module
    module.app.extensions["gimel"].client.close()
    sys.modules.pop("handler", None)


@pytest.mark.parametrize(
    ("name", "address"),
    [("track_participate.json", "203.0.113.7"), ("track_function_url.json", "198.51.100.23")],
)
def test_on_lambda_the_source_is_the_request_contexts_address(
    handler: ModuleType, raw_redis: Any, name: str, address: str
) -> None:
    """API Gateway (v1: requestContext.identity.sourceIp) and a function URL (v2:
    requestContext.http.sourceIp); the event's X-Forwarded-For is not trusted."""
    event = json.loads((EVENTS / name).read_text())
    for i in range(BUDGET + 4):
        uuid = f"lambda-{i}"
        if "rawQueryString" in event:
            event["rawQueryString"] = urlencode(
                {
                    "experiment": "checkout button",
                    "uuid": uuid,
                    "variant": "big red",
                    "event": "participate",
                }
            )
        else:
            event["queryStringParameters"]["uuid"] = uuid
            event["multiValueQueryStringParameters"]["uuid"] = [uuid]
        assert handler.handler(event, None)["statusCode"] == 200
    sources: Sources = handler.app.wsgi_app.sources
    source = sources.hash(address)
    hour = keys.sources("alephbet", "checkout button", int(time.time()) // 3_600, source)
    assert raw_redis.hget(hour, source) == str(BUDGET).encode()
    listing = handler.handler(json.loads((EVENTS / "experiments.json").read_text()), None)
    assert json.loads(listing["body"])[0]["meta"]["dropped"] == {"source": 4}


def test_gimel_serve_behind_a_proxy_budgets_the_forwarded_address(tmp_path: Path) -> None:
    env = {"GIMEL_API_KEY": API_KEY, "GIMEL_TRUSTED_PROXY_HEADER": "X-Forwarded-For"}
    with GimelServe(tmp_path, env=env) as serve:

        def send(forwarded: str, uuid: str) -> None:
            query = urlencode(
                {"experiment": "e", "variant": "a", "event": "participate", "uuid": uuid}
            )
            request = urllib.request.Request(
                f"{serve.base}/track?{query}",
                headers={"User-Agent": BROWSER, "X-Forwarded-For": forwarded},
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200

        for i in range(BUDGET + 3):  # one client, whatever it writes in front
            send(f"10.9.8.{i}, 203.0.113.70", f"one-{i}")
        for i in range(BUDGET + 3):  # as many clients
            send(f"203.0.114.{i}", f"many-{i}")
        request = urllib.request.Request(f"{serve.base}/experiments/e", headers=AUTH)
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["participants"] == {"a": BUDGET + BUDGET + 3}
