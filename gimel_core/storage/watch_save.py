"""watch_save.lua: write a watcher's findings for one experiment while its lease holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import keys
from .runner import Call
from .schema import WatchSaveArgv, WatchTag


def save(
    namespace: str,
    experiment: str,
    token: str,
    epoch: str,
    *,
    set_fields: Mapping[str, str],
    delete_fields: Sequence[str] = (),
    log: Sequence[str] = (),
    log_most: int,
    release: bool,
) -> Call[WatchTag]:
    """Set and delete fields of the experiment's alerts hash and push ``log`` (oldest first)
    on its delivery log, atomically, only while ``token`` holds its lease and its epoch is
    ``epoch``; give the lease up after, if ``release``."""
    argv = WatchSaveArgv(
        token=token,
        epoch=epoch,
        release=int(release),
        log_most=log_most,
        set_count=len(set_fields),
        delete_count=len(delete_fields),
    )
    pairs = [item for pair in set_fields.items() for item in pair]
    head = [
        keys.watching(namespace, experiment),
        keys.alerts(namespace, experiment),
        keys.deliveries(namespace, experiment),
        keys.meta(namespace, experiment),
    ]
    return Call(
        "watch_save",
        head,
        [*argv, *pairs, *delete_fields, *log],
        lambda reply: WatchTag(int(reply)),
    )
