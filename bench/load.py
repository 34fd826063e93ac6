"""`gimel serve` under HTTP load from a second process (wrk), on loopback.

Reports requests/s, errors, p99 latency, the CPU per request of gimel serve's processes and
of its redis-server (``/proc/<pid>/stat``), and the server's memory (RSS of gimel serve, its
worker processes and its redis-server) at the start and the end. `gimel serve` runs with
the workers and threads asked for (by default its own: one worker per core), and the run
fails unless that many worker processes serve. `python -m bench.load --seconds 60` is the
soak run; the suite runs a shorter one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.serving import GimelServe

from .spread import shown, spread

# Every request carries a new uuid, as real visitors do; a fifth re-send an earlier one.
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local uuid = counter
  if counter % 5 == 0 then uuid = counter - 3 end
  local path = "/track?experiment=load&variant=v" .. (counter % 3) ..
    "&event=participate&namespace=bench&uuid=" .. wrk.thread.id .. "-" .. uuid
  return wrk.format("GET", path)
end
function setup(thread) thread:set("id", tostring(math.random(1, 1000000000))) end
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(
    seconds: int = 10,
    connections: int = 16,
    workers: int | None = None,
    threads: int | None = None,
    rounds: int = 1,
) -> dict[str, float]:
    """`gimel serve` (embedded Redis) under wrk, ``rounds`` runs of ``seconds`` on the same
    server; ``None`` leaves gimel serve its default. Rates, p99 and CPU per request are the
    median of the rounds with their min and max (``spread``); errors are summed."""
    workers = workers or os.cpu_count() or 1
    options = ["--workers", str(workers)]
    if threads is not None:
        options += ["--threads", str(threads)]
    with tempfile.TemporaryDirectory() as tmp, GimelServe(Path(tmp) / "data", *options) as server:
        serving = expect_workers(server.process.pid, workers, parent_serves=False)
        ours = [server.process.pid, *serving]
        stores = redis_servers(server.process.pid)
        # Warm up (imports, script cache, connection pool), then measure memory.
        script = Path(tmp) / "track.lua"
        script.write_text(WRK_SCRIPT)
        wrk(server.base, script, 8, 2)
        start_kb = sum(rss_kb(pid) for pid in ours + stores)
        results = []
        for _ in range(rounds):
            before = cpu_s(ours), cpu_s(stores)
            result = wrk(server.base, script, connections, seconds)
            after = cpu_s(ours), cpu_s(stores)
            per_request = 1e6 / max(result["requests"], 1)
            result["cpu_us"] = (after[0] - before[0]) * per_request
            result["redis_cpu_us"] = (after[1] - before[1]) * per_request
            results.append(result)
        end_kb = sum(rss_kb(pid) for pid in ours + stores)
    return {
        **summed(results),
        "rss_start_mb": start_kb / 1024,
        "rss_end_mb": end_kb / 1024,
    }


def summed(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """wrk rounds as one figure each: requests and errors added up, every other figure the
    median of the rounds with their min and max."""
    figures: dict[str, float] = {}
    for key in results[0]:
        values = [r[key] for r in results]
        figures |= {key: sum(values)} if key in ("requests", "errors") else spread(key, values)
    return figures


def cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user and system, every thread) the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        # Fields after the command name, which is in brackets and may hold spaces.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def start(command: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One of `bench.servers`' other servers, in a session of its own, so that :func:`stop`
    ends all of its processes."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd would; whatever is left of its process group after 30 s is killed."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until_up(base: str, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start: {server.args}") from None
            time.sleep(0.1)


def expect_workers(pid: int, workers: int, parent_serves: bool) -> list[int]:
    """The worker processes of server ``pid`` (redis-server aside), once there are as many
    as ``--workers`` asked (one fewer where the parent serves too); a server that ignored
    the flag fails the run instead of being measured under a wrong label."""
    wanted = workers - 1 if parent_serves else workers
    deadline = time.monotonic() + 10
    while True:
        found = [p for p in children(pid) if p not in redis_servers(pid)]
        if len(found) == wanted:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"{wanted} worker processes expected, found {len(found)}")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def redis_servers(pid: int) -> list[int]:
    """The embedded redis-server among the children of ``pid``."""
    found = []
    for child in children(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "redis-server":
                found.append(child)
        except FileNotFoundError:
            pass
    return found


def wrk(base: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run (2 threads) against ``base``: rate, requests, errors, p99."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    threads = min(2, connections)
    out = subprocess.run(
        [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
        + ["-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "errors": _errors(out),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
    }


def _errors(out: str) -> float:
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return float(
        (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket.groups()) if socket else 0)
    )


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, help="default: gimel serve's")
    parser.add_argument("--rounds", type=int, default=1, help="wrk runs of --seconds each")
    args = parser.parse_args()
    print(
        f"loading gimel serve --workers {args.workers} for {args.rounds} x {args.seconds} s "
        f"with {args.connections} connections..."
    )
    r = run(args.seconds, args.connections, args.workers, args.threads, args.rounds)
    growth = (r["rss_end_mb"] / r["rss_start_mb"] - 1) * 100
    print(
        f"requests     : {r['requests']:,.0f}, {shown(r, 'requests_per_s', '{:,.0f}', '/s')}"
        " (target >= 15,000)"
    )
    print(f"errors       : {r['errors']:.0f} (target 0)")
    print(f"p99 latency  : {shown(r, 'p99_ms', unit=' ms')} (target <= 10)")
    print(f"server CPU   : {shown(r, 'cpu_us', '{:.0f}', ' µs')} per request (target <= 80)")
    print(f"  its Redis  : {shown(r, 'redis_cpu_us', '{:.0f}', ' µs')} per request")
    print(
        f"server memory: {r['rss_start_mb']:.1f} MB -> {r['rss_end_mb']:.1f} MB "
        f"({growth:+.1f}%, target < 10%)"
    )


if __name__ == "__main__":
    main()
