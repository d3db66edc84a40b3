"""The import path of :class:`ScheduledTask` in django-jobs 0.1; it lives in
:mod:`django_jobs.scheduling`."""

from django_jobs.scheduling import InvalidSchedule, MissedRunPolicy, ScheduledTask, ScheduleType

__all__ = ["InvalidSchedule", "MissedRunPolicy", "ScheduleType", "ScheduledTask"]
