"""watch_claim.lua: a watcher's lease on one experiment, and what it remembers of it."""

from __future__ import annotations

from typing import Any

from .. import keys
from .runner import Call, text
from .schema import WatchClaimArgv


def claim(
    namespace: str, experiment: str, token: str, lease_ms: int
) -> Call[dict[str, str] | None]:
    """The experiment's alerts hash, once ``token`` holds its lease for ``lease_ms``; None if
    another watcher holds it."""
    argv = WatchClaimArgv(token=token, lease_ms=lease_ms)
    head = [keys.watching(namespace, experiment), keys.alerts(namespace, experiment)]
    return Call("watch_claim", head, [*argv], _fields)


def _fields(reply: Any) -> dict[str, str] | None:
    if reply is None:  # Lua's false
        return None
    return {text(k): text(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}
