"""Names that look alike are one name, or refused: NFC at the boundary, no invisible characters."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
import redis
from flask.testing import FlaskClient

from conftest import AUTH
from helpers import track

FIELDS = ("namespace", "experiment", "variant", "event", "uuid")
INVISIBLE = {
    "\u200b": "zero-width space (Cf)",
    "\u202e": "right-to-left override (Cf)",
    "\ufeff": "byte order mark (Cf)",
    "\u2028": "line separator (Zl)",
    "\u2029": "paragraph separator (Zp)",
    "\u00a0": "no-break space (Zs)",
    "\u3000": "ideographic space (Zs)",
}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("char", INVISIBLE, ids=INVISIBLE.values())
def test_invisible_characters_are_refused_naming_the_field(
    client: FlaskClient, raw_redis: redis.Redis, char: str, field: str
) -> None:
    fields = {"namespace": "ns", "experiment": "e", "variant": "v", "event": "goal", "uuid": "u"}
    fields[field] = "a" + char + "b"
    response = client.get("/track?" + urlencode(fields))
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == field
    assert "format or separator" in body["error"]
    batch = client.post("/track", json=[fields])
    assert batch.status_code == 400
    assert [e["field"] for e in batch.get_json()["errors"]] == [field]
    assert raw_redis.dbsize() == 0


@pytest.mark.parametrize("char", INVISIBLE, ids=INVISIBLE.values())
def test_the_api_refuses_the_same_names(client: FlaskClient, char: str) -> None:
    name = "a" + char
    for response in (
        client.get("/experiments/" + quote(name, safe=""), headers=AUTH),
        client.get("/experiments?" + urlencode({"scope": name}), headers=AUTH),
        client.get("/experiments?" + urlencode({"namespace": name}), headers=AUTH),
        client.delete("/delete?" + urlencode({"experiment": name}), headers=AUTH),
    ):
        assert response.status_code == 400
        assert response.get_json()["field"] in ("experiment", "scope", "namespace")


def test_the_ordinary_space_is_still_a_name_character(client: FlaskClient) -> None:
    assert track(client, "checkout button", "big red", "participate", "u 1").status_code == 200


COMPOSED = "caf\u00e9"
DECOMPOSED = "cafe\u0301"


def test_composed_and_decomposed_names_are_one_experiment(client: FlaskClient) -> None:
    assert COMPOSED != DECOMPOSED
    track(client, COMPOSED, COMPOSED, "participate", "u1")
    track(client, DECOMPOSED, DECOMPOSED, "participate", "u2")
    batch = [{"experiment": DECOMPOSED, "variant": COMPOSED, "event": DECOMPOSED, "uuid": "u3"}]
    assert client.post("/track", json=batch).get_json() == {"accepted": 1}
    listing = client.get("/experiments", headers=AUTH).get_json()[1:]
    assert [e["experiment"] for e in listing] == [COMPOSED]
    assert listing[0]["participants"] == {COMPOSED: 2}
    assert [g["goal"] for g in listing[0]["goals"]] == [COMPOSED]
    # either spelling reaches it through the API, and is answered in NFC
    path = "/experiments/" + quote(DECOMPOSED, safe="")
    assert client.get(path, headers=AUTH).get_json()["experiment"] == COMPOSED
    patched = client.patch(path, json={"description": "x"}, headers=AUTH)
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["experiment"] == COMPOSED
    reset = client.post(path + "/reset", headers=AUTH)
    assert reset.status_code == 200 and reset.get_json()["experiment"] == COMPOSED
    history = client.get(path + "/history", headers=AUTH)
    assert history.status_code == 200 and history.get_json()["experiment"] == COMPOSED
