"""The HTTP surface: tracking (public) and results (behind the API key)."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from functools import wraps
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    RequestURITooLarge,
)
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import PathConverter

from . import defaults
from .config import Config
from .counters import Counters
from .errors import InvalidBatch, InvalidInput, Refused, StoreUnavailable, UnknownExperiment
from .events import check_name, parse_batch, parse_query, validate

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
    data = json.dumps(body).encode()  # ASCII: a lone surrogate in a name cannot break it
    response = Response(data, status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def query(*fields: str) -> dict[str, str]:
    return parse_query(request.query_string, frozenset(fields))


# -- tracking (public, CORS-open) ----------------------------------------------------------


class TrackEndpoint:
    """WSGI middleware answering ``GET``/``OPTIONS`` on the tracking paths before Flask.

    This is the one request that runs per visitor event, so it skips Flask's per-request
    machinery (context push, routing, sessions), which cost more than the Redis call itself.
    Every other request goes on to the Flask app.
    """

    def __init__(self, wsgi_app: Any, counters: Counters, config: Config) -> None:
        self.next = wsgi_app
        self.counters = counters
        self.paths = frozenset(config.track_paths)
        self.max_events = config.batch_max_events
        self.max_bytes = config.batch_max_bytes
        self.bots = re.compile(config.bot_pattern, re.IGNORECASE) if config.bot_pattern else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") not in self.paths:
            return self.next(environ, start_response)
        method = environ.get("REQUEST_METHOD")
        if method == "OPTIONS":
            start_response("204 No Content", _TRACK_HEADER_LIST)
            return [b""]
        try:
            if method == "GET":
                event = validate(parse_query(_raw_query(environ)))
                if self._bot(environ, 1):
                    return _json_reply(start_response, 200, {"ok": True, "counted": False}, {})
                self.counters.track(event)
                start_response("200 OK", _TRACKED_HEADER_LIST)
                return [_TRACKED]
            if method == "POST":
                events = parse_batch(_body(environ, self.max_bytes), self.max_events)
                if self._bot(environ, len(events)):
                    return _json_reply(
                        start_response, 200, {"accepted": 0, "filtered": len(events)}, {}
                    )
                tally = self.counters.track_many(events)
                body: dict[str, Any] = {"accepted": tally.counted}
                if tally.refused:
                    body["dropped"] = [{"field": r.field, "error": str(r)} for r in tally.refused]
                return _json_reply(start_response, 200, body, {})
            raise MethodNotAllowed(valid_methods=["GET", "POST", "OPTIONS"])
        except Exception as exc:  # every failure becomes a JSON answer, never a traceback
            return _json_reply(start_response, *refusal(exc))

    def _bot(self, environ: dict[str, Any], events: int) -> bool:
        """Requests from known bots are answered 200 (so they stop) and only tallied."""
        agent = environ.get("HTTP_USER_AGENT", "")
        if self.bots is None or not agent or not self.bots.search(agent):
            return False
        with contextlib.suppress(StoreUnavailable):
            self.counters.count_filtered(events)
        return True


def _json_reply(
    start_response: Callable[..., Any], status: int, body: Any, headers: dict[str, str]
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {HTTP_STATUS_CODES[status]}",
        [
            *_TRACK_HEADER_LIST,
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *headers.items(),
        ],
    )
    return [data]


def _body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all."""
    try:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("body", "invalid Content-Length") from None
    if declared > limit:
        raise RequestEntityTooLarge(f"a batch may carry at most {limit} bytes")
    data: bytes = environ["wsgi.input"].read(min(declared, limit + 1) if declared else limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge(f"a batch may carry at most {limit} bytes")
    return data


def _raw_query(environ: dict[str, Any]) -> bytes:
    # WSGI hands over the raw query bytes as a latin-1 "native string" (PEP 3333).
    query_string: str = environ.get("QUERY_STRING", "")
    if len(query_string) > defaults.MAX_QUERY_BYTES:
        raise RequestURITooLarge(
            f"the query string is longer than {defaults.MAX_QUERY_BYTES} bytes"
        )
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:  # a server that decoded it as UTF-8 already
        return query_string.encode("utf-8", "surrogateescape")


_TRACK_HEADER_LIST = list(TRACK_HEADERS.items())
_TRACKED_HEADER_LIST = [
    *_TRACK_HEADER_LIST,
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(_TRACKED))),
]


