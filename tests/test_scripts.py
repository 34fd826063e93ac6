"""The Lua scripts: every shared fact comes from Python only, and a lost script is reloaded once."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import AUTH, WholeCluster
from gimel_core import dedup, defaults, keys
from gimel_core.storage import runner, schema
from gimel_core.storage.read import read, stored
from gimel_core.storage.runner import _REPEATING, Call, Packed, Scripts, _pack, plain, source
from gimel_core.storage.schema import TrackSettings
from gimel_core.storage.track import track_exact
from gimel_core.store import connect
from gimel_core.vocabulary import GoalType, Mode, Registration
from helpers import track

STORAGE = resources.files("gimel_core.storage")
LUA = sorted(p.name for p in STORAGE.iterdir() if p.name.endswith(".lua"))
SCRIPTS = [name.removesuffix(".lua") for name in LUA if name != "prelude.lua"]


SETTINGS = TrackSettings(
    new_mode="exact",
    new_window=60,
    new_analysis="fixed",
    max_experiments=3,
    max_variants=4,
    max_goals=5,
    registration="open",
    open_budget=6,
    idle_seconds=7,
    max_records=8,
)


def text_of(script: str) -> str:
    """The script as Redis runs it (one written with settings: with :data:`SETTINGS`)."""
    return source(script, SETTINGS if script in schema.BAKED else None)[0]


def shared_names() -> set[str]:
    names = {defaults.PARTICIPATE, *Mode, *Registration, *schema.ClearAction, *GoalType}
    return names | set(schema.meta_fields().values())


def code(name: str) -> str:
    """A .lua file without its comments."""
    lines = STORAGE.joinpath(name).read_text("utf-8").splitlines()
    return "\n".join(line.split("--")[0] for line in lines)


@pytest.mark.parametrize("name", LUA)
def test_scripts_spell_no_shared_fact(name: str) -> None:
    """Names, the day length, de-dup constants and ARGV slots come from schema.py."""
    literals = set(re.findall(r"'([^']*)'|\"([^\"]*)\"", code(name)))
    spelled = {text for pair in literals for text in pair if text} & shared_names()
    assert not spelled, f"{name} spells {spelled}: use the prelude's names"
    numbers = set(re.findall(r"\b\d+\b", code(name))) & {
        str(n) for n in (schema.DAY, dedup.LOAD, dedup.SETS, schema.TRACK_FIRST_COUNTER)
    }
    assert not numbers, f"{name} spells {numbers}: use the prelude's names"
    by_position = re.findall(r"ARGV\[\s*[^\sA-Za-z_][^\]]*\]", code(name))
    assert not by_position, f"{name} reads {by_position}: name the slot in schema.ARGV"


def test_every_script_has_its_argv_and_uses_each_slot() -> None:
    assert sorted(schema.ARGV) == sorted(SCRIPTS)
    for script, (_, tail) in schema.ARGV.items():
        body = code(f"{script}.lua")
        baked = list(schema.BAKED[script]._fields) if script in schema.BAKED else []
        named = [name for name, _ in schema.slots(script)]
        for name in [*named, *baked, *([tail] if tail else [])]:
            assert re.search(rf"\b{name}\b", body), f"{script}.lua never reads {name}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_binds_its_argv_by_name_in_the_order_the_call_fills(script: str) -> None:
    """The runner sends prelude, shared functions, binding, then the file."""
    text = text_of(script)
    named, tail = schema.slots(script), schema.ARGV[script][1]
    assert text.startswith(schema.PRELUDE.split("\nlocal META = ")[0])  # the scalars
    assert text.endswith(schema.inline(STORAGE.joinpath(f"{script}.lua").read_text("utf-8")))
    bound = re.findall(r"^local (\w+) = ARGV\[(\d+)\]( \+ 0)?$", text, re.M)
    assert bound == [
        (name, str(i), " + 0" if kind is int else "") for i, (name, kind) in enumerate(named, 1)
    ]
    if tail:
        assert f"local {tail} = {len(named) + 1}\n" in text


def test_a_script_with_settings_is_written_with_them() -> None:
    """track.lua's settings are constants of its text: one script, and one SHA, for each
    value of them; none goes in ARGV, and the script is refused without them."""
    text, sha = source("track", SETTINGS)
    assert "local new_mode = 'exact'\nlocal new_window = 60\nlocal new_analysis = 'fixed'\n" in text
    assert "local max_records = 8\n" in text
    other = source("track", SETTINGS._replace(max_goals=6))
    assert "local max_goals = 6\n" in other[0] and other[1] != sha
    assert not {name for name, _ in schema.slots("track")} & set(SETTINGS._fields)
    with pytest.raises(TypeError):
        source("track")
    with pytest.raises(TypeError):
        source("read", SETTINGS)


def test_a_call_fills_the_slots_the_script_reads() -> None:
    """The builder's list starts with the named slots, in the layout's order, and names the
    settings its script is written with."""
    new = SETTINGS
    source = schema.TrackSource("5f0c", 30, 3_600)
    call = track_exact(
        "ns",
        "exp",
        60,
        new,
        1_000,
        ["bucket"],
        2_000,
        [("v", "g", "1", "f", "2.5", "0", "")],
        source,
    )
    args = plain(call.args)
    named = dict(zip((name for name, _ in schema.slots("track")), args, strict=False))
    assert named == {
        "experiment": "exp",
        "keys_mode": "exact",
        "keys_window": 60,
        "now": 1_000,
        "bucket_expiry": 2_000,
        "counters": 0,
        **source._asdict(),
    }
    assert call.settings == new
    assert args[len(named) :] == ["v", "g", "1", "f", "2.5", "0", ""]


def test_prelude_defines_what_the_scripts_use() -> None:
    used = set()
    for name in LUA:
        used |= set(
            re.findall(
                r"\b(META|MODE|REGISTRATION|TRACK|CLEAR|ACTION|DEDUP|OPEN|COST)\.(\w+)", code(name)
            )
        )
    for table, field in used:
        assert re.search(rf"local {table} = {{[^}}]*\b{field} = ", schema.PRELUDE), (table, field)
    assert f"local DAY = {schema.DAY}\n" in schema.PRELUDE


def test_experiments_are_created_in_one_place() -> None:
    # Writing the field names it with its value after it (reading it, as watch_save.lua does
    # to compare an epoch, does not).
    creating = [name for name in LUA if re.search(r"META\.created\s*,", code(name))]
    assert creating == ["prelude.lua"]
    for script in ("track", "plan", "import_legacy"):
        assert "create_experiment(" in code(f"{script}.lua"), script


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


def test_the_prelude_tables_are_written_as_their_values() -> None:
    """No call builds a table of names the script only reads fields of: each ``TABLE.field``
    is its value in the source Redis runs, and a field no table has fails at load, not in
    Redis as nil."""
    for name in SCRIPTS:
        text = text_of(name)
        left = re.findall(rf"\b(?:{'|'.join(schema.TABLES)})\.\w+", text)
        assert not left, f"{name}: {left}"
        tables = re.findall(rf"^local ({'|'.join(schema.TABLES)}) = {{", text, flags=re.M)
        assert tables == (["OFF_PLAN"] if name == "track" else []), name  # pairs(OFF_PLAN)
    assert schema.inline("return META.plan, DEDUP.load") == (
        f"return '{schema.Meta.PLAN}', {dedup.LOAD}"
    )
    with pytest.raises(KeyError):
        schema.inline("return META.nme")


@pytest.mark.single_redis
def test_an_error_reply_among_several_leaves_the_connection_in_step(redis_url: str) -> None:
    """Several calls sent together: an error reply raises once every reply is read, so the
    connection's next replies are the next calls' own."""
    client = connect(redis_url)
    scripts = Scripts(client)
    for name in ("a", "b"):
        client.hset(keys.meta("ns", name), schema.Meta.NAME, name)
    broken = Call("read", [], [], bytes)  # no KEYS: the script's first command fails
    with pytest.raises(redis.ResponseError):
        scripts.run([read("ns", "b"), broken, read("ns", "b")])
    first, second = scripts.run([read("ns", "a"), read("ns", "b")])
    assert stored(first).meta[schema.Meta.NAME] == "a"
    assert stored(second).meta[schema.Meta.NAME] == "b"
    assert stored(scripts.run_one(read("ns", "a"))).meta[schema.Meta.NAME] == "a"
    client.close()


@pytest.mark.single_redis
def test_a_call_interrupted_before_its_reply_leaves_none_for_the_next(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call sent whose reply was never read (a signal between the two) does not leave that
    reply on a connection the next call is sent on: the next call reads its own."""
    client = connect(redis_url)
    scripts = Scripts(client)
    for name in ("a", "b"):
        client.hset(keys.meta("ns", name), schema.Meta.NAME, name)
    scripts.run_one(read("ns", "a"))  # loaded, and a connection kept

    def interrupted(conn: Any, packed: bytes) -> Any:
        conn.send_packed_command((packed,))
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_round_trip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scripts.run_one(read("ns", "a"))
    monkeypatch.undo()
    assert stored(scripts.run_one(read("ns", "b"))).meta[schema.Meta.NAME] == "b"
    assert stored(scripts.run_one(read("ns", "a"))).meta[schema.Meta.NAME] == "a"
    client.close()


