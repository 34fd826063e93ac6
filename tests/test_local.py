"""Local runs: the embedded Redis keeps its data across restarts; `gimel serve` works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from gimel_core.embedded import EmbeddedRedis, free_port


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


def _serve(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gimel_core.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _banner(process: subprocess.Popen[str]) -> str:
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            return "".join(lines)
    raise AssertionError("gimel serve exited: " + "".join(lines))


def _stop(process: subprocess.Popen[str], sig: int) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=20)
    finally:
        assert process.stdout is not None
        process.stdout.close()


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"x-api-key": key} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_gimel_serve_prints_url_and_key_counts_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    process = _serve(tmp_path, port)
    try:
        banner = _banner(process)
        assert f"http://127.0.0.1:{port}/track" in banner
        key = re.search(r"API key\s*:\s*(\S+)", banner).group(1)  # type: ignore[union-attr]
        assert key == (tmp_path / "api-key").read_text().strip()
        base = f"http://127.0.0.1:{port}"
        for uuid in ["a", "b", "a"]:
            status, _ = _get(f"{base}/track?experiment=e&variant=v&event=participate&uuid={uuid}")
            assert status == 200
        _get(f"{base}/track?experiment=e&variant=v&event=goal&uuid=a")
    finally:
        assert _stop(process, signal.SIGTERM) == 0

    assert not (tmp_path / "redis.port").exists()  # the embedded Redis was stopped too
    process = _serve(tmp_path, port)
    try:
        banner = _banner(process)
        assert key in banner  # the same key on the next start
        time.sleep(0.2)
        status, body = _get(f"http://127.0.0.1:{port}/experiments/e", key)
        assert status == 200
        assert b'"successes": 1, "trials": 2' in body
    finally:
        assert _stop(process, signal.SIGINT) == 0


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_gimel_serve_with_several_workers_shares_one_store(tmp_path: Path) -> None:
    port = free_port()
    process = _serve(tmp_path, port, "--workers", "3", "--threads", "2")
    try:
        banner = _banner(process)
        key = re.search(r"API key\s*:\s*(\S+)", banner).group(1)  # type: ignore[union-attr]
        workers = _children(process.pid) - {int(_redis_pid(tmp_path))}
        assert len(workers) == 2  # plus the parent: three processes answer on one socket
        base = f"http://127.0.0.1:{port}"
        for i in range(60):
            status, _ = _get(f"{base}/track?experiment=w&variant=v&event=participate&uuid={i}")
            assert status == 200
        _get(f"{base}/track?experiment=w&variant=v&event=goal&uuid=0")
    finally:
        assert _stop(process, signal.SIGTERM) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not (tmp_path / "redis.port").exists()  # stopped once, by the parent
    process = _serve(tmp_path, port)
    try:
        _banner(process)
        status, body = _get(f"http://127.0.0.1:{port}/experiments/w", key)
        assert b'"successes": 1, "trials": 60' in body
    finally:
        _stop(process, signal.SIGTERM)


def _redis_pid(data_dir: Path) -> int:
    port = (data_dir / "redis.port").read_text().strip()
    return int(redis.Redis(port=int(port)).info("server")["process_id"])
