"""Delivering alerts: a signed generic webhook and a Slack incoming webhook, over urllib.

One attempt is one :func:`deliver` call, which never raises for a failed delivery: it returns
a :class:`Delivery` record, with when to try again (:func:`backoff`, a pure schedule the
watcher can keep in Redis). A destination's URL is checked when it is made: https, or http to
loopback only (tests), no credentials in it. Redirects are never followed, so an alert and
its signature reach the configured host or nobody. Secrets stay inside :class:`Webhook` and
:class:`Slack` (whose URL is a secret itself): records, log lines and errors show the URL
redacted to its scheme and host.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.message import Message
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import defaults, rules
from .alerts import Alert, slack

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Gimel-Signature"
"""``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, as Stripe signs its webhooks."""
TOLERANCE = 300
"""Seconds a signature stays acceptable: an older one may be a replay."""
MIN_SECRET = rules.WEBHOOK_SECRET_LENGTH
"""Shortest webhook secret, in characters."""
ATTEMPTS = 6
"""Deliveries tried per alert and destination before it is recorded as failed."""
BACKOFF = 60
"""Seconds before the first retry; each further retry waits twice as long."""
RETRIED_STATUSES = frozenset({408, 425, 429})
"""Client errors worth retrying (a server error, a timeout or no connection always is)."""
USER_AGENT = "Gimel-Alerts/1"


def redact(url: str) -> str:
    """What may be shown of a destination's URL: scheme and host, never a path (Slack's holds
    its token), a query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}/…"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def check_url(url: str, what: str = "a webhook URL") -> str:
    """``url`` if an alert may be sent to it, else ValueError saying why (URL redacted)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ValueError(f"{what} is not a URL ({redact(url)})") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{what} must be an https:// URL (got {redact(url)})")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"{what} must be https (http only to loopback; got {redact(url)})")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not carry a user or password (got {redact(url)})")
    return url.strip()


@dataclass(frozen=True)
class Webhook:
    """A generic webhook: the alert's JSON (``WebhookAlert``), signed with ``secret``."""

    url: str = field(repr=False)
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_url(self.url))
        if len(self.secret) < MIN_SECRET:
            raise ValueError(f"a webhook secret must be at least {MIN_SECRET} characters")

    def __repr__(self) -> str:
        return f"Webhook({redact(self.url)})"

    def request(self, alert: Alert, now: int) -> tuple[bytes, dict[str, str]]:
        body = alert.body()
        return body, {SIGNATURE_HEADER: sign(self.secret, body, now)}


@dataclass(frozen=True)
class Slack:
    """A Slack incoming webhook (its URL is its secret): a Block Kit message."""

    url: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_url(self.url, "a Slack webhook URL"))

    def __repr__(self) -> str:
        return f"Slack({redact(self.url)})"

    def request(self, alert: Alert, now: int) -> tuple[bytes, dict[str, str]]:
        return json.dumps(slack(alert), ensure_ascii=False).encode(), {}


Destination = Webhook | Slack


def destinations(config: Config) -> tuple[Destination, ...]:
    """Where the configured alerts go (none when no URL is set)."""
    found: list[Destination] = []
    if config.webhook_url is not None and config.webhook_secret is not None:
        found.append(Webhook(config.webhook_url, config.webhook_secret))
    if config.slack_webhook_url is not None:
        found.append(Slack(config.slack_webhook_url))
    return tuple(found)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Gimel-Signature`` header's value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now.
    Any ``v1`` may match (several are sent while a secret is rotated); compared in constant
    time, so the comparison leaks nothing of the expected value."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _mac(secret, body, timestamp)
    return any(hmac.compare_digest(expected.encode(), given.encode()) for given in signatures)


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver one alert to one destination, as the delivery log keeps it."""

    alert: str
    """The alert's id."""
    destination: str
    """The destination's URL, redacted."""
    attempt: int
    at: int
    ok: bool
    status: int | None
    """The HTTP status answered (None: no answer)."""
    error: str | None
    retry_at: int | None
    """When to try again (None: delivered, refused for good, or out of attempts)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def backoff(attempt: int) -> int | None:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...) before the next, doubling
    from :data:`BACKOFF`; None once :data:`ATTEMPTS` have been made."""
    if attempt < 1:
        raise ValueError(f"attempts count from 1 (got {attempt})")
    return BACKOFF * 2 ** (attempt - 1) if attempt < ATTEMPTS else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an answer (an HTTPError): the alert is not sent on to another URL."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


def deliver(
    destination: Destination,
    alert: Alert,
    *,
    attempt: int = 1,
    timeout: float = defaults.WEBHOOK_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> Delivery:
    """Send ``alert`` once; never raises for a failed delivery, returns its record."""
    now = int(clock())
    body, headers = destination.request(alert, now)
    request = urllib.request.Request(
        destination.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            **headers,
        },
    )
    loopback = is_loopback(urlsplit(destination.url).hostname or "")
    # Environment proxies for the world (a VPC's egress proxy); none for loopback.
    proxies = urllib.request.ProxyHandler({} if loopback else None)
    opener = urllib.request.build_opener(_NoRedirect, proxies)
    status: int | None = None
    error: str | None = None
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
            response.read(1024)
    except urllib.error.HTTPError as exc:
        status = exc.code
        error = _answered(exc)
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        error = f"timed out after {timeout:g}s" if timed_out else f"no connection: {exc.reason}"
    except TimeoutError:
        error = f"timed out after {timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        error = f"connection failed: {type(exc).__name__} {exc}".strip()
    ok = error is None
    transient = status is None or status >= 500 or status in RETRIED_STATUSES
    wait = None if ok or not transient else backoff(attempt)
    record = Delivery(
        alert=alert.id,
        destination=redact(destination.url),
        attempt=attempt,
        at=now,
        ok=ok,
        status=status,
        error=None if error is None else _scrub(error, destination),
        retry_at=None if wait is None else now + wait,
    )
    if ok:
        log.info("alert %s delivered to %s", alert.id, record.destination)
    else:
        log.warning(
            "alert %s to %s, attempt %d: %s", alert.id, record.destination, attempt, record.error
        )
    return record


def _answered(exc: urllib.error.HTTPError) -> str:
    """A non-2xx answer in a few words, with the start of what the receiver said (Slack says
    why: ``no_service``, ``invalid_payload``)."""
    try:
        said = exc.read(120).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        said = ""
    finally:
        exc.close()
    said = "".join(c if c.isprintable() else " " for c in said).strip()
    what = f"answered {exc.code}"
    if 300 <= exc.code < 400:
        what += ", a redirect: not followed"
    return f"{what}: {said}" if said else what


def _scrub(text: str, destination: Destination) -> str:
    """An error never quotes the URL or the secret, whatever a library put in it."""
    text = text.replace(destination.url, redact(destination.url))
    path = urlsplit(destination.url).path
    if len(path) > 1:
        text = text.replace(path, "/…")
    if isinstance(destination, Webhook):
        text = text.replace(destination.secret, "…")
    return text[:300]
