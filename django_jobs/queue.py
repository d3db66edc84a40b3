"""``JobQueue``: what users call to enqueue, inspect, cancel, requeue and wait for jobs.

Every method that changes a job's state is one Redis round trip: one Lua script, called
through :mod:`django_jobs.store.calls`. Each operation is written once, as a *plan* (a
generator of store steps); the sync method runs it with the sync client, the ``a``-prefixed
twin with the asyncio client. The worker's side of the protocol (claim, acknowledge, fail,
renew leases, recover) is :class:`django_jobs.worker.leases.Leases`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django_jobs import validation
from django_jobs.catalog import registry
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import JobNotFound, RedisUnavailable
from django_jobs.job import Job, JobPriority, JobStatus
from django_jobs.serialization import utcnow
from django_jobs.store import calls
from django_jobs.store.execute import Plan, async_twin, sync_twin
from django_jobs.store.keys import Namespace

# A waiter for a job's outcome looks again this often even without a notification.
WAIT_RECHECK = 5.0


class JobQueue(Namespace):
    """The jobs of one namespace (key prefix) in Redis.

    ``JobQueue()`` uses ``DJANGO_JOBS``: its ``PREFIX``, ``QUEUES`` and connection, read at
    each call so that ``override_settings`` applies. Pass ``prefix`` to work in another
    namespace, e.g. one per test.
    """

    @property
    def queues(self) -> list[str]:
        """The configured queue names (``DJANGO_JOBS['QUEUES']``)."""
        return list(jobs_settings.QUEUES)

    def __repr__(self) -> str:
        return f"<JobQueue {self.prefix}>"

    def build_job(self, name: str, args: Any = (), kwargs: Any = None, **options: Any) -> Job:
        """Check every option and argument and return the job :meth:`enqueue` would store
        (see :func:`django_jobs.validation.build_job`). Nothing is written.

        A job registered in this process takes its ``@job`` options (queue, priority,
        retries, timeout) where none are given, as ``.delay()`` does, and its arguments must
        fit its function's parameters (``TypeError`` otherwise); a name registered only
        elsewhere (in the workers of another code base) is taken as it is.
        """
        if "function" not in options and (registered := registry.get(name)) is not None:
            options["function"] = registered.func
            for option in ("queue", "priority", "max_retries", "timeout"):
                if options.get(option) is None:
                    options[option] = getattr(registered, option)
        return validation.build_job(name, args, kwargs, **options)

    # -- plans --------------------------------------------------------------------------------

    def _enqueue(
        self,
        name: str,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Plan[Job]:
        """Store a job and make it ready, or due later with ``delay`` or ``scheduled_at``.

        Options: ``priority``, ``queue``, ``delay`` (seconds or timedelta), ``scheduled_at``
        (an aware datetime), ``max_retries``, ``timeout`` (seconds or timedelta), ``user_id``
        (a string or an int, read back as given). See :meth:`build_job` for what is checked.
        Returns the stored :class:`Job`.
        """
        (job,) = yield from self._enqueue_many([self.build_job(name, args, kwargs, **options)])
        return job

    def _enqueue_many(self, jobs: Iterable[Job]) -> Plan[list[Job]]:
        """Store many jobs built with :meth:`build_job` in one round trip.

        If Redis cannot be reached the call is sent once more before
        :class:`~django_jobs.exceptions.RedisUnavailable` is raised: Redis may have stored the
        jobs and lost only its reply, and storing is idempotent on the job ids (a job whose id
        exists is left as it is), so a job is stored once either way.
        """
        if isinstance(jobs, Job) or not isinstance(jobs, Iterable):
            raise TypeError(f"enqueue_many() takes a list of jobs, not {type(jobs).__name__}.")
        jobs = list(jobs)
        for job in jobs:
            if not isinstance(job, Job):
                raise TypeError(
                    f"enqueue_many() takes jobs made by build_job(), not {type(job).__name__}."
                )
        now = utcnow().timestamp()
        job_ttl = int(jobs_settings.JOB_TTL)
        try:
            yield from calls.enqueue(self.keys, jobs=jobs, now=now, job_ttl=job_ttl)
        except RedisUnavailable:
            yield from calls.enqueue(self.keys, jobs=jobs, now=now, job_ttl=job_ttl)
        return jobs

    def _get_job(self, job_id: str) -> Plan[Job | None]:
        """The job with its result, or ``None`` if it does not exist (or expired)."""
        jobs = yield from calls.fetch(self.keys, ids=[validation.job_id(job_id, "get_job()")])
        return jobs[0] if jobs else None

    def _watch(self, job_id: str) -> Plan[JobStatus | None]:
        """The job's status (``None`` if unknown); unless it is final, its outcome will be
        pushed to ``keys.done(job_id)`` for :meth:`wait_for` to block on."""
        status = yield from calls.watch(self.keys, job_id=validation.job_id(job_id, "watch()"))
        return JobStatus(status) if status else None

    def _wait_for(self, job_id: str, timeout: float | None = None) -> Plan[Job]:
        """Block until the job is COMPLETED, FAILED or CANCELLED and return it.

        Waits on a list that the finishing script pushes to, not by polling; it looks again
        every few seconds in case a notification was missed. Raises ``TimeoutError`` when
        ``timeout`` seconds pass first and :class:`~django_jobs.exceptions.JobNotFound` for an
        unknown or expired id.
        """
        validation.job_id(job_id, "wait_for()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = yield from self._watch(job_id)
            if status is None:
                raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
            if status.is_finished:
                job = yield from self._get_job(job_id)
                if job is None:
                    raise JobNotFound(f"Job {job_id!r} expired.")
                return job
            wait = WAIT_RECHECK
            if deadline is not None:
                wait = min(deadline - time.monotonic(), WAIT_RECHECK)
            if wait <= 0:
                raise TimeoutError(f"Job {job_id} is still {status.value} after {timeout} s.")
            yield from calls.wait_done(self.keys, job_id=job_id, timeout=max(wait, 0.01))

    def _cancel_job(self, job_id: str, lease_token: str = "") -> Plan[str]:
        """Cancel a job.

        A pending (also delayed) or retrying job is CANCELLED at once: returns
        ``"cancelled"``. For a running job a cancellation is requested and its worker stops
        it: returns ``"requested"``. A finished job is left alone (its status is returned),
        an unknown id gives ``"missing"``. A worker confirms a requested cancellation by
        passing its ``lease_token``.
        """
        return (
            yield from calls.cancel(
                self.keys,
                job_id=validation.job_id(job_id, "cancel_job()"),
                now=utcnow().timestamp(),
                job_ttl=int(jobs_settings.JOB_TTL),
                token=lease_token,
            )
        )

    def _requeue_dead(
        self, job_ids: Iterable[str] | None = None, *, limit: int = 0
    ) -> Plan[list[str]]:
        """Move dead-letter jobs (the given ids, or all, oldest first, up to ``limit`` if
        given) back to the tail of their lists with a fresh retry budget. Returns their ids.
        """
        ids = [] if job_ids is None else validation.ids(job_ids, "requeue_dead()")
        if job_ids is not None and not ids:
            return []
        return (yield from calls.requeue(self.keys, ids=ids, limit=limit))

    def _list_jobs(
        self,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Plan[list[Job]]:
        """A page of the jobs in one state, optionally of one queue.

        PENDING lists ready jobs in the order workers will take them, then delayed ones by
        due time; RETRYING by due time; RUNNING by lease deadline; FAILED (the dead-letter
        queue), COMPLETED and CANCELLED newest first.
        """
        keys = self.keys
        status = JobStatus(status)
        queues = [validation.queue_name(queue)] if queue is not None else self.queues
        sources: list[tuple[str, str]]
        if status is JobStatus.PENDING:
            sources = [("L", key) for key in keys.queues_high_first(queues)]
            sources.append(("Z", keys.scheduled))
        else:
            sources = [
                {
                    JobStatus.RETRYING: ("Z", keys.retrying),
                    JobStatus.RUNNING: ("Z", keys.processing),
                    JobStatus.FAILED: ("R", keys.dead),
                    JobStatus.COMPLETED: ("R", keys.completed),
                    JobStatus.CANCELLED: ("R", keys.cancelled),
                }[status]
            ]
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative.")
        return (
            yield from calls.page(
                keys, sources=sources, queue=queue or "", offset=offset, limit=limit
            )
        )

    def _jobs_for_user(
        self, user_id: str | int, *, offset: int = 0, limit: int = 100
    ) -> Plan[list[Job]]:
        """A page of the jobs enqueued with ``user_id``, newest first (kept ``JOB_TTL``)."""
        source = ("R", self.keys.user(str(user_id)))
        return (
            yield from calls.page(self.keys, sources=[source], queue="", offset=offset, limit=limit)
        )

    def _stats(self) -> Plan[dict[str, Any]]:
        """Counts of jobs: ready ones per queue and priority, all per state, and counters.

        ``{"queues": {"default": {"critical": 0, "high": 2, ...}}, "states": {"pending": 2,
        "scheduled": 0, "retrying": 0, "running": 1, "failed": 0, "completed": 9,
        "cancelled": 0}, "counters": {"stale_acks": 0, "recovered": 0}}``; ``pending`` counts
        ready and delayed jobs, ``scheduled`` the delayed ones among them.
        """
        keys = self.keys
        queues = self.queues
        lists = keys.queues_high_first(queues)
        keep_since = utcnow().timestamp() - int(jobs_settings.JOB_TTL)
        lengths, states, counters = yield from calls.stats(keys, lists=lists, keep_since=keep_since)
        per_queue: dict[str, dict[str, int]] = {q: {} for q in queues}
        for key, length in zip(lists, lengths, strict=True):
            queue, priority = key.rsplit(":", 2)[1:]
            per_queue[queue][JobPriority(int(priority)).name.lower()] = length
        scheduled, retrying, running, failed, completed, cancelled = states
        return {
            "queues": per_queue,
            "states": {
                "pending": sum(lengths) + scheduled,
                "scheduled": scheduled,
                "retrying": retrying,
                "running": running,
                "failed": failed,
                "completed": completed,
                "cancelled": cancelled,
            },
            "counters": {"stale_acks": 0, "recovered": 0, **counters},
        }

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    enqueue = sync_twin(_enqueue)
    aenqueue = async_twin(_enqueue)
    enqueue_many = sync_twin(_enqueue_many)
    aenqueue_many = async_twin(_enqueue_many)
    get_job = sync_twin(_get_job)
    aget_job = async_twin(_get_job)
    watch = sync_twin(_watch)
    awatch = async_twin(_watch)
    wait_for = sync_twin(_wait_for)
    await_for = async_twin(_wait_for)
    cancel_job = sync_twin(_cancel_job)
    acancel_job = async_twin(_cancel_job)
    requeue_dead = sync_twin(_requeue_dead)
    arequeue_dead = async_twin(_requeue_dead)
    list_jobs = sync_twin(_list_jobs)
    alist_jobs = async_twin(_list_jobs)
    jobs_for_user = sync_twin(_jobs_for_user)
    ajobs_for_user = async_twin(_jobs_for_user)
    stats = sync_twin(_stats)
    astats = async_twin(_stats)
