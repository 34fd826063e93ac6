"""Property tests: any name Gimel accepts comes back from the results exactly as it was sent.

Names are arbitrary Unicode in NFC (letters of every script, emoji, the space, ``%``, ``+``,
``&``, ``=``, ``/``, ``.``, ``,``, combining marks, private-use and unassigned code points),
sent the way Alephbet sends them (form-encoded query string, ``+`` for spaces). Control
characters (C0, DEL, C1) and lone surrogates are refused, with 400 and nothing written; so
are format and separator characters (tests/test_names.py, which also shows a name not in NFC
counted under its NFC form). (That no two different names share a key is tests/test_keys.py.)
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from conftest import AUTH
from gimel_core import defaults
from gimel_core.vocabulary import Mode
from helpers import original

# Everything Gimel accepts: no control characters (Cc: U+0000-001F, U+007F-009F), surrogates
# (Cs), format characters (Cf) or separators (Zl, Zp, and Zs but the space), in NFC (what
# Gimel stores and answers; a name not in NFC comes back in NFC), with the characters that
# mean something in a URL, a key or a results row drawn often.
NAME_CHARS = st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Zs"))
AWKWARD_CHARS = st.sampled_from(list("/.,+%&=?#;:{}[]\\ ~\"'<>*") + ["\u0301", "\u00e9"])
_name_chars = NAME_CHARS | AWKWARD_CHARS


def nfc(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Names in NFC, still 1 to 128 characters (NFC can shorten or lengthen a text)."""
    return strategy.map(lambda name: unicodedata.normalize("NFC", name)).filter(
        lambda name: 0 < len(name) <= defaults.MAX_NAME_LENGTH
    )


names = nfc(
    st.text(_name_chars, min_size=1, max_size=defaults.MAX_NAME_LENGTH)
    | st.text(
        _name_chars, min_size=defaults.MAX_NAME_LENGTH - 32, max_size=defaults.MAX_NAME_LENGTH
    )
)  # long names often: the query string outgrows what GET /track reads
goals = names.filter(lambda name: name != defaults.PARTICIPATE)
# Experiment names also get the beginnings that are awkward in a URL path.
experiments = names | nfc(
    st.tuples(st.sampled_from(["/", "//", ".", "..", "./", "../"]), names).map(
        lambda parts: "".join(parts)[: defaults.MAX_NAME_LENGTH]
    )
)
modes = st.sampled_from(list(Mode))

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,  # derandomize comes from the profile (tests/conftest.py): on in CI only
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def path_of(name: str) -> str:
    """``/experiments/<name>``: every name travels in the path, a leading ``/`` included."""
    return "/experiments/" + quote(name, safe="")


def send(client: FlaskClient, fields: dict[str, str]) -> int:
    """One event as Alephbet sends it (GET, form-encoded); POSTed as JSON if ever too long."""
    query = urlencode(fields)
    response = client.get("/track?" + query)
    if len(query) > defaults.MAX_QUERY_BYTES:
        event("query string too long for GET: sent as a batch")
        assert response.status_code == 414
        response = client.post("/track", json=[fields])
        assert response.get_json() == {"accepted": 1}
    return response.status_code


@pytest.fixture
def clients(make_app: Callable[..., Flask]) -> dict[str, FlaskClient]:
    return {mode: make_app(counting=mode).test_client() for mode in list(Mode)}


LONGEST = "\U0001f600" * defaults.MAX_NAME_LENGTH  # 128 characters, 1,536 bytes percent-encoded


@PROPERTY_SETTINGS
@given(namespace=names, experiment=experiments, variant=names, goal=goals, uuid=names, mode=modes)
@example(
    namespace=LONGEST, experiment=LONGEST, variant=LONGEST, goal=LONGEST, uuid=LONGEST, mode="exact"
)
@example(
    namespace="a,b", experiment="/a", variant="+ %2B", goal="participate ", uuid="&=?#", mode="hll"
)
@example(namespace=".", experiment="..", variant=".", goal="..", uuid="/", mode="exact")
@example(
    namespace="alephbet",
    experiment="a/../b",
    variant="x/",
    goal="Participate",
    uuid="%00",
    mode="hll",
)
def test_any_names_round_trip_through_track_and_results(
    clients: dict[str, FlaskClient],
    raw_redis: Any,
    namespace: str,
    experiment: str,
    variant: str,
    goal: str,
    uuid: str,
    mode: str,
) -> None:
    raw_redis.flushall()  # one example, one clean store
    client = clients[mode]
    common = {"namespace": namespace, "experiment": experiment, "variant": variant, "uuid": uuid}
    assert send(client, {**common, "event": defaults.PARTICIPATE}) == 200
    assert send(client, {**common, "event": goal}) == 200

    expected_goals = [{"goal": goal, "results": [{"label": variant, "successes": 1, "trials": 1}]}]

    def check(found: dict[str, Any]) -> None:
        assert found["experiment"] == experiment
        assert found["counting"] == mode
        assert original(found["goals"]) == expected_goals

    ns = urlencode({"namespace": namespace})
    # 1. the listing: every name
    listing = client.get(f"/experiments?{ns}", headers=AUTH)
    assert listing.status_code == 200
    (found,) = listing.get_json()[1:]
    check(found)
    # 2. the experiment's own URL: every name
    one = client.get(f"{path_of(experiment)}?{ns}", headers=AUTH)
    assert one.status_code == 200, one.get_json()
    check(one.get_json())
    # 3. ?scope=: comma-separated, so every name without a comma
    if "," not in experiment:
        scoped = client.get(f"/experiments?{ns}&" + urlencode({"scope": experiment}), headers=AUTH)
        assert scoped.status_code == 200
        (found,) = scoped.get_json()[1:]
        check(found)


