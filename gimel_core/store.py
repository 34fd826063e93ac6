"""The Redis client: built once per process from one URL, with short timeouts.

Redis errors never leave this package as redis exceptions: :func:`unavailable` turns
them into :class:`StoreUnavailable`, which the API answers with 503 and ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import redis
from redis.backoff import ConstantBackoff
from redis.commands.core import Script
from redis.retry import Retry

from . import defaults
from .errors import StoreUnavailable


def connect(url: str, timeout: float = defaults.REDIS_TIMEOUT) -> redis.Redis:
    """One client (and connection pool) for the whole process, reused across requests.

    Every call fails within about ``timeout * (1 + REDIS_RETRIES)`` seconds, so a client
    that sees 503 can keep its event queued; the pool reconnects by itself once Redis is
    back, with no restart.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ConstantBackoff(0.02), defaults.REDIS_RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
    )


def load_script(client: redis.Redis, name: str) -> Script:
    """Register ``gimel_core/lua/<name>.lua``; redis-py runs it by SHA and reloads if needed."""
    source = resources.files("gimel_core").joinpath("lua", f"{name}.lua").read_text("utf-8")
    return client.register_script(source)


@contextmanager
def unavailable() -> Iterator[None]:
    """Map every Redis failure inside the block to :class:`StoreUnavailable`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc
    except redis.RedisError as exc:
        # BUSY, LOADING, READONLY, MASTERDOWN, OOM...: the store cannot take the event now.
        raise StoreUnavailable(f"Redis refused the command: {exc}") from exc
