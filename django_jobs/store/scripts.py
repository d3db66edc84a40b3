"""The Lua scripts behind every state transition, loaded once per client.

Each ``scripts/<name>.lua`` is prefixed with ``scripts/_lib.lua`` and registered with
``register_script``; redis-py then calls it with ``EVALSHA`` and loads it again only if the
server lost its script cache.
"""

from __future__ import annotations

import weakref
from functools import cache
from importlib import resources
from typing import Any

NAMES = (
    "enqueue",
    "promote",
    "claim",
    "ack_claim",
    "ack",
    "fail",
    "extend",
    "recover",
    "cancel",
    "requeue",
    "fetch",
    "stats",
    "watch",
    "release",
    "fire",
)

_registered: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


@cache
def source(name: str) -> str:
    """The full text of one script, shared helpers included."""
    folder = resources.files("django_jobs") / "store" / "lua"
    return (folder / "_lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


def scripts_for(client: Any) -> dict[str, Any]:
    """The registered scripts of ``client`` (a sync or an asyncio redis-py client)."""
    registered = _registered.get(client)
    if registered is None:
        registered = {name: client.register_script(source(name)) for name in NAMES}
        _registered[client] = registered
    return registered
