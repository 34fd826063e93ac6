"""Tracking events: parsing Alephbet's query strings and validating every field.

Validation is strict and happens before anything touches Redis, so a refused event
writes nothing.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from . import defaults
from .errors import InvalidBatch, InvalidInput

FIELDS = ("experiment", "variant", "event", "uuid")
"""Fields every event must carry; ``namespace`` is optional."""

NUMBERS = ("value", "total", "covariate")
"""Optional numbers an event may carry: a value goal's amount, the visitor's running total on
that goal before it, and the visitor's pre-experiment covariate."""

TRACK_FIELDS = frozenset((*FIELDS, "namespace", *NUMBERS))
# A plain decimal's characters. Text of these only is one float() reads as a decimal, or
# refuses: no nan, inf, hex, underscores, spaces or non-ASCII digits, which it would all take.
_DECIMAL = "0123456789+-.eE"
# C0 and C1 control characters, DEL, and lone surrogates (which only JSON can smuggle in).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Invisible or look-alike: format characters (zero-width space U+200B, BOM U+FEFF, the bidi
# overrides such as U+202E), line and paragraph separators (U+2028, U+2029), and every space
# but the ordinary one. Two names that print the same must be the same name.
_INVISIBLE = frozenset(("Cf", "Zl", "Zp", "Zs"))


@dataclass(slots=True)
class Event:
    """One tracking event, never changed once built. Not ``frozen``: a frozen dataclass sets
    each field through ``object.__setattr__``, which made building one, once per event on the
    hot path, cost about five times as much."""

    namespace: str
    experiment: str
    variant: str
    event: str
    uuid: str
    value: float | None = None
    total: float = 0.0
    """The visitor's total on this goal before this event (value goals)."""
    covariate: float | None = None


def parse_query(raw: bytes, fields: frozenset[str] = TRACK_FIELDS) -> dict[str, str]:
    """Decode a form-encoded query string (``+`` for spaces), keeping only ``fields``.

    Unlike the usual parsers this refuses, rather than replaces, invalid UTF-8, and refuses
    a field given twice instead of silently picking one.
    """
    if b"%" not in raw:  # the usual call: nothing to unquote, so decode it whole
        try:
            text = raw.replace(b"+", b" ").decode("utf-8")
        except UnicodeDecodeError:
            pass  # each field's own answer, below
        else:
            found: dict[str, str] = {}
            for pair in text.split("&"):
                name, _, value = pair.partition("=")
                if name in fields:
                    if name in found:
                        raise InvalidInput(name, f"'{name}' is given more than once")
                    found[name] = value
            return found
    values: dict[str, str] = {}
    for part in raw.split(b"&"):
        name_raw, _, value_raw = part.partition(b"=")
        name = unquote_to_bytes(name_raw.replace(b"+", b" ")).decode("utf-8", "replace")
        if name not in fields:
            continue
        if name in values:
            raise InvalidInput(name, f"'{name}' is given more than once")
        try:
            values[name] = unquote_to_bytes(value_raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(name, f"'{name}' is not valid UTF-8") from None
    return values


def check_name(field: str, value: Any) -> str:
    """Validate one name or uuid; returns it in NFC or raises :class:`InvalidInput`.

    NFC makes a composed and a decomposed "café" one name, wherever names come in.
    """
    if type(value) is str and value.isascii() and value.isprintable():  # the usual name
        if 0 < len(value) <= defaults.MAX_NAME_LENGTH:  # ASCII with no control character
            return value
    if value is None:
        raise InvalidInput(field, f"'{field}' is required")
    if not isinstance(value, str):
        raise InvalidInput(field, f"'{field}' must be a string")
    if not value:
        raise InvalidInput(field, f"'{field}' must not be empty")
    if len(value) > 4 * defaults.MAX_NAME_LENGTH:  # before normalizing: a bounded cost
        raise InvalidInput(field, f"'{field}' is longer than {defaults.MAX_NAME_LENGTH} characters")
    if _FORBIDDEN.search(value):
        raise InvalidInput(field, f"'{field}' contains control characters")
    if not value.isascii():  # ASCII is NFC already and has no format or separator character
        value = unicodedata.normalize("NFC", value)
        if any(c != " " and unicodedata.category(c) in _INVISIBLE for c in value):
            raise InvalidInput(
                field, f"'{field}' contains format or separator characters (other than space)"
            )
    if len(value) > defaults.MAX_NAME_LENGTH:
        raise InvalidInput(field, f"'{field}' is longer than {defaults.MAX_NAME_LENGTH} characters")
    return value


def check_number(field: str, value: Any) -> float:
    """A finite decimal of magnitude at most ``defaults.MAX_VALUE``: a JSON number, or text
    in plain decimal syntax; else :class:`InvalidInput` naming the field."""
    if isinstance(value, str):
        if len(value) > _MAX_DIGITS:  # before reading it: a bounded cost
            raise InvalidInput(field, f"'{field}' must be at most {_MAX_DIGITS} characters long")
        try:
            if value.strip(_DECIMAL):  # a character no plain decimal has
                raise ValueError
            number = float(value)
        except ValueError:
            raise InvalidInput(field, f"'{field}' must be a decimal number, such as 12.5") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) <= defaults.MAX_VALUE else math.inf
    else:
        raise InvalidInput(field, f"'{field}' must be a number")
    if not abs(number) <= defaults.MAX_VALUE:  # also NaN, which JSON can carry
        raise InvalidInput(field, f"'{field}' must be a finite number from -{_MOST} to {_MOST}")
    return number


_MAX_DIGITS = 100
_MOST = f"{defaults.MAX_VALUE:g}"


def validate(values: Mapping[str, Any]) -> Event:
    """Build an :class:`Event` from decoded fields, refusing anything malformed."""
    namespace = values.get("namespace")
    value, total, covariate = values.get("value"), values.get("total"), values.get("covariate")
    names = (
        defaults.NAMESPACE if namespace is None else check_name("namespace", namespace),
        check_name("experiment", values.get("experiment")),
        check_name("variant", values.get("variant")),
        check_name("event", values.get("event")),
        check_name("uuid", values.get("uuid")),
    )
    if value is None and total is None and covariate is None:  # the usual event
        return Event(*names)
    if total is not None and value is None:
        raise InvalidInput("total", "'total' is the running total before a 'value': send both")
    return Event(
        *names,
        None if value is None else check_number("value", value),
        0.0 if total is None else check_number("total", total),
        None if covariate is None else check_number("covariate", covariate),
    )


def parse_batch(body: bytes, max_events: int) -> list[Event]:
    """A JSON event or array of events, validated all-or-nothing.

    Every bad index is reported with its field and reason, so a sender can fix them all
    at once; if any is bad, none of the batch is recorded.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput("body", "expected a JSON object or an array of them") from None
    items = data if isinstance(data, list) else [data]
    if len(items) > max_events:
        raise InvalidInput("body", f"a batch may carry at most {max_events} events")
    events: list[Event] = []
    errors: list[dict[str, object]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": index, "field": "event", "error": "expected a JSON object"})
            continue
        try:
            events.append(validate(item))
        except InvalidInput as exc:
            errors.append({"index": index, "field": exc.field, "error": exc.message})
    if errors:
        raise InvalidBatch(errors, len(items))
    return events
