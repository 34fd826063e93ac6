"""The gimel command, through click's runner, against a real Redis and a real HTTP server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from conftest import API_KEY
from gimel_core.cli import main
from gimel_core.embedded import EmbeddedRedis
from helpers import original, track


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
    api = client.get("/experiments/button", headers={"x-api-key": API_KEY}).get_json()

    as_json = run(runner, "results", "--redis-url", redis_url, "--format", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == [api]

    as_csv = run(runner, "results", "button", "--redis-url", redis_url, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [(r["variant"], r["trials"], r["successes"]) for r in rows] == [
        ("blue", "30", "9"),
        ("red", "30", "3"),
    ]
    assert float(rows[1]["p_value"]) == pytest.approx(api["goals"][0]["results"][1]["p_value"])

    table = run(runner, "results", "--redis-url", redis_url).output
    lines = table.splitlines()
    assert lines[0].startswith("button  (hll, control blue")
    red = next(line for line in lines if line.strip().startswith("red"))
    assert red.split()[:4] == ["red", "30", "3", "10.0%"]


def test_results_over_http_with_the_key(
    runner: CliRunner, client: FlaskClient, live_server: str
) -> None:
    seed(client)
    result = run(runner, "results", "--url", live_server, "--api-key", API_KEY, "--format", "json")
    assert result.exit_code == 0
    assert original(json.loads(result.output)[0]["goals"])[0]["results"][0]["trials"] == 30

    wrong = runner.invoke(main, ["results", "--url", live_server, "--api-key", "x" * 24])
    assert wrong.exit_code == 1
    assert "API key was refused" in wrong.output
    assert "Traceback" not in wrong.output


def test_archive_reset_delete(runner: CliRunner, client: FlaskClient, redis_url: str) -> None:
    seed(client)
    common = ["--redis-url", redis_url]
    assert run(runner, "archive", "button", *common).exit_code == 0
    assert json.loads(run(runner, "results", *common, "--format", "json").output) == []
    archived = json.loads(run(runner, "results", *common, "--archived", "--format", "json").output)
    assert archived[0]["archived"] is True

    declined = runner.invoke(main, ["reset", "button", *common], input="n\n")
    assert declined.exit_code == 1
    counts = json.loads(run(runner, "results", "button", *common, "--format", "json").output)
    assert counts[0]["participants"] == {"blue": 30, "red": 30}

    assert run(runner, "reset", "button", *common, input="y\n").exit_code == 0
    counts = json.loads(run(runner, "results", "button", *common, "--format", "json").output)
    assert counts[0]["participants"] == {"blue": 0, "red": 0}

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


def test_check_reports_each_item(
    runner: CliRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    result = runner.invoke(main, ["check", "--redis-url", redis_url])
    lines = result.output.splitlines()
    assert lines[0].startswith("ok    configuration")
    assert lines[1].startswith("ok    Redis") and "writable" in lines[1]
    assert lines[2] == "ok    API key: configured"
    assert lines[3].startswith("FAIL  sls: not installed")  # no node_modules in this folder
    assert result.exit_code == 1

    down = runner.invoke(main, ["check", "--redis-url", "redis://127.0.0.1:1/0"])
    assert "FAIL  Redis" in down.output
    assert down.exit_code == 1


def test_deploy_needs_configuration_and_sls(runner: CliRunner) -> None:
    result = runner.invoke(main, ["deploy"])
    assert result.exit_code == 1
    assert "run `gimel configure` first" in result.output
    Path("gimel.config.json").write_text(json.dumps({"redisUrl": "redis://x", "apiKey": "k"}))
    result = runner.invoke(main, ["deploy"])
    assert result.exit_code == 1
    assert "npm ci" in result.output


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
    runner: CliRunner, redis_url: str, raw_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
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
        by_name = {e["experiment"]: e for e in found}
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
