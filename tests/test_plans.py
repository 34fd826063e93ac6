"""Experiment plans (PUT /experiments/<name>) and registration modes: the team declares an
experiment, visitors only count in it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import keys
from gimel_core.cli import main
from gimel_core.storage.schema import Meta
from helpers import snapshot, track

PLAN = {
    "variants": ["blue", "red"],
    "control": "blue",
    "goals": [
        {"name": "signup", "role": "primary"},
        {"name": "refund", "role": "guardrail", "direction": "decrease", "margin": 0.02},
    ],
}


def put(client: FlaskClient, body: Any, name: str = "checkout", **query: str):
    return client.put(f"/experiments/{name}", json=body, headers=AUTH, query_string=query)


def results(client: FlaskClient, name: str = "checkout") -> dict[str, Any]:
    response = client.get(f"/experiments/{name}", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def dropped(client: FlaskClient) -> dict[str, int]:
    return client.get("/experiments", headers=AUTH).get_json()[0]["meta"]["dropped"]


def seed(client: FlaskClient, name: str = "checkout", variants=("blue", "red"), n: int = 40):
    for variant in variants:
        for i in range(n):
            track(client, name, variant, "participate", f"{variant}{i}")
            if i % 4 == 0:
                track(client, name, variant, "signup", f"{variant}{i}")


def test_a_plan_declared_before_any_event_shows_its_names_and_settings(
    client: FlaskClient,
) -> None:
    response = put(client, {**PLAN, "weights": {"blue": 1, "red": 3}, "analysis": "fixed"})
    assert response.status_code == 201, response.get_json()
    exp = response.get_json()
    assert exp["plan"]["variants"] == ["blue", "red"]
    assert exp["plan"]["goals"][1] == {
        "name": "refund",
        "role": "guardrail",
        "direction": "decrease",
        "margin": 0.02,
        "type": "binary",
        "cap": None,
        "negative": False,
    }
    assert exp["control"] == "blue" and exp["weights"] == {"blue": 1.0, "red": 3.0}
    assert exp["analysis"] == "fixed"
    assert exp["participants"] == {"blue": 0, "red": 0}
    assert [g["goal"] for g in exp["goals"]] == ["signup", "refund"]  # by role
    assert results(client)["plan"] == exp["plan"]
    # The same plan again changes nothing and says so with 200.
    again = put(client, {**PLAN, "weights": {"blue": 1, "red": 3}, "analysis": "fixed"})
    assert again.status_code == 200 and again.get_json()["plan"] == exp["plan"]


@pytest.mark.parametrize("stored", ["with its names", "plan alone"])
def test_declared_experiments_count_only_their_names(
    client: FlaskClient, raw_redis: Any, stored: str
) -> None:
    assert put(client, PLAN).status_code == 201
    if stored == "plan alone":  # as declared before plans were stored with their names
        assert raw_redis.hdel(keys.meta("alephbet", "checkout"), Meta.NAMES) == 1
    seed(client)
    # A visitor invents a variant and a goal: answered 200, counted nowhere. Nor do a part of
    # a declared name, or a goal's name sent as a variant (or the other way round).
    for i in range(5):
        assert track(client, "checkout", "green", "participate", f"g{i}").status_code == 200
        assert track(client, "checkout", "red", "junk", f"red{i}").status_code == 200
    for variant, goal in [("blu", "participate"), ("signup", "participate"), ("red", "sign")]:
        assert track(client, "checkout", variant, goal, "x").status_code == 200
    assert track(client, "checkout", "red", "blue", "red0").status_code == 200
    batch = [
        {"experiment": "checkout", "variant": v, "event": "participate", "uuid": f"b{i}"}
        for i, v in enumerate(["red", "purple", "blue", "pink"])
    ]
    answer = client.post("/track", json=batch).get_json()
    assert answer == {"accepted": 2, "undeclared": 2}
    exp = results(client)
    assert exp["participants"] == {"blue": 41, "red": 41}
    assert [g["goal"] for g in exp["goals"]] == ["signup", "refund"]  # by role
    assert dropped(client) == {"undeclared": 16}


def test_a_visitor_cannot_take_over_the_control(client: FlaskClient) -> None:
    """One POST of events for a variant named "control" used to become the control, flip the
    uplift and fire the sample-ratio alarm."""
    put(client, PLAN)
    seed(client, n=200)
    before = results(client)
    flood = [
        {"experiment": "checkout", "variant": "control", "event": "participate", "uuid": f"x{i}"}
        for i in range(95)
    ]
    assert client.post("/track", json=flood).status_code == 200
    after = results(client)
    assert after["control"] == "blue" and after["participants"] == before["participants"]
    assert after["goals"] == before["goals"] and after["srm"]["mismatch"] is False


def test_srm_uses_the_declared_weights(client: FlaskClient) -> None:
    put(client, {**PLAN, "weights": {"blue": 1, "red": 3}})
    for variant, n in (("blue", 250), ("red", 750)):
        for i in range(n):
            track(client, "checkout", variant, "participate", f"{variant}{i}")
    srm = results(client)["srm"]
    assert srm["expected"] == {"blue": 0.25, "red": 0.75} and srm["mismatch"] is False
    put(client, PLAN)  # an even split declared: 250 against 750 is a mismatch
    assert results(client)["srm"]["mismatch"] is True


def test_declaring_an_experiment_with_data_must_name_everything_it_counted(
    client: FlaskClient, raw_redis: Any
) -> None:
    seed(client, variants=("blue", "red", "green"))
    track(client, "checkout", "red", "refund", "red1")
    before = sorted(raw_redis.keys("*"))
    response = put(client, {**PLAN, "goals": ["signup"]})
    assert response.status_code == 409
    body = response.get_json()
    assert body["variants"] == ["green"] and body["goals"] == ["refund"]
    assert "green" in body["error"] and "refund" in body["error"]
    assert sorted(raw_redis.keys("*")) == before
    assert results(client)["plan"] is None
    plan = {**PLAN, "variants": ["blue", "red", "green"]}
    assert put(client, plan).status_code == 200  # existing: not created
    exp = results(client)
    assert exp["participants"] == {"blue": 40, "green": 40, "red": 40}
    assert exp["goals"][0]["results"][0]["successes"] == 10  # signup, blue: kept


def test_a_plan_can_drop_a_name_nothing_counted_yet(client: FlaskClient) -> None:
    put(client, {**PLAN, "variants": ["blue", "red", "green"]})
    seed(client)
    response = put(client, PLAN)
    assert response.status_code == 200, response.get_json()
    assert results(client)["participants"] == {"blue": 40, "red": 40}


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_what_a_declared_experiment_counts_binds_its_plan_and_goes_with_it(
    make_app: Callable[..., Flask], raw_redis: Any, counting: str
) -> None:
    """A name counted under a plan binds it as one counted before a plan does: a plan that
    leaves it out is refused. Delete finds every counter by the names counted, and leaves
    no key behind."""
    client = make_app(counting=counting).test_client()
    track(client, "stays", "v", "participate", "u")
    kept = set(raw_redis.keys("*"))
    valued = [{"name": "revenue", "type": "value"}] if counting == "exact" else []
    put(client, {**PLAN, "variants": ["blue", "red", "green"], "goals": [*PLAN["goals"], *valued]})
    seed(client, variants=("blue", "red", "green"))
    track(client, "checkout", "green", "refund", "green1")
    if valued:
        track(client, "checkout", "red", "revenue", "red2", value="5")
    before = snapshot(raw_redis)
    response = put(client, {**PLAN, "goals": PLAN["goals"][:1]})
    assert response.status_code == 409, response.get_json()
    body = response.get_json()
    assert body["variants"] == ["green"]
    assert body["goals"] == ["refund", *(["revenue"] if valued else [])]
    assert snapshot(raw_redis) == before
    assert client.delete("/experiments/checkout", headers=AUTH).status_code == 200
    assert set(raw_redis.keys("*")) - {b"gimel:abuse"} == kept


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "variants"),
        ({"variants": "blue,red"}, "variants"),
        ({"variants": ["blue"]}, "variants"),
        ({"variants": ["blue", "blue"]}, "variants"),
        ({"variants": ["blue", ""]}, "variants"),
        ({"variants": ["blue", "r\u200bed"]}, "variants"),
        ({"variants": ["blue", 3]}, "variants"),
        ({"variants": [f"v{i}" for i in range(21)]}, "variants"),
        ({**PLAN, "control": "green"}, "control"),
        ({**PLAN, "colour": "red"}, "colour"),
        ({**PLAN, "weights": {"blue": 1}}, "weights"),
        ({**PLAN, "weights": {"blue": 1, "red": -1}}, "weights"),
        ({**PLAN, "goals": "signup"}, "goals"),
        ({**PLAN, "goals": ["signup", "signup"]}, "goals"),
        ({**PLAN, "goals": ["participate"]}, "goals[0].name"),
        ({**PLAN, "goals": [{"role": "primary"}]}, "goals[0].name"),
        ({**PLAN, "goals": [{"name": "a", "role": "main"}]}, "goals[0].role"),
        ({**PLAN, "goals": [{"name": "a", "direction": "up"}]}, "goals[0].direction"),
        ({**PLAN, "goals": [{"name": "a", "margin": -0.1}]}, "goals[0].margin"),
        ({**PLAN, "goals": [{"name": "a", "margin": 1.5}]}, "goals[0].margin"),
        ({**PLAN, "goals": [{"name": "a", "weight": 1}]}, "goals[0].weight"),
        ({**PLAN, "goals": [7]}, "goals[0]"),
        ({**PLAN, "goals": [f"g{i}" for i in range(51)]}, "goals"),
        ({**PLAN, "analysis": "bayesian"}, "analysis"),
        ({**PLAN, "mde": 0}, "mde"),
        ({**PLAN, "mde": "5%"}, "mde"),
        ({**PLAN, "mde": float("nan")}, "mde"),
        ({**PLAN, "planned_participants": True}, "planned_participants"),
        ({**PLAN, "planned_participants": 1.5}, "planned_participants"),
        ({**PLAN, "planned_participants": 1}, "planned_participants"),
        ({**PLAN, "description": "a\x1b[2J"}, "description"),
        ({**PLAN, "description": "x" * 1001}, "description"),
    ],
)
def test_invalid_plans_are_refused_naming_the_field(
    client: FlaskClient, raw_redis: Any, body: Any, field: str
) -> None:
    response = client.put(
        "/experiments/checkout",
        data=json.dumps(body, allow_nan=True),
        content_type="application/json",
        headers=AUTH,
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field
    assert raw_redis.dbsize() == 0


def test_every_invalid_field_of_a_plan_is_reported_at_once(
    client: FlaskClient, raw_redis: Any
) -> None:
    body = {
        "colour": "red",
        "variants": ["blue", "blue"],
        "goals": [{"name": "a", "role": "main", "margin": 2}, "participate", "b"],
        "mde": 0,
    }
    for query in ({}, {"dry_run": "true"}):
        response = put(client, body, **query)
        assert response.status_code == 400
        answer = response.get_json()
        assert answer["field"] == "colour"  # the first, as before
        assert answer["error"].startswith("unknown field 'colour'")
        assert answer["error"].endswith("(and 5 more: see errors)")
        assert [e["field"] for e in answer["errors"]] == [
            "colour",
            "variants",
            "goals[0].role",
            "goals[0].margin",
            "goals[1].name",
            "mde",
        ]
        assert "'blue' is listed twice" in answer["errors"][1]["error"]
    assert raw_redis.dbsize() == 0


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_a_dry_run_answers_what_the_put_would_and_writes_nothing(
    make_app: Callable[..., Flask], raw_redis: Any, counting: str
) -> None:
    client = make_app(clock=lambda: 1_800_000_000.0, counting=counting).test_client()
    seed(client, name="counted")  # participate and signup
    track(client, "counted", "red", "purchase", "red1")
    put(client, PLAN, name="declared")
    newcomer = {"variants": ["blue", "red"], "control": "red"}  # no goals: leaves two out
    for name, body, status in [
        ("fresh", {**PLAN, "weights": {"blue": 1, "red": 3}}, 201),
        ("fixed", {**PLAN, "analysis": "fixed", "planned_participants": 1000}, 201),
        ("counted", newcomer, 409),
        ("counted", {**PLAN, "variants": ["blue", "red", "green"]}, 409),
        (
            "counted",
            {**newcomer, "goals": ["signup", "purchase"], "planned_participants": 400},
            200,
        ),
        ("declared", {**PLAN, "weights": {"blue": 1, "red": 3}, "description": "new"}, 200),
        ("declared", {**PLAN, "goals": []}, 200),  # nothing counted yet: may drop goals
        ("other", {**PLAN, "control": "green", "mde": 0}, 400),
    ]:
        before = snapshot(raw_redis)
        dry = put(client, body, name=name, dry_run="TRUE")
        assert snapshot(raw_redis) == before, name
        real = put(client, body, name=name, dry_run="false")
        assert real.status_code == status, (name, real.get_json())
        assert dry.status_code == status and dry.get_json() == real.get_json(), name
    refused = put(client, newcomer, name="counted").get_json()
    assert refused["goals"] == ["purchase", "signup"] and refused["variants"] == []
    assert put(client, PLAN, dry_run="maybe").get_json()["field"] == "dry_run"


def test_put_needs_the_key_and_a_json_body(client: FlaskClient, raw_redis: Any) -> None:
    assert client.put("/experiments/checkout", json=PLAN).status_code == 401
    bad = {"x-api-key": "wrong-key-0123456789abcdef"}
    assert client.put("/experiments/checkout", json=PLAN, headers=bad).status_code == 403
    deep = client.put(
        "/experiments/checkout", data="[" * 100_000, content_type="application/json", headers=AUTH
    )
    assert deep.status_code == 400 and deep.get_json()["field"] == "body"
    assert put(client, PLAN, name="x" * 129).status_code == 400
    assert raw_redis.dbsize() == 0


def test_patch_cannot_change_what_the_plan_declares(client: FlaskClient) -> None:
    put(client, PLAN)
    response = client.patch("/experiments/checkout", json={"control": "red"}, headers=AUTH)
    assert response.status_code == 409 and response.get_json()["field"] == "control"
    assert results(client)["control"] == "blue"
    archived = client.patch("/experiments/checkout", json={"archived": True}, headers=AUTH)
    assert archived.status_code == 200 and archived.get_json()["archived"] is True


def test_reset_keeps_the_plan_and_delete_removes_it(client: FlaskClient) -> None:
    put(client, PLAN)
    seed(client)
    assert client.post("/experiments/checkout/reset", headers=AUTH).status_code == 200
    exp = results(client)
    assert exp["plan"]["control"] == "blue" and exp["participants"] == {"blue": 0, "red": 0}
    assert client.delete("/experiments/checkout", headers=AUTH).status_code == 200
    assert client.get("/experiments/checkout", headers=AUTH).status_code == 404


def test_dropped_names_leave_no_trace_in_redis(client: FlaskClient, raw_redis: Any) -> None:
    """An undeclared goal must not grow the counter index (or anything else) either."""
    put(client, PLAN)
    seed(client)
    keys_before = sorted(raw_redis.keys("*"))
    index = [k for k in keys_before if b"index" in k or b"counts" in k]
    sizes = {k: raw_redis.hlen(k) for k in index}
    batch = [
        {"experiment": "checkout", "variant": "red", "event": f"junk{i}", "uuid": "red1"}
        for i in range(200)
    ]
    client.post("/track", json=batch)
    assert sorted(set(raw_redis.keys("*")) - {b"gimel:abuse"}) == keys_before
    assert {k: raw_redis.hlen(k) for k in index} == sizes


# -- registration modes -------------------------------------------------------------------


@pytest.fixture
def declared(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(registration="declared").test_client()


def test_declared_registration_counts_only_declared_experiments(
    declared: FlaskClient, raw_redis: Any
) -> None:
    for i in range(3):
        response = track(declared, "junk", "a", "participate", f"u{i}")
        assert response.status_code == 200
    post = declared.post(
        "/track", json=[{"experiment": "j2", "variant": "a", "event": "participate", "uuid": "u"}]
    )
    assert post.get_json() == {"accepted": 0, "undeclared": 1}
    other_ns = track(declared, "x", "a", "participate", "u", namespace="elsewhere")
    assert other_ns.status_code == 200
    # Nothing but the tally of what was dropped was written.
    assert [k.decode() for k in raw_redis.keys("*")] == ["gimel:abuse"]
    assert dropped(declared) == {"undeclared": 5}
    assert declared.get("/experiments", headers=AUTH).get_json()[1:] == []

    assert put(declared, PLAN, namespace="elsewhere").status_code == 201
    seed(declared, name="checkout")  # default namespace: still undeclared there
    for i in range(10):
        track(declared, "checkout", "red", "participate", f"r{i}", namespace="elsewhere")
    exp = declared.get("/experiments/checkout?namespace=elsewhere", headers=AUTH).get_json()
    assert exp["participants"] == {"blue": 0, "red": 10}
    assert declared.get("/experiments/checkout", headers=AUTH).status_code == 404


def test_undeclared_experiments_stop_counting_when_registration_becomes_declared(
    make_app: Callable[..., Flask],
) -> None:
    open_client = make_app().test_client()
    seed(open_client)
    declared_client = make_app(registration="declared").test_client()
    track(declared_client, "checkout", "red", "participate", "new-visitor")
    assert results(declared_client)["participants"] == {"blue": 40, "red": 40}
    put(declared_client, PLAN)
    track(declared_client, "checkout", "red", "participate", "new-visitor")
    assert results(declared_client)["participants"] == {"blue": 40, "red": 41}


def test_declared_experiments_are_exempt_from_the_caps(make_app: Callable[..., Flask]) -> None:
    """Visitors filling every cap cannot lock the team's declared experiments out."""
    client = make_app(max_namespaces=1, max_experiments=16, max_variants=2, max_goals=1)
    client = client.test_client()
    # Junk fills the namespace cap, every registry shard, and a variant and goal cap.
    junk = [
        {"experiment": f"junk{i}", "variant": f"v{i % 3}", "event": f"g{i % 2}", "uuid": "u"}
        for i in range(400)
    ]
    client.post("/track", json=junk)
    refused = track(client, "pricing", "a", "participate", "u")
    assert refused.status_code == 422  # undeclared: the caps hold
    assert track(client, "x", "a", "participate", "u", namespace="team").status_code == 422

    plan = {"variants": ["a", "b", "c"], "goals": ["buy", "refund"]}
    assert put(client, plan, name="pricing").status_code == 201
    assert put(client, plan, name="pricing", namespace="team").status_code == 201
    for namespace in ("alephbet", "team"):
        for variant in ("a", "b", "c"):
            for goal in ("participate", "buy", "refund"):
                response = track(client, "pricing", variant, goal, "u1", namespace=namespace)
                assert response.status_code == 200, response.get_json()
        exp = client.get(f"/experiments/pricing?namespace={namespace}", headers=AUTH).get_json()
        assert exp["participants"] == {"a": 1, "b": 1, "c": 1}
        assert all(row["successes"] == 1 for goal in exp["goals"] for row in goal["results"])


