"""Who sent a ``/track`` request, as a salted hash that changes every day: one source's budget.

Fake events with fresh uuids look exactly like visitors, so one machine could otherwise add
enough of them to set off the sample-ratio alarm or flip a decision. Each request's events
are therefore counted against its source: the client address (an IPv6 address by its /64, the
block one subscriber gets), hashed with a salt derived from a secret and the UTC day. track.lua
keeps, per experiment and clock hour, how many new events each source hash added, and counts
no more than the budget (``GIMEL_SOURCE_BUDGET``); those counts expire when the hour ends.

Neither the address nor the salt is written anywhere: the salt lives in this process only,
derived from ``GIMEL_SOURCE_SECRET``, else from the API key (so that every Lambda container
and every ``gimel serve`` worker derives the same one), else from random bytes drawn when the
app is built (``gimel serve`` forks its workers after that, so they share them). The user agent
is not part of a source: an attacker changes it at will.

Not budgeted: requests from this machine (loopback: the operator, or a proxy that did not
pass the client's address on), requests carrying a valid API key (a server relaying its
users' events), and requests whose address is unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from typing import Any

from .config import Config
from .storage.schema import DAY

_LONGEST = 64
"""Characters of an address read, so a long header costs a bounded parse."""


class Sources:
    """Turns a request's client address into the hash its events are budgeted under."""

    def __init__(self, config: Config, clock: Callable[[], float]) -> None:
        self.budget = config.source_budget
        self.clock = clock
        material = config.source_secret or (config.api_keys[0] if config.api_keys else None)
        secret = material.encode() if material else secrets.token_bytes(32)
        self._secret = hashlib.sha256(b"gimel source salt\0" + secret).digest()
        self._keys = tuple(key.encode() for key in config.api_keys)
        header = config.trusted_proxy_header
        self._header = "HTTP_" + header.upper().replace("-", "_") if header else None
        self._hops = config.trusted_proxy_hops
        self._salt: tuple[int, bytes] = (-1, b"")

    def of(self, environ: dict[str, Any]) -> str | None:
        """The hash a request's events are budgeted under; None: not budgeted."""
        if not self.budget:
            return None
        given = environ.get("HTTP_X_API_KEY")
        if given and self._trusted(given):
            return None
        address = self.address(environ)
        return None if address is None else self.hash(address)

    def address(self, environ: dict[str, Any]) -> str | None:
        """The client's address (an IPv6 one as its /64); None for loopback or unknown.

        The peer's address (``REMOTE_ADDR``: on Lambda, serverless-wsgi puts the request
        context's ``sourceIp`` there), unless a trusted proxy header is configured and holds
        at least as many entries as there are trusted proxies: then the entry the first of
        them appended (counted from the right, as each proxy appends its peer)."""
        address: str = environ.get("REMOTE_ADDR") or ""
        if self._header:
            forwarded: str = environ.get(self._header) or ""
            entries = forwarded.split(",")
            if forwarded and len(entries) >= self._hops:
                address = entries[-self._hops].strip()
        return _network(address[:_LONGEST])

    def hash(self, address: str) -> str:
        """The address keyed with today's salt: 16 hex digits that change at UTC midnight."""
        day = int(self.clock()) // DAY
        known, salt = self._salt
        if known != day:
            salt = hmac.digest(self._secret, str(day).encode(), "sha256")
            self._salt = (day, salt)
        return hashlib.blake2b(address.encode(), key=salt, digest_size=8).hexdigest()

    def _trusted(self, given: str) -> bool:
        given_bytes = given.encode("utf-8", "surrogatepass")
        return any([hmac.compare_digest(given_bytes, key) for key in self._keys])


def _network(address: str) -> str | None:
    if ":" not in address:  # IPv4 (the common case, no parsing), or nothing
        return None if not address or address.startswith("127.") else address
    try:
        ip = ipaddress.IPv6Address(address.strip("[]"))
    except ValueError:
        host, _, port = address.rpartition(":")  # an IPv4 address with its port
        return _network(host) if port.isdigit() and ":" not in host else address
    if ip.ipv4_mapped is not None:
        return _network(str(ip.ipv4_mapped))
    if ip.is_loopback:
        return None
    return f"{int(ip) >> 64:016x}::/64"
