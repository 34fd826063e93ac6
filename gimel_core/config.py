"""Configuration, read from the environment when the app is created (never at import)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import defaults
from .errors import ConfigError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


@dataclass(frozen=True)
class Config:
    """Everything a Gimel process needs to know; build with :meth:`from_env`."""

    redis_url: str | None = None
    """``None`` means: start the embedded Redis in ``data_dir``."""
    api_keys: tuple[str, ...] = ()
    counting: str = defaults.COUNTING
    dedup_window: int = defaults.DEDUP_WINDOW
    redis_timeout: float = defaults.REDIS_TIMEOUT
    data_dir: str = defaults.DATA_DIR
    batch_max_events: int = defaults.BATCH_MAX_EVENTS
    batch_max_bytes: int = defaults.BATCH_MAX_BYTES
    track_paths: tuple[str, ...] = ("/track",)
    """Paths that count events; extra ones get past ad-blockers that block "track" URLs."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        redis_url = env.get("GIMEL_REDIS_URL", "").strip() or None
        if redis_url is not None and not redis_url.startswith(REDIS_SCHEMES):
            raise ConfigError(
                "GIMEL_REDIS_URL must start with one of "
                + ", ".join(REDIS_SCHEMES)
                + f" (got {redis_url.split('://')[0]!r}://...)"
            )
        keys = tuple(k.strip() for k in env.get("GIMEL_API_KEY", "").split(",") if k.strip())
        for key in keys:
            if len(key) < 20 or not key.isprintable() or " " in key:
                raise ConfigError(
                    "GIMEL_API_KEY: each key must be at least 20 printable characters without "
                    "spaces, as API Gateway requires (make one "
                    "with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
                )
        counting = env.get("GIMEL_COUNTING", defaults.COUNTING).strip().lower()
        if counting not in defaults.COUNTING_MODES:
            raise ConfigError(
                f"GIMEL_COUNTING must be one of {', '.join(defaults.COUNTING_MODES)} "
                f"(got {counting!r})"
            )
        window = _number(env, "GIMEL_DEDUP_WINDOW", int, defaults.DEDUP_WINDOW, 1, 366 * 86_400)
        timeout = _number(env, "GIMEL_REDIS_TIMEOUT", float, defaults.REDIS_TIMEOUT, 0.05, 30.0)
        data_dir = env.get("GIMEL_DATA_DIR", "").strip() or defaults.DATA_DIR
        max_events = _number(
            env, "GIMEL_BATCH_MAX_EVENTS", int, defaults.BATCH_MAX_EVENTS, 1, 10_000, "events"
        )
        max_bytes = _number(
            env, "GIMEL_BATCH_MAX_BYTES", int, defaults.BATCH_MAX_BYTES, 1_000, 6_000_000, "bytes"
        )
        extra_paths = [p.strip().strip("/") for p in env.get("GIMEL_TRACK_PATHS", "").split(",")]
        for path in extra_paths:
            if path and not _PATH_SEGMENT.fullmatch(path):
                raise ConfigError(
                    "GIMEL_TRACK_PATHS must be comma-separated path names made of letters, "
                    f"digits, '-', '_' and '/' (got {path!r})"
                )
        return cls(
            redis_url=redis_url,
            api_keys=keys,
            counting=counting,
            dedup_window=window,
            redis_timeout=timeout,
            data_dir=data_dir,
            batch_max_events=max_events,
            batch_max_bytes=max_bytes,
            track_paths=("/track", *(f"/{p}" for p in extra_paths if p and p != "track")),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        return replace(self, **overrides)


def _number(
    env: Mapping[str, str],
    name: str,
    kind: type,
    default: Any,
    low: Any,
    high: Any,
    unit: str = "seconds",
) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit} (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} {unit} (got {raw!r})")
    return value
