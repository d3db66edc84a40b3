"""The admin of django-jobs: the periodic tasks (:mod:`~django_jobs.admin.schedules`)."""

from django_jobs.admin.schedules import ScheduledTaskAdmin, ScheduledTaskForm

__all__ = ["ScheduledTaskAdmin", "ScheduledTaskForm"]