ARGUMENT = st.text() | st.integers() | st.floats(allow_nan=False) | st.binary()


@given(st.lists(ARGUMENT), st.lists(ARGUMENT), st.lists(ARGUMENT), st.sampled_from([1, _REPEATING]))
@example([], [], [1, 1.0, "1", b"1", -0.0, 0, 0.0], _REPEATING)  # equal keys of a dict
@example([b"x" * 255, b"x" * 256], [], ["é" * 200], 1)  # lengths past the heads kept
def test_a_call_is_packed_as_redis_py_packs_it(
    before: list[Any], once: list[Any], after: list[Any], times: int
) -> None:
    """Gimel's own packing, with a part packed once (``Packed``) among the arguments, sends
    the bytes redis-py's packer would send for the same arguments; so does a long call's,
    whose repeated arguments are encoded once (a batch's)."""
    args = ["EVALSHA", *before, Packed(once), *after * times]
    expected = b"".join(redis.Connection().pack_command(*plain(args)))
    assert _pack(args) == expected
    assert plain(args) == ["EVALSHA", *before, *once, *after * times]


def test_a_script_carries_the_shared_functions_it_calls_and_no_other() -> None:
    # Lua makes a closure of each `local function` on every call, whether it runs or not.
    shared = (
        "-- a's comment\nlocal function a()\n  return b()\nend\n\n"
        "local function b()\nend\n\n"
        "local function c()\nend\n"
    )
    assert schema.called(shared, "return a()") == (
        "-- a's comment\nlocal function a()\n  return b()\nend\n\nlocal function b()\nend\n\n"
    )
    assert schema.called(shared, "return c() + ac()") == "local function c()\nend\n"
    prelude = STORAGE.joinpath("prelude.lua").read_text("utf-8")
    for script in SCRIPTS:
        text = text_of(script)
        defined = re.findall(r"^local function (\w+)\(", prelude, re.M)
        for name in defined:
            calls = re.search(rf"\b{name}\(", code(f"{script}.lua")) is not None
            assert (f"local function {name}(" in text) == calls, (script, name)
