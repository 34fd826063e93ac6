"""What the watcher will announce: an alert, and the two bodies that carry it.

An alert is built once and rendered twice: the generic webhook's JSON (versioned, documented
as ``WebhookAlert`` in openapi.json) and a Slack Block Kit message written for a phone. Its
id depends only on what changed, never on when it was noticed, so a receiver that sees one id
twice knows it is the same news.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode, urlsplit

from .vocabulary import AlertKind, DecisionKind

VERSION = 1
"""The webhook body's schema version: a receiver checks it before reading the rest."""
MAX_TEXT = 300
"""Longest one-line text, in characters."""
MAX_NUMBERS = 10
"""Most numbers an alert carries (a Slack section shows at most ten fields)."""

HEADLINES = {
    AlertKind.DECIDED: "decided",
    AlertKind.HARM: "harm on a guardrail",
    AlertKind.SRM: "sample ratio mismatch",
    AlertKind.SILENT: "no events",
    AlertKind.SIZE_REACHED: "planned size reached",
}
"""How a person is told each kind, in the Slack header."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One piece of news about one experiment; build with :func:`alert`."""

    id: str
    kind: AlertKind
    namespace: str
    experiment: str
    text: str
    numbers: Mapping[str, float]
    """The figures behind the text (a p-value, participants, an uplift), by name."""
    created: int
    """Unix time the change was noticed."""
    link: str | None = None
    """The dashboard, opened at this experiment (None: no GIMEL_DASHBOARD_URL)."""
    decision: DecisionKind | None = None
    """The experiment's decision line when the alert was made."""
    variant: str | None = None
    """The variant the news is about (the one to ship, the harmful one), if any."""

    def to_json(self) -> dict[str, Any]:
        """The generic webhook's body (openapi.json's ``WebhookAlert``)."""
        return {
            "version": VERSION,
            "id": self.id,
            "kind": self.kind.value,
            "namespace": self.namespace,
            "experiment": self.experiment,
            "text": self.text,
            "numbers": dict(self.numbers),
            "created": self.created,
            "link": self.link,
            "decision": None if self.decision is None else self.decision.value,
            "variant": self.variant,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """An alert back from :meth:`to_json` (as the watcher keeps it until delivered)."""
        decision = data.get("decision")
        return cls(
            id=data["id"],
            kind=AlertKind(data["kind"]),
            namespace=data["namespace"],
            experiment=data["experiment"],
            text=data["text"],
            numbers=MappingProxyType(dict(data["numbers"])),
            created=data["created"],
            link=data.get("link"),
            decision=None if decision is None else DecisionKind(decision),
            variant=data.get("variant"),
        )

    def body(self) -> bytes:
        """The exact bytes sent and signed: compact UTF-8 JSON."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def alert(
    kind: AlertKind,
    namespace: str,
    experiment: str,
    text: str,
    *,
    change: str,
    created: int,
    numbers: Mapping[str, float] | None = None,
    dashboard_url: str | None = None,
    decision: DecisionKind | None = None,
    variant: str | None = None,
) -> Alert:
    """An alert, checked. ``change`` names what changed (``ship:red``, a goal and variant that
    harm, the experiment's creation time with it...): the same change gives the same id, a
    new one a new id."""
    kind = AlertKind(kind)
    decision = None if decision is None else DecisionKind(decision)
    for name, given in (("namespace", namespace), ("experiment", experiment), ("change", change)):
        if not isinstance(given, str) or not given:
            raise ValueError(f"an alert's {name} must be a non-empty string (got {given!r})")
    if not isinstance(text, str) or not text.strip() or "\n" in text or len(text) > MAX_TEXT:
        raise ValueError(f"an alert's text must be one non-empty line of at most {MAX_TEXT} chars")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise ValueError(f"an alert's created must be a unix time in seconds (got {created!r})")
    figures = dict(numbers or {})
    if len(figures) > MAX_NUMBERS:
        raise ValueError(f"an alert carries at most {MAX_NUMBERS} numbers (got {len(figures)})")
    for name, value in figures.items():
        finite = isinstance(value, int | float) and not isinstance(value, bool)
        if not isinstance(name, str) or not name or not finite or not math.isfinite(value):
            raise ValueError(f"an alert's number {name!r} must be a finite number (got {value!r})")
    identity = json.dumps([namespace, experiment, kind.value, change])
    return Alert(
        id=hashlib.sha256(identity.encode()).hexdigest()[:32],
        kind=kind,
        namespace=namespace,
        experiment=experiment,
        text=text.strip(),
        numbers=MappingProxyType(figures),
        created=created,
        link=None if dashboard_url is None else link(dashboard_url, namespace, experiment),
        decision=decision,
        variant=variant,
    )


def link(dashboard_url: str, namespace: str, experiment: str) -> str:
    """The dashboard at one experiment. The names ride in the fragment, which a browser keeps
    to itself: no proxy or access log between the phone and Gimel sees them."""
    base = urlsplit(dashboard_url)._replace(fragment="").geturl()
    return base + "#" + urlencode({"namespace": namespace, "experiment": experiment})


def slack(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message (Block Kit) a person reads on a phone: the experiment
    and what happened first, the numbers as fields, a button to the dashboard."""
    headline = f"{alert.experiment}: {HEADLINES[alert.kind]}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(headline, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.text)}},
    ]
    if alert.numbers:
        fields = [
            {"type": "mrkdwn", "text": f"*{_escape(name.replace('_', ' '))}*\n{_figure(value)}"}
            for name, value in alert.numbers.items()
        ]
        blocks.append({"type": "section", "fields": fields})
    context = f"namespace {alert.namespace}"
    if alert.decision is not None:
        context += f" · decision {alert.decision.value}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(context)}]})
    if alert.link is not None:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the dashboard"},
            "url": alert.link,
        }
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": _escape(_cut(f"{headline}. {alert.text}", 300)), "blocks": blocks}


def _escape(text: str) -> str:
    """Slack's three control characters: a name like ``<!channel>`` stays text, not a ping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _figure(value: float) -> str:
    """A number as a person reads it: thousands grouped, three significant digits below."""
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"
