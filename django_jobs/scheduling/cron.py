"""Cron expressions and the clock due times are kept on.

A cron expression is checked (:func:`validate_cron`, naming the bad field) and normalised
(single spaces, ``@daily``-style aliases spelled out) here. ``cronsim`` only does calendar
arithmetic on naive wall-clock times (which wall minutes match); :func:`cron_after` maps those to
real instants in the task's zone with Debian cron's DST rules (docs/scheduling-dst.md): a job at
a fixed local time runs once a day (in the skipped hour of spring it runs right after the
change; in the repeated hour of autumn, once), while a job with a wildcard minute or hour
(``0 * * * *``, ``*/5 2 * * *``) runs every real hour and follows the new wall clock. Due times
are whole seconds in UTC (:func:`whole_seconds`).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
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
    return _validated(expression)


# Loading many tasks checks the few expressions they share once each, not once per task (a
# check builds a CronSim: 30 us). A bad expression raises, which is not cached: it is checked
# (and reported) every time.
@functools.lru_cache(maxsize=4096)
def _validated(expression: str) -> str:
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


# Wall-clock matches examined per call before giving up. A minutely job needs at most
# the lookback (a few hours of minutes) plus one; anything past this is a pathological case.
MAX_CRON_MATCHES = 5000
# Debian cron's classes of clock change, by the change of its minute counter over one real
# minute (``timeDiff`` in cron.c): a larger jump is "time has changed a lot, run what matches now".
_LARGE_JUMP_MINUTES = 180
_CATCH_UP_MINUTES = 5
# How far ahead to look for a backward change that repeats wall times earlier than ``moment``'s.
_FOLD_PROBES = (timedelta(hours=1), timedelta(hours=2), timedelta(hours=3), timedelta(days=1))


class UncomputableSchedule(InvalidSchedule):
    """The next run of a cron expression could not be found within :data:`MAX_CRON_MATCHES`."""

    def __init__(self, expression: str, tz: ZoneInfo, moment: datetime, reason: str) -> None:
        self.message = (
            f"Cannot compute the next run of the cron expression {expression!r} in time zone "
            f"{getattr(tz, 'key', None) or tz} after {moment.isoformat()}: {reason}."
        )
        super().__init__({"cron_expression": self.message})

    def __str__(self) -> str:
        return self.message


def is_fixed_time(expression: str) -> bool:
    """Whether Debian cron treats the (normalised) ``expression`` as a job at a fixed time:
    neither its minute nor its hour field starts with ``*`` (``@hourly`` is ``0 * * * *``)."""
    minute, hour = expression.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def _transition(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (``before``, ``after``] at which ``tz`` leaves its offset at ``before``."""
    offset = before.astimezone(tz).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) // 2
        if middle.astimezone(tz).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return after.replace(microsecond=0)


def _passes(wall: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``wall`` in ``tz`` read with the offset before a change and with the one after (equal
    when there is no change; in order when ``wall`` is repeated, reversed when it is skipped)."""
    first, second = (wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
    return first, second


def wall_instants(wall: datetime, tz: ZoneInfo, fixed: bool) -> list[datetime]:
    """The real instants (UTC) at which a job matching the naive wall time ``wall`` in ``tz``
    runs, by Debian cron's rules: once if ``wall`` exists once; in a repeated interval both
    passes for a wildcard job, the first only for a fixed one; in a skipped interval nothing for
    a wildcard job, the moment of the change for a fixed one. Clock changes of 3 hours or more
    run what the wall clock says (repeated: both passes; skipped: nothing); a change of under 5
    minutes is caught up (skipped times run at the change)."""
    first, second = _passes(wall, tz)
    if first == second:
        return [first]
    if first < second:  # Repeated: the clock went back by ``second - first``.
        step = 1 - (second - first) // timedelta(minutes=1)
        both = not fixed or step < -_LARGE_JUMP_MINUTES
        return [first, second] if both else [first]
    # Skipped: ``second`` (the offset after the change) is before it, ``first`` after it.
    step = 1 + (first - second) // timedelta(minutes=1)
    if step > _LARGE_JUMP_MINUTES or (step > _CATCH_UP_MINUTES and not fixed):
        return []
    return [_transition(second, first, tz)]


def _lookback(tz: ZoneInfo, moment: datetime) -> timedelta:
    """How far before ``moment``'s wall time a repeated interval coming up may start."""
    offset = moment.astimezone(tz).utcoffset()
    later = min((moment + probe).astimezone(tz).utcoffset() for probe in _FOLD_PROBES)
    if offset is None or later is None or later >= offset:
        return timedelta(0)
    return offset - later + timedelta(minutes=1)


def cron_after(expression: str, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first time of the (valid) cron ``expression`` in ``tz`` strictly after ``moment``,
    as a due time; ``None`` if there is none.

    Raises :class:`UncomputableSchedule` (naming the expression, zone and moment) rather than
    searching for longer than :data:`MAX_CRON_MATCHES` matching wall times.
    """
    text = normalize_cron(expression)
    moment = moment.astimezone(UTC)
    # Cronsim only ever sees naive wall times: its time-zone-aware path can loop for ever.
    start = moment.astimezone(tz).replace(tzinfo=None) - _lookback(tz, moment)
    try:
        walls = CronSim(text, start)
    except CronSimError as exc:
        raise _cron_error(text, text.split(), exc) from None
    fixed = is_fixed_time(text)
    best: datetime | None = None
    for count, wall in enumerate(walls):
        if count >= MAX_CRON_MATCHES:
            raise UncomputableSchedule(
                text, tz, moment, f"no run among the first {MAX_CRON_MATCHES} matching times"
            )
        instants = wall_instants(wall, tz, fixed)
        if best is not None:
            # The first real instant whose wall time is ``wall`` or later (the change, if
            # ``wall`` is skipped): no later wall time gives an earlier one.
            earliest = instants[0] if instants else _transition(*reversed(_passes(wall, tz)), tz)
            if earliest > best:
                break
        for instant in instants:
            if instant > moment and (best is None or instant < best):
                best = instant
    return None if best is None else whole_seconds(best)


def describe_cron(expression: str) -> str:
    """The (valid) cron ``expression`` in words: ``"At 02:00"``."""
    return CronSim(expression, datetime(2000, 1, 1)).explain()