def test_planning_figures_move_with_time_alone(make_app: Callable[..., Flask]) -> None:
    """Results are cached while the counts stay the same; the days remaining are not."""
    now = [1_800_000_000.0]
    client = make_app(clock=lambda: now[0], counting="exact").test_client()
    put(client, {**PLAN, "planned_participants": 1000})
    seed(client, n=100)  # 200 participants, signups in both arms
    now[0] += 86_400
    first = results(client)["planning"]
    assert first["needed"] == 1000 and first["days_remaining"] == pytest.approx(4.0)
    now[0] += 86_400  # a day with no new participant: the rate halves
    second = results(client)["planning"]
    assert second["days_remaining"] == pytest.approx(8.0)
    assert results(client)["decision"]["text"].endswith(
        "about 8 days to the 1,000 participants the plan needs"
    )


def test_plan_apply_drops_undeclared_names_only_when_told(
    client: FlaskClient, redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gimel plan apply --drop-undeclared`: the dry run it makes first predicts the same."""
    for name in ("GIMEL_URL", "GIMEL_API_KEY", "GIMEL_REDIS_URL", "GIMEL_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    assert track(client, "checkout", "red", "participate", "u1").status_code == 200
    assert track(client, "checkout", "evil", "participate", "u2").status_code == 200
    plans_file = tmp_path / "plans.yaml"
    plans_file.write_text("experiments:\n  checkout:\n    variants: [red, blue]\n")
    args = ["plan", "apply", str(plans_file), "--redis-url", redis_url, "-n", "alephbet"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "--drop-undeclared" in refused.output
    applied = CliRunner().invoke(main, [*args, "--drop-undeclared"])
    assert applied.exit_code == 0, applied.output
    assert results(client)["participants"] == {"blue": 0, "red": 1}
