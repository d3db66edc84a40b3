"""django-jobs: reliable background jobs and periodic tasks for Django, on Redis."""

from django_jobs.context import JobContext, current_job
from django_jobs.exceptions import (
    InvalidJobRecord,
    JobCancelled,
    JobFailed,
    JobIsRunning,
    JobNotFound,
    JobsError,
    NotJSONSerializable,
    RedisAccessDenied,
    RedisUnavailable,
    StoreError,
)
from django_jobs.handle import Cancellation, JobHandle
from django_jobs.job import Job, JobPriority, JobStatus
from django_jobs.progress import Progress
from django_jobs.queue import JobQueue
from django_jobs.registry import JobFunction, job, registry
from django_jobs.workflow import ChainHandle, GroupHandle, chain, group

__all__ = [
    "Cancellation",
    "ChainHandle",
    "GroupHandle",
    "InvalidJobRecord",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobFunction",
    "JobHandle",
    "JobIsRunning",
    "JobNotFound",
    "JobPriority",
    "JobQueue",
    "JobStatus",
    "JobsError",
    "NotJSONSerializable",
    "Progress",
    "RedisAccessDenied",
    "RedisUnavailable",
    "StoreError",
    "chain",
    "current_job",
    "group",
    "job",
    "registry",
]
