"""The Lambda handler's own ``GET /track`` path answers every event exactly as serverless-wsgi
and the WSGI app do: status, headers, body and isBase64Encoded, byte for byte."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import serverless_wsgi
from hypothesis import given
from hypothesis import strategies as st

from conftest import API_KEY
from gimel_core.api import malformed_event
from gimel_core.track_lambda import _query_string

pytestmark = pytest.mark.single_redis  # HTTP details, not storage

TEMPLATE = json.loads((Path(__file__).parent / "events" / "track_participate.json").read_text())
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[ModuleType]:
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("GIMEL_TRACK_PATHS", "collect")
    monkeypatch.setenv("GIMEL_COUNTING", "hll")
    sys.modules.pop("handler", None)
    yield importlib.import_module("handler")
    sys.modules.pop("handler", None)


def event(
    query: dict[str, list[str]] | None = None,
    headers: dict[str, list[str]] | None = None,
    single: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A recorded GET /track with its query (multi-value, as API Gateway sends it) or headers
    replaced; ``single``: without ``multiValueHeaders`` (an older or hand-written event)."""
    built = copy.deepcopy(TEMPLATE)
    if query is not None:
        built["multiValueQueryStringParameters"] = query
        built["queryStringParameters"] = {k: v[-1] for k, v in query.items()} if query else None
    if headers is not None:
        built["multiValueHeaders"] = headers
        built["headers"] = {k: v[-1] for k, v in headers.items()}
    if single:
        del built["multiValueHeaders"]
    built.update(fields)
    return built


def good(uuid: str, **extra: str) -> dict[str, list[str]]:
    fields = {"experiment": "lambda", "variant": "a", "event": "participate", "uuid": uuid}
    return {k: [v] for k, v in {**fields, **extra}.items()}


HEADERS = TEMPLATE["multiValueHeaders"]


def events() -> list[tuple[str, dict[str, Any], bool]]:
    """(what, event, whether the handler's own path answers it)."""
    context = TEMPLATE["requestContext"]
    return [
        ("counted", event(good("u1")), True),
        ("counted, a duplicate", event(good("u1")), True),
        ("single-value headers", event(good("u2"), single=True), True),
        ("the extra track path", event(good("u3"), path="/collect"), True),
        ("a percent-encoded path", event(good("u4"), path="/tr%61ck"), True),
        ("a name in UTF-8", event(good("u5", variant="café ☕")), True),
        ("missing uuid", event({k: v for k, v in good("u").items() if k != "uuid"}), True),
        ("no query at all", event({}), True),
        ("a control character", event(good("u\x01")), True),
        ("too long a name", event(good("u" * 300)), True),
        ("a field given twice", event({**good("u6"), "uuid": ["x", "y"]}), True),
        ("an oversized query", event(good("u7", event="e" * 9000)), True),
        ("a bad value", event(good("u8", event="buy", value="12,5")), True),
        ("a value off plan", event(good("u9", event="buy", value="12.5")), True),
        ("a bot", event(good("u10"), {**HEADERS, "User-Agent": [BOT]}), True),
        ("a bot, repeated header", event(good("u11"), {**HEADERS, "User-Agent": ["x", BOT]}), True),
        ("a bot, single headers", event(good("u12"), {**HEADERS, "User-Agent": [BOT]}, True), True),
        (
            "no origin",
            event(good("u13"), {k: v for k, v in HEADERS.items() if k != "Origin"}),
            True,
        ),
        (
            "another origin",
            event(good("u14"), {**HEADERS, "Origin": ["http://evil.example"]}),
            True,
        ),
        (
            "lower-case headers",
            event(good("u15"), {k.lower(): v for k, v in HEADERS.items()}),
            True,
        ),
        ("the API key", event(good("u16"), {**HEADERS, "X-Api-Key": [API_KEY]}), True),
        ("two forwarded-for", event(good("u17"), {**HEADERS, "X-Forwarded-For": ["a", "b"]}), True),
        ("a base64 body", event(good("u18"), body="e30=", isBase64Encoded=True), True),
        ("a text body", event(good("u19"), body="{}"), True),
        ("no identity", event(good("u20"), requestContext={**context, "identity": {}}), True),
        (
            "an IPv6 source",
            event(good("u21"), requestContext={**context, "identity": {"sourceIp": "2001:db8::1"}}),
            True,
        ),
        ("no headers at all", event(good("u22"), headers={}, single=True), True),
        # Not this path's: serverless-wsgi answers them, as before.
        ("a bad base64 body", event(good("u23"), body="%%%", isBase64Encoded=True), True),
        ("a header not text", event(good("u24"), {**HEADERS, "X-Count": [3]}), False),
        ("a newline in a header", event(good("u25"), {**HEADERS, "X-A": ["a\nb"]}), False),
        ("a body not text", event(good("u33"), body=["x"]), False),
        ("a body an object", event(good("u34"), body={"a": 1}), False),
        # serverless-wsgi encodes these as UTF-8: a lone surrogate makes it refuse the event.
        ("a lone surrogate in Host", event(good("u35"), {**HEADERS, "Host": ["a\ud800"]}), False),
        (
            "a lone surrogate in a forwarded port",
            event(good("u36"), {**HEADERS, "x-forwarded-port": ["4\udc00"]}),
            False,
        ),
        (
            "a lone surrogate in a forwarded scheme",
            event(good("u37"), {**HEADERS, "X-Forwarded-Proto": ["\ud83d"]}, True),
            False,
        ),
        ("a lone surrogate elsewhere", event(good("u38"), {**HEADERS, "X-A": ["\ud800"]}), True),
        ("UTF-8 in Host", event(good("u39"), {**HEADERS, "Host": ["café.example"]}), True),
        ("preflight", event(good("u26"), httpMethod="OPTIONS"), False),
        (
            "a batch",
            event(
                {},
                httpMethod="POST",
                body=json.dumps(
                    [
                        {
                            "experiment": "lambda",
                            "variant": "a",
                            "event": "participate",
                            "uuid": "u27",
                        }
                    ]
                ),
            ),
            False,
        ),
        ("another path", event(good("u28"), path="/health"), False),
        ("HTTP API (v2)", event(good("u29"), version="2.0"), False),
        ("not an HTTP event", {"hello": "world"}, False),
        (
            "no headers key",
            {k: v for k, v in event(good("u30"), single=True).items() if k != "headers"},
            True,
        ),
        ("a null request context", event(good("u31"), requestContext=None), True),
        (
            "a content type, twice",
            event(
                good("u32"), {**HEADERS, "content-type": ["a/b", "c/d"], "Content-Type": ["e/f"]}
            ),
            True,
        ),
    ]


