"""Worker heartbeats: each ``runworker`` supervisor keeps a record of itself in Redis.

The record (``keys.worker(id)``: host, pid, queues, concurrency, start, the jobs its processes
run now, the django-jobs version) is written every few seconds with a time-to-live of a few
lease periods, and indexed in ``keys.workers`` by the time of its last beat. A clean stop
removes both; a worker that dies (SIGKILL, a lost machine) leaves its index entry, and once
its record expired :meth:`JobQueue.workers <django_jobs.queue.JobQueue.workers>` lists it as
dead for an hour. The supervisor runs :class:`Heartbeat` as one of its background loops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Protocol

from django_jobs.exceptions import RedisUnavailable
from django_jobs.queue import DEAD_WORKERS_KEPT, JobQueue
from django_jobs.store import worker_calls
from django_jobs.store.connection import redis_outage
from django_jobs.store.execute import arun
from django_jobs.worker.children import Child
from django_jobs.worker.retry import pause

logger = logging.getLogger("django_jobs.worker")

# A record is written again this often, or every half lease when leases are shorter (tests).
BEAT_EVERY = 5.0
# It expires this many lease periods after it was last written: never while the worker's
# leases are still renewed, and soon enough to tell that a worker is gone.
TTL_LEASES = 3


def version() -> str:
    """The installed django-jobs version (``""`` when it is not installed as a distribution)."""
    try:
        return metadata.version("django-jobs")
    except metadata.PackageNotFoundError:
        return ""


class Supervisor(Protocol):
    """What a heartbeat reads of the supervisor (:class:`~django_jobs.worker.Worker`)."""

    jobs: JobQueue
    worker_id: str
    queues: list[str]
    concurrency: int
    lease: float
    stopping: bool
    children: list[Child]
    finished: asyncio.Event


class Heartbeat:
    """The heartbeat of one supervisor: ``loop()`` is the step and end test of its loop."""

    def __init__(self, worker: Supervisor) -> None:
        self.worker = worker
        self.keys = worker.jobs.keys
        self.started_at = time.time()
        self.every = min(BEAT_EVERY, worker.lease / 2)
        self.ttl = TTL_LEASES * worker.lease
        self.host, self.pid, self.version = socket.gethostname(), os.getpid(), version()

    def loop(self) -> tuple[Callable[[], Awaitable[None]], Callable[[], bool]]:
        """A step and a test for ``keep_going``: beat until the worker has no process left."""
        return self.step, self.worker.finished.is_set

    def running(self) -> list[str]:
        """The ids of the jobs the worker's processes run, from their shared-memory slots."""
        found = []
        for child in self.worker.children:
            if child.process is not None:
                found.extend(running.job_id for running in child.board.running())
        return found

    async def step(self) -> None:
        """Write the record, wait, and remove it once the worker has stopped.

        While Redis does not answer a beat is skipped and the outage reported (a line at first,
        then one a minute: ``redis_outage``); the record may expire meanwhile, and the worker
        is listed as dead until its next beat. The removal is tried
        once: if Redis does not answer then, the record expires by itself.
        """
        worker = self.worker
        now = time.time()
        fields = worker_calls.worker_record(
            host=self.host,
            pid=self.pid,
            queues=worker.queues,
            concurrency=worker.concurrency,
            started_at=self.started_at,
            jobs=self.running(),
            version=self.version,
            stopping=worker.stopping,
        )
        try:
            await arun(
                worker_calls.worker_beat(
                    self.keys,
                    worker_id=worker.worker_id,
                    fields=fields,
                    now=now,
                    ttl=self.ttl,
                    forget_before=now - DEAD_WORKERS_KEPT,
                )
            )
        except RedisUnavailable as exc:
            redis_outage.failed(logger, exc)
        await pause(self.every, worker.finished)
        if worker.finished.is_set():
            await arun(worker_calls.worker_gone(self.keys, worker_id=worker.worker_id))
