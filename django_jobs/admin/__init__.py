"""The admin of django-jobs: the periodic tasks (:mod:`~django_jobs.admin.schedules`) and the
operations console for the jobs in Redis (:mod:`~django_jobs.admin.console`)."""

from django_jobs.admin.console import JobAdmin
from django_jobs.admin.schedules import ScheduledTaskAdmin, ScheduledTaskForm

__all__ = ["JobAdmin", "ScheduledTaskAdmin", "ScheduledTaskForm"]
