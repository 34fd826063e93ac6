"""The application factory."""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import api
from .config import Config
from .counters import Counters
from .embedded import EmbeddedRedis
from .store import connect


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment unless given, one Redis client.

    ``config`` is a whole :class:`Config`, or overrides of ``Config`` fields applied to the
    environment's settings (as tests do). With no Redis URL the embedded Redis is started
    in ``data_dir`` and stopped when the process exits.
    """
    if not isinstance(config, Config):
        config = Config.from_env().with_overrides(config or {})
    app = Flask(__name__)
    app.config["GIMEL"] = config
    redis_url = config.redis_url
    if redis_url is None:
        server = EmbeddedRedis(config.data_dir).start()
        atexit.register(server.stop)
        app.extensions["gimel_embedded"] = server
        redis_url = server.url
    counters = Counters(connect(redis_url, config.redis_timeout), config)
    app.extensions["gimel"] = counters
    # Experiment names may contain "/" anywhere, even first: match any path, and never merge
    # "//" with a redirect (that would send /experiments/%2Fa to experiment "a").
    app.url_map.converters["path"] = api.NameConverter
    app.url_map.merge_slashes = False
    app.register_blueprint(api.bp)
    api.register_errors(app)
    app.wsgi_app = api.TrackEndpoint(app.wsgi_app, counters, config)  # type: ignore[method-assign]
    return app
