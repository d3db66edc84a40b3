"""Small statistics: medians with their spread, and percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max) of the repetitions."""
    clean = [v for v in values if not math.isnan(v)]
    return (min(clean), max(clean)) if clean else (math.nan, math.nan)


# The percentiles kept of a distribution: enough points to draw its CDF (denser in the tail,
# where the libraries differ), few enough to keep the results JSON small.
QUANTILES = (0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9, 100)


def distribution(values: Sequence[float], digits: int = 4) -> dict[str, list[float]]:
    """A compact distribution of ``values``: ``{"q": QUANTILES, "v": their values}``."""
    return {
        "q": list(QUANTILES),
        "v": [round(percentile(values, q), digits) for q in QUANTILES],
    }
