"""`gimel serve`: Gimel under granian on this machine, one worker process per core.

granian parses HTTP in Rust (hyper on tokio): a connection costs a socket and a small buffer,
neither a Python thread nor one of a few hundred slots (:func:`_connections_per_worker`). Its
headers are read in Rust, its body on each worker's event loop (:mod:`.gateway`), and only a
complete request is handed to one of the app's threads. A client is cut when it takes longer
than :data:`HEADER_TIMEOUT` to send its headers or :data:`~.gateway.BODY_TIMEOUT` its body,
or sends nothing for :data:`~.gateway.IDLE_TIMEOUT`. `bench/servers.py` measures it against
waitress and gunicorn.

This process binds the socket, runs the embedded Redis and supervises the workers, which are
forked from it with the app already built and accept on the one socket. SIGINT (Ctrl-C) and
SIGTERM (systemd, CI, ``kill``) both stop it cleanly, however it was started: the workers
finish, then the embedded Redis flushes its append-only file. Both handlers are installed
explicitly, because a process started in the background by a script (``gimel serve &``,
``nohup``) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .. import defaults
from ..config import Config, registration_beyond_loopback
from ..errors import GimelError
from ..snippet import snippet
from ..track_endpoint import TrackEndpoint
from . import local_key
from .gateway import Answer, Gateway, IdleReaper
from .options import data_dir_option, one_line_errors

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

THREADS = 4
"""Python threads per worker running the app. A request holds one only while Gimel works on
it (HTTP is read before): a few hundred microseconds around one Redis round trip, so a
few threads keep the core busy while others wait on Redis; more only queue on the GIL
(`python -m bench.load --threads N`, 2 cores: 2 and 4 alike, 1 and 8 slower)."""

HEADER_TIMEOUT = 10
"""Seconds a client has to send a request's headers, however slowly it trickles them."""

BACKLOG = 1024
"""Connections the kernel queues for the workers to accept."""

STOP_TIMEOUT = 5
"""Seconds a worker has to finish its requests once told to stop, before it is killed: a
request takes milliseconds, and a client still sending its headers or body would otherwise
hold the stop until :data:`HEADER_TIMEOUT` or :data:`~.gateway.BODY_TIMEOUT` cuts it."""

OPEN_FILES = 65_536
"""Soft limit on open files this process raises itself to (within the hard limit): every
connection is a file descriptor, and the usual 1,024 would cap connections long before
memory does."""


class Stopped(SystemExit):
    """SIGINT or SIGTERM arrived before the server took the signals over: stop, clean up.
    A SystemExit, so that no ``except Exception`` on the way swallows it."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(0)


@contextmanager
def _stopping_on_signals() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise :class:`Stopped` (until the server installs its own
    handlers, which stop it the same way), however the process was started. Once out, they
    are ignored: a second Ctrl-C must not interrupt the clean-up that follows (and leave the
    embedded Redis running)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stopped)
    try:
        with contextlib.suppress(Stopped):
            yield
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@click.command()
@click.option(
    "--host",
    default=defaults.HOST,
    show_default=True,
    envvar="GIMEL_HOST",
    show_envvar=True,
    help="Address to listen on (0.0.0.0: every interface, e.g. in a container).",
)
@click.option(
    "--port",
    default=defaults.PORT,
    show_default=True,
    type=int,
    envvar="GIMEL_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@data_dir_option
@click.option(
    "--threads",
    default=THREADS,
    show_default=True,
    type=click.IntRange(1, 256),
    envvar="GIMEL_THREADS",
    show_envvar=True,
    help="Python threads per worker running the app.",
)
@click.option(
    "--workers",
    default=_cores,
    show_default="the number of cores it may run on",
    type=click.IntRange(1, 64),
    envvar="GIMEL_WORKERS",
    show_envvar=True,
    help="Worker processes accepting on the one socket (one is one core at most).",
)
@one_line_errors
def serve(host: str, port: int, data_dir: str, threads: int, workers: int) -> None:
    """Run Gimel locally under a production HTTP server (granian).

    With no GIMEL_REDIS_URL, an embedded Redis keeps the data in --data-dir, in an
    append-only file fsynced every second. With no GIMEL_API_KEY, a key is generated once
    and kept in --data-dir. Ctrl-C or SIGTERM stops it cleanly.
    """
    from ..app import create_app

    config = Config.from_env()
    overrides: dict[str, object] = {"data_dir": data_dir}
    if not config.api_keys:
        overrides["api_keys"] = (local_key.ensure(data_dir),)
    if registration := registration_beyond_loopback(host):  # reachable by others: plans only
        overrides["registration"] = registration
        click.echo(f"Listening beyond loopback: registration={registration} (GIMEL_REGISTRATION)")
    _more_open_files()
    store: Any = None
    listener: socket.socket | None = None
    watcher: subprocess.Popen[bytes] | None = None
    started = False
    try:
        with _stopping_on_signals():
            app = create_app(config.with_overrides(overrides))
            store = app.extensions.get("gimel_embedded")
            listener = listen(host, port)
            started = True
            _banner(defaults.local_url(host, port), app, store)
            watcher = start_watcher(app.config["GIMEL"], store.url if store else None, data_dir)
            run(app, listener, workers, threads, app.config["GIMEL"].batch_max_bytes)
    finally:  # SIGINT and SIGTERM are ignored from here on
        if watcher is not None:
            stop_watcher(watcher)
        if listener is not None:
            listener.close()
        if store is not None:
            store.stop()
        if started:
            click.echo("Gimel stopped.")


def start_watcher(
    config: Config, embedded_url: str | None, data_dir: str
) -> subprocess.Popen[bytes] | None:
    """`gimel watch` beside the workers: one watcher for the whole server, in a process of its
    own (forked workers inherit no thread of it, and its deliveries never hold up a request).
    None when GIMEL_WATCH_INTERVAL is 0."""
    if not config.watch_interval:
        return None
    url = config.redis_url or embedded_url
    command = [sys.executable, "-m", "gimel_core.cli", "watch", "--data-dir", data_dir]
    env = {**os.environ, "GIMEL_REDIS_URL": url} if url else None
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


def stop_watcher(watcher: subprocess.Popen[bytes]) -> None:
    """Let the pass under way finish its delivery, briefly; then stop it (its leases expire
    and a later pass delivers what it had not)."""
    watcher.terminate()
    try:
        watcher.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the banner is printed, so that the URLs in it
    answer as soon as they appear. Bound here rather than by each worker with SO_REUSEPORT,
    so a second server started on the same port fails instead of quietly taking a share of
    the traffic."""
    try:
        listener = socket.create_server((host, port), backlog=BACKLOG)
    except OSError as exc:
        raise GimelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Accepted connections inherit it: an answer written in two parts must not wait for the
    # client's delayed ACK (40 ms) before its second part leaves.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _banner(base: str, app: Any, store: Any) -> None:
    where = f"embedded, data in {store.data_dir}" if store else "GIMEL_REDIS_URL"
    click.echo(f"Gimel is listening on {base}")
    click.echo(f"  track URL : {base}/track")
    click.echo(f"  dashboard : {base}/dashboard")
    click.echo(f"  API key   : {app.config['GIMEL'].api_keys[0]}")
    click.echo(f"  Redis     : {where}")
    click.echo("Paste this into a page to start an experiment (`gimel snippet` prints it again):")
    click.echo(snippet(f"{base}/track"))
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()


