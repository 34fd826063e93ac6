"""AWS Lambda entry points: API Gateway REST (v1) events to the Flask app, and EventBridge's
schedule to the watcher.

The app (and its Redis client) is built once per Lambda container, at import, and reused
by every invocation that container serves.
"""

import dataclasses
import time

import serverless_wsgi

from gimel_core import create_app
from gimel_core.api import malformed_event
from gimel_core.track_lambda import LambdaTrack

app = create_app()
track = LambdaTrack(app)  # GET /track without serverless-wsgi, same answers
watcher = None  # built at the first scheduled event; kept while the container lives

LAST_DELIVERY = 15.0
"""Seconds of the watch function's time kept after the last delivery may start: one delivery
(GIMEL_WEBHOOK_TIMEOUT, 10 s at most) and the save that records it, before Lambda's limit."""


def handler(event, context):
    try:
        return track.answer(event) or serverless_wsgi.handle_request(app, event, context)
    except Exception:  # the app answers its own errors: this is an event it never saw
        return malformed_event(event)


def watch(event, context):
    """One watcher pass per scheduled event. A pass that could not finish (Redis unreachable)
    fails the invocation, so Lambda's Errors metric and its retries see it."""
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - LAST_DELIVERY
    global watcher
    if watcher is None:  # one per container: its leases and unrecorded deliveries carry over
        from gimel_core.watch import Watcher  # here: the API's containers never load it

        watcher = Watcher.configured(app.extensions["gimel"].experiments, app.config["GIMEL"])
    report = watcher.run(deadline=deadline)
    if report.errors:
        raise RuntimeError(report.line())
    return {**dataclasses.asdict(report), "line": report.line()}
