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
from helpers import track

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


def gimel(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def stored(raw_redis: Any) -> dict[bytes, Any]:
    """Every key and its value (hashes and sets), to see that nothing changed."""
    found: dict[bytes, Any] = {}
    for key in raw_redis.keys("*"):
        kind = raw_redis.type(key)
        found[key] = raw_redis.hgetall(key) if kind == b"hash" else raw_redis.smembers(key)
    return found


def test_apply_shows_the_changes_then_declares_only_what_changed(
    runner: CliRunner, redis_url: str, raw_redis: Any, client: FlaskClient
) -> None:
    dry = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "~ checkout:" in dry.output and '+ control: "blue"' in dry.output
    assert "2 to change (dry run: nothing sent)" in dry.output
    assert raw_redis.dbsize() == 0

    applied = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    assert applied.exit_code == 0, applied.output
    assert "2 declared in namespace shop" in applied.output
    pricing = client.get("/experiments/pricing?namespace=shop", headers=AUTH).get_json()
    assert pricing["control"] == "b" and pricing["weights"] == {"a": 1.0, "b": 2.0, "c": 1.0}

    before = stored(raw_redis)
    again = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
    assert again.output.splitlines() == [
        "= checkout: unchanged",
        "= pricing: unchanged",
        "0 to change",
    ]
    assert stored(raw_redis) == before

    Path("plans.yaml").write_text(PLANS.replace("planned_participants: 20000", "mde: 0.05"))
    changed = gimel(runner, "plan", "apply", "plans.yaml", "--redis-url", redis_url)
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
    before = stored(raw_redis)
    again = gimel(runner, "plan", "apply", "shown.yaml", "--redis-url", redis_url)
    assert again.output.endswith("0 to change\n") and stored(raw_redis) == before

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
