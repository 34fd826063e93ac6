"""The HTTP surface behind the API key: results, plans, settings, reset, delete and the alerts'
delivery log; and the public dashboard, OpenAPI document and health check. ``/track`` is in
track_endpoint.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from functools import cache, wraps
from importlib import resources
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, request, url_for
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import PathConverter

from . import defaults, paging
from .answers import encoded_response, error_response, json_response
from .errors import InvalidInput, UnknownExperiment
from .events import check_name, parse_query
from .store import HealthProbe

if TYPE_CHECKING:
    from .experiments import Experiments

log = logging.getLogger("gimel")

bp = Blueprint("gimel", __name__)


def store() -> Experiments:
    return current_app.extensions["gimel"].experiments


def query(*fields: str) -> dict[str, str]:
    return parse_query(request.query_string, frozenset(fields))


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
            return json_response(
                {"error": "no API key is configured: set GIMEL_API_KEY to enable this endpoint"},
                403,
            )
        given = request.headers.get("x-api-key")
        if not given:
            return json_response({"error": "missing API key: send it in the x-api-key header"}, 401)
        # surrogatepass: a header can carry any lone surrogate (a Lambda event's JSON can),
        # and one that matches no key must be "wrong", not an encoding error.
        given_bytes = given.encode("utf-8", "surrogatepass")
        matches = [hmac.compare_digest(given_bytes, key.encode()) for key in configured]
        if not any(matches):
            return json_response({"error": "wrong API key"}, 403)
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
        response.headers["Access-Control-Allow-Methods"] = "GET, PUT, PATCH, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
    return response


@bp.get("/experiments")
@require_key
def experiments() -> Response:
    """One page: ``limit`` and ``cursor`` (``meta.next``), bounded in bytes (paging.py);
    ``view=summary`` gives each experiment's goal names instead of its goals."""
    values = query("namespace", "scope", "archived", "limit", "cursor", "view")
    namespace = namespace_of(values)
    scope = values.get("scope")
    archived = values.get("archived", "false").lower()
    if archived not in ("true", "false"):
        raise InvalidInput("archived", "'archived' must be true or false")
    view = values.get("view", "full")
    if view not in VIEWS:
        raise InvalidInput("view", "'view' must be full or summary")
    page = paging.parse(values)
    budget = paging.Budget(summary=view == "summary")
    if scope:
        names = [check_name("scope", name) for name in scope.split(",") if name]
        listing = store().scoped(namespace, names, scope, page, budget)
    else:
        listing = store().listing(namespace, archived == "true", page, budget)
    return encoded_response(listing.encode(view == "summary", budget.pieces))


VIEWS = ("full", "summary")
"""``GET /experiments?view=``: every goal's results, or only the goals' names."""


@bp.get("/experiments/<path:name>")
@require_key
def experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    return json_response(store().experiment(namespace, check_name("experiment", name)).to_json())


@bp.delete("/experiments/<path:name>")
@require_key
def delete_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    store().delete(namespace, check_name("experiment", name))
    return json_response({"deleted": name, "namespace": namespace})


def json_body() -> Any:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # silent covers ValueError only; deep nesting is bad input too
        body = None
    if body is None:
        raise InvalidInput("body", "expected a JSON object (Content-Type: application/json)")
    return body


@bp.put("/experiments/<path:name>")
@require_key
def declare_experiment(name: str) -> Response:
    """Declare (or update) the experiment's plan; 201 when this creates the experiment.
    ``dry_run=true`` answers the same and writes nothing; ``drop_undeclared=true`` removes
    what public traffic counted outside the plan of an experiment no plan declared yet."""
    values = query("namespace", "dry_run", "drop_undeclared")
    namespace = namespace_of(values)
    flags = {}
    for flag in ("dry_run", "drop_undeclared"):
        flags[flag] = values.get(flag, "false").lower()
        if flags[flag] not in ("true", "false"):
            raise InvalidInput(flag, f"'{flag}' must be true or false")
    name = check_name("experiment", name)
    found, created = store().declare(
        namespace,
        name,
        json_body(),
        flags["dry_run"] == "true",
        drop_undeclared=flags["drop_undeclared"] == "true",
    )
    return json_response(found.to_json(), 201 if created else 200)


@bp.patch("/experiments/<path:name>")
@require_key
def update_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    body = json_body()
    name = check_name("experiment", name)  # in NFC, as it is stored
    store().update_settings(namespace, name, body)
    return json_response(store().experiment(namespace, name).to_json())


@bp.get("/experiments/<path:name>/history")
@require_key
def experiment_history(name: str) -> Response:
    """Day by day. An experiment whose own name ends in "/history" is read with ?scope=."""
    namespace = namespace_of(query("namespace"))
    return encoded_response(store().history(namespace, check_name("experiment", name)).encode())


@bp.get("/experiments/<path:name>/alerts")
@require_key
def experiment_alerts(name: str) -> Response:
    """What the watcher announced and its latest delivery attempts. Destinations appear as
    the watcher recorded them (by kind, or redacted to scheme and host): never a secret."""
    from .watch import delivery_log  # here: a tracking container never loads the checks

    namespace = namespace_of(query("namespace"))
    name = check_name("experiment", name)
    found = delivery_log(store(), namespace, name)
    if found is None:
        raise UnknownExperiment(name)
    return json_response(found)


