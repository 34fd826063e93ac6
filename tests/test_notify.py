"""Alerts and their deliveries, against real receivers on loopback (http.server in a thread).

Every delivery here goes to a receiver this file starts on 127.0.0.1: the signature verifies
(and a tampered body, another secret or an old timestamp does not), retries follow the
schedule until the receiver answers, a 500, a timeout, a redirect and Slack's 404 are each
recorded as they are, the secret never shows, and the bodies are the documented ones.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from receivers import Answer, Receiver

from gimel_core import notify
from gimel_core.alerts import Alert, alert, slack
from gimel_core.config import Config
from gimel_core.errors import ConfigError
from gimel_core.notify import Delivery, Slack, Webhook, backoff, deliver, sign, verify
from gimel_core.vocabulary import AlertKind, DecisionKind

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
DOC: dict[str, Any] = json.loads(
    resources.files("gimel_core").joinpath("openapi.json").read_text("utf-8")
)
SECRET = "whsec-" + "k" * 40
SLACK_TOKEN = "T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
"""Slack's URL path is its secret: it must never show."""
NOW = 1_767_225_600


def decided(**overrides: Any) -> Alert:
    """The README's example alert."""
    given: dict[str, Any] = {
        "kind": AlertKind.DECIDED,
        "namespace": "alephbet",
        "experiment": "button",
        "text": "Ship red: it beats blue on signup (+70%, p=0.003)",
        "change": "ship:red",
        "created": NOW,
        "numbers": {"participants": 600, "p_value": 0.0031, "uplift": 0.7},
        "dashboard_url": "https://gimel.example.com/prod/dashboard",
        "decision": DecisionKind.SHIP,
        "variant": "red",
        **overrides,
    }
    return alert(
        given.pop("kind"), given.pop("namespace"), given.pop("experiment"), given.pop("text"),
        **given,
    )  # fmt: skip


def clock(start: float = NOW) -> Callable[[], float]:
    return lambda: start


# -- signatures --------------------------------------------------------------------------------


def readme_verify() -> Callable[[str, bytes, str], bool]:
    """The README's verification example, run as a receiver would paste it."""
    code = re.search(r"```python\n(import hashlib.*?)```", README, re.S)
    assert code, "no verification example in the README"
    assert len(code.group(1).strip().splitlines()) <= 10
    space: dict[str, Any] = {}
    exec(code.group(1), space)
    found: Callable[[str, bytes, str], bool] = space["verify"]
    return found


def test_the_signature_verifies_and_a_tampered_or_old_request_does_not(
    receiver: Callable[..., Receiver],
) -> None:
    hook = receiver()
    sent = decided()
    record = deliver(Webhook(hook.url + "/hooks/gimel", SECRET), sent)
    assert record.ok and record.status == 200 and record.error is None and record.retry_at is None
    (got,) = hook.received
    assert got.path == "/hooks/gimel" and got.body == sent.body()
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    header = got.headers[notify.SIGNATURE_HEADER]
    assert re.fullmatch(rf"t={record.at},v1=[0-9a-f]{{64}}", header), header
    readme = readme_verify()
    for check in (verify, readme):
        assert check(SECRET, got.body, header)
        assert not check(SECRET, got.body.replace(b"red", b"blue"), header)
        assert not check(SECRET, got.body + b" ", header)
        assert not check("another-secret-" + "x" * 30, got.body, header)
        assert not check(SECRET, got.body, header.replace("t=", "t=1"))  # another time
        assert not check(SECRET, got.body, "v1=" + header.split("v1=")[1])  # no time
        assert not check(SECRET, got.body, "t=x,v1=é")
    # A request signed 301 s ago is refused (a replay), one within the tolerance accepted.
    old = sign(SECRET, got.body, int(time.time()) - 301)
    assert not verify(SECRET, got.body, old) and not readme(SECRET, got.body, old)
    recent = sign(SECRET, got.body, int(time.time()) - 250)
    assert verify(SECRET, got.body, recent) and readme(SECRET, got.body, recent)
    assert not verify(SECRET, got.body, recent, tolerance=200)
    # While a secret is rotated, either signature is accepted.
    then = int(time.time())
    rotated = sign("previous-" + "p" * 32, got.body, then) + "," + sign(SECRET, got.body, then)
    rotated = rotated.replace(f",t={then}", "")
    assert verify(SECRET, got.body, rotated) and readme(SECRET, got.body, rotated)


