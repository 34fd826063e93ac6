"""namespace.lua: admit a namespace under the cap on namespaces."""

from __future__ import annotations

from .. import keys
from .runner import Call
from .schema import NamespaceArgv


def admit_namespace(namespace: str, most: int) -> Call[bool]:
    """True if the namespace is known, or new and under the cap (then it is recorded)."""
    return Call(
        "namespace", [keys.namespaces()], [*NamespaceArgv(namespace=namespace, most=most)], bool
    )
