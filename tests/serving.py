"""`gimel serve` as a subprocess, for the tests and the benchmarks (`from tests.serving import`).

One way to start it (this checkout's code, a free port, its own data dir, no GIMEL_* setting
of the developer's leaking in, output to a file that can never fill up and block it), to wait
until it serves, and to stop it as systemd would (SIGTERM, SIGKILL on timeout), leaving nothing
behind however the test ended: no worker, no embedded redis-server. No pytest here, so that
`python -m bench` can use it too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gimel_core.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT = 20.0
"""Seconds a SIGTERM'd `gimel serve` gets to stop before it is killed."""


def clean_env(**gimel: str) -> dict[str, str]:
    """This environment without any GIMEL_* variable, plus ``gimel``; this checkout's code
    first on the import path, whatever the working directory. The watcher is off unless
    ``gimel`` sets GIMEL_WATCH_INTERVAL: a server under test or measure does only that."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | {"GIMEL_WATCH_INTERVAL": "0"} | gimel


def command(port: int, *options: str) -> list[str]:
    """The `gimel serve` command line, on 127.0.0.1:``port``."""
    serve = [sys.executable, "-m", "gimel_core.cli", "serve", "--host", "127.0.0.1"]
    return [*serve, "--port", str(port), *options]


class GimelServe:
    """`gimel serve --data-dir DATA_DIR OPTIONS`, started at once in a session of its own (so
    that its workers can be stopped with it); ``with`` waits until it serves and stops it."""

    def __init__(
        self,
        data_dir: Path,
        *options: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], object] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "serve.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command(self.port, "--data-dir", str(data_dir), *options),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,  # no gimel.config.json nor .gimel/ of the checkout is read
                env=clean_env() if env is None else clean_env(**env),
                start_new_session=True,
                preexec_fn=preexec_fn,
            )

    def __enter__(self) -> GimelServe:
        try:
            self.ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self, timeout: float = 30) -> str:
        """Wait for the banner (printed once the port listens) and a 200 from /health; the
        banner."""
        deadline = time.monotonic() + timeout
        while True:
            banner = self.output()
            assert self.process.poll() is None, f"gimel serve exited:\n{banner}"
            assert time.monotonic() < deadline, f"gimel serve did not start:\n{banner}"
            if "Ctrl-C" in banner and self.healthy():
                return banner
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api_key(self) -> str:
        found = re.search(r"API key\s*:\s*(\S+)", self.output())
        assert found, self.output()
        return found.group(1)

    def redis_port(self) -> int:
        """The port of the embedded redis-server it started."""
        return int((self.data_dir / "redis.port").read_text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``sig`` (SIGTERM: as systemd or Ctrl-C would) and wait; kill its session on
        timeout. Then whatever outlived it goes: its workers, and an embedded redis-server it
        did not stop (in a session of its own). Its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if (self.data_dir / "redis.port").exists():
            _shutdown_redis(self.redis_port())
        return self.process.returncode


def _shutdown_redis(port: int) -> None:
    import redis

    client = redis.Redis(port=port, socket_timeout=2)
    try:
        client.shutdown(nosave=True)
    except redis.RedisError:
        pass  # already gone, or it went down as it answered
    finally:
        client.close()
