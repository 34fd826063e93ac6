"""Configuration: from the environment, read when the app is built; bad values stop start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import API_KEY
from gimel_core import create_app, dedup
from gimel_core.config import Config
from gimel_core.errors import ConfigError
from helpers import original


def test_defaults() -> None:
    config = Config.from_env({})
    assert config.redis_url is None
    assert config.api_keys == ()
    assert config.counting == "hll"
    assert config.analysis == "sequential"
    assert config.dedup_window == dedup.LIFE == 0  # exact: every uuid, for the experiment's life
    assert Config.from_env({"GIMEL_DEDUP_WINDOW": " Life "}).dedup_window == dedup.LIFE


def test_values_are_parsed() -> None:
    config = Config.from_env(
        {
            "GIMEL_REDIS_URL": "rediss://user:pw@cache.example:6380/2",
            "GIMEL_API_KEY": " first-key-0123456789 , second-key-0123456789 ",
            "GIMEL_COUNTING": "EXACT",
            "GIMEL_DEDUP_WINDOW": "3600",
            "GIMEL_ANALYSIS": " Fixed ",
        }
    )
    assert config.analysis == "fixed"
    assert config.redis_url == "rediss://user:pw@cache.example:6380/2"
    assert config.api_keys == ("first-key-0123456789", "second-key-0123456789")
    assert config.counting == "exact"
    assert config.dedup_window == 3600
    assert Config.from_env({"GIMEL_REDIS_URL": "unix:///tmp/r.sock"}).redis_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GIMEL_REDIS_URL", "http://localhost:6379"),
        ("GIMEL_REDIS_URL", "localhost:6379"),
        ("GIMEL_API_KEY", "short"),
        ("GIMEL_COUNTING", "approximate"),
        ("GIMEL_ANALYSIS", "bayesian"),
        ("GIMEL_DEDUP_WINDOW", "a day"),
        ("GIMEL_DEDUP_WINDOW", "0"),
        ("GIMEL_DEDUP_WINDOW", "-5"),
        ("GIMEL_DEDUP_WINDOW", "forever"),
        ("GIMEL_DEDUP_WINDOW", "86400.5"),
        ("GIMEL_DEDUP_WINDOW", "31622401"),
        ("GIMEL_REDIS_TIMEOUT", "never"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_config_is_read_when_the_app_is_created(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("GIMEL_COUNTING", "exact")
    app = create_app()
    assert app.config["GIMEL"].counting == "exact"
    monkeypatch.setenv("GIMEL_COUNTING", "nonsense")
    with pytest.raises(ConfigError, match="GIMEL_COUNTING"):
        create_app()


def test_importing_reads_no_configuration() -> None:
    # A broken environment must not break `import gimel_core`; only create_app() reads it.
    env = {"GIMEL_COUNTING": "nonsense", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import gimel_core, gimel_core.api, gimel_core.tracking"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_handler_start_up_fails_with_a_message_naming_the_variable() -> None:
    env = {"GIMEL_REDIS_URL": "memcached://x", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import handler"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "GIMEL_REDIS_URL" in result.stderr.splitlines()[-1]


def test_extra_track_paths_count_like_track(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    assert Config.from_env({}).track_paths == ("/track",)
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("GIMEL_TRACK_PATHS", "collect, /t/ ,")
    client = create_app().test_client()
    query = "?experiment=e&variant=v&event=participate&uuid="
    for path in ["/collect", "/t", "/track"]:
        response = client.get(path + query + path)
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/collect?experiment=e").get_json()["field"] == "variant"
    client.get("/t?experiment=e&variant=v&event=g&uuid=/t")
    exp = client.get("/experiments/e", headers={"x-api-key": API_KEY}).get_json()
    assert original(exp["goals"])[0]["results"] == [{"label": "v", "successes": 1, "trials": 3}]


def test_bad_track_paths_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="GIMEL_TRACK_PATHS"):
        Config.from_env({"GIMEL_TRACK_PATHS": "collect,../x"})
