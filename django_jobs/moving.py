"""Moving a queue's pending jobs to the shard ``SHARDS`` now gives it (``manage.py jobs
move-queue``): after a queue was given a shard of its own, the jobs enqueued before wait on the
shard it left, where no worker looks for that queue any more.

Each job is copied, then deleted where it was, by the scripts that store and delete jobs (one
round trip each): the copy keeps its id, record and due time, and the id still finds the job
(a lookup that misses the shard an id names asks the others). A job that a worker took
meanwhile (an old worker, still serving the queue there) cannot be deleted: its copy is
deleted instead, and it finishes where it is. A step of a chain or group stays where its
workflow is (its completion starts the next step there): those are counted as left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.job import Job, JobPriority, JobStatus
from django_jobs.routing import refuse_in_testing_mode
from django_jobs.serialization import utcnow
from django_jobs.store import calls, shards, worker_calls
from django_jobs.store.commands import Command, Plan
from django_jobs.store.execute import run
from django_jobs.store.keys import Keys, Namespace

#: Jobs read, copied and deleted per round trip.
BATCH = 500


@dataclass
class Moved:
    """What :func:`move_queue` did: the ids moved, and those left where they were (running
    meanwhile, a workflow's step, or no longer pending)."""

    moved: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def pending_elsewhere(space: Namespace, queue: str) -> dict[str, int]:
    """How many jobs of ``queue`` wait in each shard other than its own (ready and delayed;
    the delayed ones of all queues are counted when their shard holds any of ``queue``'s).
    Refused in a testing ``MODE`` (:func:`~django_jobs.routing.refuse_in_testing_mode`)."""
    refuse_in_testing_mode("pending_elsewhere()")
    found: dict[str, int] = {}
    for shard in shards.names():
        if shard == shards.of_queue(queue):
            continue
        ids = run(_ids(space.shard_keys(shard), queue))
        if ids:
            found[shard] = len(ids)
    return found


def move_queue(space: Namespace, queue: str) -> Moved:
    """Move the pending jobs of ``queue`` from every other shard to its own. Refused in a
    testing ``MODE`` (:func:`~django_jobs.routing.refuse_in_testing_mode`)."""
    refuse_in_testing_mode("move_queue()")
    queue = validation.queue_name(queue)
    target = space.queue_keys(queue)
    done = Moved()
    for shard in shards.names():
        keys = space.shard_keys(shard)
        if keys is target:
            continue
        ids = run(_ids(keys, queue))
        for start in range(0, len(ids), BATCH):
            run(_move(keys, target, queue, ids[start : start + BATCH], done))
    return done


def _ids(keys: Keys, queue: str) -> Plan[list[str]]:
    """The ids of ``queue``'s ready jobs on the shard of ``keys``, in the order workers take
    them, then of every delayed job there (filtered by queue when read)."""
    ids: list[str] = []
    for priority in sorted(JobPriority, reverse=True):
        ids += [
            calls.text(i) for i in (yield Command(("LRANGE", keys.queue(queue, priority), 0, -1)))
        ]
    ids += [calls.text(i) for i in (yield Command(("ZRANGE", keys.scheduled, 0, -1)))]
    return ids


def _move(source: Keys, target: Keys, queue: str, ids: list[str], done: Moved) -> Plan[None]:
    jobs = [
        job
        for job in (yield from calls.fetch(source, ids=ids))
        if job.queue == queue and job.status is JobStatus.PENDING
    ]
    movable = [job for job in jobs if not _in_workflow(job)]
    done.left += [job.id for job in jobs if _in_workflow(job)]
    if not movable:
        return
    now, job_ttl = utcnow().timestamp(), int(jobs_settings.JOB_TTL)
    # The copy first: a job is never only in this process's memory. One whose unique key a
    # job of the target shard holds is not copied: it stays.
    held = yield from calls.enqueue(target, jobs=movable, now=now, job_ttl=job_ttl)
    for job in movable:
        if job.id in held:
            done.left.append(job.id)
            continue
        running, _ = yield from worker_calls.delete(source, ids=[job.id], now=now, job_ttl=job_ttl)
        if running:  # a worker took it meanwhile: it finishes there, and its copy goes
            yield from worker_calls.delete(target, ids=[job.id], now=now, job_ttl=job_ttl)
            done.left.append(job.id)
        else:
            done.moved.append(job.id)


def _in_workflow(job: Job) -> bool:
    return bool(job.group or job.after or job.then)
