"""Local runs: the embedded Redis keeps its data across restarts; `gimel serve` works."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from gimel_core import embedded
from gimel_core.embedded import EmbeddedRedis
from tests.serving import GimelServe


def test_embedded_data_survives_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    redis.Redis.from_url(server.url).pfadd("k", "a", "b")
    server.stop()
    again = EmbeddedRedis(tmp_path).start()
    try:
        assert redis.Redis.from_url(again.url).pfcount("k") == 2
    finally:
        again.stop()


def test_a_second_process_reuses_the_running_server(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path).start()
    try:
        second = EmbeddedRedis(tmp_path).start()
        assert second.port == first.port
        assert second.process is None  # attached, not started: it will not stop it
        second.stop()
        assert redis.Redis.from_url(first.url).ping()
    finally:
        first.stop()


def _ignore_sigint() -> None:
    """As a shell script's `gimel serve &` (or nohup) starts it: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(serve: GimelServe, sig: int) -> tuple[int | None, str]:
    """Send ``sig``; the exit code and the last line it printed."""
    code = serve.stop(sig)
    lines = serve.output().splitlines()
    return code, lines[-1] if lines else ""


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    # A browser's agent: urllib's own is one of the scripts' agents Gimel does not count.
    headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"}
    request = urllib.request.Request(url, headers={"x-api-key": key, **headers} if key else headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_a_start_interrupted_while_redis_loads_leaves_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM while the embedded Redis loads its data (a large append-only file
    takes seconds) stops it: none is left running on the folder, unknown to the next start,
    which would start a second server on the same file."""
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recorded(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(popen(*args, **kwargs))
        return started[-1]

    def interrupted(port: int, tls: Any = None) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded.subprocess, "Popen", recorded)
    monkeypatch.setattr(embedded, "_answers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        EmbeddedRedis(tmp_path).start()
    (server,) = started
    assert server.poll() is not None  # stopped, not left running
    monkeypatch.undo()
    again = EmbeddedRedis(tmp_path).start()  # a start afterwards starts its own, alone
    try:
        assert again.process is not None and redis.Redis.from_url(again.url).ping()
    finally:
        again.stop()


def test_gimel_serve_prints_url_and_key_counts_and_keeps_data(tmp_path: Path) -> None:
    with GimelServe(tmp_path) as serve:
        assert f"{serve.base}/track" in serve.output()
        key = serve.api_key()
        assert key == (tmp_path / "api-key").read_text().strip()
        base = serve.base
        for uuid in ["a", "b", "a"]:
            status, _ = _get(f"{base}/track?experiment=e&variant=v&event=participate&uuid={uuid}")
            assert status == 200
        _get(f"{base}/track?experiment=e&variant=v&event=goal&uuid=a")
        assert _stop(serve, signal.SIGTERM) == (0, "Gimel stopped.")

    assert not (tmp_path / "redis.port").exists()  # the embedded Redis was stopped too
    with GimelServe(tmp_path) as serve:
        assert key in serve.output()  # the same key on the next start
        time.sleep(0.2)
        status, body = _get(f"{serve.base}/experiments/e", key)
        assert status == 200
        assert b'"successes": 1, "trials": 2' in body
        assert _stop(serve, signal.SIGINT) == (0, "Gimel stopped.")


def test_ctrl_c_stops_gimel_serve_even_when_started_with_sigint_ignored(tmp_path: Path) -> None:
    with GimelServe(tmp_path, "--workers", "2", preexec_fn=_ignore_sigint) as serve:
        redis_pid = _redis_pid(tmp_path)
        assert redis_pid is not None
        workers = _workers(serve.process.pid, redis_pid, 2)
        status, _ = _get(f"{serve.base}/track?experiment=e&variant=v&event=x&uuid=a")
        assert status == 200
        assert _stop(serve, signal.SIGINT) == (0, "Gimel stopped.")
    assert not (tmp_path / "redis.port").exists()
    assert not _alive(redis_pid)  # the embedded redis-server is gone, and the worker too
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.slow
def test_a_signal_to_every_process_stops_gimel_serve_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals every process of the foreground group, and systemd stops a
    unit by sending SIGTERM to all of its processes: the workers then stop on their own, and
    that is a clean stop (exit 0), not a worker that died."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with GimelServe(tmp_path, "--workers", "2") as serve:
            redis_pid = _redis_pid(tmp_path)
            workers = _workers(serve.process.pid, redis_pid, 2)
            url = f"{serve.base}/track?experiment=e&variant=v&event=x&uuid=a"
            assert _get(url)[0] == 200
            os.killpg(serve.process.pid, sig)  # the redis-server has a session of its own
            serve.process.wait(timeout=20)
            rest = serve.output()
            assert (serve.process.returncode, rest.splitlines()[-1]) == (0, "Gimel stopped."), rest
        assert not (tmp_path / "redis.port").exists()
        assert redis_pid is not None and not _alive(redis_pid)
        assert not any(_alive(pid) for pid in workers)


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    with GimelServe(tmp_path, "--workers", "2") as serve:
        redis_pid = _redis_pid(tmp_path)
        workers = _workers(serve.process.pid, redis_pid, 2)
        dead = min(workers)
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (_children(serve.process.pid) - {redis_pid, dead}) == workers - {dead}:
            assert time.monotonic() < deadline, "no worker replaced the one that died"
            time.sleep(0.05)
        replaced = _workers(serve.process.pid, redis_pid, 2)
        assert dead not in replaced and workers - {dead} < replaced
        for i in range(20):
            url = f"{serve.base}/track?experiment=e&variant=v&event=x&uuid={i}"
            assert _get(url)[0] == 200
        assert _stop(serve, signal.SIGTERM) == (0, "Gimel stopped.")
    assert not any(_alive(pid) for pid in replaced)


def test_gimel_serve_runs_one_worker_per_core_by_default(tmp_path: Path) -> None:
    with GimelServe(tmp_path) as serve:
        _workers(serve.process.pid, _redis_pid(tmp_path), len(os.sched_getaffinity(0)))
        assert _stop(serve, signal.SIGTERM) == (0, "Gimel stopped.")


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _workers(pid: int, redis_pid: int | None, count: int) -> set[int]:
    """The worker processes of `gimel serve` ``pid`` (its children but the redis-server),
    once there are ``count`` of them: they are forked as the banner is printed."""
    deadline = time.monotonic() + 10
    while len(workers := _children(pid) - {redis_pid}) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == count
    return workers


def test_gimel_serve_with_several_workers_shares_one_store(tmp_path: Path) -> None:
    with GimelServe(tmp_path, "--workers", "3", "--threads", "2") as serve:
        key = serve.api_key()
        workers = _workers(serve.process.pid, _redis_pid(tmp_path), 3)  # on one socket
        base = serve.base
        for i in range(60):
            status, _ = _get(f"{base}/track?experiment=w&variant=v&event=participate&uuid={i}")
            assert status == 200
        _get(f"{base}/track?experiment=w&variant=v&event=goal&uuid=0")
        assert _stop(serve, signal.SIGTERM) == (0, "Gimel stopped.")
    assert not any(_alive(pid) for pid in workers)
    assert not (tmp_path / "redis.port").exists()  # stopped once, by the parent
    with GimelServe(tmp_path) as serve:
        status, body = _get(f"{serve.base}/experiments/w", key)
        assert b'"successes": 1, "trials": 60' in body
        assert _stop(serve, signal.SIGTERM)[0] == 0


def _redis_pid(data_dir: Path) -> int | None:
    """The pid of the embedded redis-server serving ``data_dir``, if one answers."""
    try:
        port = int((data_dir / "redis.port").read_text())
    except (OSError, ValueError):
        return None
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        return int(client.info("server")["process_id"])
    except redis.RedisError:
        return None
    finally:
        client.close()
