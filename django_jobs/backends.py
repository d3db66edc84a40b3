"""The path of the ``django.tasks`` backend in ``TASKS`` settings:
``"BACKEND": "django_jobs.backends.RedisBackend"``. It lives in :mod:`django_jobs.tasks`."""

from django_jobs.tasks.backend import RedisBackend, job_priority

__all__ = ["RedisBackend", "job_priority"]
