"""Schedules: when a task runs next (interval, cron through DST, once), what is refused, and
what happens to runs that fell due while no scheduler ran. No Redis, no database."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from django_jobs import JobPriority
from django_jobs.scheduling.cron import InvalidCron, validate_cron
from django_jobs.scheduling.due import due_runs, rescheduled
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.settings import task_from_setting
from django_jobs.scheduling.task import (
    MAX_CATCH_UP,
    MissedRunPolicy,
    ScheduledTask,
    ScheduleType,
)

NOW = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)  # a Monday


def interval(seconds=3600, **fields):
    return ScheduledTask("hourly_sync", "sync_data", ScheduleType.INTERVAL, seconds, **fields)


def cron(expression, **fields):
    return ScheduledTask("cron_task", "cleanup", "cron", cron_expression=expression, **fields)


def once(run_at, **fields):
    return ScheduledTask("special_event", "event_handler", "once", run_at=run_at, **fields)


def runs(task, start, count):
    """``count`` due times of ``task``, following one another from the first after ``start``."""
    times = [task.calculate_next_run(start)]
    while len(times) < count:
        times.append(task.next_run_after(times[-1]))
    return times


# -- the task ----------------------------------------------------------------------------------


def test_schedule_types_and_policies():
    assert [t.value for t in ScheduleType] == ["interval", "cron", "once"]
    assert [p.value for p in MissedRunPolicy] == ["catch_up", "skip", "all"]


def test_interval_task():
    task = ScheduledTask(
        name="hourly_sync",
        job_name="sync_data",
        schedule_type=ScheduleType.INTERVAL,
        interval_seconds=3600,
        priority=JobPriority.HIGH,
    )

    assert task.priority is JobPriority.HIGH
    assert interval().priority is None, "the job's own priority"
    assert task.enabled
    assert (task.last_run, task.next_run, task.run_count) == (None, None, 0)
    assert task.missed_run_policy is MissedRunPolicy.CATCH_UP
    assert task.timezone == ""
    assert task.describe() == "Every hour"


def test_cron_task():
    task = ScheduledTask(
        name="daily_cleanup",
        job_name="cleanup",
        schedule_type=ScheduleType.CRON,
        cron_expression="0 2 * * *",
    )

    assert task.cron_expression == "0 2 * * *"
    assert task.describe() == "At 02:00 every day (UTC)"


def test_one_time_task():
    task = ScheduledTask(
        name="special_event",
        job_name="event_handler",
        schedule_type="once",
        run_at=datetime(2024, 12, 25, 10, 0, 0, tzinfo=UTC),
    )

    assert task.schedule_type is ScheduleType.ONCE
    assert task.describe() == "Once, at 2024-12-25 10:00:00 (UTC)"


def test_fields_given_as_strings_become_enums():
    task = interval(priority="critical", missed_run_policy="skip")

    assert task.priority is JobPriority.CRITICAL
    assert task.missed_run_policy is MissedRunPolicy.SKIP


# -- interval and once ---------------------------------------------------------------------------


def test_interval_task_that_never_ran_runs_at_once():
    assert interval().calculate_next_run(NOW + timedelta(microseconds=5)) == NOW


def test_interval_task_can_wait_one_interval_before_its_first_run():
    task = interval(run_immediately=False)

    assert task.calculate_next_run(NOW) == NOW + timedelta(hours=1)


def test_interval_counts_from_the_last_run():
    task = interval(last_run=NOW - timedelta(minutes=10))

    assert task.calculate_next_run(NOW) == NOW + timedelta(minutes=50)
    assert task.next_run_after(NOW) == NOW + timedelta(hours=1)


def test_overdue_interval_task_is_due_in_the_past():
    """The scheduler then applies the missed-run policy."""
    task = interval(last_run=NOW - timedelta(hours=5))

    assert task.calculate_next_run(NOW) == NOW - timedelta(hours=4)


def test_one_time_task_that_did_not_run_yet_runs_at_its_time():
    run_at = NOW + timedelta(days=3)

    assert once(run_at).calculate_next_run(NOW) == run_at
    assert once(run_at).next_run_after(run_at) is None


def test_one_time_task_runs_once_only():
    run_at = NOW - timedelta(hours=1)

    assert once(run_at, last_run=run_at).calculate_next_run(NOW) is None
    assert once(run_at).upcoming(5, NOW) == [run_at]


def test_one_time_task_given_a_later_time_runs_again():
    ran = NOW - timedelta(days=1)

    assert once(NOW + timedelta(hours=1), last_run=ran).calculate_next_run(NOW) == NOW + timedelta(
        hours=1
    )


def test_due_times_are_whole_seconds():
    run_at = NOW + timedelta(seconds=5, microseconds=700)

    assert once(run_at).calculate_next_run(NOW) == NOW + timedelta(seconds=5)
    assert cron("* * * * *").calculate_next_run(NOW + timedelta(microseconds=1)) == NOW + timedelta(
        minutes=1
    )


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "Every second"),
        (90, "Every 90 seconds"),
        (300, "Every 5 minutes"),
        (5400, "Every 90 minutes"),
        (7200, "Every 2 hours"),
        (86400, "Every day"),
        (3 * 86400, "Every 3 days"),
    ],
)
def test_interval_in_words(seconds, words):
    assert interval(seconds).describe() == words


# -- cron ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", ["2024-01-15 12:01", "2024-01-15 12:02", "2024-01-15 12:03"]),
        ("0 * * * *", ["2024-01-15 13:00", "2024-01-15 14:00", "2024-01-15 15:00"]),
        ("0 2 * * *", ["2024-01-16 02:00", "2024-01-17 02:00", "2024-01-18 02:00"]),
        ("*/5 * * * *", ["2024-01-15 12:05", "2024-01-15 12:10", "2024-01-15 12:15"]),
        ("0 0 1 * *", ["2024-02-01 00:00", "2024-03-01 00:00", "2024-04-01 00:00"]),
        # Business hours, Monday to Friday: the 19th is a Friday.
        ("0 9-17 * * 1-5", ["2024-01-15 13:00", "2024-01-15 14:00", "2024-01-15 15:00"]),
        ("0 0,12 * * *", ["2024-01-16 00:00", "2024-01-16 12:00", "2024-01-17 00:00"]),
    ],
)
def test_cron_examples(expression, expected):
    times = runs(cron(expression), NOW, 3)

    assert [t.strftime("%Y-%m-%d %H:%M") for t in times] == expected


@pytest.mark.parametrize(
    ("field_form", "expression", "expected"),
    [
        ("wildcard", "* 12 15 1 *", ["12:01", "12:02", "12:03"]),
        ("value", "5 12 15 1 *", ["12:05", "2025-01-15 12:05"]),
        ("range", "1-3 13 15 1 *", ["13:01", "13:02", "13:03"]),
        ("step", "*/20 13 15 1 *", ["13:00", "13:20", "13:40"]),
        ("range with step", "10-50/20 13 15 1 *", ["13:10", "13:30", "13:50"]),
        ("list", "1,3,5 13 15 1 *", ["13:01", "13:03", "13:05"]),
        ("day name", "0 8 * * WED", ["2024-01-17 08:00", "2024-01-24 08:00"]),
        ("day names", "0 8 * * sat,sun", ["2024-01-20 08:00", "2024-01-21 08:00"]),
        ("month name", "0 0 1 MAR,JUN *", ["2024-03-01 00:00", "2024-06-01 00:00"]),
        ("last day of the month", "0 0 L * *", ["2024-01-31 00:00", "2024-02-29 00:00"]),
        ("last Friday", "0 0 * * 5L", ["2024-01-26 00:00", "2024-02-23 00:00"]),
        ("second Monday", "0 0 * * MON#2", ["2024-02-12 00:00", "2024-03-11 00:00"]),
        ("Sunday as 7", "0 0 * * 7", ["2024-01-21 00:00", "2024-01-28 00:00"]),
        ("@hourly", "@hourly", ["13:00", "14:00"]),
        ("@daily", "@daily", ["2024-01-16 00:00", "2024-01-17 00:00"]),
        ("@midnight", "@midnight", ["2024-01-16 00:00", "2024-01-17 00:00"]),
        ("@weekly", "@weekly", ["2024-01-21 00:00", "2024-01-28 00:00"]),
        ("@monthly", "@monthly", ["2024-02-01 00:00", "2024-03-01 00:00"]),
        ("@yearly", "@yearly", ["2025-01-01 00:00", "2026-01-01 00:00"]),
        ("@annually", "@ANNUALLY", ["2025-01-01 00:00", "2026-01-01 00:00"]),
    ],
)
def test_cron_field_forms(field_form, expression, expected):
    times = runs(cron(expression), NOW, len(expected))

    def shown(moment, like):
        return moment.strftime("%H:%M" if len(like) == 5 else "%Y-%m-%d %H:%M")

    assert [shown(t, e) for t, e in zip(times, expected, strict=True)] == expected


def test_cron_is_normalized_and_explained():
    task = cron("  0   2 * *  mon-fri ", timezone="Europe/Berlin")

    assert task.cron_expression == "0 2 * * mon-fri"
    assert task.describe() == "At 02:00 on Monday through Friday (Europe/Berlin)"
    assert cron("@daily").cron_expression == "0 0 * * *"


@pytest.mark.parametrize(
    ("expression", "field", "message"),
    [
        ("60 * * * *", "minute", "Bad minute field '60' in the cron expression '60 * * * *': "),
        ("x 1 * * *", "minute", "Bad minute field 'x'"),
        ("*/0 * * * *", "minute", "Bad minute field '*/0'"),
        ("0 24 * * *", "hour", "Bad hour field '24'"),
        ("0 5-1 * * *", "hour", "Bad hour field '5-1'"),
        ("0 0 32 * *", "day-of-month", "Bad day-of-month field '32'"),
        ("0 0 0 * *", "day-of-month", "Bad day-of-month field '0'"),
        ("0 0 31 2 *", "day-of-month", "that day never occurs in month '2'"),
        ("0 0 * 13 *", "month", "Bad month field '13'"),
        ("0 0 * FOO *", "month", "Bad month field 'FOO'"),
        ("0 0 * * 8", "day-of-week", "Bad day-of-week field '8'"),
        ("0 0 * * MON#6", "day-of-week", "Bad day-of-week field 'MON#6'"),
    ],
)
def test_invalid_cron_names_the_bad_field(expression, field, message):
    with pytest.raises(InvalidCron) as caught:
        validate_cron(expression)

    assert caught.value.cron_field == field
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "Enter a cron expression"),
        ("* * *", "A cron expression has 5 fields (minute hour day-of-month month day-of-week)"),
        ("0 0 0 * * *", "'0 0 0 * * *' has 6"),
        ("@reboot", "Unknown cron shortcut '@reboot'"),
    ],
)
def test_invalid_cron_shape(expression, message):
    with pytest.raises(InvalidCron) as caught:
        validate_cron(expression)

    assert message in str(caught.value)


def test_invalid_cron_is_refused_when_the_task_is_made():
    with pytest.raises(InvalidSchedule) as caught:
        cron("0 25 * * *")

    assert list(caught.value.errors) == ["cron_expression"]
    assert "Bad hour field '25'" in caught.value.errors["cron_expression"]


# -- cron through DST changes --------------------------------------------------------------------

# (zone, a day of the spring change, a day of the autumn change)
DST = [
    ("Europe/Berlin", "2025-03-30", "2025-10-26"),  # 02:00 -> 03:00, 03:00 -> 02:00
    ("America/New_York", "2025-03-09", "2025-11-02"),  # 02:00 -> 03:00, 02:00 -> 01:00
]


def around(zone, day):
    """Four days of local time, from midnight two days before ``day`` (a second before, so that
    midnight counts)."""
    start = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(zone)) - timedelta(days=2)
    return start - timedelta(seconds=1), start + timedelta(days=4)


def scheduled(task, start, end):
    times = [task.calculate_next_run(start)]
    while times[-1] < end:
        times.append(task.next_run_after(times[-1]))
    return times[:-1]


def with_cronsim(expression, zone, start, end):
    times = (t.astimezone(UTC) for t in CronSim(expression, start.astimezone(ZoneInfo(zone))))
    return [t for t in islice(times, 500) if t < end]


@pytest.mark.parametrize(("zone", "spring", "autumn"), DST, ids=[z for z, *_ in DST])
@pytest.mark.parametrize("change", ["spring", "autumn"])
@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "0 2 * * *", "0 1 * * *", "15 3 * * *", "0 12 * * *"]
)
def test_daily_task_through_a_dst_change_runs_once_a_day_as_cronsim_says(
    zone, spring, autumn, change, expression
):
    start, end = around(zone, spring if change == "spring" else autumn)
    task = cron(expression, timezone=zone)

    times = scheduled(task, start, end)

    assert times == with_cronsim(expression, zone, start, end)
    days = Counter(t.astimezone(ZoneInfo(zone)).date() for t in times)
    assert len(days) == 4
    assert set(days.values()) == {1}, f"not once per day: {days}"


@pytest.mark.parametrize(("zone", "spring", "autumn"), DST, ids=[z for z, *_ in DST])
@pytest.mark.parametrize("change", ["spring", "autumn"])
@pytest.mark.parametrize("expression", ["0 * * * *", "30 * * * *", "@hourly"])
def test_hourly_task_through_a_dst_change_runs_every_real_hour_as_cronsim_says(
    zone, spring, autumn, change, expression
):
    start, end = around(zone, spring if change == "spring" else autumn)
    task = cron(expression, timezone=zone)

    times = scheduled(task, start, end)

    assert times == with_cronsim(task.cron_expression, zone, start, end)
    assert {b - a for a, b in pairwise(times)} == {timedelta(hours=1)}
    per_day = Counter(t.astimezone(ZoneInfo(zone)).date() for t in times)
    change_day = datetime.fromisoformat(spring if change == "spring" else autumn).date()
    assert per_day.pop(change_day) == (23 if change == "spring" else 25)
    assert set(per_day.values()) == {24}


def test_fixed_time_in_the_skipped_hour_runs_right_after_the_spring_change():
    task = cron("30 2 * * *", timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")

    times = runs(task, datetime(2025, 3, 29, 12, tzinfo=berlin), 3)

    assert [t.astimezone(berlin).isoformat() for t in times] == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]


def test_fixed_time_in_the_repeated_hour_runs_in_its_first_pass_only():
    task = cron("30 1 * * *", timezone="America/New_York")
    first_pass = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT
    next_day = datetime(2025, 11, 3, 6, 30, tzinfo=UTC)  # 01:30 EST
    # 01:10 EST, in the second pass of the repeated hour: after the run at 01:30 EDT.
    second_pass = datetime(2025, 11, 2, 1, 10, fold=1, tzinfo=ZoneInfo("America/New_York"))

    assert task.calculate_next_run(datetime(2025, 11, 1, 12, tzinfo=UTC)) == first_pass
    assert task.next_run_after(first_pass) == next_day
    assert task.calculate_next_run(second_pass) == next_day, "not 01:30 EST as well"


def test_cron_without_a_time_zone_follows_time_zone_setting(settings):
    settings.TIME_ZONE = "America/New_York"
    task = cron("0 9 * * *")

    assert task.calculate_next_run(NOW) == datetime(2024, 1, 15, 14, 0, tzinfo=UTC)
    assert task.describe() == "At 09:00 every day (America/New_York)"


# -- what is refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"schedule_type": "interval", "interval_seconds": 0}, "interval_seconds", ">= 1"),
        ({"schedule_type": "interval", "interval_seconds": -5}, "interval_seconds", ">= 1"),
        ({"schedule_type": "interval", "interval_seconds": 1.5}, "interval_seconds", ">= 1"),
        ({"schedule_type": "interval", "interval_seconds": True}, "interval_seconds", ">= 1"),
        ({"schedule_type": "interval"}, "interval_seconds", ">= 1, not None"),
        ({"schedule_type": "cron"}, "cron_expression", "Enter a cron expression"),
        ({"schedule_type": "once"}, "run_at", "A one-time task needs a time to run at."),
        ({"schedule_type": "weekly"}, "schedule_type", "Unknown schedule type 'weekly'"),
        (
            {"schedule_type": "once", "run_at": datetime(2024, 1, 1)},
            "run_at",
            "must be a datetime with a time zone",
        ),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
        ({"args": {"a": 1}}, "args", "args must be a JSON list"),
        ({"kwargs": [1]}, "kwargs", "kwargs must be a JSON object"),
        ({"kwargs": {1: "a"}}, "kwargs", "has the key 1"),
        ({"args": [{1, 2}]}, "args", "args[0] is a builtins.set"),
        ({"priority": "urgent"}, "priority", "Unknown priority 'urgent'"),
        ({"queue": "nope"}, "queue", "Unknown queue 'nope'"),
        ({"missed_run_policy": "later"}, "missed_run_policy", "Unknown missed-run policy"),
        ({"name": ""}, "name", "A task needs a name"),
        ({"job_name": None}, "job_name", "A task needs the name of a job"),
    ],
)
def test_invalid_definitions_are_refused_naming_the_field(fields, field, message):
    values = {
        "name": "t",
        "job_name": "j",
        "schedule_type": "interval",
        "interval_seconds": 60,
        **fields,
    }
    if "interval_seconds" not in fields and fields.get("schedule_type") == "interval":
        values.pop("interval_seconds")

    with pytest.raises(InvalidSchedule) as caught:
        ScheduledTask(**values)

    assert field in caught.value.errors
    assert message in caught.value.errors[field]


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidSchedule) as caught:
        ScheduledTask("t", "j", "interval", 0, args="x", timezone="Nowhere")

    assert set(caught.value.errors) == {"interval_seconds", "args", "timezone"}


# -- saving a task: when next_run is computed afresh ---------------------------------------------


def test_a_new_task_gets_its_next_run():
    assert rescheduled(cron("0 2 * * *"), None, NOW) == (True, NOW + timedelta(hours=14))


def test_a_disabled_task_has_no_next_run():
    assert rescheduled(interval(enabled=False), interval(), NOW) == (True, None)


def test_an_unchanged_schedule_keeps_the_schedulers_next_run():
    before = interval(next_run=NOW + timedelta(minutes=5), last_run=NOW - timedelta(minutes=55))

    assert rescheduled(replace(before, args=[1]), before, NOW) == (False, before.next_run)


def test_a_changed_schedule_or_enabling_computes_next_run_afresh():
    before = cron("0 2 * * *", next_run=NOW + timedelta(hours=14))

    assert rescheduled(replace(before, cron_expression="0 3 * * *"), before, NOW) == (
        True,
        NOW + timedelta(hours=15),
    )
    was_disabled = replace(before, enabled=False, next_run=None)
    assert rescheduled(replace(was_disabled, enabled=True), was_disabled, NOW) == (
        True,
        NOW + timedelta(hours=14),
    )


# -- missed runs ----------------------------------------------------------------------------------


def minutely(policy, behind, **fields):
    """A per-minute task whose next run was due ``behind`` ago."""
    return interval(60, missed_run_policy=policy, next_run=NOW - behind, **fields)


@pytest.mark.parametrize("policy", list(MissedRunPolicy))
def test_runs_due_within_the_grace_time_run_whatever_the_policy(policy):
    due = due_runs(minutely(policy, timedelta(seconds=20)), NOW, grace=30)

    assert due.fire == [NOW - timedelta(seconds=20)]
    assert (due.missed, due.dropped) == (0, 0)
    assert due.next_run == NOW + timedelta(seconds=40)


def test_nothing_is_due_before_next_run():
    due = due_runs(minutely("all", -timedelta(seconds=1)), NOW, grace=30)

    assert (due.fire, due.due, due.next_run) == ([], 0, NOW + timedelta(seconds=1))


def test_catch_up_runs_the_latest_missed_run_once():
    task = cron("0 * * * *", next_run=NOW - timedelta(hours=5))

    due = due_runs(task, NOW - timedelta(minutes=30), grace=30)

    assert due.fire == [NOW - timedelta(hours=1)]
    assert (due.due, due.missed, due.dropped) == (5, 5, 4)
    assert due.next_run == NOW


def test_catch_up_adds_nothing_when_a_run_is_due_now_anyway():
    due = due_runs(minutely("catch_up", timedelta(minutes=10)), NOW, grace=30)

    assert due.fire == [NOW]
    assert (due.due, due.missed, due.dropped) == (11, 10, 10)


def test_skip_drops_missed_runs():
    task = cron("0 * * * *", next_run=NOW - timedelta(hours=5), missed_run_policy="skip")

    due = due_runs(task, NOW - timedelta(minutes=30), grace=30)

    assert due.fire == []
    assert (due.due, due.missed, due.dropped) == (5, 5, 5)
    assert due.next_run == NOW


def test_all_runs_every_missed_run():
    due = due_runs(minutely("all", timedelta(minutes=10)), NOW, grace=30)

    assert due.fire == [NOW - timedelta(minutes=m) for m in range(10, -1, -1)]
    assert due.dropped == 0


def test_all_runs_at_most_the_latest_hundred_missed_runs():
    due = due_runs(minutely("all", timedelta(days=10)), NOW, grace=30)

    assert len(due.fire) == MAX_CATCH_UP + 1
    assert due.fire[0] == NOW - timedelta(minutes=MAX_CATCH_UP)
    assert due.fire[-1] == NOW
    assert due.due == 10 * 24 * 60 + 1
    assert due.dropped == due.due - MAX_CATCH_UP - 1
    assert due.next_run == NOW + timedelta(minutes=1)


def test_a_one_time_task_missed_by_a_day_catches_up_or_is_skipped():
    run_at = NOW - timedelta(days=1)

    assert due_runs(once(run_at, next_run=run_at), NOW, 30).fire == [run_at]
    skipped = due_runs(once(run_at, next_run=run_at, missed_run_policy="skip"), NOW, 30)
    assert (skipped.fire, skipped.dropped, skipped.next_run) == ([], 1, None)


def test_tick_ttl_covers_two_periods_and_at_least_an_hour():
    assert interval(1).tick_ttl(NOW) == 3600
    assert cron("0 2 * * *").tick_ttl(NOW.replace(hour=2)) == 2 * 86400
    assert once(NOW).tick_ttl(NOW) == 2 * 7 * 86400


# -- DJANGO_JOBS['SCHEDULES'] entries --------------------------------------------------------------


def test_schedule_setting_entries():
    every = task_from_setting("ping", {"job": "tests.record", "interval": timedelta(minutes=5)})
    nightly = task_from_setting(
        "report",
        {
            "job": "tests.record",
            "cron": "0 2 * * *",
            "timezone": "Europe/Berlin",
            "args": ["nightly"],
            "priority": "high",
            "queue": "reports",
            "missed_runs": "skip",
            "enabled": False,
            "description": "The nightly report.",
        },
    )
    launch = task_from_setting(
        "launch", {"job": "tests.record", "run_at": "2030-01-01T09:00:00+01:00"}
    )

    assert (every.schedule_type, every.interval_seconds) == (ScheduleType.INTERVAL, 300)
    assert nightly.schedule_type is ScheduleType.CRON
    assert (nightly.priority, nightly.queue) == (JobPriority.HIGH, "reports")
    assert not nightly.enabled
    assert every.priority is None, "the job's own priority"
    assert nightly.missed_run_policy is MissedRunPolicy.SKIP
    assert launch.run_at == datetime(2030, 1, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0 2 * * *", "DJANGO_JOBS['SCHEDULES']['t'] must be a dict, not str."),
        ({"job": "j"}, "needs exactly one of 'interval', 'cron' and 'run_at'"),
        ({"job": "j", "interval": 5, "cron": "* * * * *"}, "needs exactly one of"),
        ({"job": "j", "cron": "0 25 * * *"}, "['cron']: Bad hour field '25'"),
        ({"job": "j", "interval": 0}, "['interval']: An interval task needs"),
        ({"job": "j", "run_at": "tomorrow"}, "['run_at'] 'tomorrow' is not an ISO 8601 time"),
        ({"job": "j", "run_at": "2030-01-01T09:00"}, "['run_at']: run_at must be a datetime with"),
        ({"interval": 5}, "['job']: A task needs the name of a job"),
        ({"job": "j", "interval": 5, "every": 5}, "has unknown keys: every"),
        ({"job": "j", "interval": 5, "enabled": "yes"}, "['enabled'] must be True or False"),
        ({"job": "j", "interval": 5, "missed_runs": "x"}, "['missed_runs']: Unknown missed-run"),
    ],
)
def test_bad_schedule_setting_entries_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=r".") as caught:
        task_from_setting("t", spec)

    assert message in str(caught.value)