def through_wsgi(handler: ModuleType, given: dict[str, Any]) -> dict[str, Any]:
    """The answer as handler.handler gave it before: serverless-wsgi for every event."""
    try:
        return serverless_wsgi.handle_request(handler.app, given, None)
    except Exception:
        return malformed_event(given)


@pytest.mark.parametrize("what,given,own", events(), ids=[what for what, _, _ in events()])
def test_each_answer_is_the_wsgi_paths(handler: ModuleType, what: str, given: dict, own: bool):
    expected = through_wsgi(handler, copy.deepcopy(given))
    answered = handler.handler(copy.deepcopy(given), None)
    # Byte for byte, key order included: what Lambda serializes and API Gateway sends.
    assert json.dumps(answered) == json.dumps(expected)
    try:
        taken = handler.track.answer(copy.deepcopy(given)) is not None
    except Exception:
        taken = True  # read as far as serverless-wsgi reads it, and refused alike
    assert taken == own


@pytest.mark.parametrize("single", [False, True], ids=["multi-value headers", "headers"])
def test_each_answer_is_the_callers_own(handler: ModuleType, single: bool) -> None:
    """The answers that never change are built once; what a caller does to one (a middleware
    adding a header) does not show in the next."""
    first = handler.handler(event(good("own1"), single=single), None)
    for name, values in first["headers" if single else "multiValueHeaders"].items():
        if single:
            first["headers"][name] = "changed"
        else:
            values.append("changed")
    expected = through_wsgi(handler, event(good("own2"), single=single))
    assert json.dumps(handler.handler(event(good("own3"), single=single), None)) == json.dumps(
        expected
    )


def test_the_own_path_counts(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(serverless_wsgi, "handle_request", None)  # not called
        for n in range(5):
            assert handler.handler(event(good(f"c{n}")), None)["statusCode"] == 200
    results = handler.handler(
        event({}, path="/experiments/lambda", headers={**HEADERS, "X-Api-Key": [API_KEY]}),
        None,
    )
    assert json.loads(results["body"])["participants"] == {"a": 5}


def test_behind_a_base_path_serverless_wsgi_answers(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """With API_GATEWAY_BASE_PATH (a custom domain's base path mapping) serverless-wsgi strips
    the prefix: the own path leaves those events to it."""
    monkeypatch.setenv("GIMEL_REDIS_URL", redis_url)
    monkeypatch.setenv("GIMEL_API_KEY", API_KEY)
    monkeypatch.setenv("API_GATEWAY_BASE_PATH", "v1")
    sys.modules.pop("handler", None)
    try:
        handler = importlib.import_module("handler")
        given = event(good("b1"), path="/v1/track")
        assert handler.track.answer(copy.deepcopy(given)) is None
        answered = handler.handler(copy.deepcopy(given), None)
        assert json.dumps(answered) == json.dumps(through_wsgi(handler, given))
        assert answered["statusCode"] == 200
    finally:
        sys.modules.pop("handler", None)


PARAMS = st.dictionaries(
    st.one_of(st.text(max_size=8), st.sampled_from(["a=", "&b", "c"])),
    st.lists(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(["big red", "a-b_c.d~e", "", "a=b", "x&y", "&", "="]),
        )
    ),
    max_size=5,
)


@given(params=PARAMS)
def test_the_query_string_is_the_one_serverless_wsgi_encodes(params: dict) -> None:
    """The own path's query string (built directly for plain names and values) equals
    serverless-wsgi's ``encode_query_string`` for any parameters, plain or not."""
    given = {"multiValueQueryStringParameters": params, "queryStringParameters": None}
    assert _query_string(given) == serverless_wsgi.encode_query_string(given)


@pytest.mark.parametrize("what,given,own", events(), ids=[what for what, _, _ in events()])
def test_the_environ_is_the_one_serverless_wsgi_builds(
    handler: ModuleType, what: str, given: dict, own: bool
) -> None:
    """Every entry of the environ the own path builds is serverless-wsgi's, whether or not the
    endpoint reads it today (a GET's answer depends on a few of them)."""
    try:
        built = handler.track._environ(copy.deepcopy(given))
    except Exception:
        built = None  # refused as serverless-wsgi refuses it (above)
    if built is None:
        return
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ)
        start_response("200 OK", [])
        return []

    serverless_wsgi.handle_request(app, copy.deepcopy(given), None)
    (expected,) = seen
    assert {key: expected.get(key) for key in built} == built
