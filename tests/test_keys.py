"""The key layout: injective for any names, one cluster slot per experiment."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from gimel_core import keys

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
