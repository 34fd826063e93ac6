"""``/track``: the public endpoint Alephbet calls for every event, CORS-open to any origin.

``GET`` counts one event from Alephbet's query string; ``POST`` counts a JSON event or array
(a batch); ``OPTIONS`` answers the CORS preflight. Known bots get 200 and are only tallied.
Every request's events count against its source's budget (:mod:`gimel_core.sources`).

This is the one request that runs per visitor event, so :class:`TrackEndpoint` answers it as
WSGI middleware in front of Flask, skipping Flask's per-request machinery (context push,
routing, sessions), which costs more than the Redis call itself. The same answers are also
registered as a Flask view (:func:`register`), so the route table, OpenAPI and tests see
``/track`` like any route; the middleware only gets there first. Flask's request hooks do
not run for the tracking paths: tests/test_track_endpoint.py fails when one is added, so a
hook that must cover ``/track`` is added here too. Status lines, lengths and the 413/414
refusals are werkzeug's: every answer is a werkzeug ``Response`` run once and kept as an
:class:`Answer` (status line, headers, body), and the answers that never change (counted,
bot, preflight) are run once, when the endpoint is built.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge, RequestURITooLarge

from . import defaults
from .answers import error_response, json_response
from .config import Config
from .errors import InvalidInput, StoreUnavailable
from .events import Event, parse_batch, parse_query, validate
from .sources import Sources
from .tracking import Tally, Tracker

TRACK_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
    "Cache-Control": "no-store",
}
METHODS = ["GET", "POST", "OPTIONS"]


class TrackEndpoint:
    """Answers the tracking paths before Flask; every other request goes on to ``wsgi_app``."""

    def __init__(self, wsgi_app: Any, tracker: Tracker, config: Config) -> None:
        self.next = wsgi_app
        self.tracker = tracker
        self.sources = Sources(config, tracker.clock)
        self.paths = frozenset(config.track_paths)
        self.max_events = config.batch_max_events
        self.max_bytes = config.batch_max_bytes
        # A pattern without capitals (the default) is matched against the lowercased agent:
        # the same verdict, and re then skips ahead by first characters, which it cannot
        # under IGNORECASE (a browser's agent: about 10 times faster).
        pattern = config.bot_pattern
        self.lowercase = pattern == pattern.lower()
        self.bots = re.compile(pattern, 0 if self.lowercase else re.IGNORECASE) if pattern else None
        # One verdict per agent: lru_cache is bounded and safe to call from many threads.
        self._is_bot = functools.lru_cache(maxsize=defaults.BOT_VERDICTS)(self._matches)
        # The answers to almost every request, built once.
        self.tracked = _answer({"ok": True})
        self.bot = _answer({"ok": True, "counted": False})
        preflight = Response(b"", 204, headers=TRACK_HEADERS)
        preflight.headers.remove("Content-Type")
        self.preflight = Answer.of(preflight)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in self.paths:
            return self.next(environ, start_response)
        answer = self.respond(environ)
        start_response(answer.status, list(answer.headers))
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [answer.body]

    def respond(self, environ: dict[str, Any]) -> Answer:
        """The answer to one request on a tracking path."""
        method = environ.get("REQUEST_METHOD")
        try:
            if method == "GET":
                read = self._read(environ)
                if read is self.bot:
                    self._filtered(1)
                if isinstance(read, Answer):
                    return read
                return self._counted(self.tracker.track(*read))
            if method == "POST":
                events = parse_batch(_body(environ, self.max_bytes), self.max_events)
                if self._bot(environ):
                    self._filtered(len(events))
                    return _answer({"accepted": 0, "filtered": len(events)})
                tally = self.tracker.track_many(events, self.sources.of(environ))
                body: dict[str, Any] = {"accepted": tally.counted}
                if tally.undeclared:
                    body["undeclared"] = tally.undeclared
                if tally.over_budget:
                    body["over_budget"] = tally.over_budget
                dropped = [*tally.refused, *tally.off_plan]
                if dropped:
                    body["dropped"] = [{"field": r.field, "error": str(r)} for r in dropped]
                return _answer(body)
            if method == "OPTIONS":
                return self.preflight
            raise MethodNotAllowed(valid_methods=METHODS)
        except Exception as exc:  # every failure becomes a JSON answer, never a traceback
            return _refusal(exc)

    def respond_together(self, environs: list[dict[str, Any]]) -> list[Answer | None]:
        """The answers to requests that arrived together, as :meth:`respond` gives each: the
        events of their ``GET`` requests are counted in one round trip to Redis
        (:meth:`Tracker.track_each`), each with its own script call, source and answer, and
        the bots among them tallied in one more (none if Redis could not be reached: each
        round trip to a stalled Redis is a timeout every request of the batch waits). Any
        other request is left to the app (None)."""
        answers: list[Answer | None] = [None] * len(environs)
        todo: list[tuple[int, Event, str | None]] = []
        bots = 0
        for i, environ in enumerate(environs):
            if environ.get("PATH_INFO") not in self.paths or environ["REQUEST_METHOD"] != "GET":
                continue
            try:
                read = self._read(environ)
            except Exception as exc:
                answers[i] = _refusal(exc)
                continue
            if isinstance(read, Answer):
                answers[i] = read
                bots += read is self.bot
            else:
                todo.append((i, *read))
        if todo:
            try:
                outcomes = self.tracker.track_each([(event, source) for _, event, source in todo])
                for (i, _, _), outcome in zip(todo, outcomes, strict=True):
                    answers[i] = (
                        self._counted(outcome) if isinstance(outcome, Tally) else _refusal(outcome)
                    )
            except Exception as exc:  # Redis could not be reached: each is answered so
                failed = _refusal(exc)
                for i, _, _ in todo:
                    answers[i] = failed
                bots = 0
        if bots:
            self._filtered(bots)
        return answers

    def _read(self, environ: dict[str, Any]) -> Answer | tuple[Event, str | None]:
        """A ``GET``'s event and the source it counts under, or its answer already (a bot's,
        not yet tallied); raises on bad input."""
        event = validate(parse_query(_query(environ)))
        if self._bot(environ):
            return self.bot
        return event, self.sources.of(environ)

    def _counted(self, tally: Tally) -> Answer:
        if tally.off_plan:  # 200: a browser would send it again forever
            return _answer({"ok": True, "counted": False, "dropped": str(tally.off_plan[0])})
        return self.tracked

    def _bot(self, environ: dict[str, Any]) -> bool:
        """Whether a request comes from a known bot: answered 200 (so it stops) and only
        tallied (:meth:`_filtered`)."""
        # Bounded: a regex over a 250 KB header would cost every other client latency.
        agent = environ.get("HTTP_USER_AGENT", "")[: defaults.BOT_AGENT_CHARS]
        return self.bots is not None and bool(agent) and self._is_bot(agent)

    def _filtered(self, events: int) -> None:
        """Tallies events of bots, if Redis can be reached."""
        with contextlib.suppress(StoreUnavailable):
            self.tracker.count_filtered(events)

    def _matches(self, agent: str) -> bool:
        assert self.bots is not None
        return self.bots.search(agent.lower() if self.lowercase else agent) is not None


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer as WSGI sends it: what a werkzeug ``Response`` emits, kept so that one
    that never changes is built once and then costs nothing per request."""

    status: str
    """The status line, e.g. ``200 OK``."""
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status[:3])

    @classmethod
    def of(cls, response: Response) -> Answer:
        """What ``response`` sends (werkzeug adds Content-Length, drops it from a 204...)."""
        started: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Callable[..., Any]:
            started.extend((status, headers))
            return started.append

        body = b"".join(response(_ENVIRON, start))
        return cls(started[0], tuple(started[1]), body)