def test_the_body_is_the_documented_webhook_alert(receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    deliver(Webhook(hook.url, SECRET), decided())
    deliver(Webhook(hook.url, SECRET), decided(dashboard_url=None, decision=None, variant=None))
    schema = DOC["components"]["schemas"]["WebhookAlert"]
    validator = OAS30Validator({**schema, "components": DOC["components"]})
    bodies = [json.loads(r.body) for r in hook.received]
    for body in bodies:
        assert not list(validator.iter_errors(body)), body
        assert sorted(schema["properties"]) == sorted(body)
    assert bodies[1]["link"] is None and bodies[1]["decision"] is None
    properties = schema["properties"]
    assert properties["kind"]["enum"] == [kind.value for kind in AlertKind]
    assert [d for d in properties["decision"]["enum"] if d] == sorted(DecisionKind, key=_order)
    # The README's example is what Gimel sends for the same alert.
    shown = re.search(r"```json\n(\{\n  \"version\".*?)```", README, re.S)
    assert shown and json.loads(shown.group(1)) == decided().to_json() == bodies[0]


def _order(kind: DecisionKind) -> int:
    """The document lists the decisions in its own order."""
    listed = DOC["components"]["schemas"]["WebhookAlert"]["properties"]["decision"]["enum"]
    return list(listed).index(kind.value)


# -- retries and failures --------------------------------------------------------------------


def test_the_schedule_is_bounded() -> None:
    waits = [backoff(attempt) for attempt in range(1, notify.ATTEMPTS + 3)]
    assert waits[: notify.ATTEMPTS - 1] == [60, 120, 240, 480, 960]
    assert waits[notify.ATTEMPTS - 1 :] == [None, None, None]
    assert sum(w for w in waits if w) < 3600  # all retries within the hour of the first try
    with pytest.raises(ValueError, match="from 1"):
        backoff(0)


def test_a_receiver_failing_the_first_two_deliveries_gets_the_third(
    receiver: Callable[..., Receiver],
) -> None:
    hook = receiver(Answer(500, b"oops"), Answer(503, b""))
    destination = Webhook(hook.url, SECRET)
    sent = decided()
    records = _until_done(destination, sent)
    assert [(r.ok, r.status, r.attempt) for r in records] == [
        (False, 500, 1),
        (False, 503, 2),
        (True, 200, 3),
    ]
    assert records[0].error == "answered 500: oops" and records[1].error == "answered 503"
    assert [r.at for r in records] == [NOW, NOW + 60, NOW + 180]
    assert records[-1].retry_at is None
    assert len(hook.received) == 3 and {r.body for r in hook.received} == {sent.body()}
    for got, record in zip(hook.received, records, strict=True):  # each signed when sent
        header = got.headers[notify.SIGNATURE_HEADER]
        assert header.startswith(f"t={record.at},")
        assert verify(SECRET, got.body, header, now=record.at)


def _until_done(destination: notify.Destination, sent: Alert) -> list[Delivery]:
    """What the watcher will do, with a simulated clock: try, then again at retry_at."""
    records = [deliver(destination, sent, clock=clock())]
    while records[-1].retry_at is not None:
        assert len(records) < 10
        at = records[-1].retry_at
        records.append(deliver(destination, sent, attempt=len(records) + 1, clock=clock(at)))
    return records


def test_a_receiver_that_keeps_failing_gets_a_bounded_number_of_attempts(
    receiver: Callable[..., Receiver],
) -> None:
    hook = receiver(*[Answer(500)] * 10)
    records = _until_done(Webhook(hook.url, SECRET), decided())
    assert len(records) == len(hook.received) == notify.ATTEMPTS
    assert not any(r.ok for r in records) and records[-1].retry_at is None
    assert [r.retry_at - r.at for r in records[:-1] if r.retry_at] == [60, 120, 240, 480, 960]


def test_a_timeout_is_recorded_and_retried(receiver: Callable[..., Receiver]) -> None:
    hook = receiver(Answer(200, delay=2.0))
    started = time.monotonic()
    record = deliver(Webhook(hook.url, SECRET), decided(), timeout=0.3, clock=clock())
    assert time.monotonic() - started < 1.5
    assert (record.ok, record.status) == (False, None)
    assert record.error == "timed out after 0.3s"
    assert record.retry_at == NOW + 60


def test_no_connection_is_recorded_and_retried() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    record = deliver(Webhook(f"http://127.0.0.1:{port}/x", SECRET), decided(), clock=clock())
    assert not record.ok and record.status is None and record.retry_at == NOW + 60
    assert record.error is not None and record.error.startswith("no connection: ")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_recorded(
    receiver: Callable[..., Receiver], status: int
) -> None:
    elsewhere = receiver()
    hook = receiver(Answer(status, b"", {"Location": elsewhere.url + "/stolen"}))
    record = deliver(Webhook(hook.url, SECRET), decided(), clock=clock())
    assert len(hook.received) == 1 and elsewhere.received == []
    assert (record.ok, record.status, record.retry_at) == (False, status, None)
    assert record.error == f"answered {status}, a redirect: not followed"


def test_https_to_a_trusted_receiver_and_not_to_an_untrusted_one(
    receiver: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hook = receiver(tls=context)
    assert hook.url.startswith("https://")
    untrusted = deliver(Webhook(hook.url, SECRET), decided(), clock=clock())
    assert not untrusted.ok and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
    assert hook.received == []
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the default context trusts
    trusted = deliver(Webhook(hook.url, SECRET), decided(), clock=clock())
    assert trusted.ok and len(hook.received) == 1
    (got,) = hook.received
    assert verify(SECRET, got.body, got.headers["Gimel-Signature"], now=trusted.at)


# -- Slack -------------------------------------------------------------------------------------


def test_a_slack_url_answering_404_is_recorded_without_retry(
    receiver: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    hook = receiver(Answer(404, b"no_service", {"Content-Type": "text/plain"}))
    destination = Slack(f"{hook.url}/services/{SLACK_TOKEN}")
    with caplog.at_level(logging.DEBUG, logger="gimel_core.notify"):
        record = deliver(destination, decided(), clock=clock())
    assert (record.ok, record.status, record.retry_at) == (False, 404, None)
    assert record.error == "answered 404: no_service"
    assert record.destination == f"{hook.url}/…"
    assert hook.received[0].path == f"/services/{SLACK_TOKEN}"
    assert "Gimel-Signature" not in hook.received[0].headers  # Slack's URL is its secret
    shown = [repr(destination), json.dumps(record.to_json()), caplog.text]
    assert "no_service" in caplog.text and f"{hook.url}/…" in caplog.text
    assert not [text for text in shown if "B0000" in text], shown


def test_the_slack_message_reads_on_a_phone(receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    record = deliver(Slack(f"{hook.url}/services/{SLACK_TOKEN}"), decided(), clock=clock())
    assert record.ok
    message = json.loads(hook.received[0].body)
    assert message == slack(decided())
    blocks = message["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "actions"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "button: decided"}
    assert blocks[1]["text"]["text"] == "Ship red: it beats blue on signup (+70%, p=0.003)"
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert fields == ["*participants*\n600", "*p value*\n0.0031", "*uplift*\n0.7"]
    assert "decision ship" in blocks[3]["elements"][0]["text"]
    (button,) = blocks[4]["elements"]
    assert button["url"] == decided().link
    assert message["text"].startswith("button: decided. Ship red")  # the notification's line
    _block_kit_limits(message)


def test_slack_text_cannot_ping_or_break_the_layout() -> None:
    many = {f"n{i}": i * 1234.5 for i in range(10)}
    loud = decided(experiment="<!channel> & " + "x" * 200, text="<@U123> wins", numbers=many)
    message = slack(loud)
    _block_kit_limits(message)
    for text in _mrkdwn(message):
        assert "<" not in text and ">" not in text, text
    assert "&lt;@U123&gt; wins" in message["blocks"][1]["text"]["text"]
    assert message["blocks"][2]["fields"][1]["text"] == "*n1*\n1,234"
    assert message["blocks"][0]["text"]["text"].endswith("…")  # a header holds 150 characters
    bare = slack(decided(dashboard_url=None, numbers={}, decision=None))
    assert [b["type"] for b in bare["blocks"]] == ["header", "section", "context"]


def _mrkdwn(message: dict[str, Any]) -> Iterator[str]:
    yield message["text"]
    for block in message["blocks"]:
        for part in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(part, dict) and part.get("type") == "mrkdwn":
                yield part["text"]


def _block_kit_limits(message: dict[str, Any]) -> None:
    """Block Kit's documented limits (api.slack.com/reference/block-kit/blocks)."""
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "actions":
            for element in block["elements"]:
                assert len(element["text"]["text"]) <= 75 and len(element["url"]) <= 3000


# -- the model, and what is refused ---------------------------------------------------------


def test_an_alerts_id_is_the_change_it_announces() -> None:
    same = decided(created=NOW + 3600, text="Ship red, said again", numbers={})
    assert same.id == decided().id and re.fullmatch(r"[0-9a-f]{32}", same.id)
    others = [
        decided(change="keep_control:red"),
        decided(experiment="button2"),
        decided(namespace="other"),
        decided(kind=AlertKind.SIZE_REACHED),
    ]
    assert len({decided().id, *(o.id for o in others)}) == 5
    assert decided().link == (
        "https://gimel.example.com/prod/dashboard#namespace=alephbet&experiment=button"
    )
    spaced = decided(experiment="a b&c", dashboard_url="https://g.example/d#old")
    assert spaced.link == "https://g.example/d#namespace=alephbet&experiment=a+b%26c"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "decide"}, "decide"),
        ({"experiment": ""}, "experiment"),
        ({"change": ""}, "change"),
        ({"text": "two\nlines"}, "one non-empty line"),
        ({"text": "x" * 301}, "one non-empty line"),
        ({"numbers": {"p": float("nan")}}, "finite"),
        ({"numbers": {"p": True}}, "finite"),
        ({"numbers": {"p": "0.1"}}, "finite"),
        ({"numbers": {f"n{i}": i for i in range(11)}}, "at most 10"),
        ({"created": -1}, "unix time"),
        ({"decision": "ship it"}, "ship it"),
    ],
)
def test_a_bad_alert_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decided(**overrides)


@pytest.mark.parametrize(
    "url",
    [
        f"http://hooks.example.com/services/{SLACK_TOKEN}",
        f"http://10.0.0.1/services/{SLACK_TOKEN}",
        f"http://localhost.example.com/services/{SLACK_TOKEN}",
        f"ftp://127.0.0.1/services/{SLACK_TOKEN}",
        f"https://user:{SLACK_TOKEN}@hooks.example.com/x",
        f"https:///services/{SLACK_TOKEN}",
        f"https://hooks.example.com:99999/services/{SLACK_TOKEN}",
    ],
)
def test_a_destination_that_is_not_https_is_refused_without_showing_its_secret(url: str) -> None:
    for make in (lambda: Webhook(url, SECRET), lambda: Slack(url)):
        with pytest.raises(ValueError) as refused:
            make()
        assert "B0000" not in str(refused.value), refused.value
    with pytest.raises(ConfigError, match="GIMEL_SLACK_WEBHOOK_URL") as refused_config:
        Config.from_env({"GIMEL_SLACK_WEBHOOK_URL": url})
    assert "B0000" not in str(refused_config.value)


def test_https_and_loopback_destinations_are_accepted() -> None:
    for url in [
        f"https://hooks.slack.com/services/{SLACK_TOKEN}",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:8080/hook",
        "http://localhost/hook",
    ]:
        assert Slack(url).url == url
    with pytest.raises(ValueError, match="at least 32"):
        Webhook("https://hooks.example.com/x", "short")


# -- configuration -----------------------------------------------------------------------------


def test_alert_settings_are_parsed_and_never_shown() -> None:
    assert notify.destinations(Config.from_env({})) == ()
    config = Config.from_env(
        {
            "GIMEL_WEBHOOK_URL": " https://hooks.example.com/gimel?token=abc ",
            "GIMEL_WEBHOOK_SECRET": SECRET,
            "GIMEL_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/{SLACK_TOKEN}",
            "GIMEL_DASHBOARD_URL": "https://gimel.example.com/prod/dashboard",
            "GIMEL_WEBHOOK_TIMEOUT": "1.5",
        }
    )
    assert config.webhook_url == "https://hooks.example.com/gimel?token=abc"
    assert config.webhook_secret == SECRET
    assert config.dashboard_url == "https://gimel.example.com/prod/dashboard"
    assert config.webhook_timeout == 1.5
    webhook, slack_ = notify.destinations(config)
    assert isinstance(webhook, Webhook) and isinstance(slack_, Slack)
    assert webhook.secret == SECRET and slack_.url == config.slack_webhook_url
    shown = " ".join(map(repr, (config, webhook, slack_)))
    assert "Webhook(https://hooks.example.com/…)" in shown
    for secret in (SECRET, "token=abc", "B0000"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GIMEL_WEBHOOK_URL": "https://hooks.example.com/x"}, "needs GIMEL_WEBHOOK_SECRET"),
        ({"GIMEL_WEBHOOK_SECRET": SECRET}, "GIMEL_WEBHOOK_URL is not"),
        (
            {"GIMEL_WEBHOOK_URL": "https://hooks.example.com/x", "GIMEL_WEBHOOK_SECRET": "s" * 31},
            "GIMEL_WEBHOOK_SECRET must be at least 32",
        ),
        (
            {"GIMEL_WEBHOOK_URL": "http://hooks.example.com/x", "GIMEL_WEBHOOK_SECRET": SECRET},
            "GIMEL_WEBHOOK_URL must be https",
        ),
        ({"GIMEL_DASHBOARD_URL": "gimel.example.com"}, "GIMEL_DASHBOARD_URL"),
        ({"GIMEL_DASHBOARD_URL": "https://g.example/d?x=1"}, "GIMEL_DASHBOARD_URL"),
        ({"GIMEL_WEBHOOK_TIMEOUT": "60"}, "GIMEL_WEBHOOK_TIMEOUT"),
        ({"GIMEL_WEBHOOK_TIMEOUT": "soon"}, "GIMEL_WEBHOOK_TIMEOUT"),
    ],
)
def test_bad_alert_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        Config.from_env(env)
    assert SECRET not in str(refused.value)
