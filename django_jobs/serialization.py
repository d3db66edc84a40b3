"""JSON, and only JSON, for everything that crosses Redis: job arguments, results, records."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from django_jobs.exceptions import NotJSONSerializable

# How deep lists and dicts may nest in what crosses Redis. Far deeper than real arguments, and
# far below Python's recursion limit, so that neither checking, writing nor reading such a value
# can end in a RecursionError (nor can a list that contains itself).
MAX_JSON_DEPTH = 128


# Values that check_json takes as they are: JSON writes and reads them unchanged.
PLAIN = frozenset({str, int, bool, type(None)})


def check_arguments(args: list[Any], path: str = "args", item: int | None = None) -> None:
    """:func:`check_json` of each of a job's positional ``args``, named ``<path>[<index>]``, or
    ``<path>[<item>][<index>]`` for the ``item``-th job of many; the plain ones (most arguments)
    are taken as they are, with no name to write."""
    for index, value in enumerate(args):
        if value.__class__ not in PLAIN:
            name = path if item is None else f"{path}[{item}]"
            check_json(value, f"{name}[{index}]")


def check_json(value: Any, path: str, depth: int = 0) -> None:
    """Raise :class:`NotJSONSerializable` unless ``value`` survives a JSON round trip unchanged.

    ``path`` names the value in the message (``args[0]``, ``kwargs['user']['id']``), so the
    caller learns which argument to fix before anything is written. Lists and dicts nested
    more than :data:`MAX_JSON_DEPTH` levels deep are refused too.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONSerializable(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, dict)) and depth >= MAX_JSON_DEPTH:
        raise NotJSONSerializable(
            f"{_shortened(path)} is nested more than {MAX_JSON_DEPTH} lists and dicts deep, the "
            "limit of what a job stores (or it contains itself)"
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSONSerializable(
                    f"{path} has the key {key!r}; JSON object keys must be strings"
                )
            check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    raise NotJSONSerializable(
        f"{path} is {_describe(value)}, which does not survive JSON. {_hint(value)}"
    )


def _shortened(path: str) -> str:
    """A path of a deeply nested value, its middle elided so the message stays readable."""
    return path if len(path) <= 100 else f"{path[:60]}...{path[-30:]}"


def json_depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def loads_record(text: str) -> Any:
    """JSON read from Redis, where anyone may have written it: ``ValueError`` unless it is plain
    JSON (no ``NaN``) nested no deeper than :func:`check_json` lets in (one more level: the
    list of ``args`` itself)."""
    limit = MAX_JSON_DEPTH + 1
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"it is nested more than {limit} deep") from None
    # Only text with that many brackets can be that deep: most records skip the walk.
    if text.count("[") + text.count("{") > limit and json_depth(value) > limit:
        raise ValueError(f"it is nested more than {limit} deep")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Made once: ``json.loads`` with an option makes a decoder per call, which costs a worker more
# than reading a job's arguments (it reads a record per job).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


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


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# json's C encoder with those options, made once: ``json.dumps`` (and ``JSONEncoder.encode``)
# makes one per call, which costs more than encoding a job's arguments. It keeps no markers of
# the lists and dicts it is in: a value that contains itself is refused by check_json first
# (nested too deep).
_ENCODE = c_make_encoder and c_make_encoder(
    None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
)


def dumps(value: Any) -> str:
    """Compact JSON for values already checked with :func:`check_json`."""
    if _ENCODE is None:  # a Python without json's C speedups
        return _ENCODER.encode(value)
    return "".join(_ENCODE(value, 0))


def loads(data: str | bytes) -> Any:
    return json.loads(data)


def from_timestamp(value: float | str | bytes) -> datetime:
    """Epoch seconds as an aware UTC datetime; ``ValueError`` for what no datetime can be
    (``nan``, ``1e400``, year 10000 and later)."""
    seconds = float(value)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{value!r} is not a time a datetime can hold") from None


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