@bp.post("/experiments/<path:name>/reset")
@require_key
def reset_experiment(name: str) -> Response:
    namespace = namespace_of(query("namespace"))
    name = check_name("experiment", name)
    store().reset(namespace, name)
    return json_response(store().experiment(namespace, name).to_json())


@bp.delete("/delete")
@require_key
def delete() -> Response:
    values = query("namespace", "experiment")
    name = check_name("experiment", values.get("experiment"))
    namespace = namespace_of(values)
    store().delete(namespace, name)
    return json_response({"deleted": name, "namespace": namespace})


@bp.get("/health")
def health() -> Response:
    """200 "ok"; 200 "degraded" with short problems while writes are taken but data may be
    lost (an evicting policy, memory nearly full); 503 naming why Redis refuses writes.

    A degraded instance stays in a load balancer's rotation: every instance shares the one
    Redis, so taking them out would only add an outage; what a team must fix, it reads here
    and in `gimel check`. Public: only fixed phrases, no figures, hosts or names."""
    probe = current_app.extensions.get("gimel_health")
    if probe is None:
        probe = current_app.extensions.setdefault("gimel_health", HealthProbe(store().client))
    state = probe.read()
    if state.refuses:
        log.warning("health: Redis refuses writes: %s", state.refuses)
        return json_response(
            {"error": f"Redis refuses writes: {state.refuses}"},
            503,
            {"Retry-After": str(defaults.RETRY_AFTER)},
        )
    if state.problems:
        return json_response({"status": "degraded", "problems": list(state.problems)})
    return json_response({"status": "ok"})


# -- dashboard (public page; it asks for the key and calls the API with it) -----------------

# Any .js, .css or .html file of the dashboard folder, by a plain name (no dot-file, no
# subfolder, no ".."); the extension gives the content type. The pinned libraries' release
# files live apart in dashboard/vendor/ but are served at the same level: API Gateway's
# dashboard/{asset} route matches one path segment only. Names are short: a longer one is
# not looked up (the file system would refuse it, ENAMETOOLONG, past 255 bytes).
DASHBOARD_ASSET = re.compile(r"[a-z][a-z0-9-]{0,63}\.(js|css|html)")
DASHBOARD_FOLDERS = (("dashboard",), ("dashboard", "vendor"))
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
DASHBOARD_VERSION = re.compile(r"[0-9a-f]{12}")
KEPT_FOR_GOOD = "public, max-age=31536000, immutable"
"""A file under the current version: it never changes (another release, another version)."""
VERSION_MARK = "{version}"
"""Where index.html names the version its files are asked for under."""


@bp.get("/")
def root() -> Response:
    """The first URL `gimel serve` prints: a person opening it wants the dashboard. Every
    client is sent there alike (an API client calls the documented paths, not this one)."""
    return Response(status=302, headers={"Location": url_for(".dashboard")})


@bp.get("/dashboard")
@bp.get("/dashboard/<asset>")
def dashboard(asset: str = "index.html") -> Response:
    """The page, which asks for every other file under the version (:func:`versioned`), and
    each file by its name alone: always asked for again (``no-cache``), a 304 when unchanged."""
    data = _dashboard_file(asset)
    if asset == "index.html":
        data = data.replace(VERSION_MARK.encode(), dashboard_version().encode())
    return _dashboard_response(data, asset)


@bp.get("/dashboard/v/<version>/<asset>")
def versioned(version: str, asset: str) -> Response:
    """A file of the page under the dashboard's version: kept by the browser for good, so that
    opening the dashboard again asks only for the page (on Lambda: one invocation, not one
    per file). Under another version (a page opened before a release), the file as it is now,
    asked for again each time like the page."""
    if not DASHBOARD_VERSION.fullmatch(version) or asset.endswith(".html"):
        raise NotFound()
    response = _dashboard_response(_dashboard_file(asset), asset)
    if version == dashboard_version():
        response.headers["Cache-Control"] = KEPT_FOR_GOOD
    return response


def _dashboard_file(asset: str) -> bytes:
    if not DASHBOARD_ASSET.fullmatch(asset):
        raise NotFound()
    package = resources.files("gimel_core")
    files = (package.joinpath(*folder, asset) for folder in DASHBOARD_FOLDERS)
    file = next((f for f in files if f.is_file()), None)
    if file is None:
        raise NotFound()
    return file.read_bytes()


def _dashboard_response(data: bytes, asset: str) -> Response:
    content_type = DASHBOARD_TYPES[asset.rpartition(".")[2]]
    response = Response(data, 200, content_type=content_type, headers=DASHBOARD_HEADERS)
    # An unchanged file asked for again with its ETag is a 304 without a body.
    response.add_etag()
    response.make_conditional(request)
    return response


@cache
def dashboard_version() -> str:
    """The version of the dashboard's files this process serves (they ship with it)."""
    package = resources.files("gimel_core")
    files = [
        (file.name, file.read_bytes())
        for folder in DASHBOARD_FOLDERS
        for file in package.joinpath(*folder).iterdir()
        if DASHBOARD_ASSET.fullmatch(file.name)
    ]
    return version_of(files)


def version_of(files: list[tuple[str, bytes]]) -> str:
    """12 hex digits of a hash of every file's name and bytes: any change, another version."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(b"%d %b %d\n%b" % (len(name), name.encode(), len(data), data))
    return digest.hexdigest()[:12]


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
        return error_response(exc)
