"""read.lua: one experiment whole, in one call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .. import keys
from .runner import Call, prepacked


@dataclass(frozen=True, slots=True)
class Stored:
    """One experiment as read.lua returns it."""

    meta: dict[str, str]
    variants: tuple[str, ...]
    goals: tuple[str, ...]
    history: dict[str, str]
    """UTC day number -> the JSON snapshot of that day."""
    counts: dict[str, float]
    """counts field (``keys.counts_field``) -> count, an int; or a sum's field
    (``keys.moment_field``, exact mode) -> the sum, a float."""


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _number(field: str, value: str | int) -> float:
    """A count is an int; a sum (its field has a third ``:``-part) a float."""
    return float(value) if field.count(":") > 1 else int(value)


def stored(reply: bytes) -> Stored:
    """A reply of :func:`read`, parsed."""
    # Names are valid UTF-8 (checked where they come in); surrogateescape keeps anything
    # older readable rather than failing the whole listing.
    meta, variants, goals, history, counts = (
        item or [] for item in json.loads(reply.decode("utf-8", "surrogateescape"))
    )
    return Stored(
        meta=_pairs(meta),
        variants=tuple(sorted(variants)),
        goals=tuple(sorted(goals)),
        history=_pairs(history),
        counts={k: _number(k, v) for k, v in _pairs(counts).items()},
    )


@lru_cache(maxsize=4_096)
def read(namespace: str, experiment: str) -> Call[bytes]:
    """Everything results and history are computed from, in one call: the reply as it came
    (one JSON string; :func:`stored` parses it), so that it can also key a cache. The same
    for every read of an experiment: built and packed once per process (a dashboard's
    refresh reads every experiment of a page)."""
    return prepacked(
        Call(
            "read",
            [
                keys.meta(namespace, experiment),
                keys.variants(namespace, experiment),
                keys.goals(namespace, experiment),
                keys.history(namespace, experiment),
                keys.hll_index(namespace, experiment),
                keys.counts(namespace, experiment),
            ],
            [],
            bytes,
        )
    )
