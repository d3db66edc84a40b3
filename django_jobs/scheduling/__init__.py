"""Periodic tasks: what a task is (:mod:`~.task`), cron expressions (:mod:`~.cron`), when its
runs fall due (:mod:`~.due`), the tasks of ``DJANGO_JOBS['SCHEDULES']`` (:mod:`~.settings`),
where the tasks are kept (:mod:`~.stores`) and the loop that enqueues each due run once
(:mod:`~.scheduler`)."""

from django_jobs.scheduling.cron import InvalidCron, validate_cron
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.scheduler import JobScheduler, running_schedulers
from django_jobs.scheduling.settings import task_from_setting, tasks_from_settings
from django_jobs.scheduling.stores import MemoryTaskStore, TaskStore
from django_jobs.scheduling.task import (
    MAX_CATCH_UP,
    MissedRunPolicy,
    ScheduledTask,
    ScheduleType,
)

__all__ = [
    "MAX_CATCH_UP",
    "InvalidCron",
    "InvalidSchedule",
    "JobScheduler",
    "MemoryTaskStore",
    "MissedRunPolicy",
    "ScheduleType",
    "ScheduledTask",
    "TaskStore",
    "running_schedulers",
    "task_from_setting",
    "tasks_from_settings",
    "validate_cron",
]
