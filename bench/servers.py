"""WSGI servers side by side on the same Gimel app: waitress, gunicorn, granian.

    python -m bench.servers [--seconds 3] [--rounds 1] [--workers N]

Every server runs ``create_app()`` against one redis-server started here (GIMEL_REDIS_URL),
with the same number of worker processes (the number of cores unless told), and is loaded
by the same wrk script (`bench.load`, /track with fresh uuids) at 16 and at 256 connections,
servers taken in turn, round after round, so that a noisy machine slows them alike (each
figure the median of the rounds, with their min and max; CPU per request of the server's
own processes beside each rate, and of the redis-server they share):

- waitress, 8 threads per process, the processes forked onto one socket (waitress has no
  worker processes of its own; this is how `gimel serve` ran it);
- gunicorn, ``gthread`` workers (8 threads) and ``sync`` workers;
- granian: `gimel serve` itself, its defaults but for ``--workers``;
- granian on a WSGI app that does nothing (`gimel serve`'s server code, same settings): the
  ceiling of HTTP on this machine. Gimel's /track rate over it is the share of the ceiling
  left after Gimel's own work per request; what Gimel spends is what lowers it.

Each server must run as many worker processes as asked, or the run fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gimel_core.embedded import EmbeddedRedis, free_port
from tests import serving

from . import load
from .spread import shown, spread

CONNECTIONS = (16, 256)
WAITRESS_THREADS = 8
GUNICORN_THREADS = 8


@dataclass(frozen=True)
class Server:
    """How to start one server on ``port`` with ``workers`` worker processes."""

    name: str
    command: Callable[[int, int], list[str]]
    parent_serves: bool = False  # the first process serves too (else it only supervises)


def _gunicorn(worker_class: str, *extra: str) -> Callable[[int, int], list[str]]:
    def command(port: int, workers: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            *extra,
            "gimel_core.app:create_app()",
        ]

    return command


def _here(kind: str, *extra: str) -> Callable[[int, int], list[str]]:
    def command(port: int, workers: int) -> list[str]:
        return [sys.executable, "-m", "bench.servers", kind, str(port), str(workers), *extra]

    return command


def _gimel_serve(port: int, workers: int) -> list[str]:
    return serving.command(port, "--workers", str(workers))


GIMEL = "granian (`gimel serve`)"
NOOP = "granian, a WSGI app that does nothing"
SERVERS = (
    Server(f"waitress ({WAITRESS_THREADS} threads)", _here("waitress"), parent_serves=True),
    Server(
        f"gunicorn gthread ({GUNICORN_THREADS} threads)",
        _gunicorn("gthread", "--threads", str(GUNICORN_THREADS)),
    ),
    Server("gunicorn sync", _gunicorn("sync")),
    Server(GIMEL, _gimel_serve),
    Server(NOOP, _here("noop")),
)


Runs = dict[str, dict[int, list[dict[str, float]]]]
"""wrk's figures per server, per number of connections, one per round."""


