"""Running script calls: one round trip for any number, NOSCRIPT handled once.

A :class:`Call` is what a script module's builder returns (keys, arguments, how to read the
reply). :meth:`Scripts.run` sends any list of calls in one round trip (directly for one,
pipelined for more) and reloads a script Redis has lost (NOSCRIPT, after a restart or a
failover) once, the same way for both.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import redis

from ..errors import StoreUnavailable
from .schema import PRELUDE, binding, called, inline


@lru_cache(maxsize=256)
def source(name: str, settings: tuple[Any, ...] | None = None) -> tuple[str, str]:
    """The script as Redis runs it, and its SHA1: the generated prelude, the shared
    functions it calls, the generated ARGV binding (with ``settings``, for a script that is
    written with them: ``schema.BAKED``), then the file, the prelude's names inlined."""
    files = resources.files(__package__)
    body = files.joinpath(f"{name}.lua").read_text("utf-8")
    shared = called(files.joinpath("prelude.lua").read_text("utf-8"), body)
    text = inline(PRELUDE + shared + binding(name, settings) + body)
    return text, hashlib.sha1(text.encode()).hexdigest()


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: its keys and arguments, and how to read its reply."""

    script: str
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]
    packed: bytes = b""
    """The whole command in RESP, for a call made again and again (:func:`prepacked`); empty:
    packed when sent."""
    settings: tuple[Any, ...] | None = None
    """What the script is written with (``schema.BAKED``); None: a script that has none."""


def prepacked(call: Call[T]) -> Call[T]:
    """``call`` with its command packed once, for a builder that keeps its calls."""
    return replace(call, packed=_pack(_command(call)))


class Scripts:
    """Runs calls over one client (a single server or a cluster)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # A single server's pool: one call (the hot path, one event) is packed here and sent
        # on one of its connections, with the connection's own timeouts and retry.
        single = isinstance(client, redis.Redis) and client.connection is None
        self.pool: redis.ConnectionPool | None = client.connection_pool if single else None
        self._idle: list[Any] = []
        """Connections this path used last, kept for the next call (taking one from the
        pool and giving it back cost more than the round trip's own CPU); at most
        about :data:`KEPT` (two threads may both add the last one), so the pool always has
        connections for the other calls."""
        self._pid = os.getpid()

    def run_one(self, call: Call[T]) -> T:
        return self.run([call])[0]

    def run(self, calls: Sequence[Call[Any]]) -> list[Any]:
        """Every call in one round trip per node; their parsed replies, in order."""
        replies = self._send(calls)
        lost = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if lost:  # flushed or restarted since the last call: load once, send those again
            for name, settings in {(calls[i].script, calls[i].settings) for i in lost}:
                self.client.script_load(source(name, settings)[0])
            for i, reply in zip(lost, self._send([calls[i] for i in lost]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, redis.exceptions.NoScriptError):
                raise StoreUnavailable("a Lua script could not be loaded")
            if isinstance(reply, Exception):
                raise reply
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    def _send(self, calls: Sequence[Call[Any]]) -> list[Any]:
        if self.pool is not None:  # a single server: packed here, one round trip
            packed = [call.packed or _pack(_command(call)) for call in calls]
            if len(calls) == 1:  # the common case, one event
                try:
                    return [self._lean(lambda conn: _round_trip(conn, packed[0]))]
                except redis.exceptions.NoScriptError as exc:
                    return [exc]
            return cast(list[Any], self._lean(lambda conn: _round_trips(conn, packed)))
        if len(calls) == 1:
            try:
                return [self.client.execute_command(*plain(_command(calls[0])))]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            # execute_command: cluster pipelines refuse .evalsha(), but route this by its
            # first key like any other command.
            pipe.execute_command(*plain(_command(call)))
        return cast(list[Any], pipe.execute(raise_on_error=False))

    def _lean(self, exchange: Callable[[Any], Any]) -> Any:
        """``exchange`` (packed commands sent, their replies read) on a connection of the
        pool: what ``execute_command`` or a pipeline does (the pool's wait, the connection's
        timeouts, a retry on a dropped connection after closing it), without their
        per-command argument handling and hooks."""
        conn = self._take()
        try:
            return conn.retry.call_with_retry(
                lambda: exchange(conn), lambda error: conn.disconnect()
            )
        except redis.exceptions.ResponseError:
            raise  # an error reply, read whole: the connection is in step
        except BaseException:
            # Interrupted (a signal, a timeout of the caller's), perhaps with a reply still
            # unread: the connection is not used as it is again.
            conn.disconnect()
            raise
        finally:
            self._keep(conn)

    def _take(self) -> Any:
        assert self.pool is not None
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()  # atomic: no two threads take the same one
        except IndexError:
            return self.pool.get_connection()

    def _keep(self, conn: Any) -> None:
        # A connection is only ever kept with its whole reply read: read_response
        # closes it on any error (a timeout, a dropped connection) before raising, and _lean
        # on any other interruption.
        if len(self._idle) < KEPT:
            self._idle.append(conn)
        else:
            assert self.pool is not None
            self.pool.release(conn)


KEPT = 8
"""Connections :class:`Scripts` keeps for the one-call path (of ``store.CONNECTIONS``):
more than the threads of a ``gimel serve`` worker, so each finds one."""


def _round_trip(conn: Any, packed: bytes) -> Any:
    conn.send_packed_command((packed,))
    return conn.read_response()


def _round_trips(conn: Any, packed: list[bytes]) -> list[Any]:
    """Commands sent together and their replies read in order, an error reply as its
    exception in the list (as a pipeline's ``execute(raise_on_error=False)``): the
    connection has read it whole and serves the next reply."""
    conn.send_packed_command(packed)
    replies: list[Any] = []
    for _ in packed:
        try:
            replies.append(conn.read_response())
        except redis.exceptions.ResponseError as exc:
            replies.append(exc)
    return replies


_REPEATING = 100
"""Arguments from which a command's texts are encoded once each (:func:`_pack`): a batch's
events repeat their variant, goal and numbers; a single event's call repeats nothing."""


def _pack(args: Sequence[Any]) -> bytes:
    """A command in RESP, encoded as redis-py encodes arguments (text as UTF-8, numbers by
    ``repr``), in one bytes object; a :class:`Packed` argument is its arguments."""
    parts = [b""]
    count = len(args)
    texts: dict[str, bytes] | None = {} if count > _REPEATING else None
    for arg in args:
        kind = type(arg)  # the exact types first: most arguments, one comparison each
        if texts is not None and (kind is str or kind is int):  # never equal to each other
            part = texts.get(arg)
            if part is None:
                data = arg.encode() if kind is str else repr(arg).encode()
                part = texts[arg] = b"$%d\r\n%b\r\n" % (len(data), data)
            parts.append(part)
            continue
        if kind is str:
            data = arg.encode()
        elif kind is int or kind is float:
            data = repr(arg).encode()
        elif kind is Packed:
            parts.append(arg)
            count += len(arg.args) - 1
            continue
        else:
            data = _encoded(arg)
        size = len(data)
        parts += (_HEADS[size] if size < _HEADED else b"$%d\r\n" % size, data, b"\r\n")
    parts[0] = b"*%d\r\n" % count
    return b"".join(parts)


_HEADED = 256
_HEADS = [b"$%d\r\n" % size for size in range(_HEADED)]
"""The head of a bulk string of each short length: taken, not formatted, for each argument."""


class Packed(bytes):
    """Arguments in RESP, packed once: a part that every call of a process repeats (the
    ``EVALSHA`` of a script and its SHA). ``args``: the arguments themselves, for the
    cluster's path, where redis-py packs (:func:`plain`)."""

    args: tuple[Any, ...]

    def __new__(cls, args: Sequence[Any]) -> Packed:
        whole = _pack(args)
        packed = super().__new__(cls, whole[whole.index(b"\n") + 1 :])  # without the "*N"
        packed.args = tuple(args)
        return packed


def plain(args: Sequence[Any]) -> list[Any]:
    """``args`` with each :class:`Packed` one replaced by its arguments."""
    return [a for arg in args for a in (arg.args if type(arg) is Packed else (arg,))]


def _encoded(arg: Any) -> bytes:
    """An argument that is not exactly a str, an int or a float: bytes as they are, a str or
    number subclass (an enum member) as its value."""
    if isinstance(arg, str):  # a StrEnum member
        return arg.encode()
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, int | float) and not isinstance(arg, bool):  # an IntEnum member
        return repr(int(arg) if isinstance(arg, int) else float(arg)).encode()
    raise redis.DataError(f"cannot send {type(arg).__name__} to Redis")


def _command(call: Call[Any]) -> list[Any]:
    return [_evalsha(call.script, call.settings), len(call.keys), *call.keys, *call.args]


@lru_cache(maxsize=256)
def _evalsha(script: str, settings: tuple[Any, ...] | None) -> Packed:
    return Packed(("EVALSHA", source(script, settings)[1]))


def text(value: bytes | str) -> str:
    """A name from a reply, as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
