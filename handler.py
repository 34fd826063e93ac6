"""AWS Lambda entry point: API Gateway REST (v1) events in, the Flask app answers.

The app (and its Redis client) is built once per Lambda container, at import, and reused
by every invocation that container serves.
"""

import serverless_wsgi

from gimel_core import create_app
from gimel_core.api import malformed_event

app = create_app()


def handler(event, context):
    try:
        return serverless_wsgi.handle_request(app, event, context)
    except Exception:  # the app answers its own errors: this is an event it never saw
        return malformed_event(event)
