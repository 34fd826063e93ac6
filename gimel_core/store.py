"""The Redis client: built once per process from one URL, with short timeouts.

Redis errors never leave this package as redis exceptions: every public method of a
:class:`StoreBacked` class is wrapped once (as :func:`unavailable` does for a block), turning
them into :class:`StoreUnavailable`, which the API answers with 503 and ``Retry-After``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ConstantBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from . import defaults
from .errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from .config import Config
    from .storage.runner import Scripts

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""``redis+cluster://host:port,host:port`` (as the ``limits`` library writes it), TLS too."""

CLUSTER_QUERY = ("ssl_ca_certs",)
"""What a cluster URL's query may set: a CA file for a server whose certificate no public CA
signed (a single-node URL takes every query argument redis-py's ``from_url`` does)."""


def connect(url: str, timeout: float = defaults.REDIS_TIMEOUT) -> redis.Redis:
    """One client (and connection pool) for the whole process, reused across requests.

    Every call fails within about ``timeout * (1 + REDIS_RETRIES)`` seconds (no periodic
    health-check PING: it would run its own retries inside each attempt), so a client
    that sees 503 can keep its event queued; the pool reconnects by itself once Redis is
    back, with no restart. A cluster URL gives a cluster client with the same interface:
    every key of an experiment lives in one slot, so nothing else needs to know.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(ConstantBackoff(0.02), defaults.REDIS_RETRIES),
    }
    scheme, _, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        parsed = urlsplit(f"{CLUSTER_SCHEMES[scheme]}://{rest.split(',')[0]}")
        nodes = [ClusterNode(*_host_port(node)) for node in _netlocs(rest)]
        cluster = RedisCluster(
            startup_nodes=nodes,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            ssl=scheme == "rediss+cluster",
            **_cluster_query(url),
            **options,
        )
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(
        url,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **options,
    )


def _cluster_query(url: str) -> dict[str, Any]:
    query = parse_qs(urlsplit(url).query)
    unknown = sorted(set(query) - set(CLUSTER_QUERY))
    if unknown:
        raise ConfigError(
            f"GIMEL_REDIS_URL: a cluster URL takes only {', '.join(CLUSTER_QUERY)} "
            f"in its query, not {', '.join(unknown)}"
        )
    return {name: values[-1] for name, values in query.items()}


def _netlocs(rest: str) -> list[str]:
    hosts = rest.split("/")[0].split("?")[0]
    return [part.rpartition("@")[2] for part in hosts.split(",") if part]


def _host_port(netloc: str) -> tuple[str, int]:
    host, sep, port = netloc.rpartition(":")
    if not sep:
        return netloc, 6379
    if not port.isdigit():
        raise ConfigError(f"GIMEL_REDIS_URL: {netloc!r} is not host:port")
    return host.strip("[]"), int(port)


def _unavailable(exc: redis.RedisError | RedisClusterException) -> StoreUnavailable:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return StoreUnavailable(f"Redis is unreachable: {exc}")
    # BUSY, LOADING, READONLY, MASTERDOWN, OOM, cluster down...: not now, retry later.
    return StoreUnavailable(f"Redis refused the command: {exc}")


@contextmanager
def unavailable() -> Iterator[None]:
    """Map every Redis failure inside the block to :class:`StoreUnavailable`."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as exc:
        raise _unavailable(exc) from exc


F = TypeVar("F", bound=Callable[..., Any])


def _wrapped(method: F) -> F:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (redis.RedisError, RedisClusterException) as exc:
            raise _unavailable(exc) from exc

    return cast(F, call)


class StoreBacked:
    """Base of the classes that talk to Redis: their public methods never raise a redis
    exception, only :class:`StoreUnavailable` (wrapped once here, not at each call site).
    Each runs its scripts over one client, with the process's config and clock."""

    def __init__(
        self, scripts: Scripts, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.scripts = scripts
        self.client = scripts.client
        self.config = config
        self.clock = clock

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if callable(member) and not name.startswith("_"):
                setattr(cls, name, _wrapped(member))


def local_or(redis_url: str | None, data_dir: str) -> tuple[str, Any]:
    """The Redis a process uses: ``redis_url``, or with none the embedded Redis in
    ``data_dir`` (started, or the running one attached to). Returns the URL and the
    embedded server (None for a URL), which the caller stops when it is done."""
    if redis_url is not None:
        return redis_url, None
    from .embedded import EmbeddedRedis

    server = EmbeddedRedis(data_dir).start()
    return server.url, server
