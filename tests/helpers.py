"""Small helpers shared by tests."""

from __future__ import annotations

from urllib.parse import urlencode

from flask.testing import FlaskClient


def track_url(**fields: str) -> str:
    """A /track URL exactly as Alephbet builds it (form-encoded, '+' for spaces)."""
    fields.setdefault("namespace", "alephbet")
    return "/track?" + urlencode(fields)


def track(client: FlaskClient, experiment: str, variant: str, event: str, uuid: str, **extra: str):
    return client.get(
        track_url(experiment=experiment, variant=variant, event=event, uuid=uuid, **extra)
    )
