"""The gimel command, through click's runner, against a real Redis and a real HTTP server."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import click
import pytest
import redis
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from conftest import API_KEY, AUTH
from gimel_core import defaults, notify
from gimel_core.cli import main
from gimel_core.embedded import EmbeddedRedis
from gimel_core.events import Event
from helpers import original, track, track_url


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # gimel.config.json and .gimel/ land here, not in the repo
    for name in ("GIMEL_URL", "GIMEL_API_KEY", "GIMEL_REDIS_URL", "GIMEL_COUNTING"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(main, list(args), input=input, catch_exceptions=False)


def seed(client: FlaskClient) -> None:
    for variant, n, won in [("red", 30, 3), ("blue", 30, 9)]:
        for i in range(n):
            track(client, "button", variant, "participate", f"{variant}{i}")
            if i < won:
                track(client, "button", variant, "signup", f"{variant}{i}")


def test_results_as_json_csv_and_table_from_redis(
    runner: CliRunner, client: FlaskClient, redis_url: str
) -> None:
    seed(client)
    listing = client.get("/experiments", headers=AUTH).get_json()
    api = client.get("/experiments/button", headers=AUTH).get_json()

    # --format json prints what the API answers: the listing with its meta element first...
    as_json = run(runner, "results", "--redis-url", redis_url, "--format", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == listing
    # ...and one experiment as GET /experiments/<name> answers it.
    one = run(runner, "results", "button", "--redis-url", redis_url, "--format", "json")
    assert json.loads(one.output) == api

    as_csv = run(runner, "results", "button", "--redis-url", redis_url, "--format", "csv")
    header = as_csv.output.splitlines()[0].split(",")
    assert header[:4] == ["experiment", "counting", "control", "goal"]
    assert header[16:20] == ["srm_p_value", "srm_mismatch", "verdict", "decision"]
    assert header[4:6] == ["role", "variant"]
    assert header[20:] == VALUE_COLUMNS  # appended: a sheet reading by position still works
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [(r["variant"], r["trials"], r["successes"]) for r in rows] == [
        ("blue", "30", "9"),
        ("red", "30", "3"),
    ]
    assert float(rows[1]["p_value"]) == pytest.approx(api["goals"][0]["results"][1]["p_value"])

    table = run(runner, "results", "--redis-url", redis_url).output
    lines = table.splitlines()
    assert lines[0].startswith("button  (hll, control blue")
    assert lines[1] == "  decision: " + api["decision"]["text"]  # the API's, word for word
    red = next(i for i, line in enumerate(lines) if line.strip().startswith("red"))
    assert lines[red].split()[:4] == ["red", "30", "3", "10.0%"]


def test_csv_lists_an_experiment_with_participants_and_no_goal(
    runner: CliRunner, client: FlaskClient, redis_url: str
) -> None:
    """The table says "no goals yet; participants: ..."; the CSV must not drop the experiment."""
    for variant, n in [("blue", 3), ("red", 2)]:
        for i in range(n):
            track(client, "fresh", variant, "participate", f"{variant}{i}")
    out = run(runner, "results", "fresh", "--redis-url", redis_url, "--format", "csv").output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["experiment"], r["variant"], r["trials"]) for r in rows] == [
        ("fresh", "blue", "3"),
        ("fresh", "red", "2"),
    ]
    empty = ("goal", "role", "successes", "conversion_rate", "p_value", "verdict")
    assert all(r[name] == "" for r in rows for name in empty)
    assert {r["control"] for r in rows} == {"blue"}
    assert {r["srm_mismatch"] for r in rows} == {"False"}


VALUE_COLUMNS = [
    "type",
    "sum",
    "mean",
    "adjusted_mean",
    "adjusted_uplift",
    "adjusted_uplift_ci_low",
    "adjusted_uplift_ci_high",
    "adjusted_p_value",
    "variance_reduction",
]


def seed_values(client: FlaskClient) -> tuple[dict[str, float], dict[str, int]]:
    """Revenue and signups of 300 visitors per arm, each with its orders before the
    experiment (the covariate): those with 3 orders or more buy, for more the more orders
    they had (green's buyers 4 more), so the orders predict most of the revenue. One buyer
    per arm buys again, its running total sent with it. Returns each arm's revenue and
    purchases, counted here."""
    plan = {
        "variants": ["control", "green"],
        "goals": [{"name": "revenue", "type": "value", "cap": 1000}, "signup"],
        "covariate": "orders",
        "analysis": "fixed",
    }
    assert client.put("/experiments/shop", json=plan, headers=AUTH).status_code == 201
    revenue = {"control": 0.0, "green": 0.0}
    purchases = {"control": 0, "green": 0}

    def buy(variant: str, uuid: str, value: float, orders: int, total: float = 0) -> None:
        extra = {"total": str(total)} if total else {}
        answer = track(
            client,
            "shop",
            variant,
            "revenue",
            uuid,
            value=str(value),
            covariate=str(orders),
            **extra,
        )
        assert answer.get_json() == {"ok": True}, answer.get_json()
        revenue[variant] += value
        purchases[variant] += 1

    for variant, lift in [("control", 0), ("green", 4)]:
        for i in range(300):
            orders, uuid = i % 7, f"{variant}{i}"
            track(client, "shop", variant, "participate", uuid, covariate=str(orders))
            if i % 4 == 0:
                track(client, "shop", variant, "signup", uuid, covariate=str(orders))
            if orders >= 3:
                buy(variant, f"{uuid}-1", 5 * orders + lift + (i % 5) / 4, orders)
        first = 5 * 3 + lift + 3 / 4  # visitor 3's first purchase
        buy(variant, f"{variant}3-2", 7.5, 3, total=first)
    return revenue, purchases


def test_a_value_goal_and_cuped_in_the_table_and_csv(
    runner: CliRunner, make_app: Callable[..., Flask], redis_url: str
) -> None:
    """A value goal's rows show its sum and mean per participant; a covariate adds the CUPED
    figures under each goal's table and its note once; the CSV appends both, as the API."""
    client = make_app(counting="exact").test_client()
    revenue, purchases = seed_values(client)
    api = client.get("/experiments/shop", headers=AUTH).get_json()
    goals = {g["goal"]: g for g in api["goals"]}
    assert goals["revenue"]["type"] == "value" and goals["signup"]["type"] == "binary"
    by_row = {(g, r["label"]): r for g, goal in goals.items() for r in goal["results"]}
    for variant in ("control", "green"):
        row = by_row["revenue", variant]
        assert row["sum"] == pytest.approx(revenue[variant], rel=1e-12)
        assert row["mean"] == pytest.approx(revenue[variant] / 300, rel=1e-12)
        assert row["successes"] == purchases[variant] and row["conversion_rate"] is None
    green = by_row["revenue", "green"]
    assert green["adjusted"]["variance_reduction"] > 0.3  # the orders predict the revenue

    lines = run(runner, "results", "shop", "--redis-url", redis_url).output.splitlines()
    note = api["covariate"]["note"]
    assert [line for line in lines if "covariate" in line] == [f"  covariate orders: {note}"]
    start = lines.index(next(line for line in lines if line.startswith("  goal revenue (value) ")))
    assert lines[start].split()[3:7] == ["trials", "value", "events", "sum"]
    cells = lines[start + 2].split()
    counted = str(purchases["green"])
    assert cells[:5] == ["green", "300", counted, f"{green['sum']:,.2f}", f"{green['mean']:,.2f}"]
    low, high = green["ci"]
    assert cells[5:8] == [f"{low:,.2f}", "-", f"{high:,.2f}"]
    assert cells[8] == f"{green['uplift'] * 100:.1f}%"
    # Under the table, the CUPED figures: the adjusted uplift, its interval, p, and how much
    # variance the adjustment removed.
    assert lines[start + 3].split()[:3] == ["CUPED,", "orders", "uplift"]
    cuped = green["adjusted"]
    adjusted = lines[start + 5].split()
    low, high = (f"{x * 100:.1f}%" for x in cuped["uplift_ci"])
    assert adjusted[:5] == ["green", f"{cuped['uplift'] * 100:.1f}%", low, "-", high]
    assert adjusted[-1] == f"{cuped['variance_reduction'] * 100:.0f}%"
    assert lines[start + 6] == f"  verdict: {green['verdict']['text']}"
    signup = lines.index(next(line for line in lines if line.startswith("  goal signup ")))
    assert lines[signup + 3].startswith("  CUPED, orders ")  # a binary goal is adjusted too

    out = run(runner, "results", "shop", "--redis-url", redis_url, "--format", "csv").output
    rows = {(r["goal"], r["variant"]): r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == set(by_row)
    for key, row in rows.items():
        api_row, cuped = by_row[key], by_row[key]["adjusted"]
        assert row["type"] == goals[key[0]]["type"]
        for name in ("sum", "mean"):
            assert (float(row[name]) if row[name] else None) == api_row[name], (key, name)
        assert float(row["adjusted_mean"]) == cuped["mean"]
        if key[1] == "control":
            assert row["adjusted_uplift"] == row["variance_reduction"] == ""
            continue
        assert float(row["adjusted_uplift"]) == cuped["uplift"]
        ci = [float(row["adjusted_uplift_ci_low"]), float(row["adjusted_uplift_ci_high"])]
        assert ci == cuped["uplift_ci"]
        assert float(row["adjusted_p_value"]) == cuped["p_value"]
        assert float(row["variance_reduction"]) == cuped["variance_reduction"]
    assert rows["revenue", "green"]["conversion_rate"] == ""
    assert [float(rows["revenue", "green"][c]) for c in ("ci_low", "ci_high")] == green["ci"]

    # The history reads the value goal's mean where a binary goal has its rate.
    history = ["results", "shop", "--history", "--redis-url", redis_url]
    lines = run(runner, *history).output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("  goal revenue ")))
    assert lines[start].split()[2:6] == ["variant", "trials", "successes", "mean"]
    block = lines[start + 1 :]
    block = block[: next((i for i, x in enumerate(block) if x.startswith("  goal ")), None)]
    now = [line.split() for line in block if line.split()[1:2] == ["green"]][-1]
    assert now[2:5] == ["300", counted, f"{green['mean']:,.2f}"]
    days = list(csv.DictReader(io.StringIO(run(runner, *history, "--format", "csv").output)))
    means = [r["mean"] for r in days if (r["goal"], r["variant"]) == ("revenue", "green")]
    assert float(means[-1]) == green["mean"]
    assert {r["mean"] for r in days if r["goal"] == "signup"} == {""}


