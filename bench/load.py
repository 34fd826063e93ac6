"""`gimel serve` under HTTP load from a second process (wrk), on loopback.

Reports requests/s, errors, p99 latency, and the server's memory (RSS of gimel serve, its
worker processes and its redis-server) at the start and the end. Two workers: one waitress
process tops out at one core. `python -m bench.load --seconds 60` is the
soak run; the suite runs a shorter one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gimel_core.embedded import free_port

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
    seconds: int = 10, connections: int = 16, workers: int = 2, threads: int = 2
) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gimel_core.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data),
                "--threads",
                str(threads),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/health", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("gimel serve did not start") from None
                    time.sleep(0.1)
            processes = [server.pid, *_children(server.pid)]
            # Warm up (imports, script cache, connection pool), then measure memory.
            script = Path(tmp) / "track.lua"
            script.write_text(WRK_SCRIPT)
            subprocess.run(
                [wrk, "-t2", "-c8", "-d2s", "-s", str(script), base],
                capture_output=True,
                check=True,
            )
            start = sum(rss_kb(pid) for pid in processes)
            out = subprocess.run(
                [
                    wrk,
                    "-t2",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    base,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            end = sum(rss_kb(pid) for pid in processes)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "errors": _errors(out),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "rss_start_mb": start / 1024,
        "rss_end_mb": end / 1024,
    }


def _children(pid: int) -> list[int]:
    """Worker processes and the embedded redis-server of a `gimel serve`."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


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
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"loading gimel serve --workers {args.workers} for {args.seconds} s "
        f"with {args.connections} connections..."
    )
    r = run(args.seconds, args.connections, args.workers)
    growth = (r["rss_end_mb"] / r["rss_start_mb"] - 1) * 100
    print(f"requests     : {r['requests']:,.0f} ({r['requests_per_s']:,.0f}/s, target >= 2,000)")
    print(f"errors       : {r['errors']:.0f} (target 0)")
    print(f"p99 latency  : {r['p99_ms']:.1f} ms (target <= 25)")
    print(
        f"server memory: {r['rss_start_mb']:.1f} MB -> {r['rss_end_mb']:.1f} MB "
        f"({growth:+.1f}%, target < 10%)"
    )


if __name__ == "__main__":
    main()
