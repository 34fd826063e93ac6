"""GET /experiments in pages: limit, cursor, meta.next, the byte budget, the summary view, and
the readers that follow every page (the HTTP client and the Redis backend of the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import defaults, paging
from gimel_core.cli import main
from gimel_core.experiments import Experiments
from gimel_core.paging import Budget, Page
from gimel_core.results import Listing
from gimel_core.storage.runner import Scripts
from helpers import track

NAMES = ["alpha", "b/eta", "delta", "epsilon", "gamma", "zeta", "ünï", "中文"]
"""Sorted as Python sorts text (code points): the listing's order."""


def events(name: str, variants: int = 2, goals: int = 2, uuids: int = 3) -> Iterator[dict]:
    for v in range(variants):
        for u in range(uuids):
            base = {"experiment": name, "variant": f"v{v}", "uuid": f"{name}-{v}-{u}"}
            yield {**base, "event": "participate"}
            for g in range(goals):
                if u <= g:
                    yield {**base, "event": f"goal {g}"}


def seed(client: FlaskClient, names: list[str], **size: int) -> None:
    batch = [event for name in names for event in events(name, **size)]
    for start in range(0, len(batch), 500):
        answer = client.post("/track", json=batch[start : start + 500])
        assert answer.status_code == 200, answer.get_data(as_text=True)


