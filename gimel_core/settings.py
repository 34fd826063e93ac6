"""Experiment settings a team sets through ``PATCH /experiments/<name>``: validated here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import defaults, plans
from .errors import InvalidInput
from .events import check_name
from .plans import parse_description, parse_weights
from .results import Settings
from .storage.schema import Meta
from .vocabulary import Analysis

FIELDS = ("control", "weights", "description", "archived", "analysis", "sequential_tuning")
MAX_TUNING = 1_000_000_000


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
        weights = body["weights"]
        fields[Meta.WEIGHTS] = "" if weights is None else json.dumps(parse_weights(weights, known))
    if "description" in body:
        fields[Meta.DESCRIPTION] = parse_description(body["description"]) or ""
    if "archived" in body:
        if not isinstance(body["archived"], bool):
            raise InvalidInput("archived", "must be true or false")
        fields[Meta.ARCHIVED] = "1" if body["archived"] else ""
    if "analysis" in body:
        fields[Meta.ANALYSIS] = plans.parse_analysis(body["analysis"])
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


def stored(meta: dict[str, str]) -> Settings:
    """The settings recorded in an experiment's meta hash."""
    return Settings(
        control=meta.get(Meta.CONTROL) or None,
        weights=json.loads(meta[Meta.WEIGHTS]) if meta.get(Meta.WEIGHTS) else None,
        description=meta.get(Meta.DESCRIPTION) or None,
        archived=bool(meta.get(Meta.ARCHIVED)),
        analysis=Analysis(meta.get(Meta.ANALYSIS) or defaults.ANALYSIS),
        sequential_tuning=int(meta.get(Meta.SEQUENTIAL_TUNING) or defaults.SEQUENTIAL_TUNING),
        plan=plans.decode(meta[Meta.PLAN]) if meta.get(Meta.PLAN) else None,
    )
