"""The one validator (``django_jobs/validation.py``): each rule, what it accepts and the exact
message of what it refuses; then that the other places (``@job``, schedules, settings checks,
``runworker``, the admin form) say the same thing.

Queue rules read ``DJANGO_JOBS['QUEUES']``, set here with the ``configure`` fixture.
"""

import math
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from django_jobs import validation
from django_jobs.checks import check_settings
from django_jobs.job import JobPriority
from django_jobs.registry import job, registry
from django_jobs.scheduling.task import InvalidSchedule, ScheduledTask

QUEUES = ["default", "emails"]
NOT_CONFIGURED = "not one of DJANGO_JOBS['QUEUES'] ['default', 'emails']."
CHOICES = "LOW (0), NORMAL (1), HIGH (2), CRITICAL (3)"


def exactly(message: str) -> str:
    """A ``match`` pattern for this message and nothing else."""
    return f"^{re.escape(message)}$"


@pytest.fixture
def queues(configure):
    configure(QUEUES=QUEUES, DEFAULT_QUEUE="default")


@pytest.fixture
def scratch_registry():
    """Forget the jobs a test registers."""
    before = set(registry.names())
    yield registry
    for name in set(registry.names()) - before:
        registry.unregister(name)


# -- seconds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (-1, -1.0),
        (2.5, 2.5),
        (timedelta(minutes=1), 60.0),
        (validation.MAX_SECONDS, float(validation.MAX_SECONDS)),
    ],
    ids=repr,
)
def test_seconds_are_numbers_or_timedeltas(value, expected):
    result = validation.seconds(value, "delay")

    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", ["x", "5", None, True, math.nan, math.inf, [1]], ids=repr)
def test_seconds_that_are_not_a_finite_number_are_refused(value):
    message = f"timeout must be a number of seconds or a timedelta, not {value!r}."
    with pytest.raises(ValueError, match=exactly(message)):
        validation.seconds(value, "timeout")


def test_seconds_without_timedelta_say_so():
    assert validation.seconds(3, "X", timedelta_ok=False) == 3.0
    message = "X must be a number of seconds, not datetime.timedelta(seconds=3)."
    with pytest.raises(ValueError, match=exactly(message)):
        validation.seconds(timedelta(seconds=3), "X", timedelta_ok=False)


def test_more_than_a_hundred_years_is_refused():
    value = validation.MAX_SECONDS + 1
    with pytest.raises(ValueError, match=exactly(f"delay of {value!r} is more than 100 years.")):
        validation.seconds(value, "delay")


@pytest.mark.parametrize("value", [0.001, 1, timedelta(seconds=1)], ids=repr)
def test_positive_seconds_accept_more_than_zero(value):
    assert validation.seconds(value, "timeout", positive=True) > 0


@pytest.mark.parametrize("value", [0, -1, 0.0, timedelta(0)], ids=repr)
def test_positive_seconds_refuse_zero_and_less(value):
    message = f"retry_backoff_base must be a positive number of seconds, not {value!r}."
    with pytest.raises(ValueError, match=exactly(message)):
        validation.seconds(value, "retry_backoff_base", positive=True)


# -- integers (retry counts) --------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 25])
def test_integers_from_zero_are_accepted(value):
    assert validation.integer(value, "max_retries") == value


@pytest.mark.parametrize("value", [-1, 1.0, True, False, "3", None], ids=repr)
def test_other_retry_counts_are_refused(value):
    with pytest.raises(
        ValueError, match=exactly(f"max_retries must be an integer >= 0, not {value!r}.")
    ):
        validation.integer(value, "max_retries")


def test_integer_minimum():
    assert validation.integer(1, "DJANGO_JOBS['JOB_TTL']", minimum=1) == 1
    with pytest.raises(
        ValueError, match=exactly("DJANGO_JOBS['JOB_TTL'] must be an integer >= 1, not 0.")
    ):
        validation.integer(0, "DJANGO_JOBS['JOB_TTL']", minimum=1)


# -- priorities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("high", JobPriority.HIGH), ("LOW", JobPriority.LOW), (3, JobPriority.CRITICAL)],
)
def test_priorities_by_name_or_value(value, expected):
    assert JobPriority.parse(value) is expected


