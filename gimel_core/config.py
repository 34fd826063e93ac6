"""Configuration, read from the environment when the app is created (never at import)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from . import dedup, defaults, notify, rules
from .errors import ConfigError
from .vocabulary import Analysis, Mode, Registration

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Config:
    """Everything a Gimel process needs to know; build with :meth:`from_env`."""

    redis_url: str | None = None
    """``None`` means: start the embedded Redis in ``data_dir``."""
    api_keys: tuple[str, ...] = ()
    counting: Mode = defaults.COUNTING
    analysis: Analysis = defaults.ANALYSIS
    """Analysis method recorded for new experiments (each can be changed with PATCH)."""
    registration: Registration = defaults.REGISTRATION
    """``open``: any experiment a visitor names is counted; ``declared``: only planned ones."""
    dedup_window: int = defaults.DEDUP_WINDOW
    """Seconds an exact experiment created from now on remembers a uuid; ``dedup.LIFE``: for
    its life. An experiment keeps the window it was created with."""
    redis_timeout: float = defaults.REDIS_TIMEOUT
    data_dir: str = defaults.DATA_DIR
    batch_max_events: int = defaults.BATCH_MAX_EVENTS
    batch_max_bytes: int = defaults.BATCH_MAX_BYTES
    track_paths: tuple[str, ...] = ("/track",)
    """Paths that count events; extra ones get past ad-blockers that block "track" URLs."""
    max_namespaces: int = defaults.MAX_NAMESPACES
    max_experiments: int = defaults.MAX_EXPERIMENTS
    max_variants: int = defaults.MAX_VARIANTS
    max_goals: int = defaults.MAX_GOALS
    open_budget_bytes: int = defaults.OPEN_BUDGET_BYTES
    """Bytes the undeclared experiments of a namespace may hold (open registration)."""
    open_idle_days: int = defaults.OPEN_IDLE_DAYS
    """Days without an event after which an undeclared experiment expires."""
    dedup_max_records: int = defaults.DEDUP_MAX_RECORDS
    """exact: most uuid records an experiment holds (with a window: a fifth per bucket)."""
    allowed_namespaces: frozenset[str] | None = None
    """Only these namespaces are counted (None: any, up to max_namespaces)."""
    allowed_experiments: frozenset[str] | None = None
    bot_pattern: str = defaults.BOT_PATTERN
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to read the data endpoints from a browser (the dashboard needs none)."""
    source_budget: int = defaults.SOURCE_BUDGET
    """New events one source may add to one experiment per hour (0: no budget)."""
    source_secret: str | None = None
    """What the daily salt of source hashes is derived from (None: the API key, else random)."""
    trusted_proxy_header: str | None = None
    """Header a proxy of yours puts the client's address in (None: the peer's address)."""
    trusted_proxy_hops: int = defaults.TRUSTED_PROXY_HOPS
    webhook_url: str | None = field(default=None, repr=False)
    """Where signed alerts are posted (https; http to loopback only)."""
    webhook_secret: str | None = field(default=None, repr=False)
    """What the alerts' ``Gimel-Signature`` is computed with."""
    slack_webhook_url: str | None = field(default=None, repr=False)
    """A Slack incoming webhook (the URL is itself a secret)."""
    dashboard_url: str | None = None
    """The dashboard's address, for the link in each alert."""
    webhook_timeout: float = defaults.WEBHOOK_TIMEOUT
    watch_interval: int = defaults.WATCH_INTERVAL
    """Seconds between the watcher's passes in ``gimel serve`` and ``gimel watch``."""
    watch_silent_hours: int = defaults.WATCH_SILENT_HOURS
    """Hours without events after which a declared experiment is announced silent."""

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
        keys = rules.api_keys(env.get("GIMEL_API_KEY", ""))
        counting = _choice(env, "GIMEL_COUNTING", Mode, defaults.COUNTING)
        analysis = _choice(env, "GIMEL_ANALYSIS", Analysis, defaults.ANALYSIS)
        registration = _choice(env, "GIMEL_REGISTRATION", Registration, defaults.REGISTRATION)
        window = _window(env)
        timeout = _number(env, "GIMEL_REDIS_TIMEOUT", float, defaults.REDIS_TIMEOUT, 0.05, 30.0)
        data_dir = env.get("GIMEL_DATA_DIR", "").strip() or defaults.DATA_DIR
        max_events = _number(
            env, "GIMEL_BATCH_MAX_EVENTS", int, defaults.BATCH_MAX_EVENTS, 1, 10_000, "events"
        )
        max_bytes = _number(
            env, "GIMEL_BATCH_MAX_BYTES", int, defaults.BATCH_MAX_BYTES, 1_000, 6_000_000, "bytes"
        )
        caps = {
            field: _number(env, f"GIMEL_MAX_{field.upper()}", int, default, 1, 1_000_000, "")
            for field, default in (
                ("namespaces", defaults.MAX_NAMESPACES),
                ("experiments", defaults.MAX_EXPERIMENTS),
                ("variants", defaults.MAX_VARIANTS),
                ("goals", defaults.MAX_GOALS),
            )
        }
        open_budget = _number(
            env,
            "GIMEL_OPEN_BUDGET_BYTES",
            int,
            defaults.OPEN_BUDGET_BYTES,
            100_000,
            10**12,
            "bytes",
        )
        idle_days = _number(
            env, "GIMEL_OPEN_IDLE_DAYS", int, defaults.OPEN_IDLE_DAYS, 1, 3660, "days"
        )
        max_records = _number(
            env, "GIMEL_DEDUP_MAX_RECORDS", int, defaults.DEDUP_MAX_RECORDS, 1_000, 10**9, "records"
        )
        bot_pattern = env.get("GIMEL_BOT_PATTERN", defaults.BOT_PATTERN)
        try:
            re.compile(bot_pattern)
        except re.error as exc:
            raise ConfigError(
                f"GIMEL_BOT_PATTERN is not a valid regular expression: {exc}"
            ) from None
        origins = tuple(o.strip().rstrip("/") for o in env.get("GIMEL_CORS_ORIGINS", "").split(","))
        for origin in origins:
            if origin and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigError(
                    f"GIMEL_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
                )
        track_paths = rules.track_paths(env.get("GIMEL_TRACK_PATHS", ""))
        budget = _number(
            env, "GIMEL_SOURCE_BUDGET", int, defaults.SOURCE_BUDGET, 0, 1_000_000, "events"
        )
        secret = env.get("GIMEL_SOURCE_SECRET", "").strip() or None
        if secret is not None and len(secret) < 20:
            raise ConfigError("GIMEL_SOURCE_SECRET must be at least 20 characters")
        header, hops = _proxy(env)
        webhook_url, webhook_secret = _webhook(env)
        webhook_timeout = _number(
            env, "GIMEL_WEBHOOK_TIMEOUT", float, defaults.WEBHOOK_TIMEOUT, 0.5, 10.0
        )
        watch_interval = _number(
            env, "GIMEL_WATCH_INTERVAL", int, defaults.WATCH_INTERVAL, 0, 86_400
        )
        silent_hours = _number(
            env, "GIMEL_WATCH_SILENT_HOURS", int, defaults.WATCH_SILENT_HOURS, 1, 720, "hours"
        )
        return cls(
            redis_url=redis_url,
            api_keys=keys,
            counting=counting,
            analysis=analysis,
            registration=registration,
            dedup_window=window,
            redis_timeout=timeout,
            data_dir=data_dir,
            batch_max_events=max_events,
            batch_max_bytes=max_bytes,
            track_paths=("/track", *track_paths),
            max_namespaces=caps["namespaces"],
            max_experiments=caps["experiments"],
            max_variants=caps["variants"],
            max_goals=caps["goals"],
            open_budget_bytes=open_budget,
            open_idle_days=idle_days,
            dedup_max_records=max_records,
            allowed_namespaces=_names(env, "GIMEL_NAMESPACES"),
            allowed_experiments=_names(env, "GIMEL_EXPERIMENTS"),
            bot_pattern=bot_pattern,
            cors_origins=tuple(o for o in origins if o),
            source_budget=budget,
            source_secret=secret,
            trusted_proxy_header=header,
            trusted_proxy_hops=hops,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            slack_webhook_url=_destination(env, "GIMEL_SLACK_WEBHOOK_URL"),
            dashboard_url=_dashboard(env),
            webhook_timeout=webhook_timeout,
            watch_interval=watch_interval,
            watch_silent_hours=silent_hours,
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        return replace(self, **overrides)


LOOPBACK_NAMES = ("localhost",)


def registration_beyond_loopback(
    host: str, environ: Mapping[str, str] | None = None
) -> Registration | None:
    """``declared`` when ``gimel serve`` listens beyond loopback and GIMEL_REGISTRATION is
    unset: reachable from other machines, only a plan decides what is counted (and stored).
    None: keep the configured registration."""
    env = os.environ if environ is None else environ
    if env.get("GIMEL_REGISTRATION", "").strip():
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() in LOOPBACK_NAMES
    return None if loopback else Registration.DECLARED


def _choice(env: Mapping[str, str], name: str, kind: type[E], default: E) -> E:
    """One of ``kind``'s values, in any case; ``default`` when unset."""
    raw = env.get(name, default).strip().lower()
    if raw not in tuple(kind):
        raise ConfigError(f"{name} must be one of {', '.join(kind)} (got {raw!r})")
    return kind(raw)


def _proxy(env: Mapping[str, str]) -> tuple[str | None, int]:
    """The trusted proxy header and its hops: a header is trusted only when configured."""
    header = env.get("GIMEL_TRUSTED_PROXY_HEADER", "").strip() or None
    if header is not None and not re.fullmatch(r"[A-Za-z0-9-]+", header):
        raise ConfigError(
            "GIMEL_TRUSTED_PROXY_HEADER must be a header name like X-Forwarded-For "
            f"(got {header!r})"
        )
    hops = _number(
        env, "GIMEL_TRUSTED_PROXY_HOPS", int, defaults.TRUSTED_PROXY_HOPS, 1, 10, "proxies"
    )
    if header is None and env.get("GIMEL_TRUSTED_PROXY_HOPS", "").strip():
        raise ConfigError("GIMEL_TRUSTED_PROXY_HOPS needs GIMEL_TRUSTED_PROXY_HEADER")
    return header, hops


def _destination(env: Mapping[str, str], name: str) -> str | None:
    """A URL alerts may be sent to; the error shows it redacted (a Slack URL is a secret)."""
    url = env.get(name, "").strip() or None
    if url is not None:
        try:
            notify.check_url(url, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return url


def _webhook(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """GIMEL_WEBHOOK_URL and its secret: each needs the other (alerts are always signed)."""
    url = _destination(env, "GIMEL_WEBHOOK_URL")
    secret = env.get("GIMEL_WEBHOOK_SECRET", "").strip() or None
    if url is not None and secret is None:
        raise ConfigError("GIMEL_WEBHOOK_URL needs GIMEL_WEBHOOK_SECRET (alerts are signed)")
    if secret is not None and url is None:
        raise ConfigError("GIMEL_WEBHOOK_SECRET is set but GIMEL_WEBHOOK_URL is not")
    if secret is not None and len(secret) < notify.MIN_SECRET:
        raise ConfigError(f"GIMEL_WEBHOOK_SECRET must be at least {notify.MIN_SECRET} characters")
    return url, secret


def _dashboard(env: Mapping[str, str]) -> str | None:
    """GIMEL_DASHBOARD_URL: where an alert's link points (http or https, a host, no query)."""
    url = env.get("GIMEL_DASHBOARD_URL", "").strip() or None
    if url is not None and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
        raise ConfigError(
            "GIMEL_DASHBOARD_URL must be the dashboard's address, like "
            f"https://gimel.example.com/prod/dashboard (got {url!r})"
        )
    return url


MAX_WINDOW = 366 * 86_400


def _window(env: Mapping[str, str]) -> int:
    """GIMEL_DEDUP_WINDOW: ``life`` (the default) remembers a uuid for the experiment's life."""
    raw = env.get("GIMEL_DEDUP_WINDOW", "").strip()
    if not raw:
        return defaults.DEDUP_WINDOW
    if raw.lower() == dedup.LIFE_NAME:
        return dedup.LIFE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WINDOW:
        raise ConfigError(
            f"GIMEL_DEDUP_WINDOW must be {dedup.LIFE_NAME!r} (remember every uuid for the "
            f"experiment's life) or seconds from 1 to {MAX_WINDOW} (got {raw!r})"
        )
    return int(raw)


def _names(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    names = frozenset(n.strip() for n in env.get(name, "").split(",") if n.strip())
    return names or None


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
        raise ConfigError(
            f"{name} must be a number{' of ' + unit if unit else ''} (got {raw!r})"
        ) from None
    if not low <= value <= high:
        raise ConfigError(
            f"{name} must be between {low} and {high} {unit} (got {raw!r})".replace("  ", " ")
        )
    return value
