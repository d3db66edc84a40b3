"""The import path of :class:`JobScheduler` in django-jobs 0.1; it lives in
:mod:`django_jobs.scheduling`."""

from django_jobs.scheduling import JobScheduler, running_schedulers

__all__ = ["JobScheduler", "running_schedulers"]
