"""JSON, and only JSON, for everything that crosses Redis: job arguments, results, records."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from django_jobs.exceptions import NotJSONSerializable


def check_json(value: Any, path: str) -> None:
    """Raise :class:`NotJSONSerializable` unless ``value`` survives a JSON round trip unchanged.

    ``path`` names the value in the message (``args[0]``, ``kwargs['user']['id']``), so the
    caller learns which argument to fix before anything is written.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONSerializable(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSONSerializable(
                    f"{path} has the key {key!r}; JSON object keys must be strings"
                )
            check_json(item, f"{path}[{key!r}]")
        return
    raise NotJSONSerializable(
        f"{path} is {_describe(value)}, which does not survive JSON. {_hint(value)}"
    )


def _describe(value: Any) -> str:
    return f"a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60})"


def _hint(value: Any) -> str:
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return "Pass its primary key (instance.pk) and load it again inside the job."
    if isinstance(value, tuple):
        return "Pass a list instead: JSON turns tuples into lists."
    if isinstance(value, datetime):
        return "Pass value.isoformat() and parse it inside the job."
    if isinstance(value, (set, frozenset)):
        return "Pass a sorted list instead."
    return "Pass only str, int, float, bool, None, lists and dicts with string keys."


def dumps(value: Any) -> str:
    """Compact JSON for values already checked with :func:`check_json`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(data: str | bytes) -> Any:
    return json.loads(data)


def from_timestamp(value: float | str | bytes) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
