"""An independent minute-by-minute simulation of Debian cron, used only by tests.

It shares no code with ``django_jobs.scheduling.cron`` nor with cronsim: it parses the cron
expressions itself and steps real time one minute at a time, the way cron's main loop does
(``cron.c`` in Debian's cron 3.0pl1): each minute it reads the local clock as a count of local
minutes, compares it with its "virtual" clock and classifies the difference:

- one minute: the normal case, run every job matching the wall minute;
- more than 3 hours either way: "time has changed a lot", jump, run what matches now;
- 6 minutes to 3 hours forward (DST starts): run the wildcard jobs matching now, and the
  fixed-time jobs matching any wall minute that was skipped (and now), all at this minute;
- 2 to 5 minutes forward (woke up late): run every job for each missed wall minute, now;
- zero or backward (DST ends): run only the wildcard jobs matching now, and do not move the
  virtual clock, so fixed-time jobs of the repeated wall times do not run a second time.

A job is "fixed-time" when neither its minute nor its hour field starts with ``*``
(``@hourly`` is a wildcard job). A job runs at most once per real minute.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
LAST = "L"
LAST_WEEKDAY = "LW"
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1)


def _number(text: str, low: int, high: int, names: list[str] | None, base: int) -> int:
    if names and text.upper() in names:
        return names.index(text.upper()) + base
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{text} is out of {low}-{high}")
    return value


def _values(text: str, low: int, high: int, names: list[str] | None = None, base: int = 0):
    """The set of numbers a field (ranges, steps, lists, names) stands for."""
    result: set[int] = set()
    for term in text.split(","):
        span, _, step = term.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (_number(part, low, high, names, base) for part in span.split("-"))
        else:
            first = _number(span, low, high, names, base)
            last = high if step else first
        result.update(range(first, last + 1, int(step or 1)))
    return result


@dataclass
class Expression:
    """One parsed cron expression, matching naive wall-clock minutes."""

    text: str
    minutes: set[int] = field(default_factory=set)
    hours: set[int] = field(default_factory=set)
    months: set[int] = field(default_factory=set)
    days: set[int | str] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)
    last_weekdays: set[int] = field(default_factory=set)  # ``5L``: the last Friday
    nth_weekdays: set[tuple[int, int]] = field(default_factory=set)  # ``MON#2``
    day_and: bool = True
    fixed: bool = False
    _day_cache: dict[date, bool] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Expression:
        fields = MACROS.get(text.strip().lower(), text).split()
        minute, hour, dom, month, dow = fields
        parsed = cls(text, _values(minute, 0, 59), _values(hour, 0, 23))
        parsed.months = _values(month, 1, 12, MONTH_NAMES, 1)
        for term in dom.split(","):
            if term in (LAST, LAST_WEEKDAY):
                parsed.days.add(term)
            else:
                parsed.days.update(_values(term, 1, 31))
        for term in dow.upper().split(","):
            if term.endswith("L"):
                parsed.last_weekdays.add(_number(term[:-1], 0, 7, DAY_NAMES, 0) % 7)
            elif "#" in term:
                day, nth = term.split("#")
                parsed.nth_weekdays.add((_number(day, 0, 7, DAY_NAMES, 0) % 7, int(nth)))
            else:
                parsed.weekdays.update(d % 7 for d in _values(term, 0, 7, DAY_NAMES))
        # Debian: if either day field starts with '*', both must match; otherwise either.
        parsed.day_and = dom.startswith("*") or dow.startswith("*")
        parsed.fixed = not minute.startswith("*") and not hour.startswith("*")
        return parsed

    def _day_matches(self, day: date) -> bool:
        length = calendar.monthrange(day.year, day.month)[1]
        last_weekday = length
        while date(day.year, day.month, last_weekday).weekday() >= 5:
            last_weekday -= 1
        by_date = (
            day.day in self.days
            or (LAST in self.days and day.day == length)
            or (LAST_WEEKDAY in self.days and day.day == last_weekday)
        )
        weekday = (day.weekday() + 1) % 7  # cron counts from Sunday
        by_weekday = (
            weekday in self.weekdays
            or (weekday in self.last_weekdays and day.day + 7 > length)
            or (weekday, (day.day - 1) // 7 + 1) in self.nth_weekdays
        )
        return by_date and by_weekday if self.day_and else by_date or by_weekday

    def matches(self, wall: datetime) -> bool:
        """Whether the naive wall-clock minute ``wall`` matches."""
        if wall.minute not in self.minutes or wall.hour not in self.hours:
            return False
        if wall.month not in self.months:
            return False
        day = wall.date()
        if day not in self._day_cache:
            self._day_cache[day] = self._day_matches(day)
        return self._day_cache[day]


def local_minutes(moment: datetime, tz: ZoneInfo) -> int:
    """Cron's clock: the local time as a count of minutes (``(time + gmtoff) / 60``)."""
    local = moment.astimezone(tz)
    return (local.replace(tzinfo=None) - EPOCH) // MINUTE


def debian_runs(
    expressions: Iterable[str], tz: ZoneInfo, start: datetime, end: datetime
) -> dict[str, list[datetime]]:
    """For each expression, the real minutes (UTC) in (``start``, ``end``] at which Debian
    cron, started at ``start`` (a whole UTC minute, away from any clock change), runs it."""
    jobs = [Expression.parse(text) for text in expressions]
    runs: dict[str, list[datetime]] = {job.text: [] for job in jobs}
    virtual = running = local_minutes(start, tz)
    now = start.astimezone(UTC)
    while now < end:
        now += MINUTE
        clock = local_minutes(now, tz)
        if clock == running:  # cron keeps sleeping until its minute counter changes
            continue
        running = clock
        step = running - virtual
        # (wall minute, run wildcard jobs, run fixed-time jobs) to look at, in cron's order.
        if step == 1 or abs(step) > 180:
            checks = [(running, True, True)]
            virtual = running
        elif step > 5:
            checks = [(running, True, False)]
            checks += [(minute, False, True) for minute in range(virtual + 1, running + 1)]
            virtual = running
        elif step > 0:
            checks = [(minute, True, True) for minute in range(virtual + 1, running + 1)]
            virtual = running
        else:
            checks = [(running, True, False)]
        for job in jobs:
            for minute, wildcard, fixed in checks:
                if (fixed if job.fixed else wildcard) and job.matches(EPOCH + minute * MINUTE):
                    runs[job.text].append(now)
                    break
    return runs
