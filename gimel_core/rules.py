"""The rules several programs must apply alike: the API key, the track paths, the webhook
secret, the deploy files.

Each is written once, in rules.json beside this module, because two readers cannot import
Python: setup.py (it runs before Gimel's dependencies are installed) and
deploy/gimel-plugin.js (node, at `sls package` time; it reads ../gimel_core/rules.json, which
the checkout and `gimel deploy`'s prepared folder both hold). This module turns them into the
checks and messages the app and the CLI share.
"""

from __future__ import annotations

import json
import re
from importlib import resources

from .errors import ConfigError

_RULES = json.loads(resources.files(__package__).joinpath("rules.json").read_text())

API_KEY = re.compile(_RULES["apiKey"]["pattern"])
"""One key as API Gateway accepts it (ASCII 0x21-0x7e but the comma, 20 to 128 of them)."""
API_KEY_RULE: str = _RULES["apiKey"]["description"]
MAKE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
"""A command that prints a good key."""

TRACK_PATH = re.compile(_RULES["trackPath"]["pattern"])
"""An extra path that counts like /track, without its outer slashes (e.g. ``collect/t``)."""
TRACK_PATH_RULE: str = _RULES["trackPath"]["description"]

WEBHOOK_SECRET_LENGTH: int = _RULES["webhookSecret"]["minLength"]
"""Shortest webhook secret, in characters (GIMEL_WEBHOOK_SECRET, the webhookSecret param)."""

DEPLOY_FILES: tuple[str, ...] = tuple(_RULES["deployFiles"])
"""What sls deploys from besides gimel_core; setup.py puts them in the wheel."""


def api_keys(value: str, name: str = "GIMEL_API_KEY") -> tuple[str, ...]:
    """The keys of a comma-separated list (several while one is rotated), each checked."""
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    for key in keys:
        if not API_KEY.fullmatch(key):
            raise ConfigError(
                f"{name}: each key must be {API_KEY_RULE}, as API Gateway requires; several "
                f"keys are separated by commas (make one with: {MAKE_KEY})"
            )
    return keys


def deploy_key_problem(key: str) -> str | None:
    """Why API Gateway would refuse ``key`` as a deployment's one key; None if it would not."""
    if API_KEY.fullmatch(key):
        return None
    parts = [part.strip() for part in key.split(",")]
    if len(parts) > 1 and all(API_KEY.fullmatch(part) for part in parts):
        return (
            f"it is {len(parts)} keys joined by commas: the app takes several for rotation, "
            "but a deployment's API Gateway takes exactly one"
        )
    return f"a deployment's key must be {API_KEY_RULE}"


def track_paths(value: str, name: str = "GIMEL_TRACK_PATHS") -> tuple[str, ...]:
    """The extra track paths of a comma-separated list, as ``/name``, each checked."""
    paths = [path.strip().strip("/") for path in value.split(",")]
    for path in paths:
        if path and not TRACK_PATH.fullmatch(path):
            raise ConfigError(
                f"{name} must be comma-separated path names made of {TRACK_PATH_RULE} "
                f"(got {path!r})"
            )
    return tuple(f"/{path}" for path in paths if path and path != "track")
