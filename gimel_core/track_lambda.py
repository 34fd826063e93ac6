"""``GET /track`` on Lambda without serverless-wsgi: API Gateway's REST (v1) event in, its
answer out, exactly as serverless-wsgi and the WSGI app would give them.

serverless-wsgi turns every event into a WSGI request through werkzeug (headers, environ,
a Response run and read back), which cost more than counting the event. For a ``GET`` on a
tracking path this module builds only the environ :class:`~.track_endpoint.TrackEndpoint`
reads, the way serverless-wsgi builds it (header names, the last of repeated headers, the
query string re-encoded from the event's parameters, values passed through as UTF-8 read as
latin-1), and turns the endpoint's :class:`~.track_endpoint.Answer` into the dict
serverless-wsgi returns (``headers`` or ``multiValueHeaders`` as the event had them, a JSON
body as text). Every other event, and any event it cannot read as serverless-wsgi would
(a header that is not text, a body that is not text, a host or forwarded header that is not
UTF-8, a warm-up or non-REST event), goes on to serverless-wsgi:
:meth:`LambdaTrack.answer` returns None for it. tests/test_track_lambda.py holds both paths
to the same answers, byte for byte.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from flask import Flask
from serverless_wsgi import TEXT_MIME_TYPES, encode_query_string, get_body_bytes

from .track_endpoint import Answer, TrackEndpoint

_SKIPPED = ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")
_ENCODED = ("HTTP_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PROTO")
"""Headers whose value serverless-wsgi puts in the environ as UTF-8 read as latin-1 (the server
name and port, the URL scheme): text that is not UTF-8 (a lone surrogate) makes it refuse the
event, so this path leaves such an event to it."""
_DEFAULT_TYPE = ("Content-Type", "text/plain; charset=utf-8")
"""What werkzeug's Response adds to an answer that has no Content-Type."""


class LambdaTrack:
    """Answers ``GET`` events on the endpoint's tracking paths."""

    def __init__(self, app: Flask) -> None:
        endpoint = app.wsgi_app
        assert isinstance(endpoint, TrackEndpoint), "built by create_app"
        self.endpoint = endpoint
        # The replies of the answers that never change (counted, bot), by whether the event
        # had multiValueHeaders: built once, as _reply builds them.
        self._static = {id(endpoint.tracked), id(endpoint.bot)}
        # serverless-wsgi strips this prefix from paths; a Lambda's environment is set when
        # its container starts, so it is read once.
        self._base_path = os.environ.get("API_GATEWAY_BASE_PATH")
        self._replies: dict[tuple[int, bool], dict[str, Any]] = {}

    def answer(self, event: Any) -> dict[str, Any] | None:
        """The Lambda answer to ``event``, or None: not one this path answers."""
        environ = self._environ(event)
        if environ is None:
            return None
        answer = self.endpoint.respond(environ)
        if id(answer) not in self._static:
            return _reply(answer, event)
        kind = (id(answer), bool(event.get("multiValueHeaders")))
        reply = self._replies.get(kind)
        if reply is None:
            reply = self._replies[kind] = _reply(answer, event)
        if kind[1]:  # the caller's own, down to each header's list of values
            values = reply["multiValueHeaders"]
            return {**reply, "multiValueHeaders": {name: [*v] for name, v in values.items()}}
        return {**reply, "headers": dict(reply["headers"])}

    def _environ(self, event: Any) -> dict[str, Any] | None:
        if not isinstance(event, dict) or event.get("httpMethod") != "GET":
            return None
        context = event.get("requestContext", {})
        if event.get("version") is not None or event.get("requestPath") is not None:
            return None  # an HTTP API (v2) or a Lambda-integration event
        if event.get("source") in ("aws.events", "serverless-plugin-warmup"):
            return None
        if isinstance(context, dict) and context.get("elb"):
            return None  # an ALB event: its query is read otherwise
        path = event.get("path")
        if not isinstance(path, str) or self._base_path:
            return None
        path_info = _latin1(unquote(path.partition("?")[0]))
        if path_info not in self.endpoint.paths:
            return None
        headers = _headers(event)
        if headers is None:
            return None
        environ, content_type = headers
        body = event.get("body")
        body = get_body_bytes(event, body) if body else b""  # a GET's: none
        if not isinstance(body, bytes):
            return None  # serverless-wsgi cannot read it either: it refuses the event
        authorizer = context.get("authorizer") or {}
        environ |= {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path_info,
            "QUERY_STRING": _latin1(_query_string(event)),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": _latin1(content_type),
            "REMOTE_ADDR": _latin1(context.get("identity", {}).get("sourceIp", "")),
            "REMOTE_USER": _latin1(authorizer.get("principalId", "")),
        }
        return environ


