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


ORIGINAL_ROW = ("label", "successes", "trials")


def original(goals: list[dict]) -> list[dict]:
    """Only the fields of the original Gimel results JSON (statistics are tested apart)."""
    return [
        {"goal": g["goal"], "results": [{k: r[k] for k in ORIGINAL_ROW} for r in g["results"]]}
        for g in goals
    ]
