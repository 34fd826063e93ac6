"""What a deployment costs: Lambda cold-start imports, and the size of the package.

Cold start: wall time of a fresh interpreter importing the Lambda handler (which builds the
app and its Redis client, but must not connect) against one importing only the libraries it
stands on. Both are run alternately, so a noisy machine slows both alike; the ratio is the
figure to watch (target: at most 1.3).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HANDLER = "import handler"
BASELINE = "import flask, redis, serverless_wsgi"
NO_REDIS = "redis://127.0.0.1:1"
"""Nothing listens there: an import that tried to connect would fail or stall."""

PACKAGE_PARAMS = ("apiKey=bench-placeholder-key-000000", "redisUrl=redis://redis.invalid:6379/0")
"""Packaging refuses to run without a key and a reachable-looking Redis URL; never deployed."""


def _wall_time(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def cold_start(runs: int = 9) -> dict[str, float]:
    """Median seconds to import the handler and the bare libraries, and their ratio."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
    env["GIMEL_REDIS_URL"] = NO_REDIS
    handler_times, baseline_times = [], []
    _wall_time(HANDLER, env)  # warm the page cache and write any stale bytecode
    for run in range(runs):
        pair = [(HANDLER, handler_times), (BASELINE, baseline_times)]
        for code, times in pair if run % 2 else reversed(pair):
            times.append(_wall_time(code, env))
    handler_s = statistics.median(handler_times)
    baseline_s = statistics.median(baseline_times)
    return {"handler_s": handler_s, "baseline_s": baseline_s, "ratio": handler_s / baseline_s}


SLS = ROOT / "node_modules" / ".bin" / "sls"
"""The sls CLI `npm ci` installs (`make node_modules`): what packages the Lambda zip."""


def zip_size() -> int:
    """Bytes of the Lambda package in .serverless/, running `npx sls package` if there is none."""
    zips = sorted((ROOT / ".serverless").glob("*.zip"))
    if not zips:
        if not SLS.exists():
            raise SystemExit(f"no {SLS.relative_to(ROOT)}: run `make node_modules` (npm ci) first")
        env = dict(os.environ)
        # The requirements are fetched with the `python3` first on PATH: this one.
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        params = [f"--param={param}" for param in PACKAGE_PARAMS]
        subprocess.run(["npx", "--no", "sls", "package", *params], cwd=ROOT, env=env, check=True)
        zips = sorted((ROOT / ".serverless").glob("*.zip"))
    return sum(path.stat().st_size for path in zips)


if __name__ == "__main__":
    timing = cold_start()
    print(
        f"cold start: import handler {timing['handler_s'] * 1000:.0f} ms, "
        f"import flask, redis, serverless_wsgi {timing['baseline_s'] * 1000:.0f} ms, "
        f"ratio {timing['ratio']:.2f} (target <= 1.3)"
    )
    size = zip_size()
    print(f"lambda package: {size / 1024 / 1024:.2f} MB ({size} bytes; limit 3 MB)")
