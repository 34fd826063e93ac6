"""The HTTP surface: tracking (public) and results (behind the API key)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from . import defaults
from .counters import Counters
from .errors import InvalidEvent, StoreUnavailable, UnknownExperiment
from .events import check_name, parse_query, validate

log = logging.getLogger("gimel")
bp = Blueprint("gimel", __name__)

TRACK_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
    "Cache-Control": "no-store",
}
_TRACKED = b'{"ok":true}'


def counters() -> Counters:
    return current_app.extensions["gimel"]


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def query(*fields: str) -> dict[str, str]:
    return parse_query(request.query_string, frozenset(fields))


# -- tracking (public, CORS-open) ----------------------------------------------------------


@bp.route("/track", methods=["GET", "OPTIONS"])
def track() -> Response:
    if request.method == "OPTIONS":
        return Response(b"", 204, headers=TRACK_HEADERS)
    counters().track(validate(query("namespace", "experiment", "variant", "event", "uuid")))
    return Response(_TRACKED, 200, headers=TRACK_HEADERS, mimetype="application/json")


# -- results (API key) ---------------------------------------------------------------------


def require_key(view: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Response:
        configured: tuple[str, ...] = current_app.config["GIMEL"].api_keys
        if not configured:
            return answer(
                {"error": "no API key is configured: set GIMEL_API_KEY to enable this endpoint"},
                403,
            )
        given = request.headers.get("x-api-key")
        if not given:
            return answer({"error": "missing API key: send it in the x-api-key header"}, 401)
        given_bytes = given.encode("utf-8", "surrogateescape")
        matches = [hmac.compare_digest(given_bytes, key.encode()) for key in configured]
        if not any(matches):
            return answer({"error": "wrong API key"}, 403)
        return view(*args, **kwargs)

    return checked


def namespace_of(values: dict[str, str]) -> str:
    ns = values.get("namespace")
    return defaults.NAMESPACE if ns is None else check_name("namespace", ns)


@bp.get("/experiments")
@require_key
def experiments() -> Response:
    values = query("namespace", "scope")
    namespace = namespace_of(values)
    scope = values.get("scope")
    if scope:
        names = [check_name("scope", name) for name in scope.split(",") if name]
    else:
        names = counters().experiment_names(namespace)
    return answer([{"meta": {"scope": scope}}, *counters().results(namespace, names)])


@bp.get("/experiments/<path:name>")
@require_key
def experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    return answer(counters().experiment(namespace, check_name("experiment", name)))


@bp.delete("/experiments/<path:name>")
@require_key
def delete_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    counters().delete(namespace, check_name("experiment", name))
    return answer({"deleted": name, "namespace": namespace})


@bp.delete("/delete")
@require_key
def delete() -> Response:
    values = query("namespace", "experiment")
    name = check_name("experiment", values.get("experiment"))
    namespace = namespace_of(values)
    counters().delete(namespace, name)
    return answer({"deleted": name, "namespace": namespace})


@bp.get("/health")
def health() -> Response:
    counters().ping()
    return answer({"status": "ok"})


# -- errors: always JSON, never a bare 500 -------------------------------------------------


def register_errors(app: Flask) -> None:
    def cors(headers: dict[str, str]) -> dict[str, str]:
        # The browser must be able to read a refusal from /track, or it cannot tell why.
        return {**headers, **TRACK_HEADERS} if request.path == "/track" else headers

    @app.errorhandler(InvalidEvent)
    def invalid(exc: InvalidEvent) -> Response:
        return answer({"error": exc.message, "field": exc.field}, 400, cors({}))

    @app.errorhandler(StoreUnavailable)
    def store_down(exc: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", exc)
        return answer(
            {"error": "the event store is unavailable, retry later"},
            503,
            cors({"Retry-After": str(defaults.RETRY_AFTER)}),
        )

    @app.errorhandler(UnknownExperiment)
    def unknown(exc: UnknownExperiment) -> Response:
        return answer({"error": f"no experiment named {exc.args[0]!r} in this namespace"}, 404)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        headers = dict(exc.get_response().headers)
        headers.pop("Content-Type", None)
        headers.pop("Content-Length", None)
        return answer({"error": exc.description}, exc.code or 500, cors(headers))

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        log.exception("unhandled error")
        return answer({"error": "internal error"}, 500)
