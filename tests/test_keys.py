"""The key layout: injective for any names, one cluster slot per experiment; and every
character that means something in a key or on the wire, through /track and back."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from conftest import AUTH
from gimel_core import defaults, keys
from gimel_core.vocabulary import Mode
from helpers import original, track

names = st.text(min_size=1, max_size=128)


@given(names, names)
def test_escape_is_injective_and_free_of_separators(a: str, b: str) -> None:
    ea, eb = keys.escape(a), keys.escape(b)
    assert (ea == eb) == (a == b)
    for forbidden in ":{} ":
        assert forbidden not in ea


def _all_keys(ns: str, exp: str, goal: str, variant: str) -> list[str]:
    return [
        keys.meta(ns, exp),
        keys.variants(ns, exp),
        keys.goals(ns, exp),
        keys.counts(ns, exp),
        keys.hll(ns, exp, goal, variant),
        keys.seen(ns, exp, 123),
        keys.experiment_registry(ns, exp),
    ]


@given(names, names, names, names)
def test_one_experiment_is_one_slot(ns: str, exp: str, goal: str, variant: str) -> None:
    assert len({key_slot(k.encode()) for k in _all_keys(ns, exp, goal, variant)}) == 1


@given(st.tuples(names, names, names, names), st.tuples(names, names, names, names))
def test_different_tuples_never_share_a_key(a: tuple, b: tuple) -> None:
    ka, kb = _all_keys(*a), _all_keys(*b)
    assert len(set(ka)) == len(ka)
    if a[:2] != b[:2]:
        shared = set(ka) & set(kb)
        # Only a registry shard may be shared between experiments of one namespace.
        assert shared <= {keys.experiment_registry(*a[:2])}
    elif a != b:
        assert keys.hll(*a) != keys.hll(*b)
        assert keys.counts_field(*a[2:]) != keys.counts_field(*b[2:])


RESERVED = [":", "{", "}", "%", " ", "/", "+", "&", "=", "?", "#", "\\", '"', "'", "*", "[", "]",
            "\u00e9", "\U0001f600"]  # fmt: skip
"""Every character that means something in a key or on the wire: the key separator, hash-tag
braces, the escape character itself, what a form-encoded query string or a URL path gives a
meaning to, quotes, glob characters, and multi-byte UTF-8 (a non-ASCII letter, an emoji)."""

KEY_COMPONENT = re.compile(r"[A-Za-z0-9._%-]+")
"""What an escaped name may contain: nothing Redis, a hash tag or a glob reads."""


@pytest.mark.parametrize("char", RESERVED, ids=lambda char: f"U+{ord(char):04X}")
def test_each_reserved_character_is_escaped(char: str) -> None:
    """Each character on every run, not only when Hypothesis happens to draw it."""
    spelled = quote(char, safe="")  # how a key spells it: a name must not turn into another
    names = [char, char * 3, f"a{char}b", "ab", f"a{spelled}b", f"{spelled}{char}"]
    escaped = [keys.escape(name) for name in names]
    for name, component in zip(names, escaped, strict=True):
        assert KEY_COMPONENT.fullmatch(component), (name, component)
        assert unquote(component) == name  # decodes back: no two names share a component
    assert len(set(escaped)) == len(names)
    # Names differing by that character only share nothing but, maybe, a registry shard.
    for a, b in [(f"a{char}b", "ab"), (f"a{char}b", f"a{spelled}b")]:
        ka, kb = _all_keys(a, a, a, a), _all_keys(b, b, b, b)
        assert len({key_slot(k.encode()) for k in ka}) == 1
        assert set(ka) & set(kb) <= {keys.experiment_registry(a, a)}
        assert keys.counts_field(a, a) != keys.counts_field(b, b)


def twins(char: str, template: str) -> list[str]:
    """A name with ``char``, without it, and with its percent-escape (the way a key spells
    it) in its place: names a wrong escape would give one key."""
    return [template.format(c) for c in (char, "", quote(char, safe=""))]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("char", RESERVED, ids=lambda char: f"U+{ord(char):04X}")
def test_each_reserved_character_round_trips_and_keeps_names_apart(
    make_app: Callable[..., Flask], char: str, mode: str
) -> None:
    """In experiment, variant and goal names at once (and in the namespace), next to its
    twins, sent as Alephbet sends it and read back from the results."""
    client = make_app(counting=mode).test_client()
    namespace = f"ns{char}"
    experiments = twins(char, "e{}x")
    variants = twins(char, "{}v")
    goals = twins(char, "g{}")
    # The twin goals and variants share their experiment's key prefix, so only the escaping
    # keeps their counters apart (twin experiments usually land in different registry shards,
    # which alone would keep their keys apart).
    # In every experiment, variant j has j visitors (uuids unique to the experiment and the
    # variant), and visitor i converts on goals i.. : every counter is non-zero, so any two
    # counters that shared a key would both read more than they should.
    for e, experiment in enumerate(experiments):
        for j, variant in enumerate(variants, start=1):
            for i in range(j):
                uuid = f"u{char}{e}.{j}.{i}"
                for event in [defaults.PARTICIPATE, *goals[i:]]:
                    response = track(client, experiment, variant, event, uuid, namespace=namespace)
                    assert response.status_code == 200

    def row(variant: str, goal: str) -> dict[str, Any]:
        j, k = variants.index(variant) + 1, goals.index(goal) + 1
        return {"label": variant, "successes": min(j, k), "trials": j}

    goal_rows = [
        {"goal": g, "results": [row(v, g) for v in sorted(variants)]} for g in sorted(goals)
    ]
    expected = dict.fromkeys(experiments, goal_rows)
    ns = urlencode({"namespace": namespace})

    def listed() -> dict[str, list[dict]]:
        response = client.get(f"/experiments?{ns}", headers=AUTH)
        assert response.status_code == 200
        found = response.get_json()[1:]
        assert all(e["counting"] == mode for e in found)
        by_name = {e["experiment"]: original(e["goals"]) for e in found}
        assert len(by_name) == len(found)
        return by_name

    assert listed() == expected
    for experiment in experiments:
        one = client.get(f"/experiments/{quote(experiment, safe='')}?{ns}", headers=AUTH)
        assert one.status_code == 200
        assert one.get_json()["experiment"] == experiment
        assert original(one.get_json()["goals"]) == goal_rows
    # Deleting one twin leaves the other two whole.
    deleted = client.delete(f"/experiments/{quote(experiments[0], safe='')}?{ns}", headers=AUTH)
    assert deleted.get_json()["deleted"] == experiments[0]
    del expected[experiments[0]]
    assert listed() == expected
