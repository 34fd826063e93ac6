"""The application factory."""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

from . import api, track_endpoint
from .cache import Caches
from .config import Config
from .storage.runner import Scripts
from .store import connect, local_or
from .tracking import Tracker

if TYPE_CHECKING:
    from .experiments import Experiments


class Gimel:
    """What one process shares across requests: one Redis client, what uses it, and what it
    keeps of the results it computed."""

    def __init__(
        self,
        redis_url: str,
        config: Config,
        clock: Callable[[], float] = time.time,
        caches: Caches | None = None,
    ) -> None:
        self.client = connect(redis_url, config.redis_timeout)
        self.scripts = Scripts(self.client)
        self.config = config
        self.clock = clock
        self.caches = Caches() if caches is None else caches
        self.tracker = Tracker(self.scripts, config, clock)
        self._experiments: Experiments | None = None

    @property
    def experiments(self) -> Experiments:
        """Results, settings, reset and delete. Loaded on first use: a Lambda container that
        only tracks events never imports the statistics, which keeps its cold start short."""
        if self._experiments is None:
            from .experiments import Experiments

            self._experiments = Experiments(self.scripts, self.config, self.clock, self.caches)
        return self._experiments


def create_app(
    config: Config | Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    caches: Caches | None = None,
) -> Flask:
    """Build the app: settings from the environment unless given, one Redis client, one
    :class:`Caches` (``caches``: a test's own, e.g. with a small bound).

    ``config`` is a whole :class:`Config`, or overrides of ``Config`` fields applied to the
    environment's settings (as tests do). With no Redis URL the embedded Redis is started
    in ``data_dir`` and stopped when the process exits. ``clock`` gives the time (Unix
    seconds) for everything the app timestamps.
    """
    if not isinstance(config, Config):
        config = Config.from_env().with_overrides(config or {})
    app = Flask(__name__)
    app.config["GIMEL"] = config
    redis_url, server = local_or(config.redis_url, config.data_dir)
    if server is not None:
        atexit.register(server.stop)
        app.extensions["gimel_embedded"] = server
    gimel = Gimel(redis_url, config, clock, Caches() if caches is None else caches)
    app.extensions["gimel"] = gimel
    # Experiment names may contain "/" anywhere, even first: match any path, and never merge
    # "//" with a redirect (that would send /experiments/%2Fa to experiment "a").
    app.url_map.converters["path"] = api.NameConverter
    app.url_map.merge_slashes = False
    app.register_blueprint(api.bp)
    api.register_errors(app)
    endpoint = track_endpoint.TrackEndpoint(app.wsgi_app, gimel.tracker, config)
    track_endpoint.register(app, endpoint)
    app.wsgi_app = endpoint  # type: ignore[method-assign]
    return app