def run(
    app: Any,
    listener: socket.socket,
    workers: int,
    threads: int,
    max_body: int = defaults.BATCH_MAX_BYTES,
) -> None:
    """Serve the WSGI ``app`` on ``listener`` with granian until SIGINT or SIGTERM; bodies
    past ``max_body`` bytes are not read (the app answers them 413).

    The workers are forked from this process, so they share the app built here (and leave
    the embedded Redis to it); a worker that dies is replaced. Exits 1 (SystemExit) if
    workers keep dying.
    """
    from granian._granian import SocketHolder
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import MPServer

    class Server(MPServer):
        def _init_shared_socket(self) -> None:
            # The socket bound by listen(), which the forked workers inherit and accept on.
            # (Its stub omits the constructor: fd, is it a unix socket, backlog.)
            holder: Any = SocketHolder(os.dup(listener.fileno()), False, BACKLOG)  # type: ignore[call-arg]
            self._ssp = None
            self._shd = holder
            self._sfd = holder.get_fd()
            self._sso = socket.socket(fileno=self._sfd)

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            # A Ctrl-C in a terminal, or systemd stopping the unit, signals the workers too,
            # and they stop on their own: that is a stop, not a worker that died.
            for worker in self.wrks:
                worker.interrupt_by_parent = True
            super().signal_handler_interrupt(*args, **kwargs)

    # The workers must inherit the app built here: fork, whatever the platform's default.
    multiprocessing.set_start_method("fork", force=True)
    port = listener.getsockname()[1]
    gateway = Gateway(app, threads, max_body, _together(app))

    def load() -> Any:
        # In each worker, once forked: its own idle reaper (a thread does not survive a fork).
        IdleReaper(port).start()
        return gateway

    server = Server(
        "gimel",
        interface=Interfaces.RSGI,
        workers=workers,
        backlog=BACKLOG,
        backpressure=_connections_per_worker(),
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT * 1000),
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        workers_kill_timeout=STOP_TIMEOUT,
    )
    server.serve(target_loader=load, wrap_loader=False)


def _together(app: Any) -> Callable[[list[dict[str, Any]]], list[Answer | None]] | None:
    """Gimel's tracking answers to requests taken together, as the gateway sends them; None
    for an app without Gimel's tracking endpoint in front (the bench's no-op app)."""
    endpoint = getattr(app, "wsgi_app", None)
    if not isinstance(endpoint, TrackEndpoint):
        return None

    def together(environs: list[dict[str, Any]]) -> list[Answer | None]:
        return [
            None if a is None else (a.code, list(a.headers), a.body)
            for a in endpoint.respond_together(environs)
        ]

    return together


def _connections_per_worker() -> int:
    """Connections a worker serves at once (granian's ``backpressure``; by default half the
    backlog, 512 with 2 workers, which 1,024 silent connections would fill): as many as its
    open files allow, less room for its own files and Redis connections. A connection costs a
    socket and, while its request is read, a coroutine; slow ones are cut."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return OPEN_FILES if soft == resource.RLIM_INFINITY else max(64, soft - 256)


def _more_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
