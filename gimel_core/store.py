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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ConstantBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from . import defaults, keys
from .errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from .config import Config
    from .storage.runner import Scripts

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""``redis+cluster://host:port,host:port`` (as the ``limits`` library writes it), TLS too."""

CONNECTIONS = 64
"""Most connections one process opens to Redis (to each node of a cluster): more than the
threads that use them (``gimel serve --threads``), so one is free unless Redis stalls."""

CLUSTER_QUERY = ("ssl_ca_certs",)
"""What a cluster URL's query may set: a CA file for a server whose certificate no public CA
signed (a single-node URL takes every query argument redis-py's ``from_url`` does)."""


def connect(url: str, timeout: float = defaults.REDIS_TIMEOUT) -> redis.Redis:
    """One client (and connection pool) for the whole process, reused across requests.

    Every call fails within about ``timeout * (1 + REDIS_RETRIES)`` seconds (no periodic
    health-check PING: it would run its own retries inside each attempt), so a client
    that sees 503 can keep its event queued; the pool reconnects by itself once Redis is
    back, with no restart. The pool holds at most :data:`CONNECTIONS` connections and a call
    waits at most ``timeout`` for one: a stall neither opens a connection per waiting thread
    nor keeps a thread waiting without bound. A cluster URL gives a cluster client with the
    same interface: every key of an experiment lives in one slot, so nothing else needs to
    know.
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
            max_connections=CONNECTIONS,  # per node; more: an error at once
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            ssl=scheme == "rediss+cluster",
            **_cluster_query(url),
            **options,
        )
        return cast(redis.Redis, cluster)
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=CONNECTIONS,
        timeout=timeout,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **options,
    )
    return redis.Redis.from_pool(pool)


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


# -- health: can Redis take writes, and can it lose what it holds? ---------------------------

SAFE_POLICY = "noeviction"
"""The only ``maxmemory-policy`` that never drops a key: every other one may evict counters
or de-dup records (``volatile-*`` too: de-dup buckets carry a TTL), so that a re-sent event
counts twice. With it, a full Redis refuses writes instead, and says so."""

NEARLY_FULL = 0.9
"""Share of ``maxmemory`` in use from which a Redis is reported nearly full."""

FULL = 0.98
"""Share of ``maxmemory`` in use from which a ``noeviction`` Redis counts as full. Redis
refuses a write once its memory passes ``maxmemory``; a moment later a freed client buffer
can let a small write such as the probe through while a batch is still refused, so the
probe alone would flicker."""


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What one Redis master said: its eviction policy, memory, and why it refused a write."""

    policy: str
    """``maxmemory-policy``, from INFO memory (Redis >= 4), else CONFIG GET; "" if neither."""
    used: int
    """Bytes that count against ``maxmemory`` (used_memory less replication/AOF buffers)."""
    maxmemory: int
    """0: no limit."""
    refuses: str | None
    """Why the probe write was refused (a short phrase), or None if it was taken."""

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY

    @property
    def nearly_full(self) -> bool:
        return self.maxmemory > 0 and self.used >= NEARLY_FULL * self.maxmemory

    @property
    def full(self) -> bool:
        """Refusing (or about to refuse) writes for want of memory."""
        return not self.evicts and self.maxmemory > 0 and self.used >= FULL * self.maxmemory


FULL_REFUSAL = "it is full (maxmemory reached, policy noeviction)"


def _refusal(exc: Exception) -> str:
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return FULL_REFUSAL
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "it is a read-only replica"
    if str(exc).startswith("NOREPLICAS"):
        return "too few replicas are connected (min-replicas-to-write)"
    return "it refused a write"


def _node_health(client: redis.Redis, probe: str, memory: bool) -> NodeHealth | None:
    """One pipelined round trip: a write probe (it expires by itself), then INFO memory."""
    pipe = client.pipeline(transaction=False)
    pipe.set(probe, "1", px=10_000)
    if memory:
        pipe.info("memory")
    replies = pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, redis.ConnectionError | redis.TimeoutError):
            raise reply
    written = replies[0]
    refuses = _refusal(written) if isinstance(written, Exception) else None
    if not memory:
        return NodeHealth("", 0, 0, refuses) if refuses else None
    info = replies[1]
    if isinstance(info, Exception):
        raise info
    policy = str(info.get("maxmemory_policy", ""))
    if not policy:  # Redis < 4: INFO has no policy; CONFIG may be refused (managed Redis)
        try:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
        except redis.ResponseError:
            policy = ""
    used = int(info.get("used_memory", 0)) - int(info.get("mem_not_counted_for_evict", 0))
    return NodeHealth(policy, used, int(info.get("maxmemory", 0)), refuses)


def _masters(client: redis.Redis) -> list[tuple[redis.Redis, str]]:
    """Each master's own client, and a probe key in a slot it serves."""
    if not isinstance(client, RedisCluster):
        return [(client, keys.check_probe("health"))]
    cluster = client
    wanted = {node.name for node in cluster.get_primaries()}
    found: dict[str, str] = {}
    for i in range(100_000):
        key = keys.check_probe(f"health{{{i}}}")
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
        if node.name in wanted and node.name not in found:
            found[node.name] = key
            if len(found) == len(wanted):
                break
    nodes = {node.name: node for node in cluster.get_primaries()}
    return [(cluster.get_redis_connection(nodes[name]), key) for name, key in found.items()]


def redis_health(client: redis.Redis, memory: bool = True) -> list[NodeHealth]:
    """Every master's health (a cluster's, one round trip each; a single server's, one).

    With ``memory`` False only the write probe is sent, and only refusing masters are
    returned (with no policy or memory). Raises StoreUnavailable if a master cannot be
    reached."""
    with unavailable():
        healths = [_node_health(node, probe, memory) for node, probe in _masters(client)]
    return [health for health in healths if health is not None]


@dataclass(frozen=True, slots=True)
class Health:
    """The store as ``/health`` tells it: whether it takes writes, and what may lose data."""

    refuses: str | None
    """Why Redis refuses writes (the API answers 503), or None."""
    problems: tuple[str, ...]
    """What may lose or refuse data soon, while writes are still taken (200, "degraded")."""


class HealthProbe:
    """Each read is one round trip (a write probe); INFO memory rides along at most once a
    ``ttl``, so a public endpoint polled hard costs Redis no more than a PING each time."""

    def __init__(self, client: redis.Redis, ttl: float = 1.0) -> None:
        self.client = client
        self.ttl = ttl
        self._memory: tuple[float, bool, tuple[str, ...]] | None = None
        """When INFO memory was read; whether a master was full; the problems."""

    def read(self) -> Health:
        now = time.monotonic()
        stale = self._memory is None or now - self._memory[0] >= self.ttl
        nodes = redis_health(self.client, memory=stale)
        if stale:
            self._memory = (now, any(node.full for node in nodes), _problems(nodes))
        assert self._memory is not None
        _, full, problems = self._memory
        refusals = [node.refuses for node in nodes if node.refuses]
        refusals += [FULL_REFUSAL] if full else []
        return Health(refusals[0] if refusals else None, problems)


def _problems(nodes: list[NodeHealth]) -> tuple[str, ...]:
    problems = []
    if any(node.evicts for node in nodes):
        problems.append("Redis may evict counts (maxmemory-policy is not noeviction)")
    if any(node.nearly_full for node in nodes):
        problems.append(f"Redis memory is over {NEARLY_FULL:.0%} of maxmemory")
    return tuple(problems)
