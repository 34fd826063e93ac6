"""`gimel serve`: Gimel under waitress on this machine, with optional forked workers.

SIGINT (Ctrl-C) and SIGTERM (systemd, CI, ``kill``) both stop it cleanly: the workers
exit, and the embedded Redis flushes its append-only file. Both handlers are installed
explicitly, because a process started in the background by a script (``gimel serve &``,
``nohup``) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .. import defaults
from ..config import Config
from ..errors import GimelError
from ..snippet import snippet
from . import local_key
from .options import data_dir_option, one_line_errors

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(SystemExit):
    """SIGINT or SIGTERM arrived: stop serving, then clean up. A SystemExit, because waitress
    re-raises only that and KeyboardInterrupt from its handlers (it logs anything else)."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(0)


@contextmanager
def _stopping_on_signals() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise :class:`Stopped`, however the process was started.
    Once out, they are ignored: a second Ctrl-C must not interrupt the clean-up that follows
    (and leave the embedded Redis running)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stopped)
    try:
        with contextlib.suppress(Stopped):
            yield
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@click.command()
@click.option("--host", default=defaults.HOST, show_default=True, envvar="GIMEL_HOST")
@click.option("--port", default=defaults.PORT, show_default=True, type=int, envvar="GIMEL_PORT")
@data_dir_option
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per process.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="GIMEL_WORKERS",
    help="Processes sharing the listening socket (one waitress is one core at most).",
)
@one_line_errors
def serve(host: str, port: int, data_dir: str, threads: int, workers: int) -> None:
    """Run Gimel locally under a production WSGI server (waitress).

    With no GIMEL_REDIS_URL, an embedded Redis keeps the data in --data-dir, in an
    append-only file fsynced every second. With no GIMEL_API_KEY, a key is generated once
    and kept in --data-dir. Ctrl-C or SIGTERM stops it cleanly.
    """
    from ..app import create_app

    config = Config.from_env()
    overrides: dict[str, object] = {"data_dir": data_dir}
    if not config.api_keys:
        overrides["api_keys"] = (local_key.ensure(data_dir),)
    store: Any = None
    listener: socket.socket | None = None
    children: list[int] = []
    started = False
    try:
        with _stopping_on_signals():
            app = create_app(config.with_overrides(overrides))
            store = app.extensions.get("gimel_embedded")
            listener = _listen(host, port)
            for _ in range(workers - 1):
                children.append(_fork_worker(app, listener, threads))
            started = True
            _banner(defaults.local_url(host, port), app, store)
            _run_waitress(app, listener, threads)
    finally:  # SIGINT and SIGTERM are ignored from here on
        _stop_workers(children)
        if listener is not None:
            listener.close()
        if store is not None:
            store.stop()
        if started:
            click.echo("Gimel stopped.")


def _listen(host: str, port: int) -> socket.socket:
    # Bound before the banner is printed, so the URLs in it answer as soon as they appear.
    try:
        return socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        raise GimelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


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


def _run_waitress(app: Any, listener: socket.socket, threads: int) -> None:
    import waitress

    server = waitress.create_server(app, sockets=[listener], threads=threads, ident="gimel")
    try:
        server.run()
    finally:
        server.close()


def _fork_worker(app: Any, listener: socket.socket, threads: int) -> int:
    """A child process serving the same socket; it leaves the embedded Redis to its parent.

    It inherits the parent's handlers: SIGINT or SIGTERM end its waitress. Both are blocked
    around the fork, so none can reach the child before it is inside its own ``try``.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return pid
    code = 0
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        _run_waitress(app, listener, threads)
    except Stopped:
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)  # no atexit handlers: those stop the embedded Redis, which is the parent's


def _stop_workers(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
