"""`gimel plan apply` and `gimel plan show`: plans kept in a file, applied idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from conftest import API_KEY, AUTH
from gimel_core.cli import main
from helpers import snapshot, track

PLANS = """\
namespace: shop
experiments:
  checkout:
    variants: [blue, red]
    goals:
      - signup
      - {name: refund, role: guardrail, direction: decrease, margin: 0.02}
    planned_participants: 20000
  pricing:
    variants: [a, b, c]
    control: b
    weights: {a: 1, b: 2, c: 1}
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("GIMEL_URL", "GIMEL_API_KEY", "GIMEL_REDIS_URL", "GIMEL_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    Path("plans.yaml").write_text(PLANS)
    return CliRunner()


@pytest.fixture(params=["redis", "http"])
def where(request: pytest.FixtureRequest, redis_url: str) -> list[str]:
    """Where the CLI reads and writes: straight to the Redis, or the app served over HTTP."""
    if request.param == "http":
        return ["--url", request.getfixturevalue("live_server"), "--api-key", API_KEY]
    return ["--redis-url", redis_url]


def gimel(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_apply_shows_the_changes_then_declares_only_what_changed(
    runner: CliRunner, redis_url: str, raw_redis: Any, client: FlaskClient
) -> None:
    dry = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    # Both are new: creations, shown with the fields they declare and no default.
    assert "+ checkout:" in dry.output and '+ control: "blue"' in dry.output
    assert "+ pricing:" in dry.output and "~ " not in dry.output and "null" not in dry.output
    assert "2 to change (dry run: nothing sent)" in dry.output
    assert raw_redis.dbsize() == 0

    applied = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    assert applied.exit_code == 0, applied.output
    assert "2 declared in namespace shop" in applied.output
    pricing = client.get("/experiments/pricing?namespace=shop", headers=AUTH).get_json()
    assert pricing["control"] == "b" and pricing["weights"] == {"a": 1.0, "b": 2.0, "c": 1.0}

    before = snapshot(raw_redis)
    again = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    assert again.output.splitlines() == [
        "= checkout: unchanged",
        "= pricing: unchanged",
        "0 to change",
    ]
    assert snapshot(raw_redis) == before

    Path("plans.yaml").write_text(PLANS.replace("planned_participants: 20000", "mde: 0.05"))
    changed = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    assert "~ checkout:" in changed.output and "+ checkout:" not in changed.output
    assert "~ planned_participants: 20000 -> null" in changed.output
    assert "~ mde: null -> 0.05" in changed.output and "= pricing: unchanged" in changed.output


def test_show_prints_what_apply_reads(runner: CliRunner, redis_url: str, raw_redis: Any) -> None:
    gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    shown = gimel(runner, "plan", "show", "--redis-url", redis_url, "--namespace", "shop")
    document = yaml.safe_load(shown.output)
    assert document["namespace"] == "shop"
    assert list(document["experiments"]) == ["checkout", "pricing"]
    assert document["experiments"]["checkout"]["goals"][1]["role"] == "guardrail"
    Path("shown.yaml").write_text(shown.output)
    before = snapshot(raw_redis)
    again = gimel(runner, "plan", "apply", "shown.yaml", "--redis-url", redis_url)
    assert again.output.endswith("0 to change\n") and snapshot(raw_redis) == before

    as_json = gimel(
        runner,
        "plan",
        "show",
        "pricing",
        "--format",
        "json",
        "-n",
        "shop",
        "--redis-url",
        redis_url,
    )
    assert json.loads(as_json.output)["experiments"]["pricing"]["control"] == "b"
    Path("plans.json").write_text(as_json.output)  # JSON files are read too
    assert (
        "0 to change"
        in gimel(runner, "plan", "apply", "plans.json", "--redis-url", redis_url).output
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("experiments: [checkout]", "expected a mapping with 'experiments'"),
        # The valid plan before the invalid one is not applied either.
        (
            "experiments: {ok: {variants: [a, b]}, bad: {variants: [a]}}",
            "experiment 'bad': variants:",
        ),
        (
            "experiments: {x: {variants: [a, b], goals: [{name: g, role: main}]}}",
            "experiment 'x': goals[0].role: must be one of",
        ),
        ('namespace: "\\e[2J"\nexperiments: {}', "'namespace' contains control characters"),
        ("experiments: {a: {variants: [a, b]}}\nteam: x", "unknown key 'team'"),
        ("experiments: {a: [", "not valid YAML or JSON"),
    ],
)
def test_invalid_files_are_refused_before_anything_is_sent(
    runner: CliRunner, redis_url: str, raw_redis: Any, text: str, message: str
) -> None:
    Path("bad.yaml").write_text(text)
    result = runner.invoke(main, ["plan", "apply", "bad.yaml", "--redis-url", redis_url])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert raw_redis.dbsize() == 0


def test_a_plan_that_leaves_out_counted_names_is_refused_with_them(
    runner: CliRunner, client: FlaskClient, live_server: str
) -> None:
    for variant in ("blue", "red", "green"):
        track(client, "checkout", variant, "participate", "u1", namespace="shop")
    result = runner.invoke(
        main, ["plan", "apply", "plans.yaml", "--url", live_server, "--api-key", API_KEY]
    )
    assert result.exit_code == 1
    assert "variant 'green'" in result.output and "Traceback" not in result.output
    listing = client.get("/experiments/checkout?namespace=shop", headers=AUTH).get_json()
    assert listing["plan"] is None


def test_a_dry_run_predicts_every_refusal_and_a_refused_file_sends_nothing(
    runner: CliRunner, client: FlaskClient, raw_redis: Any, where: list[str]
) -> None:
    for variant in ("blue", "red"):
        for goal in ("participate", "signup", "purchase"):
            track(client, "checkout", variant, goal, f"{variant}1", namespace="shop")
    Path("plans.yaml").write_text(
        "namespace: shop\n"
        "experiments:\n"
        "  checkout: {variants: [blue, red], control: red}\n"
        "  pricing: {variants: [a, b]}\n"
    )
    before = snapshot(raw_redis)
    for dry_run in (["--dry-run"], []):
        result = runner.invoke(main, ["plan", "apply", "plans.yaml", *where, *dry_run])
        assert result.exit_code == 1, result.output
        # Counted but undeclared: a change; never seen: a creation.
        assert "~ checkout:" in result.output and "+ pricing:" in result.output
        assert "1 of 2 plans would be refused; nothing sent" in result.output
        assert (
            "checkout: the plan leaves out what 'checkout' has already counted: "
            "goal 'purchase', goal 'signup'"
        ) in result.output
        assert "Traceback" not in result.output
        assert snapshot(raw_redis) == before  # pricing, valid, was not declared either

    Path("plans.yaml").write_text(
        Path("plans.yaml")
        .read_text()
        .replace("control: red", "control: red, goals: [signup, purchase]")
    )
    dry = gimel(runner, "plan", "apply", "plans.yaml", *where, "--dry-run")
    assert dry.exit_code == 0 and "2 to change (dry run: nothing sent)" in dry.output
    assert snapshot(raw_redis) == before
    applied = gimel(runner, "plan", "apply", "plans.yaml", *where)
    assert applied.exit_code == 0 and "2 declared in namespace shop" in applied.output
    checkout = client.get("/experiments/checkout?namespace=shop", headers=AUTH).get_json()
    assert checkout["control"] == "red" and checkout["participants"] == {"blue": 1, "red": 1}


def test_every_error_of_a_file_is_reported_at_once(
    runner: CliRunner, raw_redis: Any, where: list[str]
) -> None:
    Path("bad.yaml").write_text(
        "experiments:\n"
        "  a: {variants: [x]}\n"
        "  ok: {variants: [x, y]}\n"
        "  b: {variants: [x, y], control: z}\n"
        "  c: {variants: [x, x], goals: [{name: g, role: main}, participate], mde: 0}\n"
    )
    result = runner.invoke(main, ["plan", "apply", "bad.yaml", *where])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Error: bad.yaml: 6 errors; nothing sent:"
    assert [line.split(":")[:2] for line in lines[1:]] == [
        ["  experiment 'a'", " variants"],
        ["  experiment 'b'", " control"],
        ["  experiment 'c'", " variants"],
        ["  experiment 'c'", " goals[0].role"],
        ["  experiment 'c'", " goals[1].name"],
        ["  experiment 'c'", " mde"],
    ]
    assert raw_redis.dbsize() == 0


def test_show_prints_only_what_was_declared(
    runner: CliRunner, raw_redis: Any, where: list[str]
) -> None:
    assert gimel(runner, "plan", "apply", "plans.yaml", *where).exit_code == 0
    shown = gimel(runner, "plan", "show", "-n", "shop", *where)
    # No default and no null: the file reads as it was written.
    assert shown.output == (
        "namespace: shop\n"
        "experiments:\n"
        "  checkout:\n"
        "    variants: [blue, red]\n"
        "    control: blue\n"
        "    goals:\n"
        "    - signup\n"
        "    - {name: refund, role: guardrail, direction: decrease, margin: 0.02}\n"
        "    planned_participants: 20000\n"
        "  pricing:\n"
        "    variants: [a, b, c]\n"
        "    control: b\n"
        "    weights: {a: 1, b: 2, c: 1}\n"
    )
    Path("shown.yaml").write_text(shown.output)
    before = snapshot(raw_redis)
    again = gimel(runner, "plan", "apply", "shown.yaml", *where)
    assert again.output.endswith("0 to change\n") and snapshot(raw_redis) == before
