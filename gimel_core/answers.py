"""How Gimel answers over HTTP: JSON bodies, and the one mapping of exceptions to statuses.

Shared by the Flask app and the ``/track`` fast path, so a refusal reads the same on every
route: 400 with the field for bad input, 404 for an unknown experiment, 409 for a request
that contradicts what is stored, 422 for an event past a cap, 503 with ``Retry-After`` when
Redis is unavailable, never a bare 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException

from . import defaults
from .errors import (
    Conflict,
    InvalidBatch,
    InvalidFields,
    InvalidInput,
    Refused,
    StoreUnavailable,
    UnknownExperiment,
)

log = logging.getLogger("gimel")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # ASCII: a lone surrogate in a name cannot break it
    return encoded_response(json.dumps(body).encode(), status, headers)


def encoded_response(
    data: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer already encoded (as ``json.dumps`` does, ASCII)."""
    response = Response(data, status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def refusal(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers answering an exception."""
    if isinstance(exc, InvalidBatch):
        return 400, {"error": exc.message, "field": exc.field, "errors": exc.errors}, {}
    if isinstance(exc, InvalidFields):
        errors = [{"field": e.field, "error": e.message} for e in exc.errors]
        return 400, {"error": exc.message, "field": exc.field, "errors": errors}, {}
    if isinstance(exc, InvalidInput):
        return 400, {"error": exc.message, "field": exc.field}, {}
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return (
            503,
            {"error": "the event store is unavailable, retry later"},
            {"Retry-After": str(defaults.RETRY_AFTER)},
        )
    if isinstance(exc, Conflict):
        return 409, {"error": str(exc), **exc.details}, {}
    if isinstance(exc, Refused):
        return 422, {"error": str(exc), "field": exc.field}, {}
    if isinstance(exc, HTTPException):
        headers = dict(exc.get_headers())
        headers.pop("Content-Type", None)
        return exc.code or 500, {"error": exc.description or exc.name}, headers
    if isinstance(exc, UnknownExperiment):
        return 404, {"error": str(exc)}, {}
    log.error("unhandled error", exc_info=exc)
    return 500, {"error": "internal error"}, {}


def error_response(exc: Exception, headers: dict[str, str] | None = None) -> Response:
    status, body, extra = refusal(exc)
    return json_response(body, status, {**(headers or {}), **extra})