def compare(seconds: int = 3, rounds: int = 1, workers: int | None = None) -> Runs:
    """Each server's wrk figures at each of :data:`CONNECTIONS`, round after round."""
    workers = workers or os.cpu_count() or 1
    runs: Runs = {s.name: {c: [] for c in CONNECTIONS} for s in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis").start()
        # As `gimel serve` is tested: no watcher process beside the workers, this code first.
        env = serving.clean_env(
            GIMEL_REDIS_URL=redis.url, GIMEL_API_KEY="bench-servers-key-0123456789"
        )
        script = Path(tmp) / "track.lua"
        script.write_text(load.WRK_SCRIPT)
        try:
            for round_ in range(rounds):
                for server in SERVERS:
                    print(f"  {server.name}, round {round_ + 1}...", file=sys.stderr, flush=True)
                    assert redis.process is not None
                    measured = _measure(server, workers, env, script, seconds, redis.process.pid)
                    for connections, result in measured:
                        runs[server.name][connections].append(result)
        finally:
            redis.stop()
    return runs


def _measure(
    server: Server, workers: int, env: dict[str, str], script: Path, seconds: int, redis: int
) -> Iterable[tuple[int, dict[str, float]]]:
    port = free_port()
    process = load.start(server.command(port, workers), env)
    try:
        base = f"http://127.0.0.1:{port}"
        load.wait_until_up(base, process)
        serving = [process.pid, *load.expect_workers(process.pid, workers, server.parent_serves)]
        load.wrk(base, script, 8, 1)  # warm up: imports, script cache, connection pools
        results = []
        for connections in CONNECTIONS:
            before, redis_before = load.cpu_s(serving), load.cpu_s([redis])
            result = load.wrk(base, script, connections, seconds)
            requests = max(result["requests"], 1)
            # The server's own processes (not wrk), and apart from them its redis-server's.
            result["cpu_us"] = (load.cpu_s(serving) - before) * 1e6 / requests
            result["redis_cpu_us"] = (load.cpu_s([redis]) - redis_before) * 1e6 / requests
            results.append((connections, result))
    finally:
        load.stop(process)
    return results


def summary(runs: Runs) -> dict[str, dict[int, dict[str, float]]]:
    """Each server's figures at each number of connections over the rounds (`load.summed`)."""
    return {
        name: {c: load.summed(results) for c, results in by_connections.items()}
        for name, by_connections in runs.items()
    }


def gimel_fraction(runs: Runs) -> dict[str, float]:
    """`gimel serve`'s /track rate over the no-op app's, same server, at 16 connections, each
    round's pair taken minutes apart at most (``spread``)."""
    pairs = zip(runs[GIMEL][16], runs[NOOP][16], strict=True)
    return spread(
        "fraction", [ours["requests_per_s"] / noop["requests_per_s"] for ours, noop in pairs]
    )


def describe(result: dict[str, float]) -> str:
    """A server's figures at one number of connections (`load.summed`), as a table shows them."""
    text = f"{shown(result, 'requests_per_s', '{:,.0f}', '/s')}, {result['errors']:.0f} errors, "
    text += f"p99 {shown(result, 'p99_ms', unit=' ms')}"
    if "cpu_us" in result:
        text += f", CPU {shown(result, 'cpu_us', '{:.0f}', ' µs')} a request"
    if "redis_cpu_us" in result:
        text += f" (redis-server's {shown(result, 'redis_cpu_us', '{:.0f}', ' µs')})"
    return text


# -- the servers this module starts itself ---------------------------------------------------


def noop(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app that does nothing, answering as small a body as /track does."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
    return [b'{"ok":true}']


def _serve_noop(port: int, workers: int) -> None:
    from gimel_core.cli import serve

    listener = serve.listen("127.0.0.1", port)
    serve.run(noop, listener, workers, serve.THREADS)


def _serve_waitress(port: int, workers: int) -> None:
    """waitress in ``workers`` processes on one socket; SIGTERM ends them all."""
    import waitress

    from gimel_core.app import create_app

    app = create_app()
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                waitress.serve(app, sockets=[listener], threads=WAITRESS_THREADS, _quiet=True)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    waitress.serve(app, sockets=[listener], threads=WAITRESS_THREADS, _quiet=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] in ("noop", "waitress"):
        serve = _serve_noop if sys.argv[1] == "noop" else _serve_waitress
        serve(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    runs = compare(args.seconds, args.rounds, args.workers)
    figures = summary(runs)
    print(f"\n{args.workers} workers each, /track under wrk (loopback), {args.rounds} round(s):")
    print("the median of the rounds (min, max); CPU: the server's processes, per request")
    print("\n| server | 16 connections | 256 connections |")
    print("|---|---|---|")
    for name, by_connections in figures.items():
        print(f"| {name} | {describe(by_connections[16])} | {describe(by_connections[256])} |")
    fraction = gimel_fraction(runs)
    print(f"\nGimel's /track over the no-op app (granian): {shown(fraction, 'fraction', '{:.3f}')}")


if __name__ == "__main__":
    main()
