"""How a scheduler words the runs it finds missed: why they were missed (no scheduler was
running, or this one could not work: an :class:`Outage`), and what their policy does with them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError

from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.scheduling.due import DueRuns
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.scheduling.ticks import local_time

logger = logging.getLogger("django_jobs.scheduler")


@dataclass(frozen=True)
class Outage:
    """A time this scheduler could not work: from ``since`` (the start of its last pass that
    worked, or its own start), because of ``cause``; ``began`` is the monotonic clock then.
    ``failed`` is when its last attempt failed: all it knows of the outage's end."""

    since: datetime
    cause: str
    began: float
    failed: datetime

    @staticmethod
    def cause_of(exc: BaseException) -> str:
        if isinstance(exc, RedisUnavailable):
            return "Redis did not answer"
        if isinstance(exc, RedisAccessDenied):
            return "Redis refused access"
        if isinstance(exc, StoreError):
            return "Redis refused a command"
        if isinstance(exc, DatabaseError):
            return "the database did not answer"
        return "its passes failed"


def report_missed(
    task: ScheduledTask,
    runs: DueRuns,
    outage: Outage | None,
    started_at: datetime | None,
    grace: float,
) -> None:
    """Log the missed runs of ``runs`` (if any), why (:func:`why_missed`) and what happens."""
    if runs.missed and runs.first is not None:
        logger.warning(
            "task %s: %d run(s) due from %s were missed (%s); policy %s: %s",
            task.name,
            runs.missed,
            local_time(task, runs.first),
            why_missed(task, runs.first, outage, started_at, grace),
            task.missed_run_policy.value,
            what_happens(runs),
        )


def why_missed(
    task: ScheduledTask,
    first: datetime,
    outage: Outage | None,
    started_at: datetime | None,
    grace: float,
) -> str:
    """Why the runs of ``task`` from ``first`` were missed, for the log: ``outage`` is the
    scheduler's current one, ``started_at`` when its loop started, ``grace`` its grace time."""
    if outage is None:
        if started_at is not None and first >= started_at:
            return "the task was off, or not yet saved, when they fell due"
        return "no scheduler was running"
    why = f"this scheduler could not work from {local_time(task, outage.since)}: {outage.cause}"
    if first < outage.since - timedelta(seconds=grace):
        return f"no scheduler was running, then {why}"
    return why


def what_happens(runs: DueRuns) -> str:
    """What the policy does with the missed runs of ``runs``, for the log."""
    if not runs.dropped:
        return "enqueueing them" if runs.missed > 1 else "enqueueing it"
    if runs.dropped == runs.missed:  # none of the missed runs is enqueued
        return f"skipping {runs.dropped}" + (" (a run is due now anyway)" if runs.fire else "")
    return f"enqueueing {len(runs.fire)} (the latest), dropping {runs.dropped}"
