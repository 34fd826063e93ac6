"""The Lua scripts: shared names come from Python only, and a lost script is reloaded once."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from conftest import AUTH, WholeCluster
from gimel_core import defaults, scripts
from gimel_core.vocabulary import Mode
from helpers import track

LUA = resources.files("gimel_core").joinpath("lua")


def shared_names() -> set[str]:
    names = {defaults.PARTICIPATE, *list(Mode), *scripts.CLEAR_ACTIONS}
    names |= {v for k, v in vars(scripts.Meta).items() if k.isupper()}
    return names


@pytest.mark.parametrize("name", sorted(p.name for p in LUA.iterdir() if p.name.endswith(".lua")))
def test_scripts_spell_no_shared_name(name: str) -> None:
    code = "\n".join(
        line.split("--")[0] for line in LUA.joinpath(name).read_text("utf-8").splitlines()
    )
    literals = set(re.findall(r"'([^']*)'|\"([^\"]*)\"", code))
    spelled = {text for pair in literals for text in pair if text} & shared_names()
    assert not spelled, f"{name} spells {spelled}: use the prelude's names"


def test_prelude_defines_what_the_scripts_use() -> None:
    used = set()
    for path in LUA.iterdir():
        used |= set(re.findall(r"\b(META|MODE|TRACK|CLEAR|ACTION)\.(\w+)", path.read_text()))
    for table, field in used:
        assert re.search(rf"local {table} = {{[^}}]*\b{field} = ", scripts.PRELUDE), (table, field)


def flush_scripts(raw_redis: Any) -> None:
    """SCRIPT FLUSH on the server, or on every master of the cluster."""
    if isinstance(raw_redis, WholeCluster):
        for node in raw_redis.cluster.get_primaries():
            with redis.Redis(host=node.host, port=node.port) as one:
                one.script_flush()
    else:
        raw_redis.script_flush()


@pytest.mark.parametrize("counting", ["hll", "exact"])
def test_lost_scripts_are_reloaded(make_app, raw_redis: Any, counting: str) -> None:
    """After SCRIPT FLUSH (a restart, a failover), one event, a batch and results all work."""
    client: FlaskClient = make_app(counting=counting).test_client()
    assert track(client, "e", "a", "participate", "u0").status_code == 200
    for round_ in range(2):
        flush_scripts(raw_redis)
        assert track(client, "e", "a", "participate", f"u{round_}-1").status_code == 200
        flush_scripts(raw_redis)
        batch = [
            {"experiment": x, "variant": "a", "event": "participate", "uuid": f"u{round_}-2"}
            for x in ("e", "f")
        ]
        posted = client.post("/track", data=json.dumps(batch), content_type="application/json")
        assert posted.get_json() == {"accepted": 2}
        flush_scripts(raw_redis)
        listing = client.get("/experiments", headers=AUTH).get_json()
    assert {exp["experiment"]: exp["participants"] for exp in listing[1:]} == {
        "e": {"a": 5},
        "f": {"a": 2},
    }