def refusal(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers answering an exception; shared by Flask and the fast path."""
    if isinstance(exc, InvalidBatch):
        return 400, {"error": exc.message, "field": exc.field, "errors": exc.errors}, {}
    if isinstance(exc, InvalidInput):
        return 400, {"error": exc.message, "field": exc.field}, {}
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return (
            503,
            {"error": "the event store is unavailable, retry later"},
            {"Retry-After": str(defaults.RETRY_AFTER)},
        )
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


class NameConverter(PathConverter):
    """``<path:name>`` for experiment names: any text, including a leading ``/``."""

    regex = ".+?"
    part_isolating = False


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


@bp.after_app_request
def data_cors(response: Response) -> Response:
    """Data endpoints are readable cross-origin only by the origins in GIMEL_CORS_ORIGINS."""
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["GIMEL"].cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "x-api-key, content-type"
        response.headers["Access-Control-Allow-Methods"] = "GET, PATCH, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
    return response


@bp.get("/experiments")
@require_key
def experiments() -> Response:
    values = query("namespace", "scope", "archived")
    namespace = namespace_of(values)
    scope = values.get("scope")
    archived = values.get("archived", "false").lower()
    if archived not in ("true", "false"):
        raise InvalidInput("archived", "'archived' must be true or false")
    if scope:
        names = [check_name("scope", name) for name in scope.split(",") if name]
        found = counters().results(namespace, names)
        abuse = counters().abuse_counts()
    else:
        found, abuse = counters().listing(namespace, archived=archived == "true")
    return answer([{"meta": {"scope": scope, **abuse}}, *found])


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


@bp.patch("/experiments/<path:name>")
@require_key
def update_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("body", "expected a JSON object (Content-Type: application/json)")
    counters().update_settings(namespace, check_name("experiment", name), body)
    return answer(counters().experiment(namespace, name))


@bp.post("/experiments/<path:name>/reset")
@require_key
def reset_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    counters().reset(namespace, check_name("experiment", name))
    return answer(counters().experiment(namespace, name))


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


# -- dashboard (public page; it asks for the key and calls the API with it) -----------------

# Any .js, .css or .html file of the dashboard folder, by a plain name (no dot-file, no
# subfolder, no ".."); the extension gives the content type.
DASHBOARD_ASSET = re.compile(r"[a-z][a-z0-9-]*\.(js|css|html)")
DASHBOARD_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
DASHBOARD_HEADERS = {
    # Everything comes from this origin; nothing inline, no third-party host, no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@bp.get("/dashboard")
@bp.get("/dashboard/<asset>")
def dashboard(asset: str = "index.html") -> Response:
    match = DASHBOARD_ASSET.fullmatch(asset)
    file = resources.files("gimel_core").joinpath("dashboard", asset)
    if not match or not file.is_file():
        raise NotFound()
    content_type = DASHBOARD_TYPES[match[1]]
    return Response(file.read_bytes(), 200, content_type=content_type, headers=DASHBOARD_HEADERS)


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API's contract (OpenAPI 3), kept true by tests/test_openapi.py."""
    body = resources.files("gimel_core").joinpath("openapi.json").read_bytes()
    return Response(
        body, 200, content_type="application/json", headers={"Cache-Control": "no-cache"}
    )


# -- Lambda: events that are not API Gateway HTTP events ----------------------------------


def malformed_event(event: Any) -> dict[str, Any]:
    """The answer to an event serverless-wsgi could not turn into a request.

    A test event typed into the Lambda console, a mis-wired trigger or a truncated payload
    fails before the app is reached; it still gets a well-formed HTTP answer.
    """
    log.warning("not an API Gateway HTTP event: %s", type(event).__name__)
    return {
        "statusCode": 400,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps({"error": "not an API Gateway HTTP event"}),
        "isBase64Encoded": False,
    }


# -- errors: always JSON, never a bare 500 -------------------------------------------------


def register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Response:
        status, body, headers = refusal(exc)
        return answer(body, status, headers)
