"""django-jobs: reliable background jobs and periodic tasks for Django, on Redis."""

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
    "RedisAccessDenied",
    "RedisUnavailable",
    "StoreError",
    "chain",
    "group",
    "job",
    "registry",
]
