"""The API key of a local install, kept (owner-only) in the data folder.

``gimel serve`` generates it when no ``GIMEL_API_KEY`` is set; the other commands read it,
so ``--url`` against a local server needs no ``--api-key``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .. import defaults
from ..errors import GimelError


def path(data_dir: str) -> Path:
    return Path(data_dir) / defaults.API_KEY_FILE


def read(data_dir: str) -> str | None:
    """The local key, or None when ``gimel serve`` has not made one yet."""
    file = path(data_dir)
    if not file.exists():
        return None
    key = file.read_text().strip()
    if not key:
        raise GimelError(f"{file} is empty: delete it and `gimel serve` makes a new key")
    return key


def ensure(data_dir: str) -> str:
    """The local key, generated and saved the first time."""
    found = read(data_dir)
    if found:
        return found
    file = path(data_dir)
    file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key
