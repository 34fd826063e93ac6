"""settings.lua: change an existing experiment's meta fields; never creates one."""

from __future__ import annotations

from .. import keys
from .runner import Call


def set_fields(namespace: str, experiment: str, fields: dict[str, str]) -> Call[bool]:
    """Set meta fields of an existing experiment (an empty value removes one); False if absent."""
    args = [item for pair in fields.items() for item in pair]
    return Call("settings", [keys.meta(namespace, experiment)], args, bool)
