"""Cron expressions and the clock due times are kept on.

A cron expression is checked (:func:`validate_cron`, naming the bad field) and normalised
(single spaces, ``@daily``-style aliases spelled out) here, and evaluated by ``cronsim``, which
follows Debian cron through DST changes: a job at a fixed local time runs once a day (in the
skipped hour of spring it runs right after the change; in the repeated hour of autumn, once),
while a job with a wildcard hour (``0 * * * *``) runs every real hour. Due times are whole
seconds in UTC (:func:`whole_seconds`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from django.conf import settings

from django_jobs.scheduling.errors import InvalidSchedule

CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_ALLOWED = {
    "minute": "minutes are 0-59",
    "hour": "hours are 0-23",
    "day-of-month": "days of the month are 1-31, L (the last day) or LW (the last weekday)",
    "month": "months are 1-12 or JAN-DEC",
    "day-of-week": "days of the week are 0-7 or SUN-SAT (0 and 7 are Sunday), with 5L for "
    "the last Friday of the month and MON#2 for its second Monday",
}
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class InvalidCron(InvalidSchedule):
    """A cron expression is invalid; ``cron_field`` names the bad field (``"hour"``, ...)."""

    def __init__(self, message: str, cron_field: str | None = None) -> None:
        self.cron_field = cron_field
        super().__init__({"cron_expression": message})

    def __str__(self) -> str:
        return self.errors["cron_expression"]


def normalize_cron(expression: str) -> str:
    """``expression`` with single spaces, and an ``@daily``-style alias spelled out."""
    text = " ".join(str(expression).split())
    return CRON_ALIASES.get(text.lower(), text)


def _cron_error(expression: str, parts: list[str], error: CronSimError) -> InvalidCron:
    for index, name in enumerate(CRON_FIELDS):
        if str(error) != f"Bad {name}":
            continue
        value = parts[index]
        alone = ["*"] * 5
        alone[index] = value
        try:
            CronSim(" ".join(alone), datetime(2000, 1, 1))
        except CronSimError:
            reason = _CRON_ALLOWED[name]
        else:  # Fine by itself: the day never falls in the months given.
            reason = f"that day never occurs in month {parts[3]!r}"
        return InvalidCron(
            f"Bad {name} field {value!r} in the cron expression {expression!r}: {reason}.", name
        )
    return InvalidCron(f"Invalid cron expression {expression!r}: {error}.")


def validate_cron(expression: str) -> str:
    """Return the normalized ``expression`` or raise :class:`InvalidCron` naming the bad field.

    Five fields (minute hour day-of-month month day-of-week) with names (``MON``, ``JAN``),
    ranges, steps, lists, ``L`` and ``#``; or one of ``@hourly @daily @midnight @weekly
    @monthly @yearly @annually``.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidCron("Enter a cron expression, e.g. '0 2 * * *' for 02:00 every day.")
    text = normalize_cron(expression)
    if text.startswith("@"):
        raise InvalidCron(
            f"Unknown cron shortcut {text!r}; use one of {', '.join(CRON_ALIASES)}, or five fields."
        )
    parts = text.split()
    if len(parts) != 5:
        raise InvalidCron(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
            f"{expression.strip()!r} has {len(parts)}."
        )
    try:
        cron = CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise _cron_error(expression.strip(), parts, exc) from None
    try:
        next(cron)
    except StopIteration:
        raise InvalidCron(f"The cron expression {text!r} never matches a date.") from None
    return text


def zone(name: str | None) -> ZoneInfo:
    """The time zone ``name``, or ``settings.TIME_ZONE`` when it is empty."""
    return ZoneInfo(name or settings.TIME_ZONE or "UTC")


def whole_seconds(moment: datetime) -> datetime:
    """``moment`` in UTC, without its fraction of a second: the form of a due time."""
    return moment.astimezone(UTC).replace(microsecond=0)


def cron_after(expression: str, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first time of the (valid) cron ``expression`` in ``tz`` strictly after ``moment``,
    as a due time; ``None`` if there is none."""
    times = CronSim(expression, moment.astimezone(tz))
    # Strictly later than ``moment``: in the repeated hour of autumn a fixed-time job that ran
    # in its first pass must not run in the second (cronsim works in wall time there, so it can
    # offer times of the first pass again).
    for found in times:
        if whole_seconds(found) > moment:
            return whole_seconds(found)
    return None


def describe_cron(expression: str) -> str:
    """The (valid) cron ``expression`` in words: ``"At 02:00"``."""
    return CronSim(expression, datetime(2000, 1, 1)).explain()