def seed_two_goals(client: FlaskClient) -> None:
    """Control blue; red loses clearly on signup and is even on buy."""
    for variant, signups in [("blue", 80), ("red", 20)]:
        for i in range(200):
            uuid = f"{variant}{i}"
            track(client, "page", variant, "participate", uuid)
            if i < signups:
                track(client, "page", variant, "signup", uuid)
            if i < 50:
                track(client, "page", variant, "buy", uuid)


def test_table_and_csv_show_the_servers_verdict_under_each_goal(
    runner: CliRunner, client: FlaskClient, redis_url: str
) -> None:
    seed_two_goals(client)
    client.patch("/experiments/page", json={"analysis": "fixed"}, headers=AUTH)
    api = client.get("/experiments/page", headers=AUTH).get_json()
    verdicts: dict[str, dict[str, str | None]] = {
        g["goal"]: {r["label"]: r["verdict"] and r["verdict"]["text"] for r in g["results"]}
        for g in api["goals"]
    }
    assert verdicts["signup"]["blue"] is None  # the control has none
    assert str(verdicts["signup"]["red"]).startswith("blue beats red on signup")
    assert str(verdicts["buy"]["red"]).startswith("No clear difference between red and blue on buy")

    lines = run(runner, "results", "page", "--redis-url", redis_url).output.splitlines()
    for goal in ("buy", "signup"):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"  goal {goal} "))
        # the goal's header, its two rows (blue, red), then red's verdict: the server's words
        assert [line.split()[0] for line in lines[start + 1 : start + 3]] == ["blue", "red"]
        assert lines[start + 3] == f"  verdict: {verdicts[goal]['red']}"
    assert sum(line.startswith("  verdict: ") for line in lines) == 2  # none for the control

    as_csv = run(runner, "results", "page", "--redis-url", redis_url, "--format", "csv").output
    rows = {(r["goal"], r["variant"]): r["verdict"] for r in csv.DictReader(io.StringIO(as_csv))}
    assert rows == {
        (goal, label): text or "" for goal, by in verdicts.items() for label, text in by.items()
    }


