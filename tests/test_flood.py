"""The flood through handler.handler, as Lambda runs it: public POST /track requests (no key)
create 24 experiments of 20 variants and 50 goals (the default caps) in one namespace; every
answer of GET /experiments stays under 5 MB, and under Lambda's response limit with its JSON
envelope, and following meta.next lists each experiment exactly once.

Before paging, that namespace's one GET /experiments answer was 9.2 MB here (10.0 MB through
the handler): past Lambda's 6,291,556-byte limit, so the API could not answer at all.
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import API_KEY
from gimel_core import defaults

pytestmark = pytest.mark.single_redis  # sizes, not storage: the cluster is tested in test_paging

EVENT = json.loads((Path(__file__).parent / "events" / "experiments.json").read_text())
"""A recorded API Gateway REST event (GET /experiments with the key), the template below."""
LAMBDA_LIMIT = 6_291_556
"""Bytes of the largest answer a synchronously invoked Lambda may return, envelope included."""
MB5 = 5_000_000
NAMESPACE = "flood"
EXPERIMENTS, VARIANTS, GOALS = 24, defaults.MAX_VARIANTS, defaults.MAX_GOALS


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Any:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    # Visitors from many addresses, replayed from one recorded event's: no source budget.
    monkeypatch.setenv("GIMEL_SOURCE_BUDGET", "0")
    # The listing's size at the default caps: 24,480 counters, far past the open budget.
    monkeypatch.setenv("GIMEL_OPEN_BUDGET_BYTES", str(10**11))
    for name in ("GIMEL_COUNTING", "GIMEL_MAX_VARIANTS", "GIMEL_MAX_GOALS"):
        monkeypatch.delenv(name, raising=False)  # the default caps
    sys.modules.pop("handler", None)
    module: ModuleType = importlib.import_module("handler")
    yield module
    module.app.extensions["gimel"].client.close()
    sys.modules.pop("handler", None)


def event(method: str, path: str, query: dict[str, str], body: Any = None) -> dict[str, Any]:
    """The recorded event, re-aimed; without the key for /track, as a page sends it."""
    made = copy.deepcopy(EVENT)
    made.update(httpMethod=method, path=path, resource=path)
    made["requestContext"].update(httpMethod=method, resourcePath=path, path="/prod" + path)
    made["queryStringParameters"] = query or None
    made["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    if path == "/track":
        del made["headers"]["x-api-key"], made["multiValueHeaders"]["x-api-key"]
    if body is not None:
        made["body"] = json.dumps(body)
        made["headers"]["Content-Type"] = "application/json"
        made["multiValueHeaders"]["Content-Type"] = ["application/json"]
    return made


def flood() -> list[dict[str, str]]:
    return [
        {
            "namespace": NAMESPACE,
            "experiment": f"flood experiment {e:02}",
            "variant": f"variant {v:02}",
            "event": goal,
            "uuid": f"visitor-{e}-{v}",
        }
        for e in range(EXPERIMENTS)
        for v in range(VARIANTS)
        for goal in (defaults.PARTICIPATE, *(f"goal number {g:02}" for g in range(GOALS)))
    ]


def answered(handler: ModuleType, made: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    answer = handler.handler(made, None)
    assert answer["statusCode"] == 200, answer["body"][:500]
    body = answer["body"].encode()
    assert len(body) < MB5, len(body)
    assert len(json.dumps(answer).encode()) < LAMBDA_LIMIT
    return answer, json.loads(body)


def every_page(handler: ModuleType, **query: str) -> list[tuple[int, int, Any]]:
    """(body bytes, envelope bytes, decoded body) of each page, following meta.next."""
    found = []
    query = {"namespace": NAMESPACE, **query}
    while True:
        answer, page = answered(handler, event("GET", "/experiments", query))
        found.append((len(answer["body"]), len(json.dumps(answer)), page))
        if "next" not in page[0]["meta"]:
            return found
        query["cursor"] = page[0]["meta"]["next"]


def test_a_public_flood_is_listed_in_pages_each_well_under_lambdas_limit(
    handler: ModuleType,
) -> None:
    events = flood()
    assert len(events) == EXPERIMENTS * VARIANTS * (GOALS + 1) == 24_480
    started = time.perf_counter()
    for start in range(0, len(events), defaults.BATCH_MAX_EVENTS):
        batch = events[start : start + defaults.BATCH_MAX_EVENTS]
        _, body = answered(handler, event("POST", "/track", {}, batch))
        assert body == {"accepted": len(batch)}, body  # every one counted: none past a cap
    tracked = time.perf_counter() - started

    started = time.perf_counter()
    full = every_page(handler)
    listed = time.perf_counter() - started
    names = [exp["experiment"] for _, _, page in full for exp in page[1:]]
    assert names == sorted({e["experiment"] for e in events})  # each once, in name order
    assert len(full) >= 2  # one answer could not hold them...
    assert sum(size for size, _, _ in full) > LAMBDA_LIMIT  # ...nor could Lambda return it
    for size, envelope, page in full:
        assert list(page[0]) == ["meta"] and page[0]["meta"]["scope"] is None
        assert size <= defaults.PAGE_BUDGET + 1000 and envelope < LAMBDA_LIMIT
        for exp in page[1:]:
            assert len(exp["participants"]) == VARIANTS and len(exp["goals"]) == GOALS
            assert all(len(goal["results"]) == VARIANTS for goal in exp["goals"])

    started = time.perf_counter()
    summary = every_page(handler, view="summary", limit=str(defaults.PAGE_MAX_LIMIT))
    summarised = time.perf_counter() - started
    assert [exp["experiment"] for _, _, page in summary for exp in page[1:]] == names
    assert all(size < 100_000 for size, _, _ in summary)  # a few kilobytes per experiment
    assert sum(size for size, _, _ in summary) < sum(size for size, _, _ in full) / 50
    assert summary[0][2][1]["goal_names"] == [f"goal number {g:02}" for g in range(GOALS)]

    # One experiment at the caps, alone, is far under the limit too.
    one = event("GET", "/experiments/flood experiment 00", {"namespace": NAMESPACE})
    one["resource"] = "/experiments/{name+}"
    answer, single = answered(handler, one)
    assert single["experiment"] == "flood experiment 00" and len(single["goals"]) == GOALS
    assert len(answer["body"]) < MB5 / 8
    print(
        f"\ntracked {len(events)} events in {tracked:.2f} s; "
        f"{len(full)} pages in {listed:.2f} s: "
        + ", ".join(f"{size:,} B ({envelope:,} B enveloped)" for size, envelope, _ in full)
        + f"; summary: {len(summary)} pages in {summarised:.2f} s, "
        + ", ".join(f"{size:,} B" for size, _, _ in summary)
        + f"; one experiment: {len(answer['body']):,} B"
    )


def test_one_experiment_at_the_caps_with_the_longest_widest_names_fits(
    handler: ModuleType,
) -> None:
    """128-character names of characters outside the Basic Multilingual Plane, each escaped
    to 12 bytes of JSON: the worst one experiment visitors can create. Its answer used to be
    6.3 MB (7.3 MB enveloped), because every verdict sentence repeated three such names."""
    wide = "\U0001f600" * (defaults.MAX_NAME_LENGTH - 3)

    def name(kind: str, i: int) -> str:
        return f"{kind[0]}{i:02}" + wide

    experiment = name("experiment", 0)
    events = [
        {"namespace": NAMESPACE, "experiment": experiment, "variant": name("v", v),
         "event": goal, "uuid": f"visitor-{v}"}
        for v in range(VARIANTS)
        for goal in (defaults.PARTICIPATE, *(name("goal", g) for g in range(GOALS)))
    ]  # fmt: skip
    batch = 100  # each event is about 4.6 KB of JSON, escaped
    for start in range(0, len(events), batch):
        _, body = answered(handler, event("POST", "/track", {}, events[start : start + batch]))
        assert body == {"accepted": len(events[start : start + batch])}
    one = event("GET", f"/experiments/{experiment}", {"namespace": NAMESPACE})
    one["resource"] = "/experiments/{name+}"
    answer, single = answered(handler, one)  # < 5 MB, and < Lambda's limit enveloped
    assert len(single["goals"]) == GOALS and len(single["participants"]) == VARIANTS
    (page,) = [page for _, _, page in every_page(handler)]
    assert page[1]["experiment"] == experiment
    print(f"\none experiment at the caps, widest names: {len(answer['body']):,} B")
