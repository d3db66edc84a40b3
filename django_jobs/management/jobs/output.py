"""How ``manage.py jobs`` reads durations and writes its answers: tables, ages, JSON.

No Redis here: plain functions of the values the queue API returned.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from django_jobs.describe import age
from django_jobs.serialization import utcnow

# Seconds in each unit a duration may be written in: 30s, 15m, 12h, 7d, 2w.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = r"(\d+(?:\.\d+)?)([smhdw])"
_DURATION = re.compile(rf"(?:{_PART})+|\d+(?:\.\d+)?")

# What clears a terminal and puts the cursor top left (``stats --watch``), as ``clear`` does.
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def duration(text: str) -> float:
    """Seconds from ``30s``, ``15m``, ``12h``, ``7d``, ``2w``, combinations (``1h30m``) or a
    bare number of seconds. An argparse ``type``: a bad value is a usage error (status 2)."""
    value = text.strip().lower()
    if not _DURATION.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write e.g. 30s, 15m, 12h, 7d or 1h30m."
        )
    if value[-1].isdigit():
        return float(value)
    return float(sum(float(n) * UNITS[unit] for n, unit in re.findall(_PART, value)))


def count(minimum: int) -> Any:
    """An argparse ``type`` for a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}.")
        return number

    parse.__name__ = "count"
    return parse


def positive_seconds(text: str) -> float:
    """An argparse ``type`` for a refresh interval: a duration of more than 0 seconds."""
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds.")
    return seconds


def since(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was (``3m 12s ago``), or in how long it is (``in 5m``)."""
    if moment is None:
        return "-"
    delta = ((now or utcnow()) - moment).total_seconds()
    return f"{age(delta)} ago" if delta >= 0 else f"in {age(-delta)}"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC, as :meth:`~django_jobs.job.Job.to_dict` writes datetimes."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a plain text table: columns as wide as their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(padded).rstrip())
    return lines


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def to_json(data: Any, *, compact: bool = False) -> str:
    """``data`` as indented JSON (or on one line: ``compact``); datetimes as ISO 8601 in UTC,
    dataclasses as dicts."""
    if compact:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