def get(client: FlaskClient, **params: str) -> Any:
    answer = client.get("/experiments?" + urlencode(params), headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def pages(client: FlaskClient, **params: str) -> list[Any]:
    """Every page, following meta.next."""
    found = [get(client, **params)]
    while "next" in found[-1][0]["meta"]:
        found.append(get(client, **{**params, "cursor": found[-1][0]["meta"]["next"]}))
    return found


def names_of(listing: list[Any]) -> list[str]:
    return [exp["experiment"] for exp in listing[1:]]


def test_pages_hold_limit_experiments_in_name_order_until_meta_next_ends(
    client: FlaskClient,
) -> None:
    seed(client, NAMES)
    assert sorted(NAMES) == NAMES
    whole = get(client, limit="100")
    assert names_of(whole) == NAMES and "next" not in whole[0]["meta"]

    found = pages(client, limit="3")
    assert [names_of(page) for page in found] == [NAMES[0:3], NAMES[3:6], NAMES[6:8]]
    for page in found:  # the meta element first, with every field it always had
        assert list(page[0]) == ["meta"]
        assert {"scope", "filtered", "dropped"} <= set(page[0]["meta"])
    assert [set(page[0]["meta"]) for page in found] == [
        {"scope", "filtered", "dropped", "next"},
        {"scope", "filtered", "dropped", "next"},
        {"scope", "filtered", "dropped"},
    ]
    # The pages together are the whole listing, field for field.
    assert [exp for page in found for exp in page[1:]] == whole[1:]
    # Exactly `limit` on a page: no next when nothing remains.
    exact = pages(client, limit="4")
    assert [len(page) - 1 for page in exact] == [4, 4]
    # The default page size.
    assert len(get(client)) - 1 == len(NAMES) <= defaults.PAGE_LIMIT


def test_the_default_limit_pages_a_namespace_of_many(client: FlaskClient) -> None:
    names = [f"exp {i:03}" for i in range(defaults.PAGE_LIMIT * 2 + 5)]
    seed(client, names, variants=1, goals=0, uuids=1)
    found = pages(client)
    assert [len(page) - 1 for page in found] == [defaults.PAGE_LIMIT, defaults.PAGE_LIMIT, 5]
    assert [name for page in found for name in names_of(page)] == names


def test_a_cursor_survives_experiments_created_and_deleted_in_between(
    client: FlaskClient,
) -> None:
    seed(client, NAMES)
    first = get(client, limit="3")
    assert names_of(first) == NAMES[:3]
    cursor = first[0]["meta"]["next"]
    assert client.delete("/experiments/delta", headers=AUTH).status_code == 200  # the last one
    seed(client, ["aardvark", "eta"])  # one before the cursor, one after
    rest = pages(client, limit="3", cursor=cursor)
    assert [n for page in rest for n in names_of(page)] == [
        "epsilon",
        "eta",
        "gamma",
        "zeta",
        "ünï",
        "中文",
    ]


def test_archived_experiments_are_skipped_by_pages_unless_asked(client: FlaskClient) -> None:
    seed(client, NAMES)
    for name in ("alpha", "delta", "epsilon", "gamma"):
        patched = client.patch(f"/experiments/{name}", json={"archived": True}, headers=AUTH)
        assert patched.status_code == 200
    active = pages(client, limit="2")
    assert [names_of(page) for page in active] == [["b/eta", "zeta"], ["ünï", "中文"]]
    every = pages(client, limit="5", archived="true")
    assert [n for page in every for n in names_of(page)] == NAMES


def test_a_scope_is_paged_in_its_own_order(client: FlaskClient) -> None:
    seed(client, NAMES)
    scope = "zeta,nothing,alpha,中文,zeta"
    found = pages(client, scope=scope, limit="2")
    assert [names_of(page) for page in found] == [["zeta", "nothing"], ["alpha", "中文"], ["zeta"]]
    assert all(page[0]["meta"]["scope"] == scope for page in found)
    assert found[0][2]["counting"] is None
    # A cursor of the listing is not one of a scope.
    listing_cursor = get(client, limit="1")[0]["meta"]["next"]
    refused = client.get(
        "/experiments?" + urlencode({"scope": scope, "cursor": listing_cursor}), headers=AUTH
    )
    assert refused.status_code == 400 and refused.get_json()["field"] == "cursor"


def stored(raw_redis: Any) -> dict[bytes, bytes]:
    return {key: raw_redis.dump(key) for key in raw_redis.keys()}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("limit=0", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=abc", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=10000", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=101", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=-1", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=2.5", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=", "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=" + "9" * 5000, "limit", "'limit' must be a whole number from 1 to 100"),
        ("limit=%EF%BC%92", "limit", "'limit' must be a whole number from 1 to 100"),  # "２"
        ("limit=2&limit=3", "limit", "'limit' is given more than once"),
        ("cursor=", "cursor", "'cursor' is not a cursor of this listing"),
        ("cursor=!!!", "cursor", "'cursor' is not a cursor of this listing"),
        ("cursor=YWJj%3D", "cursor", "'cursor' is not a cursor of this listing"),  # padding
        ("cursor=_w", "cursor", "'cursor' is not a cursor of this listing"),  # not UTF-8
        ("cursor=AA", "cursor", "'cursor' is not a cursor of this listing"),  # a control char
        ("cursor=" + "QUFB" * 300, "cursor", "'cursor' is not a cursor of this listing"),
        ("view=everything", "view", "'view' must be full or summary"),
        ("view=Summary", "view", "'view' must be full or summary"),
    ],
)
def test_bad_paging_input_is_400_naming_the_field_and_writes_nothing(
    client: FlaskClient, raw_redis: Any, query: str, field: str, message: str
) -> None:
    seed(client, NAMES[:2])
    before = stored(raw_redis)
    answer = client.get("/experiments?" + query, headers=AUTH)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["field"] == field and body["error"].startswith(message), body
    assert stored(raw_redis) == before


def test_the_summary_is_every_field_but_the_goals_results(client: FlaskClient) -> None:
    seed(client, NAMES, goals=3)
    client.patch(
        "/experiments/gamma", json={"description": "colour", "control": "v1"}, headers=AUTH
    )
    full = get(client, limit="100")
    summary = get(client, limit="100", view="summary")
    assert summary[0] == full[0]
    assert names_of(summary) == names_of(full) == NAMES
    for short, whole in zip(summary[1:], full[1:], strict=True):
        # Whatever fields the full view has, now or later, the summary has them all but one.
        assert set(short) == set(whole) - {"goals"} | {"goal_names"}
        assert short["goal_names"] == [goal["goal"] for goal in whole["goals"]]
        assert short["goal_names"] == ["goal 0", "goal 1", "goal 2"]
        assert {k: v for k, v in short.items() if k != "goal_names"} == {
            k: v for k, v in whole.items() if k != "goals"
        }
    gamma = next(exp for exp in summary[1:] if exp["experiment"] == "gamma")
    assert gamma["description"] == "colour" and gamma["control"] == "v1"
    # Pages of summaries too.
    paged = pages(client, view="summary", limit="3")
    assert [exp for page in paged for exp in page[1:]] == summary[1:]
    assert len(paged) == 3
    # A scope's unknown name, in summary: no goal names.
    scoped = get(client, scope="nothing,alpha", view="summary")
    assert scoped[1]["goal_names"] == [] and scoped[1]["counting"] is None
    assert scoped[2]["goal_names"] == ["goal 0", "goal 1", "goal 2"]


