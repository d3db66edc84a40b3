"""The rules of seconds and counts, shared by what users pass to a job (:mod:`.validation`) and
by the ``DJANGO_JOBS`` settings (:mod:`.conf`): one rule and one message each.

It imports nothing of django-jobs, so that the settings module, which everything else imports,
can use it too.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

# Farther ahead than any real schedule, and well inside what datetime can represent.
MAX_SECONDS = 100 * 365 * 24 * 3600


def refused(what: str, rule: str, value: Any) -> ValueError:
    """The one shape of a "wrong value" message: ``<what> must be <rule>, not <value>.``."""
    return ValueError(f"{what} must be {rule}, not {value!r}.")


def seconds(
    value: float | timedelta,
    what: str,
    *,
    positive: bool = False,
    timedelta_ok: bool = True,
) -> float:
    """``value`` (a number of seconds or a ``timedelta``) as a float; ``ValueError`` otherwise.

    Store what this returns, never ``value`` itself: a ``timedelta`` written to Redis as
    text (``"0:05:00"``) could not be read back.
    ``what`` names the value in the message (``"timeout"``, ``"DJANGO_JOBS['LEASE_TIMEOUT']"``).
    NaN and infinity are refused: Redis scores and datetimes cannot hold them. ``positive``
    also refuses 0 and less; ``timedelta_ok=False`` refuses a ``timedelta`` (the settings
    are read as plain numbers, by Lua scripts among others).
    """
    number = value.total_seconds() if timedelta_ok and isinstance(value, timedelta) else value
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
    ):
        kind = "a number of seconds or a timedelta" if timedelta_ok else "a number of seconds"
        raise refused(what, kind, value)
    if number > MAX_SECONDS:
        raise ValueError(f"{what} of {value!r} is more than 100 years.")
    if positive and number <= 0:
        raise refused(what, "a positive number of seconds", value)
    return float(number)


def integer(value: int, what: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) of at least ``minimum`` (and at most
    ``maximum``); ``ValueError`` otherwise.

    The rule of retry counts (``max_retries``, ``MAX_RETRIES``, a task's ``run_count``: 0 and
    up) and of the TTL settings (``minimum=1``). A float, even ``1.0``, is refused: these are
    counts, and Redis and the scripts store them as integers.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise refused(what, f"an integer >= {minimum}", value)
    if maximum is not None and value > maximum:
        raise refused(what, f"an integer from {minimum} to {maximum}", value)
    return value


# A rate: a count per a number of seconds, minutes, hours or days ("10/s", "100/m", "5/10s").
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*(s|m|h|d)\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate(value: str, what: str) -> tuple[int, float]:
    """A rate limit such as ``"10/s"``, ``"100/m"`` or ``"5/10s"`` (5 per 10 seconds) as
    (count, period in seconds); ``ValueError`` otherwise."""
    found = _RATE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise refused(what, "a rate such as '10/s', '100/m', '1000/h' or '5/10s'", value)
    count, span, unit = int(found[1]), int(found[2] or 1), found[3]
    if count < 1 or span < 1:
        raise refused(what, "a rate of at least 1 per a period of at least 1", value)
    return count, float(span * _UNITS[unit])