_ENVIRON = {"REQUEST_METHOD": "GET", "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
"""What running a ``Response`` needs of a request: no answer here depends on the request."""


def register(app: Flask, endpoint: TrackEndpoint) -> None:
    """The tracking paths in Flask's route table, answered exactly as the middleware does."""

    def track() -> Response:
        answer = endpoint.respond(request.environ)
        response = Response(answer.body, answer.status)
        response.headers = Headers(answer.headers)
        return response

    for path in sorted(endpoint.paths):
        app.add_url_rule(
            path, f"track{path}", track, methods=METHODS, provide_automatic_options=False
        )


def _answer(body: Any) -> Answer:
    return Answer.of(json_response(body, 200, TRACK_HEADERS))


def _refusal(exc: Exception) -> Answer:
    """The JSON answer to a failure (bad input, a refusal, Redis out of reach)."""
    return Answer.of(error_response(exc, TRACK_HEADERS))


def _body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all."""
    try:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("body", "invalid Content-Length") from None
    if declared > limit:
        raise RequestEntityTooLarge(f"a batch may carry at most {limit} bytes")
    data: bytes = environ["wsgi.input"].read(min(declared, limit + 1) if declared else limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge(f"a batch may carry at most {limit} bytes")
    return data


def _query(environ: dict[str, Any]) -> bytes:
    # WSGI hands over the raw query bytes as a latin-1 "native string" (PEP 3333).
    query_string: str = environ.get("QUERY_STRING", "")
    if len(query_string) > defaults.MAX_QUERY_BYTES:
        raise RequestURITooLarge(
            f"the query string is longer than {defaults.MAX_QUERY_BYTES} bytes"
        )
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:  # a server that decoded it as UTF-8 already
        return query_string.encode("utf-8", "surrogateescape")