def test_results_json_starts_with_the_meta_element(
    runner: CliRunner, client: FlaskClient, redis_url: str
) -> None:
    seed(client)
    bot = {"User-Agent": "Googlebot/2.1"}
    client.get(
        track_url(experiment="button", variant="red", event="participate", uuid="b"), headers=bot
    )
    found = json.loads(run(runner, "results", "--redis-url", redis_url, "--format", "json").output)
    assert found[0] == {"meta": {"scope": None, "filtered": 1, "dropped": {}}}
    assert [e["experiment"] for e in found[1:]] == ["button"]

    empty = json.loads(
        run(runner, "results", "--redis-url", redis_url, "-n", "none", "--format", "json").output
    )
    assert list(empty[0]) == ["meta"] and empty[1:] == []


def test_results_over_http_with_the_key(
    runner: CliRunner, client: FlaskClient, live_server: str
) -> None:
    seed(client)
    result = run(runner, "results", "--url", live_server, "--api-key", API_KEY, "--format", "json")
    assert result.exit_code == 0
    listing = json.loads(result.output)
    assert "meta" in listing[0]
    assert original(listing[1]["goals"])[0]["results"][0]["trials"] == 30

    wrong = runner.invoke(main, ["results", "--url", live_server, "--api-key", "x" * 24])
    assert wrong.exit_code == 1
    assert "API key was refused" in wrong.output
    assert "Traceback" not in wrong.output


