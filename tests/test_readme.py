"""The README's `gimel results` examples are what Gimel prints with its defaults.

The example's counts are rebuilt through /track (`hll` counting, sequential analysis: the
defaults), then `gimel results` and `--format json` are compared with the README's blocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from conftest import AUTH
from gimel_core import defaults
from gimel_core.cli import main
from helpers import track

pytestmark = pytest.mark.single_redis  # what a user reads does not depend on the kind of Redis

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
VISITORS = 300
SIGNUPS = {"blue": 51, "red": 30}
SEED = 17
"""Picks uuids whose HyperLogLog counts red's 300 visitors as 298, as the README tells."""


def block(after: str, fence: str = "```") -> str:
    """The code block of the README whose text starts with ``after``."""
    found = re.search(re.escape(fence) + r"\w*\n(" + re.escape(after) + r".*?)\n```", README, re.S)
    assert found, f"no README block starting with {after!r}"
    return found.group(1)


@pytest.fixture
def example(client: FlaskClient, redis_url: str, tmp_path: Path, monkeypatch: Any) -> CliRunner:
    """The README's experiment, `button`, tracked as Alephbet would; a runner for `gimel`."""
    assert (defaults.COUNTING, defaults.ANALYSIS) == ("hll", "sequential")
    for variant, signups in SIGNUPS.items():
        for i in range(VISITORS):
            uuid = f"{variant}-{SEED}-{i}"
            assert track(client, "button", variant, "participate", uuid).status_code == 200
            if i < signups:
                assert track(client, "button", variant, "signup", uuid).status_code == 200
    monkeypatch.chdir(tmp_path)
    for name in ("GIMEL_URL", "GIMEL_API_KEY", "GIMEL_REDIS_URL", "GIMEL_COUNTING"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def gimel(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.rstrip("\n")


def test_the_results_table_is_what_gimel_results_prints(
    example: CliRunner, client: FlaskClient, redis_url: str
) -> None:
    shown = block("$ gimel results\n").split("\n", 1)[1]
    assert gimel(example, "results", "--redis-url", redis_url) == shown
    # The prose under it quotes what the fixed-horizon analysis would say of the same counts.
    client.patch("/experiments/button", json={"analysis": "fixed"}, headers=AUTH)
    fixed = client.get("/experiments/button", headers=AUTH).get_json()["decision"]["text"]
    assert f"`{fixed}`" in " ".join(README.split())


def test_the_results_json_is_what_the_api_answers(example: CliRunner, redis_url: str) -> None:
    shown = block('[{"meta"', fence="```json")
    answered = json.loads(gimel(example, "results", "--redis-url", redis_url, "--format", "json"))
    # "..." stands for the rows left out; "created" is when the example ran.
    written = json.loads(re.sub(r"\.\.\.", '"..."', shown))
    written[1]["created"] = answered[1]["created"]
    same(written, answered, "")


def same(written: Any, answered: Any, where: str) -> None:
    """``written`` as the README shows ``answered``: every field, in the same order, each value
    equal, numbers to the digits written, "..." standing for omitted list items."""
    if isinstance(written, dict):
        assert isinstance(answered, dict), where
        assert list(written) == list(answered), where
        for key, value in written.items():
            same(value, answered[key], f"{where}.{key}")
    elif isinstance(written, list) and "..." in written:
        shown = [item for item in written if item != "..."]
        labels = [item.get("label") for item in shown]
        for item in shown:
            same(item, next(a for a in answered if a.get("label") == item.get("label")), where)
        assert set(labels) < {a.get("label") for a in answered}, where
    elif isinstance(written, list):
        assert isinstance(answered, list) and len(written) == len(answered), where
        for i, (w, a) in enumerate(zip(written, answered, strict=True)):
            same(w, a, f"{where}[{i}]")
    elif isinstance(written, float):
        digits = len(repr(written).partition(".")[2])
        assert round(answered, digits) == written, f"{where}: {answered}"
    else:
        assert written == answered, where
