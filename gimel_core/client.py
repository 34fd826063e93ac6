"""Talking to a Gimel: over HTTP with the API key, or straight to its Redis.

Both backends offer the same methods and return the same results model
(:mod:`gimel_core.results`) as the API renders, so the CLI does not care where the data
comes from.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import requests

from . import defaults, paging
from .config import Config
from .errors import Conflict, GimelError, InvalidInput
from .experiments import Experiments
from .results import ExperimentResult, History, Listing
from .storage.runner import Scripts
from .store import connect


class Backend(Protocol):
    def experiments(self, namespace: str, archived: bool = False) -> Listing: ...
    def experiment(self, namespace: str, name: str) -> ExperimentResult: ...
    def update(self, namespace: str, name: str, settings: dict[str, Any]) -> ExperimentResult: ...
    def reset(self, namespace: str, name: str) -> ExperimentResult: ...
    def delete(self, namespace: str, name: str) -> None: ...
    def history(self, namespace: str, name: str) -> History: ...
    def declare(
        self,
        namespace: str,
        name: str,
        plan: Any,
        dry_run: bool = False,
        drop_undeclared: bool = False,
    ) -> ExperimentResult: ...


class HttpBackend:
    """A deployed (or `gimel serve`d) Gimel, by its base URL and API key."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 15) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        try:
            response = self.session.request(
                method, self.url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise GimelError(f"cannot reach Gimel at {self.url}: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            if response.status_code in (401, 403):
                raise GimelError(
                    f"the API key was refused ({message or response.status_code}): "
                    "pass --api-key or set GIMEL_API_KEY"
                )
            if response.status_code == 404 and message:
                raise NotFound(message)
            if response.status_code == 409 and message:
                raise Conflict(message)
            if response.status_code == 400 and message:
                raise InvalidInput(str(body.get("field", "")), message)
            raise GimelError(message or f"{self.url}{path} answered {response.status_code}")
        return body

    def experiments(self, namespace: str, archived: bool = False) -> Listing:
        """Every experiment: the listing's pages, following ``meta.next`` to the last."""
        params = {
            "namespace": namespace,
            "archived": "true" if archived else "false",
            "limit": str(defaults.PAGE_MAX_LIMIT),
        }
        pages = [Listing.from_json(self._call("GET", "/experiments", params=params))]
        while pages[-1].next is not None:
            params["cursor"] = pages[-1].next
            pages.append(Listing.from_json(self._call("GET", "/experiments", params=params)))
        return _whole(pages)

    def experiment(self, namespace: str, name: str) -> ExperimentResult:
        if name.endswith("/history"):  # /experiments/<name> would be the history of another
            listing = self._call(
                "GET", "/experiments", params={"namespace": namespace, "scope": name}
            )
            found = listing[1]
            if found.get("counting") is None:
                raise GimelError(f"no experiment named {name!r} in this namespace")
        else:
            found = self._call("GET", _path(name), params={"namespace": namespace})
        return ExperimentResult.from_json(found)

    def history(self, namespace: str, name: str) -> History:
        found = self._call("GET", _path(name) + "/history", params={"namespace": namespace})
        return History.from_json(found)

    def update(self, namespace: str, name: str, settings: dict[str, Any]) -> ExperimentResult:
        found = self._call("PATCH", _path(name), params={"namespace": namespace}, json=settings)
        return ExperimentResult.from_json(found)

    def reset(self, namespace: str, name: str) -> ExperimentResult:
        found = self._call("POST", _path(name) + "/reset", params={"namespace": namespace})
        return ExperimentResult.from_json(found)

    def declare(
        self,
        namespace: str,
        name: str,
        plan: Any,
        dry_run: bool = False,
        drop_undeclared: bool = False,
    ) -> ExperimentResult:
        """The server validates either way; a dry run (``?dry_run=true``) writes nothing."""
        params = {"namespace": namespace, "dry_run": "true" if dry_run else "false"}
        if drop_undeclared:
            params["drop_undeclared"] = "true"
        found = self._call("PUT", _path(name), params=params, json=plan)
        return ExperimentResult.from_json(found)

    def delete(self, namespace: str, name: str) -> None:
        self._call("DELETE", _path(name), params={"namespace": namespace})


class NotFound(GimelError):
    """The API answered 404: no such experiment in that namespace."""


def _path(name: str) -> str:
    return "/experiments/" + quote(name, safe="")


def _whole(pages: list[Listing]) -> Listing:
    """One listing of every page's experiments, with the last page's abuse counts."""
    return Listing([exp for page in pages for exp in page.experiments], pages[-1].abuse)


class RedisBackend:
    """Straight to the Redis a Gimel writes to: no HTTP, no key."""

    def __init__(self, redis_url: str) -> None:
        self.client = connect(redis_url, timeout=5)
        self.store = Experiments(Scripts(self.client), Config(redis_url=redis_url))

    def experiments(self, namespace: str, archived: bool = False) -> Listing:
        """Every experiment: the listing's pages, following ``next`` to the last."""
        page = paging.Page(defaults.PAGE_MAX_LIMIT)
        pages = [self.store.listing(namespace, archived, page)]
        while pages[-1].next is not None:
            page = paging.Page(defaults.PAGE_MAX_LIMIT, paging.decode(pages[-1].next))
            pages.append(self.store.listing(namespace, archived, page))
        return _whole(pages)

    def experiment(self, namespace: str, name: str) -> ExperimentResult:
        return self.store.experiment(namespace, name)

    def update(self, namespace: str, name: str, settings: dict[str, Any]) -> ExperimentResult:
        self.store.update_settings(namespace, name, settings)
        return self.store.experiment(namespace, name)

    def reset(self, namespace: str, name: str) -> ExperimentResult:
        self.store.reset(namespace, name)
        return self.store.experiment(namespace, name)

    def delete(self, namespace: str, name: str) -> None:
        self.store.delete(namespace, name)

    def history(self, namespace: str, name: str) -> History:
        return self.store.history(namespace, name)

    def declare(
        self,
        namespace: str,
        name: str,
        plan: Any,
        dry_run: bool = False,
        drop_undeclared: bool = False,
    ) -> ExperimentResult:
        """The same validation as the server's PUT (it is the same code)."""
        found, _ = self.store.declare(namespace, name, plan, dry_run, drop_undeclared)
        return found