def test_url_without_api_key_sends_the_local_key(
    runner: CliRunner, client: FlaskClient, live_server: str
) -> None:
    seed(client)
    refused = runner.invoke(main, ["results", "--url", live_server])
    assert refused.exit_code == 1 and "API key was refused" in refused.output

    Path(".gimel").mkdir()
    Path(".gimel/api-key").write_text(API_KEY + "\n")  # as `gimel serve` leaves it
    result = run(runner, "results", "--url", live_server, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[1]["experiment"] == "button"

    help_text = " ".join(run(runner, "results", "--help").output.split())
    assert "Not needed against a local `gimel serve`" in help_text
    assert ".gimel/api-key" in help_text


def test_archive_reset_delete(runner: CliRunner, client: FlaskClient, redis_url: str) -> None:
    seed(client)
    common = ["--redis-url", redis_url]
    assert run(runner, "archive", "button", *common).exit_code == 0
    assert json.loads(run(runner, "results", *common, "--format", "json").output)[1:] == []
    archived = json.loads(run(runner, "results", *common, "--archived", "--format", "json").output)
    assert archived[1]["archived"] is True
    assert run(runner, "unarchive", "button", *common).exit_code == 0
    listed = json.loads(run(runner, "results", *common, "--format", "json").output)
    assert [e["experiment"] for e in listed[1:]] == ["button"]

    declined = runner.invoke(main, ["reset", "button", *common], input="n\n")
    assert declined.exit_code == 1
    counts = json.loads(run(runner, "results", "button", *common, "--format", "json").output)
    assert counts["participants"] == {"blue": 30, "red": 30}

    assert run(runner, "reset", "button", *common, input="y\n").exit_code == 0
    counts = json.loads(run(runner, "results", "button", *common, "--format", "json").output)
    assert counts["participants"] == {"blue": 0, "red": 0}

    assert run(runner, "delete", "button", "--yes", *common).exit_code == 0
    gone = runner.invoke(main, ["results", "button", *common])
    assert gone.exit_code == 1
    assert "no experiment named 'button'" in gone.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["results", "--redis-url", "redis://127.0.0.1:1/0"], "Redis is unreachable"),
        (["results", "--url", "http://127.0.0.1:1"], "cannot reach Gimel"),
        (["results", "--format", "xml"], "Invalid value for '--format'"),
        (["snippet", "--adapter", "google"], "Invalid value for '--adapter'"),
        (["import-legacy", "--from", "http://old-host/"], "--from must be a Redis URL"),
        (["import-legacy", "--from", "redis://127.0.0.1:1/0"], "--from: Redis is unreachable"),
    ],
)
def test_errors_are_one_line_without_traceback(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output


def test_local_results_need_no_server_running(runner: CliRunner) -> None:
    # With no URL at all, the local embedded store in .gimel/ is read directly.
    result = run(runner, "results")
    assert result.exit_code == 0
    assert "No experiments yet." in result.output
    assert Path(".gimel/appendonly.aof").exists()


def test_snippet_points_the_adapter_at_gimel(runner: CliRunner) -> None:
    out = run(runner, "snippet", "--url", "https://x.example/prod/", "--namespace", "shop").output
    assert 'new AlephBet.GimelAdapter("https://x.example/prod/track", "shop")' in out
    # A deployment with a function URL (frontDoor=url) tracks through it unless --url says.
    Path("gimel.config.json").write_text(
        json.dumps({"endpoint": "https://api.example/dev", "trackUrl": "https://f.example/track"})
    )
    assert '"https://f.example/track", "alephbet"' in run(runner, "snippet").output
    dash = run(runner, "snippet", "--url", "https://x.example/").output
    assert '"https://x.example/track"' in dash
    Path("gimel.config.json").unlink()
    lamed = run(runner, "snippet", "--adapter", "lamed", "--experiment", "</script>").output
    assert "AlephBet.LamedAdapter(" in lamed
    assert '</script>"' not in lamed and "\\u003c/script>" in lamed
    assert "http://127.0.0.1:8000/track" in lamed


def test_configure_saves_reruns_with_defaults_and_checks_redis(
    runner: CliRunner, redis_url: str
) -> None:
    first = run(
        runner,
        "configure",
        "--redis-url",
        redis_url,
        "--region",
        "eu-west-1",
        "--stage",
        "prod",
        "--counting",
        "exact",
        "--no-input",
    )
    assert first.exit_code == 0, first.output
    saved = json.loads(Path("gimel.config.json").read_text())
    assert saved["redisUrl"] == redis_url
    assert saved["counting"] == "exact"
    assert len(saved["apiKey"]) >= 20
    assert Path("gimel.config.json").stat().st_mode & 0o077 == 0

    # Interactive re-run: Enter keeps every current value, and the key is kept.
    again = run(runner, "configure", input="\n\n\n\n")
    assert again.exit_code == 0, again.output
    assert f"[{redis_url}]" in again.output and "[eu-west-1]" in again.output
    assert json.loads(Path("gimel.config.json").read_text()) == saved

    bad = runner.invoke(main, ["configure", "--region", "mars", "--no-input"])
    assert bad.exit_code == 1 and "does not look like an AWS region" in bad.output
    down = runner.invoke(main, ["configure", "--redis-url", "redis://127.0.0.1:1/0", "--no-input"])
    assert down.exit_code == 1 and "nothing saved" in down.output
    assert json.loads(Path("gimel.config.json").read_text()) == saved


def _check_lines(output: str) -> dict[str, str]:
    """Each check's line by what it checks, e.g. "Redis" -> "ok    Redis (keeps ...): ..."."""
    by_name = {}
    for line in output.splitlines():
        what = line[6:].removeprefix("for deploying: ").split(" (")[0].split(":")[0]
        by_name[what] = line
    return by_name


def test_check_passes_locally_without_sls_and_says_what_each_item_is_for(
    runner: CliRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    result = runner.invoke(main, ["check", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output  # no node_modules, no gimel.config.json here
    lines = _check_lines(result.output)
    assert lines["configuration"] == "ok    configuration (the GIMEL_* variables): counting hll"
    assert lines["Redis"].startswith("ok    Redis (keeps the counts): ")
    assert lines["Redis"].endswith("reachable and writable")
    assert lines["API key"] == "ok    API key (opens the results and the dashboard): GIMEL_API_KEY"
    # Not installed here, but npm is: missing ("--"), and `gimel deploy` installs it itself.
    assert lines["sls"] == (
        "--    for deploying: sls (runs the AWS deployment): "
        "not installed yet; `gimel deploy` installs the pinned one (npm)"
    )
    assert lines["gimel.config.json"].startswith("--    for deploying: gimel.config.json (")
    assert lines["gimel.config.json"].endswith("none (run `gimel configure`)")

    # With --deploy, what deploying needs decides too.
    deploying = runner.invoke(main, ["check", "--redis-url", redis_url, "--deploy"])
    assert deploying.exit_code == 1
    lines = _check_lines(deploying.output)
    assert lines["gimel.config.json"].startswith("FAIL  for deploying: gimel.config.json")
    assert lines["Redis"].startswith("ok    ")
    assert lines["sls"].startswith("--    for deploying: sls")  # gimel deploy installs it

    Path("gimel.config.json").write_text(
        json.dumps({"redisUrl": "rediss://:secret@cache.example:6380/0", "apiKey": API_KEY})
    )
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", "/nonexistent")  # no npm either: nothing can install sls
    no_npm = _check_lines(runner.invoke(main, ["check", "--redis-url", redis_url]).output)
    assert no_npm["sls"].startswith("--    for deploying: sls (runs the AWS deployment): ")
    assert no_npm["sls"].endswith("not installed, and no npm to install it (install Node.js 20)")
    monkeypatch.setenv("PATH", path)
    configured = _check_lines(runner.invoke(main, ["check", "--redis-url", redis_url]).output)
    assert configured["gimel.config.json"].startswith("ok    for deploying: gimel.config.json")
    assert configured["gimel.config.json"].endswith(
        f"stage {defaults.STAGE} in {defaults.REGION}, Redis cache.example:6380/0"
    )  # never the password


TWO_KEYS = "first-key-0123456789,second-key-0123456789"


@pytest.mark.parametrize("key", ["é" * 25, "k" * 200, "k" * 19, "k" * 20 + "\x7f"])
def test_check_refuses_a_key_api_gateway_refuses_locally_and_for_deploying(
    runner: CliRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    Path("gimel.config.json").write_text(json.dumps({"redisUrl": redis_url, "apiKey": key}))
    result = runner.invoke(main, ["check", "--redis-url", redis_url, "--deploy"])
    assert result.exit_code == 1
    lines = _check_lines(result.output)
    assert lines["gimel.config.json"].startswith("FAIL  for deploying: gimel.config.json")
    assert lines["gimel.config.json"].endswith(
        "the apiKey in gimel.config.json is not a key API Gateway accepts: a deployment's key "
        "must be at least 20 printable ASCII characters and at most 128, with no spaces or commas"
    )
    monkeypatch.setenv("GIMEL_API_KEY", key)
    local = runner.invoke(main, ["check", "--redis-url", redis_url])
    assert local.exit_code == 1
    assert _check_lines(local.output)["API key"].startswith("FAIL  API key")
    assert "at most 128" in _check_lines(local.output)["API key"]


def test_check_takes_two_keys_for_the_app_but_not_for_deploying(
    runner: CliRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIMEL_API_KEY", TWO_KEYS)
    Path("gimel.config.json").write_text(json.dumps({"redisUrl": redis_url, "apiKey": API_KEY}))
    result = runner.invoke(main, ["check", "--redis-url", redis_url, "--deploy"])
    lines = _check_lines(result.output)
    assert lines["API key"] == (
        "ok    API key (opens the results and the dashboard): GIMEL_API_KEY, 2 keys for "
        "rotation (the app accepts each; a deployment's API Gateway takes exactly one)"
    )
    # sls deploy reads GIMEL_API_KEY before the saved key: that is the one checked.
    assert lines["gimel.config.json"].endswith(
        "GIMEL_API_KEY is not a key API Gateway accepts: it is 2 keys joined by commas: the app "
        "takes several for rotation, but a deployment's API Gateway takes exactly one"
    )
    assert lines["gimel.config.json"].startswith("FAIL  ") and result.exit_code == 1
    deploy = runner.invoke(main, ["deploy"])
    assert deploy.exit_code == 1 and "GIMEL_API_KEY is not a key API Gateway" in deploy.output
    monkeypatch.delenv("GIMEL_API_KEY")
    refused = runner.invoke(main, ["configure", "--api-key", TWO_KEYS, "--no-input"])
    assert refused.exit_code == 1
    assert "--api-key is not one API Gateway accepts: it is 2 keys joined" in refused.output
    assert json.loads(Path("gimel.config.json").read_text())["apiKey"] == API_KEY


def test_check_says_which_user_agents_are_not_counted(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def line() -> str:
        return _check_lines(runner.invoke(main, ["check"]).output)["bot filter"]

    assert "the default (crawlers, previews, monitors, headless browsers" in line()
    assert "curl, Wget and HTTP libraries" in line()
    monkeypatch.setenv("GIMEL_BOT_PATTERN", "")
    assert line().endswith("none (GIMEL_BOT_PATTERN is empty): every User-Agent is counted")
    monkeypatch.setenv("GIMEL_BOT_PATTERN", "mybot")
    assert line().endswith("GIMEL_BOT_PATTERN 'mybot'")


def test_check_fails_on_a_local_problem(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    down = runner.invoke(main, ["check", "--redis-url", "redis://127.0.0.1:1/0"])
    assert down.exit_code == 1
    assert _check_lines(down.output)["Redis"].startswith("FAIL  Redis")

    monkeypatch.setenv("GIMEL_API_KEY", "short")
    bad_key = runner.invoke(main, ["check"])
    assert bad_key.exit_code == 1
    lines = _check_lines(bad_key.output)
    assert lines["API key"].startswith("FAIL  API key") and "20 printable" in lines["API key"]
    assert lines["Redis"].startswith("ok    Redis (keeps the counts): embedded")


def test_check_without_any_key_yet_points_at_gimel_serve(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert _check_lines(result.output)["API key"].endswith(
        "none yet; `gimel serve` makes one in .gimel/api-key"
    )
    redis_line = _check_lines(result.output)["Redis"]
    assert redis_line.startswith("ok    Redis (keeps the counts): embedded, data in .gimel")
    assert redis_line.endswith("reachable and writable")  # started, written to, stopped
    assert not Path(".gimel/redis.port").exists()
    Path(".gimel/api-key").write_text(API_KEY)
    assert _check_lines(runner.invoke(main, ["check"]).output)["API key"].endswith(
        ": .gimel/api-key"
    )


def test_deploy_defaults_are_serverless_ymls(runner: CliRunner, redis_url: str) -> None:
    serverless = (Path(__file__).parent.parent / "serverless.yml").read_text()
    assert f"file(./gimel.config.json):stage, '{defaults.STAGE}'}}" in serverless
    assert f"file(./gimel.config.json):region, '{defaults.REGION}'}}" in serverless
    done = run(runner, "configure", "--redis-url", redis_url, "--no-input")
    assert done.exit_code == 0, done.output
    saved = json.loads(Path("gimel.config.json").read_text())
    assert (saved["stage"], saved["region"]) == (defaults.STAGE, defaults.REGION)


def test_deploy_needs_configuration_a_valid_key_and_npm(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = runner.invoke(main, ["deploy"])
    assert result.exit_code == 1
    assert "run `gimel configure` first" in result.output
    Path("gimel.config.json").write_text(json.dumps({"redisUrl": "redis://x", "apiKey": "k"}))
    result = runner.invoke(main, ["deploy"])
    assert result.exit_code == 1
    assert "gimel configure --api-key" in result.output
    assert not Path(".gimel").exists()  # nothing prepared for a deploy that cannot work

    # Outside a checkout, the deploy folder is laid out from this install, then npm is needed.
    Path("gimel.config.json").write_text(json.dumps({"redisUrl": "redis://x", "apiKey": "k" * 20}))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    result = runner.invoke(main, ["deploy"])
    assert result.exit_code == 1
    assert "npm is not installed" in result.output
    prepared = Path(".gimel", "deploy")
    assert (prepared / "serverless.yml").is_file()
    assert (prepared / "deploy" / "gimel-plugin.js").is_file()
    assert (prepared / "gimel_core" / "__init__.py").is_file()
    assert (prepared / "gimel_core" / "rules.json").is_file()  # the plugin reads it from there
    assert (prepared / "gimel.config.json").resolve() == Path("gimel.config.json").resolve()


def _legacy(source: redis.Redis) -> None:
    """The original Gimel's layout: HyperLogLogs (one experiment) and integers (another)."""
    ns = "alephbet"
    counters = {
        "hll exp": {
            ("participate", "red"): 50,
            ("participate", "blue:2"): 40,
            ("participate", "2"): 10,
            ("signup", "red"): 5,
            # goal "signup" of "blue:2", or goal "signup:blue" of "2"? Not guessed.
            ("signup", "blue:2"): 8,
            # only "a:b" of "red" fits, as no variant is named "b:red"
            ("a:b", "red"): 2,
        },
        "int exp": {("participate", "x"): 7, ("buy", "x"): 3},
    }
    for exp, cells in counters.items():
        source.sadd(f"{ns}:experiments", exp)
        for (goal, variant), n in cells.items():
            key = f"{ns}:counters:{exp}:{goal}:{variant}"
            source.sadd(f"{ns}:{exp}:counter_keys", key)
            if exp == "hll exp":
                source.pfadd(key, *[f"{goal}-{variant}-{i}" for i in range(n)])
            else:
                source.set(key, n)


def test_import_legacy_merges_reports_ambiguity_and_is_idempotent(
    runner: CliRunner,
    redis_url: str,
    raw_redis: redis.Redis,
    redis_server: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIMEL_ANALYSIS", "sequential")  # what imported experiments record
    legacy_url = redis_server.url.replace("/0", "/5")  # the original's data, elsewhere
    _legacy(redis.Redis.from_url(legacy_url))

    dry = run(runner, "import-legacy", "--from", legacy_url, "--redis-url", redis_url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "alephbet/hll exp: 5 counter(s), hll" in dry.output
    assert "ambiguous (a ':' in a goal or variant name), skipped: " in dry.output
    assert "alephbet:counters:hll exp:signup:blue:2" in dry.output
    assert raw_redis.dbsize() == 0

    for _ in range(2):  # the second run changes nothing
        done = run(runner, "import-legacy", "--from", legacy_url, "--redis-url", redis_url)
        assert done.exit_code == 0, done.output
        assert "Imported 2 experiment(s)." in done.output
        found = json.loads(
            run(runner, "results", "--redis-url", redis_url, "--format", "json").output
        )
        by_name = {e["experiment"]: e for e in found[1:]}
        assert {e["analysis"] for e in by_name.values()} == {"sequential"}
        assert by_name["int exp"]["counting"] == "exact"
        assert original(by_name["int exp"]["goals"]) == [
            {"goal": "buy", "results": [{"label": "x", "successes": 3, "trials": 7}]}
        ]
        hll = by_name["hll exp"]
        assert hll["counting"] == "hll"
        assert hll["participants"] == {"2": 10, "blue:2": 40, "red": 50}
        goals = {
            g["goal"]: {r["label"]: r["successes"] for r in g["results"]} for g in hll["goals"]
        }
        assert goals == {
            "a:b": {"2": 0, "blue:2": 0, "red": 2},
            "signup": {"2": 0, "blue:2": 0, "red": 5},  # the ambiguous counter stayed out
        }


FORMULAS = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"]


def test_csv_cells_never_start_a_formula(
    runner: CliRunner, app: Flask, client: FlaskClient, redis_url: str
) -> None:
    """Names are attacker-chosen: a spreadsheet must not run them (OWASP CSV injection)."""
    names = [*FORMULAS, "\tx", "\rx"]
    for name in FORMULAS:  # through the public endpoint, as anyone can
        track(client, name, name, "participate", "u")
        track(client, name, name, name, "u")
    for name in ("\tx", "\rx"):  # tab and CR only get in from older data
        tracker = app.extensions["gimel"].tracker
        for goal in ("participate", name):
            tracker.track(Event("alephbet", name, name, goal, "u"))
    out = run(runner, "results", "--redis-url", redis_url, "--format", "csv").output
    rows = list(csv.DictReader(io.StringIO(out)))
    cells = {(r["experiment"], r["control"], r["goal"], r["variant"]) for r in rows}
    # a CR is also written visibly: left unquoted, it would start a row of its own
    written = {"'" + n.replace("\r", "\\r") for n in names}
    assert cells == {(n, n, n, n) for n in written}
    # the numbers the CLI itself writes stay numbers, negative ones included
    assert all(float(r["trials"]) == 1 for r in rows)
    text = out.splitlines()
    assert not any(cell[:1] in "=+-@\t\r" and cell for line in text for cell in line.split(","))


def test_the_table_prints_no_control_or_escape_sequence(
    runner: CliRunner, app: Flask, redis_url: str
) -> None:
    """A name can carry ESC sequences (older data): the terminal gets them as visible text."""
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f"
    tracker = app.extensions["gimel"].tracker
    for goal in ("participate", evil):
        tracker.track(Event("alephbet", evil, evil, goal, "u"))
    out = run(runner, "results", "--redis-url", redis_url).output
    assert not set(out) & {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\n"}
    shown = "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f"
    assert out.splitlines()[0].startswith(shown + "  (")
    assert f"  goal {shown} " in out


def test_import_legacy_renames_what_track_would_refuse_and_says_so(
    runner: CliRunner,
    client: FlaskClient,
    redis_url: str,
    raw_redis: redis.Redis,
    redis_server: EmbeddedRedis,
) -> None:
    """The original checked no name: escape sequences and 300 characters came in as they were
    (printed raw, and past what the delete routes accept)."""
    legacy_url = redis_server.url.replace("/0", "/6")
    source = redis.Redis.from_url(legacy_url)
    source.flushdb()
    ns, title, long = "alephbet", "\x1b]0;owned\x07\x1b[2J", "x" * 300
    cells = {
        title: [("participate", "a\u202eb"), ("buy", "a\u202eb")],
        long: [("participate", "v")],
    }
    for exp, pairs in cells.items():
        source.sadd(f"{ns}:experiments", exp)
        for goal, variant in pairs:
            key = f"{ns}:counters:{exp}:{goal}:{variant}"
            source.sadd(f"{ns}:{exp}:counter_keys", key)
            source.set(key, 3)
    source.sadd(f"{ns}:{title}:counter_keys", f"{ns}:counters:{title}:gone:v")  # a problem
    source.close()

    out = run(runner, "import-legacy", "--from", legacy_url, "--redis-url", redis_url).output
    assert "Imported 2 experiment(s)." in out, out
    assert "\x1b" not in out and "\u202e" not in out
    assert "problem: alephbet:counters:\\x1b]0;owned\\x07\\x1b[2J:gone:v: listed" in out
    renamed = dict(
        line.strip().removeprefix("renamed: ").split(" -> ")
        for line in out.splitlines()
        if line.strip().startswith("renamed: ")
    )
    assert renamed[repr(title)] == "\\x1b]0;owned\\x07\\x1b[2J"
    assert renamed[repr("a\u202eb")] == "a\\u202eb"
    short = renamed[repr(long)]
    assert len(short) == defaults.MAX_NAME_LENGTH
    assert short.startswith("x" * 100)

    found = json.loads(run(runner, "results", "--redis-url", redis_url, "--format", "json").output)
    by_name = {e["experiment"]: e for e in found[1:]}
    assert set(by_name) == {renamed[repr(title)], short}
    assert by_name[renamed[repr(title)]]["participants"] == {"a\\u202eb": 3}
    # every imported name is one the API accepts: the long one can be deleted now
    deleted = client.delete("/experiments/" + short, headers=AUTH)
    assert deleted.status_code == 200, deleted.get_json()
    # re-running finds the same names: nothing new
    run(runner, "import-legacy", "--from", legacy_url, "--redis-url", redis_url)
    again = json.loads(run(runner, "results", "--redis-url", redis_url, "--format", "json").output)
    assert sorted(e["experiment"] for e in again[1:]) == sorted(by_name)


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's argument path, the group's own first: (), ("check",), ("plan", "show")..."""
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _commands(main), ids=lambda path: " ".join(path) or "gimel")
def test_every_help_is_whole_and_names_its_variables(
    runner: CliRunner, path: tuple[str, ...]
) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    shown = run(runner, *path, "--help").output
    if isinstance(command, click.Group):  # each summary whole, not cut with "..."
        summaries = shown.split("Commands:")[1]
        assert "..." not in summaries, summaries
    for option in command.params:
        if not isinstance(option, click.Option) or option.hidden:
            continue
        assert option.help, f"{option.opts} has no help"
        for variable in [option.envvar] if isinstance(option.envvar, str) else []:
            assert f"env var: {variable}" in " ".join(shown.split()), (option.opts, shown)


def test_every_gimel_variable_is_in_the_readme() -> None:
    root = Path(__file__).resolve().parent.parent
    sources = [*root.joinpath("gimel_core").rglob("*.py"), root / "handler.py"]
    sources += [root / "serverless.yml", root / "deploy" / "gimel-plugin.js"]
    used = {
        name
        for path in sources
        for name in re.findall(r"GIMEL_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    readme = root.joinpath("README.md").read_text()
    assert {"GIMEL_PORT", "GIMEL_NAMESPACE", "GIMEL_URL"} <= used
    assert sorted(name for name in used if f"`{name}`" not in readme) == []


def test_configure_saves_where_alerts_go_and_checks_it_as_the_app_does(
    runner: CliRunner, redis_url: str
) -> None:
    base = ["configure", "--redis-url", redis_url, "--no-input"]
    first = run(
        runner,
        *base,
        "--webhook-url",
        "https://hooks.example.com/gimel",
        "--slack-webhook-url",
        "https://hooks.slack.com/services/T0/B0/token",
        "--dashboard-url",
        "https://gimel.example.com/prod/dashboard",
        "--watch-rate",
        "rate(15 minutes)",
        "--watch-silent-hours",
        "6",
    )
    saved = json.loads(Path("gimel.config.json").read_text())
    assert (
        saved.items()
        >= {
            "webhookUrl": "https://hooks.example.com/gimel",
            "slackWebhookUrl": "https://hooks.slack.com/services/T0/B0/token",
            "dashboardUrl": "https://gimel.example.com/prod/dashboard",
            "watchRate": "rate(15 minutes)",
            "watchSilentHours": "6",
        }.items()
    )
    # A webhook is always signed: a secret is generated once, shown once, then kept.
    secret = saved["webhookSecret"]
    assert len(secret) >= notify.MIN_SECRET
    assert f"Webhook secret (give it to the receiver): {secret}" in first.output
    again = run(runner, *base)
    assert json.loads(Path("gimel.config.json").read_text()) == saved
    assert "Webhook secret" not in again.output

    for option, value, complaint in (
        ("--webhook-url", "http://hooks.example.com/gimel", "must be https"),
        ("--slack-webhook-url", "https://u:p@hooks.slack.com/x", "user or password"),
        ("--webhook-secret", "too-short", "at least 32 characters"),
        ("--watch-rate", "rate(1 hours)", "is not an EventBridge schedule"),
        ("--watch-silent-hours", "0", "GIMEL_WATCH_SILENT_HOURS must be between 1 and 720"),
        ("--dashboard-url", "gimel.example.com", "GIMEL_DASHBOARD_URL must be"),
    ):
        refused = runner.invoke(main, [*base, option, value])
        assert refused.exit_code == 1 and complaint in refused.output, (option, refused.output)
        assert "token" not in refused.output  # a Slack URL is a secret, never shown whole
        assert json.loads(Path("gimel.config.json").read_text()) == saved  # nothing saved

    # '' removes a setting; the webhook's secret goes with the webhook.
    run(runner, *base, "--webhook-url", "", "--watch-rate", "")
    left = json.loads(Path("gimel.config.json").read_text())
    assert not {"webhookUrl", "webhookSecret", "watchRate"} & set(left)
    assert left["slackWebhookUrl"] == saved["slackWebhookUrl"]
