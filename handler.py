"""AWS Lambda entry point: API Gateway REST (v1) events in, the Flask app answers.

The app (and its Redis client) is built once per Lambda container, at import, and reused
by every invocation that container serves.
"""

import serverless_wsgi

from gimel_core import create_app
from gimel_core.api import malformed_event
from gimel_core.track_lambda import LambdaTrack

app = create_app()
track = LambdaTrack(app)  # GET /track without serverless-wsgi, same answers


def handler(event, context):
    try:
        return track.answer(event) or serverless_wsgi.handle_request(app, event, context)
    except Exception:  # the app answers its own errors: this is an event it never saw
        return malformed_event(event)