def _headers(event: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The environ's ``HTTP_*`` entries (a repeated header: its last value) and the first
    Content-Type; None for headers werkzeug would not take as they are."""
    given = event.get("multiValueHeaders") or event["headers"] or {}
    if not isinstance(given, Mapping):
        return None
    environ: dict[str, Any] = {}
    content_type = None
    for name, values in given.items():
        known = _KEYS.get(name)
        if known is None:
            if not isinstance(name, str):
                return None
            key = "HTTP_" + name.upper().replace("-", "_")
            known = (key, key not in _SKIPPED, name.lower() == "content-type", key in _ENCODED)
            if len(_KEYS) < _KEYS_KEPT:
                _KEYS[name] = known
        if not isinstance(values, list | tuple):
            values = (values,)
        key, kept, typed, encoded = known
        for value in values:
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                return None
            if encoded and not value.isascii() and not _utf8(value):
                return None
        if values:
            if kept:
                environ[key] = values[-1]
            if typed and content_type is None:
                content_type = values[0]
    return environ, content_type or ""


_KEYS: dict[str, tuple[str, bool, bool, bool]] = {}
"""Header name -> its environ key, whether the environ keeps it there, whether it is the
Content-Type, whether serverless-wsgi encodes its value (:data:`_ENCODED`): for the names seen
first (most requests send the same)."""
_KEYS_KEPT = 256


_PLAIN = re.compile(r"[A-Za-z0-9_.~ =&-]*")
"""Text that ``urlencode`` (``quote_plus``) leaves as it is but for spaces, made ``+``, and
the ``=`` and ``&`` that join the pairs."""


def _query_string(event: dict[str, Any]) -> str:
    """The query string serverless-wsgi re-encodes from the event's parameters
    (``encode_query_string``); built directly when every name and value is plain text (the
    usual tracking call), where quoting only turns spaces into ``+``. One match over the
    joined pairs checks them all: a ``=`` or ``&`` in a name or value shows in the counts."""
    params = event.get("multiValueQueryStringParameters")
    if isinstance(params, dict) and params:
        pairs = []
        for name, values in params.items():
            if type(values) is not list or type(name) is not str:
                break
            for value in values:
                if type(value) is not str:
                    break
                pairs.append(f"{name}={value}")
            else:
                continue
            break
        else:
            query = "&".join(pairs)
            if (
                _PLAIN.fullmatch(query)
                and query.count("=") == len(pairs)
                and query.count("&") == len(pairs) - 1
            ):
                return query.replace(" ", "+")
    return str(encode_query_string(event))


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _latin1(value: Any) -> Any:
    """A text value as WSGI carries it: its UTF-8 bytes read as latin-1 (PEP 3333)."""
    if not isinstance(value, str) or value.isascii():  # ASCII: the same text
        return value
    return value.encode("utf-8").decode("latin1", "replace")


def _reply(answer: Answer, event: dict[str, Any]) -> dict[str, Any]:
    headers = list(answer.headers)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(_DEFAULT_TYPE)
    reply: dict[str, Any] = {"statusCode": answer.code}
    if event.get("multiValueHeaders"):
        reply["multiValueHeaders"] = {name: [value] for name, value in headers}
    else:
        reply["headers"] = dict(headers)
    if answer.body:
        content_type = next(value for name, value in headers if name.lower() == "content-type")
        mimetype = content_type.split(";")[0].strip().lower()
        encoded = any(name.lower() == "content-encoding" and value for name, value in headers)
        if (mimetype.startswith("text/") or mimetype in TEXT_MIME_TYPES) and not encoded:
            reply["body"] = answer.body.decode("utf-8", "replace")
            reply["isBase64Encoded"] = False
        else:
            reply["body"] = base64.b64encode(answer.body).decode("utf-8")
            reply["isBase64Encoded"] = True
    return reply