@pytest.mark.parametrize("value", ["urgent", 9, None, True], ids=repr)
def test_unknown_priorities_are_refused(value):
    with pytest.raises(
        ValueError, match=exactly(f"Unknown priority {value!r}; use one of {CHOICES}.")
    ):
        JobPriority.parse(value)


# -- queues -------------------------------------------------------------------------------------


def test_queue_name(queues, configure):
    assert validation.queue_name("emails") == "emails"
    assert validation.queue_name(None) == "default"
    configure(DEFAULT_QUEUE="emails")
    assert validation.queue_name(None) == "emails"


@pytest.mark.parametrize("value", ["nope", "", "Default"])
def test_unknown_queue_is_refused(queues, value):
    with pytest.raises(ValueError, match=exactly(f"Unknown queue {value!r}: {NOT_CONFIGURED}")):
        validation.queue_name(value)


def test_served_queues(queues):
    assert validation.served_queues(None) == QUEUES
    assert validation.served_queues(["emails"]) == ["emails"]
    assert validation.served_queues(iter(["emails", "default"])) == ["emails", "default"]


def test_every_unknown_served_queue_is_named(queues):
    with pytest.raises(
        ValueError, match=exactly(f"Unknown queue(s) nope, other: {NOT_CONFIGURED}")
    ):
        validation.served_queues(["nope", "default", "other"])


def test_a_worker_serves_at_least_one_queue(queues):
    with pytest.raises(ValueError, match=exactly("A worker must serve at least one queue.")):
        validation.served_queues([])


# -- the other places use the same rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be an integer >= 0, not -1."),
        ({"timeout": 0}, "timeout must be a positive number of seconds, not 0."),
        ({"timeout": "5"}, "timeout must be a number of seconds or a timedelta, not '5'."),
        ({"queue": "nope"}, f"Unknown queue 'nope': {NOT_CONFIGURED}"),
        ({"priority": 7}, f"Unknown priority 7; use one of {CHOICES}."),
    ],
)
def test_job_options_are_checked_at_decoration(queues, scratch_registry, options, message):
    with pytest.raises(ValueError, match=exactly(message)):

        @job(name="validation.bad", **options)
        def bad():
            pass

    assert "validation.bad" not in registry


def test_good_job_options_pass_at_decoration(queues, scratch_registry):
    @job(name="validation.good", queue="emails", priority="low", max_retries=0, timeout=0.5)
    def good():
        pass

    assert (good.queue, good.priority, good.max_retries, good.timeout) == (
        "emails",
        JobPriority.LOW,
        0,
        0.5,
    )


def test_a_schedule_uses_the_same_messages(queues):
    with pytest.raises(InvalidSchedule) as caught:
        ScheduledTask("t", "j", "interval", 60, queue="nope", priority="urgent", run_count=-1)

    assert caught.value.errors["queue"] == f"Unknown queue 'nope': {NOT_CONFIGURED}"
    assert caught.value.errors["priority"] == f"Unknown priority 'urgent'; use one of {CHOICES}."
    assert caught.value.errors["run_count"] == "run_count must be an integer >= 0, not -1."


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_RETRIES", -1, "DJANGO_JOBS['MAX_RETRIES'] must be an integer >= 0, not -1."),
        ("JOB_TTL", 0, "DJANGO_JOBS['JOB_TTL'] must be an integer >= 1, not 0."),
        (
            "LEASE_TIMEOUT",
            0,
            "DJANGO_JOBS['LEASE_TIMEOUT'] must be a positive number of seconds, not 0.",
        ),
        (
            "DEFAULT_TIMEOUT",
            timedelta(seconds=5),
            "DJANGO_JOBS['DEFAULT_TIMEOUT'] must be a number of seconds, "
            "not datetime.timedelta(seconds=5).",
        ),
    ],
)
def test_settings_checks_use_the_same_messages(configure, name, value, message):
    configure(**{name: value})

    assert [error.msg for error in check_settings()] == [message]


def test_runworker_names_the_unknown_queues(queues):
    message = f"Unknown queue(s) nope, other: {NOT_CONFIGURED}"
    with pytest.raises(CommandError, match=exactly(message)):
        call_command("runworker", queues="nope, emails,other", burst=True)


def test_runworker_needs_a_queue_in_queues(queues):
    with pytest.raises(CommandError, match=exactly("A worker must serve at least one queue.")):
        call_command("runworker", queues=" , ", burst=True)
