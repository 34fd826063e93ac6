"""Running script calls: one round trip for any number, NOSCRIPT handled once.

A :class:`Call` is what a script module's builder returns (keys, arguments, how to read the
reply). :meth:`Scripts.run` sends any list of calls in one round trip (directly for one,
pipelined for more) and reloads a script Redis has lost (NOSCRIPT, after a restart or a
failover) once, the same way for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import redis

from ..errors import StoreUnavailable
from .schema import PRELUDE, binding


@cache
def source(name: str) -> tuple[str, str]:
    """The script as Redis runs it, and its SHA1: the generated prelude, the shared
    functions, the generated ARGV binding, then the file."""
    files = resources.files(__package__)
    shared = files.joinpath("prelude.lua").read_text("utf-8")
    body = files.joinpath(f"{name}.lua").read_text("utf-8")
    text = PRELUDE + shared + binding(name) + body
    return text, hashlib.sha1(text.encode()).hexdigest()


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: its keys and arguments, and how to read its reply."""

    script: str
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]


class Scripts:
    """Runs calls over one client (a single server or a cluster)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def run_one(self, call: Call[T]) -> T:
        return self.run([call])[0]

    def run(self, calls: Sequence[Call[Any]]) -> list[Any]:
        """Every call in one round trip per node; their parsed replies, in order."""
        replies = self._send(calls)
        lost = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if lost:  # flushed or restarted since the last call: load once, send those again
            for name in {calls[i].script for i in lost}:
                self.client.script_load(source(name)[0])
            for i, reply in zip(lost, self._send([calls[i] for i in lost]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, redis.exceptions.NoScriptError):
                raise StoreUnavailable("a Lua script could not be loaded")
            if isinstance(reply, Exception):
                raise reply
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    def _send(self, calls: Sequence[Call[Any]]) -> list[Any]:
        if len(calls) == 1:  # the common case, one event: no pipeline
            try:
                return [self.client.execute_command(*_command(calls[0]))]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            # execute_command: cluster pipelines refuse .evalsha(), but route this by its
            # first key like any other command.
            pipe.execute_command(*_command(call))
        return cast(list[Any], pipe.execute(raise_on_error=False))


def _command(call: Call[Any]) -> list[Any]:
    return ["EVALSHA", source(call.script)[1], len(call.keys), *call.keys, *call.args]


def text(value: bytes | str) -> str:
    """A name from a reply, as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