def test_a_page_ends_before_its_byte_budget_with_one_experiment_at_least(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = make_app()
    seed(app.test_client(), NAMES, variants=3, goals=4)
    store: Experiments = app.extensions["gimel"].experiments
    sizes = [len(json.dumps(exp.to_json())) + 2 for exp in store.listing("alephbet").experiments]
    room = sizes[0] + sizes[1] + sizes[2] // 2  # two and a half experiments
    first = store.listing("alephbet", page=Page(100), budget=Budget(size=room))
    assert [exp.experiment for exp in first.experiments] == NAMES[:2]
    assert first.next == paging.encode(NAMES[1])
    # Too small for even one: a page still holds one, so paging always moves on.
    seen: list[str] = []
    after: str | None = None
    while True:
        page = store.listing("alephbet", page=Page(100, after), budget=Budget(size=10))
        assert len(page.experiments) == 1
        seen.append(page.experiments[0].experiment)
        if page.next is None:
            break
        after = paging.decode(page.next)
    assert seen == NAMES
    # The counter budget: 3 variants x (4 goals + participate) = 15 counters each.
    counted = store.listing("alephbet", page=Page(100), budget=Budget(counters=15 * 3 + 14))
    assert len(counted.experiments) == 3 and counted.next == paging.encode(NAMES[2])


def test_a_page_reads_in_a_few_round_trips(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names, then which exist, then the page's experiments: never one read per experiment."""
    app = make_app()
    names = [f"e{i:02}" for i in range(60)]
    seed(app.test_client(), names, variants=1, goals=1, uuids=1)
    reads: list[int] = []
    run = Scripts.run

    def counted(self: Scripts, calls: list[Any]) -> Any:
        reads.append(len(calls))
        return run(self, calls)

    monkeypatch.setattr(Scripts, "run", counted)
    assert len(get(app.test_client(), limit="50")) == 51
    assert reads == [paging.FIRST_READ, 50 - paging.FIRST_READ]  # a few first, then the rest
    reads.clear()
    assert len(get(app.test_client(), limit="50", cursor=paging.encode("e49"))) == 11
    assert sum(reads) == 10, reads


@pytest.fixture
def runner(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("GIMEL_URL", "GIMEL_API_KEY", "GIMEL_REDIS_URL", "GIMEL_COUNTING"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_gimel_results_shows_every_experiment_over_http_and_from_redis(
    runner: CliRunner, client: FlaskClient, live_server: str, redis_url: str
) -> None:
    names = [f"exp {i:03}" for i in range(defaults.PAGE_MAX_LIMIT + 7)]  # two pages at most
    seed(client, names, variants=1, goals=1, uuids=1)
    for where in (
        ["--url", live_server, "--api-key", AUTH["x-api-key"]],
        ["--redis-url", redis_url],
    ):
        result = runner.invoke(main, ["results", *where, "--format", "json"])
        assert result.exit_code == 0, result.output
        listing = json.loads(result.output)
        assert list(listing[0]) == ["meta"] and "next" not in listing[0]["meta"]
        assert names_of(listing) == names
        table = runner.invoke(main, ["results", *where]).output
        assert all(f"{name}  (hll" in table for name in (names[0], names[-1]))


def test_a_page_assembled_from_its_measured_pieces_is_what_json_would_write(
    client: FlaskClient,
) -> None:
    """The listing is encoded once, while the page's budget measures it: the same bytes."""
    for name in ("a", "b\u00e9", "c\U0001f600"):
        track(client, name, "blue", "participate", "u1")
        track(client, name, "red", "signup", "u1")
    for view in ("full", "summary"):
        response = client.get(f"/experiments?view={view}", headers=AUTH)
        listing = Listing.from_json(response.get_json())
        assert response.data == json.dumps(response.get_json()).encode()
        assert len(listing.experiments) == 3
