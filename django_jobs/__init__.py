"""django-jobs: reliable background jobs and periodic tasks for Django, on Redis."""

from django_jobs.exceptions import (
    InvalidJobRecord,
    JobsError,
    NotJSONSerializable,
    RedisUnavailable,
)
from django_jobs.job import Job, JobPriority, JobStatus
from django_jobs.queue import JobQueue

__all__ = [
    "InvalidJobRecord",
    "Job",
    "JobPriority",
    "JobQueue",
    "JobStatus",
    "JobsError",
    "NotJSONSerializable",
    "RedisUnavailable",
]
