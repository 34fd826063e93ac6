"""Experiment settings a team sets through ``PATCH /experiments/<name>``: validated here."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from . import defaults
from .errors import InvalidInput
from .events import check_name
from .results import Settings
from .scripts import Meta

FIELDS = ("control", "weights", "description", "archived", "analysis", "sequential_tuning")
MAX_TUNING = 1_000_000_000
MAX_DESCRIPTION = 1000
# Control characters other than tab and newline, and lone surrogates (JSON can carry them).
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def parse(body: Any, variants: Iterable[str]) -> dict[str, str]:
    """Check a settings object against the experiment's variants; returns meta-hash fields.

    ``null`` clears a setting (stored as an empty value, which the script deletes).
    """
    if not isinstance(body, dict) or not body:
        raise InvalidInput("body", f"expected a JSON object with some of: {', '.join(FIELDS)}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(
            unknown[0], f"unknown setting {unknown[0]!r}; known: {', '.join(FIELDS)}"
        )
    known = set(variants)
    fields: dict[str, str] = {}
    if "control" in body:
        control = body["control"]
        if control is not None:
            check_name("control", control)
            if control not in known:
                raise InvalidInput("control", f"{control!r} is not a variant of this experiment")
        fields[Meta.CONTROL] = control or ""
    if "weights" in body:
        fields[Meta.WEIGHTS] = (
            "" if body["weights"] is None else json.dumps(_weights(body["weights"], known))
        )
    if "description" in body:
        description = body["description"]
        if description is not None and (
            not isinstance(description, str)
            or len(description) > MAX_DESCRIPTION
            or _FORBIDDEN.search(description)
        ):
            raise InvalidInput(
                "description",
                f"must be text of at most {MAX_DESCRIPTION} characters, without control characters",
            )
        fields[Meta.DESCRIPTION] = description or ""
    if "archived" in body:
        if not isinstance(body["archived"], bool):
            raise InvalidInput("archived", "must be true or false")
        fields[Meta.ARCHIVED] = "1" if body["archived"] else ""
    if "analysis" in body:
        if body["analysis"] not in defaults.ANALYSES:
            raise InvalidInput("analysis", f"must be one of: {', '.join(defaults.ANALYSES)}")
        fields[Meta.ANALYSIS] = body["analysis"]
    if "sequential_tuning" in body:
        tuning = body["sequential_tuning"]
        if tuning is not None and (
            isinstance(tuning, bool) or not isinstance(tuning, int) or not 1 <= tuning <= MAX_TUNING
        ):
            raise InvalidInput(
                "sequential_tuning",
                f"must be a whole number of participants from 1 to {MAX_TUNING} (N*; default "
                f"{defaults.SEQUENTIAL_TUNING}), or null for the default",
            )
        fields[Meta.SEQUENTIAL_TUNING] = "" if tuning is None else str(tuning)
    return fields


def _weights(weights: Any, known: set[str]) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise InvalidInput(
            "weights", 'expected an object of variant: weight, e.g. {"a": 1, "b": 1}'
        )
    missing = sorted(known - set(weights))
    if missing:
        raise InvalidInput("weights", f"no weight for variant {missing[0]!r}")
    parsed: dict[str, float] = {}
    for variant, weight in weights.items():
        if variant not in known:
            raise InvalidInput("weights", f"{variant!r} is not a variant of this experiment")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidInput("weights", f"weight of {variant!r} must be a number")
        try:
            value = float(weight)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise InvalidInput("weights", f"weight of {variant!r} must be zero or positive")
        parsed[variant] = value
    if not any(parsed.values()):
        raise InvalidInput("weights", "at least one weight must be positive")
    if not math.isfinite(sum(parsed.values())):
        raise InvalidInput("weights", "weights are too large: use relative sizes like 1 and 3")
    return parsed


def stored(meta: dict[str, str]) -> Settings:
    """The settings recorded in an experiment's meta hash."""
    return Settings(
        control=meta.get(Meta.CONTROL) or None,
        weights=json.loads(meta[Meta.WEIGHTS]) if meta.get(Meta.WEIGHTS) else None,
        description=meta.get(Meta.DESCRIPTION) or None,
        archived=bool(meta.get(Meta.ARCHIVED)),
        # Experiments created before sequential analysis existed keep the fixed horizon.
        analysis=meta.get(Meta.ANALYSIS) or "fixed",
        sequential_tuning=int(meta.get(Meta.SEQUENTIAL_TUNING) or defaults.SEQUENTIAL_TUNING),
    )
