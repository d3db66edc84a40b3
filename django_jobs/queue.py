"""``JobQueue``: what users call to enqueue, inspect, cancel, requeue, delete and wait for
jobs, and to see the workers.

Every method that changes a job's state is one Redis round trip: one Lua script, called
through :mod:`django_jobs.store.calls` (or :mod:`~django_jobs.store.worker_calls`). Each
operation is written once, as a *plan* (a generator of store steps); the sync method runs it
with the sync client, the ``a``-prefixed twin with the asyncio client. The worker's side of
the protocol (claim, acknowledge, fail, renew leases, recover) is
:class:`django_jobs.worker.leases.Leases`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django_jobs import validation
from django_jobs.catalog import registry
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import JobIsRunning, JobNotFound, RedisUnavailable
from django_jobs.job import Job, JobPriority, JobStatus
from django_jobs.serialization import from_timestamp, utcnow
from django_jobs.store import calls, worker_calls
from django_jobs.store.execute import Plan, async_twin, sync_twin
from django_jobs.store.keys import Namespace

# A waiter for a job's outcome looks again this often even without a notification.
WAIT_RECHECK = 5.0
# A worker that died (its heartbeat expired) is listed as dead this long after its last beat.
DEAD_WORKERS_KEPT = 3600.0


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
        """Counts of jobs: ready ones per queue and priority, all per state, and counters; the
        workers; and the queues whose ready jobs no live worker serves. Two round trips.

        ``{"queues": {"default": {"critical": 0, "high": 2, ...}}, "states": {"pending": 2,
        "scheduled": 0, "retrying": 0, "running": 1, "failed": 0, "completed": 9,
        "cancelled": 0}, "counters": {"stale_acks": 0, "recovered": 0}, "workers": {"live": 1,
        "dead": 0}, "unserved": {"emails": 3}}``; ``pending`` counts ready and delayed jobs,
        ``scheduled`` the delayed ones among them. ``workers`` counts as :meth:`workers` lists.
        ``unserved`` maps each queue that has ready jobs while no live worker serves it to
        their number: they wait until a worker that serves the queue starts.
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
        workers = yield from self._workers()
        live = [w for w in workers if w.alive]
        served = {q for w in live for q in w.queues}
        ready = {q: sum(counts.values()) for q, counts in per_queue.items()}
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
            "workers": {"live": len(live), "dead": len(workers) - len(live)},
            "unserved": {q: n for q, n in ready.items() if n and q not in served},
        }

    def _workers(self) -> Plan[list[worker_calls.WorkerInfo]]:
        """The ``runworker`` supervisors: live ones, then those that died in the last hour,
        each group by id (see :class:`~django_jobs.store.worker_calls.WorkerInfo`).

        Each worker writes a heartbeat every few seconds (5 s at most) that expires after three
        leases (``LEASE_TIMEOUT``) and is removed by a clean stop; a worker whose heartbeat
        expired (killed, or its machine lost) is listed as dead (``alive`` false) for an hour
        after its last beat. One round trip: an index of the workers, no scan.
        """
        since = utcnow().timestamp() - DEAD_WORKERS_KEPT
        found = yield from worker_calls.workers(self.keys, since=since)
        return sorted(found, key=lambda w: (not w.alive, w.id))

    def _delete_jobs(self, job_ids: Iterable[str]) -> Plan[list[Job]]:
        """Delete jobs for good, in one round trip: each one's record, result and index entries,
        and its id from the list or set that holds it. Returns the jobs as they were before
        (with their results); ids of no job (unknown, or expired) are left out.

        A running job is refused: :class:`~django_jobs.exceptions.JobIsRunning` is raised and
        nothing is deleted. Cancel it first (:meth:`cancel_job`) and delete it once its worker
        stopped it. Deleting a pending job in a long list costs its position in the list.
        """
        ids = list(dict.fromkeys(validation.ids(job_ids, "delete_jobs()")))
        if not ids:
            return []
        running, deleted = yield from worker_calls.delete(self.keys, ids=ids)
        if running:
            which = ", ".join(running)
            raise JobIsRunning(
                f"Cannot delete running job{'s' if len(running) > 1 else ''} {which}: cancel "
                "it first (cancel_job()), then delete it once it is cancelled. Nothing was "
                "deleted."
            )
        return deleted

    def _delete_job(self, job_id: str) -> Plan[Job | None]:
        """Delete one job (see :meth:`delete_jobs`): the job as it was, or ``None`` if there
        was none. A running job raises :class:`~django_jobs.exceptions.JobIsRunning`."""
        deleted = yield from self._delete_jobs([validation.job_id(job_id, "delete_job()")])
        return deleted[0] if deleted else None

    def _throughput(self, minutes: int = 60) -> Plan[list[dict[str, Any]]]:
        """Attempts completed, failed and dead-lettered per minute, for the last ``minutes``
        (1 to 60), oldest first and the current minute last: ``[{"minute": <aware datetime of
        its start>, "completed": 12, "failed": 1, "dead": 0}, ...]``.

        ``failed`` counts every failed attempt (an exception, a crash, a timeout), retried or
        not; ``dead`` those of them that went to the dead letters. The scripts that record
        completions and failures keep the counts (one hash per minute, kept a little over an
        hour): one round trip, no scan.
        """
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 60:
            raise ValueError(f"throughput() takes 1 to 60 minutes, not {minutes!r}.")
        last = int(utcnow().timestamp()) // 60 * 60
        counts = yield from worker_calls.throughput(self.keys, last=last, count=minutes)
        return [
            {"minute": from_timestamp(start), "completed": done, "failed": failed, "dead": dead}
            for start, done, failed, dead in counts
        ]

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
    workers = sync_twin(_workers)
    aworkers = async_twin(_workers)
    delete_jobs = sync_twin(_delete_jobs)
    adelete_jobs = async_twin(_delete_jobs)
    delete_job = sync_twin(_delete_job)
    adelete_job = async_twin(_delete_job)
    throughput = sync_twin(_throughput)
    athroughput = async_twin(_throughput)
