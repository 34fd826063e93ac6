"""What a deployment costs: Lambda cold-start imports, and the size of the package.

Cold start: wall time of a fresh interpreter importing the Lambda handler (which builds the
app and its Redis client, but must not connect) against one importing only the libraries it
stands on. Both are run alternately, so a noisy machine slows both alike; the ratio of each
pair is the figure to watch (target: at most 1.2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .spread import shown, spread

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


def cold_start(runs: int = 21) -> dict[str, float]:
    """Seconds to import the handler and the bare libraries, and their ratio per pair of
    runs side by side: each a median (``spread``), with its min and max. One import takes
    about half a second, and a pair's ratio on a busy machine anywhere from 0.85 to 1.8:
    enough pairs that the median holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
    env["GIMEL_REDIS_URL"] = NO_REDIS
    handler_times: list[float] = []
    baseline_times: list[float] = []
    _wall_time(HANDLER, env)  # warm the page cache and write any stale bytecode
    for run in range(runs):
        pair = [(HANDLER, handler_times), (BASELINE, baseline_times)]
        for code, times in pair if run % 2 else reversed(pair):
            times.append(_wall_time(code, env))
    ratios = [h / b for h, b in zip(handler_times, baseline_times, strict=True)]
    return (
        spread("handler_s", handler_times)
        | spread("baseline_s", baseline_times)
        | spread("ratio", ratios)
    )


SLS = Path("node_modules") / ".bin" / "sls"
"""The sls CLI `npm ci` installs (`make node_modules`), relative to a tree: what packages the
Lambda zip."""


class NotPackaged(Exception):
    """The zip could not be built here; the message says why and what would fix it."""


def zip_size(tree: Path = ROOT) -> int:
    """Bytes of the Lambda package `sls package` builds from ``tree`` now.

    Always a fresh package, written to a folder of its own: a zip left in .serverless/ by an
    earlier packaging may be of another revision. A fresh clone has no node_modules: it is
    installed as `make node_modules` does (`npm ci`) when npm is there.
    """
    if not (tree / SLS).exists():
        if shutil.which("npm") is None:
            raise NotPackaged(f"no {SLS} and no npm to install it (make node_modules)")
        print("installing node_modules (npm ci) for the sls CLI...", file=sys.stderr, flush=True)
        _run(["npm", "ci", "--no-audit", "--no-fund"], tree, "npm ci")
    env = dict(os.environ)
    # The requirements are fetched with the `python3` first on PATH: this one.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    params = [f"--param={param}" for param in PACKAGE_PARAMS]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "package"
        command = ["npx", "--no", "sls", "package", "--package", str(out), *params]
        _run(command, tree, "sls package", env)
        zips = list(out.glob("*.zip"))
        if not zips:
            raise NotPackaged(f"sls package wrote no zip into {out}")
        return sum(path.stat().st_size for path in zips)


def _run(command: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
    """``command``, its output kept; a failure is a :class:`NotPackaged` with its last lines."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise NotPackaged(f"{what} failed ({done.returncode}): {tail}")


if __name__ == "__main__":
    timing = cold_start()
    print(
        f"cold start: import handler {timing['handler_s'] * 1000:.0f} ms, "
        f"import flask, redis, serverless_wsgi {timing['baseline_s'] * 1000:.0f} ms, "
        f"ratio {shown(timing, 'ratio', '{:.2f}')} (target <= 1.2)"
    )
    try:
        size = zip_size()
    except NotPackaged as reason:
        raise SystemExit(f"lambda package: not measured: {reason}") from None
    print(f"lambda package: {size / 1e6:.2f} MB ({size} bytes; limit 3 MB)")
