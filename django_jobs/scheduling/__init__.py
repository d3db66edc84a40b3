"""Periodic tasks: what a task is and when it runs (:mod:`~.task`), where the tasks are kept
(:mod:`~.stores`) and the loop that enqueues each due run once (:mod:`~.scheduler`)."""

from django_jobs.scheduling.scheduler import JobScheduler, running_schedulers
from django_jobs.scheduling.stores import DatabaseTaskStore, MemoryTaskStore, TaskStore
from django_jobs.scheduling.task import (
    InvalidCron,
    InvalidSchedule,
    MissedRunPolicy,
    ScheduledTask,
    ScheduleType,
)

__all__ = [
    "DatabaseTaskStore",
    "InvalidCron",
    "InvalidSchedule",
    "JobScheduler",
    "MemoryTaskStore",
    "MissedRunPolicy",
    "ScheduleType",
    "ScheduledTask",
    "TaskStore",
    "running_schedulers",
]
