"""gimel.config.json: the deployment's settings, written by `gimel configure` and `gimel deploy`.

serverless.yml reads its parameters from this file (it is git-ignored and owner-only, as it
holds the API key and the Redis URL); the CLI reads the deployed endpoint back from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import GimelError

DEPLOY_CONFIG = "gimel.config.json"
DEPLOY_DIR = Path(".gimel", "deploy")
"""Where `gimel deploy` lays out what sls needs, outside a Gimel checkout."""
"""In the current folder, the Gimel checkout, where serverless.yml looks for it."""


def read() -> dict[str, Any]:
    """The saved settings; empty when there are none yet."""
    path = Path(DEPLOY_CONFIG)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise GimelError(
            f"{DEPLOY_CONFIG} is not valid JSON: fix it or run `gimel configure`"
        ) from None
    return data if isinstance(data, dict) else {}


def api_key(values: dict[str, Any]) -> tuple[str, str]:
    """The key `sls deploy` will give API Gateway, and where it comes from: serverless.yml
    takes GIMEL_API_KEY from the environment before the saved one."""
    if key := os.environ.get("GIMEL_API_KEY", ""):
        return key, "GIMEL_API_KEY"
    return str(values.get("apiKey", "")), f"the apiKey in {DEPLOY_CONFIG}"


def write(values: dict[str, Any]) -> None:
    fd = os.open(DEPLOY_CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
        out.write("\n")


def endpoint() -> str | None:
    """The base URL `gimel deploy` found, if it has run."""
    found = read().get("endpoint")
    return found if isinstance(found, str) and found else None