FIELDS = ("namespace", "experiment", "variant", "event", "uuid")
short_names = nfc(st.text(NAME_CHARS, min_size=1, max_size=12))
controls = st.characters(categories=("Cc",))
surrogates = st.characters(categories=("Cs",))


@st.composite
def with_one_char(draw: st.DrawFn, chars: st.SearchStrategy[str]) -> tuple[dict[str, str], str]:
    """A valid event, then one field with a forbidden character put in at any position."""
    fields = {name: draw(short_names) for name in FIELDS}
    if fields["event"] == defaults.PARTICIPATE:
        fields["event"] = "goal"
    bad = draw(st.sampled_from(FIELDS))
    value = fields[bad]
    at = draw(st.integers(0, len(value)))
    fields[bad] = value[:at] + draw(chars) + value[at:]
    return fields, bad


@PROPERTY_SETTINGS
@given(case=with_one_char(controls))
def test_control_characters_are_refused_and_write_nothing(
    client: FlaskClient, raw_redis: Any, case: tuple[dict[str, str], str]
) -> None:
    raw_redis.flushall()
    fields, bad = case
    response = client.get("/track?" + urlencode(fields))
    assert response.status_code == 400
    assert response.get_json() == {"error": f"'{bad}' contains control characters", "field": bad}
    batch = client.post("/track", json=[fields])
    assert batch.status_code == 400
    assert [e["field"] for e in batch.get_json()["errors"]] == [bad]
    if bad in ("namespace", "experiment"):
        # the read endpoints refuse the same names
        query = urlencode({"namespace": fields["namespace"], "scope": fields["experiment"]})
        assert client.get(f"/experiments?{query}", headers=AUTH).status_code == 400
    assert raw_redis.dbsize() == 0


@PROPERTY_SETTINGS
@given(case=with_one_char(surrogates))
def test_lone_surrogates_are_refused_and_write_nothing(
    client: FlaskClient, raw_redis: Any, case: tuple[dict[str, str], str]
) -> None:
    raw_redis.flushall()
    fields, bad = case
    # In a query string a surrogate can only arrive as its 3-byte (CESU-8) form: invalid UTF-8.
    raw = {k: v.encode("utf-8", "surrogatepass") for k, v in fields.items()}
    response = client.get("/track?" + urlencode(raw))
    assert response.status_code == 400
    assert response.get_json() == {"error": f"'{bad}' is not valid UTF-8", "field": bad}
    # JSON can carry it as a \\udXXX escape.
    body = json.dumps([fields])  # ensure_ascii: lone surrogates become escapes
    batch = client.post("/track", data=body, content_type="application/json")
    assert batch.status_code == 400
    assert [e["field"] for e in batch.get_json()["errors"]] == [bad]
    assert raw_redis.dbsize() == 0


# -- names that are awkward in a URL path, over real HTTP ----------------------------------

AWKWARD = [".", "..", "a/", "a//b", "a/./b", "a/../b", "../x", "%2F", "%", "+", "a b", "?x#y",
           "x/reset", "é", "\U0001f600", "\\", ";", "~"]  # fmt: skip


@pytest.mark.single_redis
def test_awkward_names_reach_their_own_url_over_http(live_server: str, client: FlaskClient) -> None:
    """``quote(name, safe="")`` in the path reaches the right experiment for all of these.

    (Browsers, and urllib3 under requests, remove ``.`` and ``..`` segments before
    sending, so those two names need ``%2E`` in a client; http.client sends them as is.)
    """
    import http.client

    host = live_server.removeprefix("http://")
    for name in AWKWARD:
        assert send(client, {"experiment": name, "variant": "v", "event": "g", "uuid": "u"}) == 200
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        for name in AWKWARD:
            conn.request("GET", "/experiments/" + quote(name, safe=""), headers=AUTH)
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, (name, body)
            assert body["experiment"] == name
    finally:
        conn.close()


def test_a_name_starting_with_a_slash_reaches_its_own_experiment(client: FlaskClient) -> None:
    """GET/PATCH/DELETE on experiment "/a" must never act on experiment "a".

    Today Werkzeug merges the ``//`` of ``/experiments//a`` with a 308 redirect to
    ``/experiments/a``; clients that follow redirects (requests in ``gimel delete --url``,
    the dashboard's fetch) then delete experiment "a" instead of "/a".
    """
    for name in ("/a", "a"):
        send(client, {"experiment": name, "variant": "v", "event": "g", "uuid": "u"})
    response = client.delete("/experiments/" + quote("/a", safe=""), headers=AUTH)
    if response.status_code == 308:  # what a client following redirects does
        response = client.delete(response.headers["Location"], headers=AUTH)
    listing = client.get("/experiments", headers=AUTH).get_json()[1:]
    assert [e["experiment"] for e in listing] == ["a"]
    assert response.get_json()["deleted"] == "/a"
