"""What the commands share: their common options, one-line errors, and opening a backend."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import click
import redis

from .. import defaults
from ..client import Backend, HttpBackend, RedisBackend
from ..errors import GimelError
from ..store import local_or
from . import deploy_config, local_key


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """What the user can fix is said in one line and exit code 1, never a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GimelError as exc:
            raise click.ClickException(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis: {exc}") from None

    return run


url_option = click.option(
    "--url",
    envvar="GIMEL_URL",
    show_envvar=True,
    help="Base URL of a Gimel API (a local `gimel serve` or a deployment).",
)
api_key_option = click.option(
    "--api-key",
    envvar="GIMEL_API_KEY",
    show_envvar=True,
    help=(
        "API key for --url. Not needed against a local `gimel serve`: without it, the key "
        f"that `gimel serve` keeps in --data-dir ({defaults.DATA_DIR}/{defaults.API_KEY_FILE}) "
        "is sent."
    ),
)
redis_url_option = click.option(
    "--redis-url",
    envvar="GIMEL_REDIS_URL",
    show_envvar=True,
    help="Read and write this Redis directly instead.",
)
data_dir_option = click.option(
    "--data-dir",
    default=defaults.DATA_DIR,
    show_default=True,
    envvar="GIMEL_DATA_DIR",
    show_envvar=True,
    help="Folder of the embedded Redis and the local API key.",
)
namespace_option = click.option(
    "--namespace",
    "-n",
    default=defaults.NAMESPACE,
    show_default=True,
    envvar="GIMEL_NAMESPACE",
    show_envvar=True,
    help="Namespace of the experiments (Alephbet's adapters default to alephbet too).",
)


@dataclass(frozen=True)
class Source:
    """Where a command reads and changes results, and in which namespace (see ``WHERE``)."""

    url: str | None
    api_key: str | None
    redis_url: str | None
    data_dir: str
    namespace: str

    def open(self) -> AbstractContextManager[Backend]:
        return open_backend(self.url, self.api_key, self.redis_url, self.data_dir)


def backend_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command that reads or changes results, given to it as one
    ``source: Source`` argument."""

    @functools.wraps(command)
    def run(
        *args: Any,
        url: str | None,
        api_key: str | None,
        redis_url: str | None,
        data_dir: str,
        namespace: str,
        **kwargs: Any,
    ) -> Any:
        source = Source(url, api_key, redis_url, data_dir, namespace)
        return command(*args, source=source, **kwargs)

    for option in (namespace_option, data_dir_option, redis_url_option, api_key_option, url_option):
        run = option(run)
    return run


WHERE = (
    "With --url, a Gimel API over HTTP (against a local `gimel serve`, --api-key can be left "
    "out: the local key is used); with --redis-url, that Redis directly; else the deployment "
    "`gimel deploy` saved in gimel.config.json, if any; else the local store in --data-dir, "
    "read directly (no server needs to run)."
)
"""Appended to the help of the commands that take :func:`backend_options`."""


@contextmanager
def open_backend(
    url: str | None, api_key: str | None, redis_url: str | None, data_dir: str
) -> Iterator[Backend]:
    """--url, else --redis-url, else the deployed endpoint, else the local store (``WHERE``)."""
    if url:
        with _http(url, api_key or local_key.read(data_dir)) as backend:
            yield backend
    elif redis_url:
        with open_store(redis_url, data_dir) as store:
            yield store
    elif endpoint := deploy_config.endpoint():
        with _http(endpoint, api_key or deploy_config.read().get("apiKey")) as backend:
            yield backend
    else:
        with open_store(None, data_dir) as store:
            yield store


@contextmanager
def open_store(redis_url: str | None, data_dir: str) -> Iterator[RedisBackend]:
    """The Redis at ``redis_url``, or with none the local embedded one (attached to when
    `gimel serve` runs on the same folder, else started and stopped again)."""
    url, server = local_or(redis_url, data_dir)
    try:
        backend = RedisBackend(url)
        try:
            yield backend
        finally:
            backend.client.close()
    finally:
        if server is not None:
            server.stop()


@contextmanager
def _http(url: str, api_key: str | None) -> Iterator[HttpBackend]:
    backend = HttpBackend(url, api_key)
    try:
        yield backend
    finally:
        backend.session.close()
