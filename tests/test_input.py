"""Bad input: 400 with a JSON error naming the field, nothing written, never a 500."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import AUTH
from gimel_core.errors import InvalidInput
from gimel_core.events import TRACK_FIELDS, parse_query

GOOD = "experiment=e&variant=v&event=participate&uuid=u"

BAD_TRACK = [
    ("variant=v&event=participate&uuid=u", "experiment", "required"),
    ("experiment=e&event=participate&uuid=u", "variant", "required"),
    ("experiment=e&variant=v&uuid=u", "event", "required"),
    ("experiment=e&variant=v&event=participate", "uuid", "required"),
    ("experiment=&variant=v&event=participate&uuid=u", "experiment", "empty"),
    ("experiment=e&variant=v&event=participate&uuid=", "uuid", "empty"),
    (GOOD + "&namespace=", "namespace", "empty"),
    ("experiment=" + "x" * 129 + "&variant=v&event=participate&uuid=u", "experiment", "longer"),
    (GOOD.replace("uuid=u", "uuid=" + "u" * 129), "uuid", "longer"),
    (GOOD.replace("variant=v", "variant=" + "é" * 129), "variant", "longer"),
    (GOOD.replace("event=participate", "event=a%00b"), "event", "control"),
    (GOOD.replace("variant=v", "variant=a%0Ab"), "variant", "control"),
    (GOOD.replace("uuid=u", "uuid=%7F"), "uuid", "control"),
    (GOOD.replace("experiment=e", "experiment=%C2%85"), "experiment", "control"),
    (GOOD.replace("uuid=u", "uuid=%FF%FE"), "uuid", "UTF-8"),
    (GOOD.replace("experiment=e", "experiment=%C3"), "experiment", "UTF-8"),
    (GOOD.replace("namespace", "x") + "&namespace=%ED%A0%80", "namespace", "UTF-8"),
    (GOOD + "&experiment=f", "experiment", "more than once"),
]


@pytest.mark.parametrize(("query", "field", "reason"), BAD_TRACK)
def test_bad_track_input_is_refused_and_writes_nothing(
    client: FlaskClient, raw_redis: redis.Redis, query: str, field: str, reason: str
) -> None:
    response = client.get("/track?" + query)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == field
    assert reason in body["error"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert raw_redis.dbsize() == 0


def test_exactly_128_characters_is_accepted(client: FlaskClient) -> None:
    name = "🎉" * 128
    response = client.get(f"/track?experiment={name}&variant=v&event=participate&uuid={'u' * 128}")
    assert response.status_code == 200


def test_unknown_parameters_are_ignored(client: FlaskClient) -> None:
    assert client.get("/track?" + GOOD + "&_=12345&utm=%FF").status_code == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/experiments?namespace=", "namespace"),
        ("/experiments?namespace=%FF", "namespace"),
        ("/experiments?scope=" + "x" * 200, "scope"),
        ("/experiments/e?namespace=a%01", "namespace"),
        ("/experiments/" + "x" * 129, "experiment"),
    ],
)
def test_bad_results_queries_are_400(client: FlaskClient, path: str, field: str) -> None:
    response = client.get(path, headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["field"] == field


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/delete", "experiment"),
        ("/delete?experiment=", "experiment"),
        ("/delete?experiment=e&namespace=%FF", "namespace"),
    ],
)
def test_bad_delete_is_400_and_deletes_nothing(
    client: FlaskClient, raw_redis: redis.Redis, path: str, field: str
) -> None:
    client.get("/track?" + GOOD)
    before = raw_redis.dbsize()
    response = client.delete(path, headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert raw_redis.dbsize() == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("POST", "/experiments", 405),
        ("PUT", "/track", 405),
        ("GET", "/experiments/unknown", 404),
        ("DELETE", "/experiments/unknown", 404),
        ("DELETE", "/delete?experiment=unknown", 404),
    ],
)
def test_other_errors_are_json(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method, headers=AUTH)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]


def test_a_deeply_nested_settings_body_is_400_not_500(client: FlaskClient) -> None:
    client.get("/track?" + GOOD)
    response = client.patch(
        "/experiments/e", data="[" * 100_000, content_type="application/json", headers=AUTH
    )
    assert response.status_code == 400
    assert response.get_json()["field"] == "body"


def test_a_lone_surrogate_api_key_is_refused_not_500(client: FlaskClient) -> None:
    response = client.get("/experiments", headers={"x-api-key": "\ud800"})
    assert response.status_code == 403
    assert response.get_json() == {"error": "wrong API key"}


_QUERY_TEXT = st.lists(
    st.sampled_from([b"a", b" ", b"+", b"=", b"\xc3\xa9", b"\xe2\x82\xac", b"\xff", b"\xc3"])
    | st.sampled_from([b"%41", b"%", b"%e9", b"%2B", b"%26"]),
    max_size=4,
).map(b"".join)
QUERY_BYTES = st.lists(
    st.tuples(st.sampled_from([b"experiment", b"uuid", b"namespace", b"value", b""]), _QUERY_TEXT)
    | st.tuples(_QUERY_TEXT, _QUERY_TEXT),
    max_size=6,
).map(lambda parts: b"&".join(name + b"=" + value if value else name for name, value in parts))
"""Query strings of field names and other names, with text, spaces, '+', '=', UTF-8, bytes
that are not UTF-8 and percent-escapes, valid or not."""


@given(QUERY_BYTES)
@example(b"uuid=a&experiment=e&uuid=b")
@example(b"uuid=%41&uuid=b")
@example(b"uuid=caf\xc3\xa9+x&x=\xff")
@example(b"uuid=\xff&experiment=e")
@example(b"uuid=%e9")
def test_a_query_string_is_read_as_the_standard_parser_reads_it(raw: bytes) -> None:
    """Any query, percent-encoded or not, valid UTF-8 or not: the fields are what the standard
    library's form parser decodes (its strict UTF-8 as ours), a field twice or a field that is
    not UTF-8 is refused naming it, and other names are ignored whatever their bytes."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    expected: dict[str, str] = {}
    refused = None
    for name_latin1, value_latin1 in pairs:
        name = name_latin1.encode("latin-1").decode("utf-8", "replace")
        if name not in TRACK_FIELDS:
            continue
        if name in expected:
            refused = refused or f"'{name}' is given more than once"
            break
        try:
            expected[name] = value_latin1.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            refused = refused or f"'{name}' is not valid UTF-8"
            break
    if refused:
        with pytest.raises(InvalidInput, match=refused):
            parse_query(raw)
    else:
        assert parse_query(raw) == expected
