"""The results JSON as the report, the targets and the chart read it: lookups and the way
numbers are written."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.stats import median, spread

DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign

DJ = "django-jobs"
PEERS = ("rq", "celery", "huey", "dramatiq")
ORDER = (DJ, *PEERS)

Results = dict[str, Any]


# -- numbers ----------------------------------------------------------------------------------


def number(value: float, digits: int | None = None) -> str:
    """Thousands separators for big numbers, a few significant digits for small ones."""
    if value is None or math.isnan(value):
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def summary(values: Sequence[float] | None, digits: int | None = None) -> str:
    """``median (min-max)``, or the single value."""
    if not values:
        return "n/a"
    low, high = spread(values)
    mid = number(median(values), digits)
    if len(values) == 1 or math.isnan(low):
        return mid
    return f"{mid} ({number(low, digits)}{DASH}{number(high, digits)})"


def lookup(results: Results, lib: str, *path: str) -> Any:
    node: Any = results.get("libraries", {}).get(lib, {})
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def median_of(results: Results, lib: str, *path: str) -> float:
    """The median of the values at ``path`` of ``lib``'s results (NaN when there are none)."""
    values = lookup(results, lib, *path)
    return median(values) if values else math.nan


def drain_modes(results: Results, lib: str, processes: int) -> list[dict[str, Any]]:
    modes = lookup(results, lib, "drain", "modes") or []
    return [m for m in modes if m["processes"] == processes]


def best_mode(results: Results, lib: str, processes: int) -> dict[str, Any] | None:
    modes = drain_modes(results, lib, processes)
    return max(modes, key=lambda m: median(m["per_second"]), default=None)


def display_name(results: Results, lib: str) -> str:
    return str(lookup(results, lib, "name") or lib)


def libraries_in(results: Results) -> list[str]:
    present = results.get("libraries", {})
    return [lib for lib in ORDER if lib in present]


def earlier_runs(results: Results) -> list[str]:
    """The dates of the earlier runs that the numbers this run did not measure come from (each
    entry keeps the date it was measured on, through any number of merges), oldest first."""
    now = results.get("run_date")
    return sorted(
        {
            entry["measured"]
            for lib in libraries_in(results)
            for entry in results["libraries"][lib].values()
            if isinstance(entry, dict) and entry.get("measured") not in (None, now)
        }
    )
