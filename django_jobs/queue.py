"""``JobQueue``: what users call to enqueue, inspect, cancel, requeue, delete, purge and wait
for jobs, and to see the workers. Its base classes hold the read side
(:class:`django_jobs.browse.JobBrowser`) and the operations on many jobs at once, requeue,
purge and delete (:class:`django_jobs.upkeep.JobUpkeep`).

Every method that changes a job's state is one Redis round trip: one Lua script, called
through :mod:`django_jobs.store.calls` (or :mod:`~django_jobs.store.worker_calls`). Each
operation is written once, as a *plan* (a generator of store steps); the sync method runs it
with the sync client, the ``a``-prefixed twin with the asyncio client. The worker's side of the
protocol (claim, acknowledge, fail, renew leases, recover) is
:class:`django_jobs.worker.leases.Leases`.

Every method that reads or changes jobs (here, and in its base classes) is made by
:func:`~django_jobs.routing.routed`: in a testing ``MODE`` (:mod:`django_jobs.testing`) the
in-process store answers it instead of Redis.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django_jobs import bulk, spread, tracing, validation
from django_jobs.browse import DEAD_WORKERS_KEPT, Page
from django_jobs.catalog import registry
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import JobNotFound, RedisUnavailable
from django_jobs.flow import NO_FLOW
from django_jobs.gc_pause import collector_paused
from django_jobs.job import Job, JobStatus
from django_jobs.routing import checked_jobs, routed
from django_jobs.serialization import utcnow
from django_jobs.store import calls, shards
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys
from django_jobs.upkeep import JobUpkeep, RequeueOutcome

__all__ = ["DEAD_WORKERS_KEPT", "JobQueue", "Page", "RequeueOutcome"]

# A waiter for a job's outcome looks again this often even without a notification.
WAIT_RECHECK = 5.0

T = TypeVar("T")


class JobQueue(JobUpkeep):
    """The jobs of one namespace (key prefix) in Redis.

    ``JobQueue()`` uses ``DJANGO_JOBS``: its ``PREFIX``, ``QUEUES`` and connection, read at
    each call so that ``override_settings`` applies. Pass ``prefix`` to work in another
    namespace, e.g. one per test.
    """

    def __repr__(self) -> str:
        return f"<JobQueue {self.prefix}>"

    def build_job(self, name: str, args: Any = (), kwargs: Any = None, **options: Any) -> Job:
        """Check every option and argument and return the job :meth:`enqueue` would store
        (see :func:`django_jobs.validation.build_job`). Nothing is written.

        A job registered in this process takes its ``@job`` options (queue, priority,
        retries, timeout, flow control) where none are given, as ``.delay()`` does, and its
        arguments must fit its function's parameters (``TypeError`` otherwise); a name
        registered only elsewhere (in the workers of another code base) is taken as it is.
        """
        return validation.build_job(name, args, kwargs, **self._with_registered(name, options))

    def build_jobs(
        self, name: str, args: Iterable[Any], kwargs: Any = None, **options: Any
    ) -> list[Job]:
        """One job of ``name`` per item of ``args`` (each a list or tuple of its positional
        arguments), all with ``kwargs`` and ``options``: what ``[build_job(name, a, kwargs,
        **options) for a in args]`` returns, several times faster for many jobs. The options
        are checked once (by :meth:`build_job`, for the first job), each job's arguments one
        by one; the jobs share their creation time (and due time). Nothing is written: pass
        them to :meth:`enqueue_many`.

        A job whose flow control is keyed on its arguments (a unique key, or a rate or
        concurrency limit of its own) is built by :meth:`build_job` one by one. Python's
        garbage collector is held off while the jobs are built
        (:func:`django_jobs.gc_pause.collector_paused`).
        """
        items = list(args)
        if not items:
            return []
        options = self._with_registered(name, options)
        with collector_paused():
            built = [validation.build_job(name, items[0], kwargs, **options)]
            if options.get("flow") not in (None, NO_FLOW):
                built += (validation.build_job(name, a, kwargs, **options) for a in items[1:])
                return built
            function = options.get("function")
            takes_context = options.get("takes_context", False)
            return bulk.built_like(built[0], items[1:], function, takes_context)

    @staticmethod
    def _with_registered(name: str, options: dict[str, Any]) -> dict[str, Any]:
        """``options``, with the ``@job`` options of ``name`` where none are given when it is
        registered in this process and no ``function`` is given; checked against the shard of
        its ``@job`` queue (:func:`~django_jobs.validation.registered_shard`)."""
        registered = registry.get(name)
        if "function" not in options and registered is not None:
            options["function"] = registered.func
            options["takes_context"] = registered.takes_context
            for option in ("queue", "priority", "max_retries", "timeout", "flow"):
                if options.get(option) is None:
                    options[option] = getattr(registered, option)
        validation.registered_shard(registered, options.get("queue"), options.get("flow"))
        return options

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

        Returns the jobs as stored, in order. A unique job (:mod:`django_jobs.flow`) whose key
        another job holds is not stored: the job that holds the key stands in its place (its
        id differs from the one built; ``.delay()`` says so with ``handle.created``).

        One round trip per chunk of a shard (:func:`django_jobs.bulk.chunk_size`). If Redis
        cannot be reached a call is sent once more before
        :class:`~django_jobs.exceptions.RedisUnavailable` is raised: Redis may have stored the
        jobs and lost only its reply, and storing is idempotent on the job ids (a job whose id
        exists is left as it is), so a job is stored once either way. An error after some calls
        stored their jobs says which (its ``enqueued`` and ``not_enqueued``:
        :func:`django_jobs.bulk.stored_in_chunks`).
        """
        jobs = checked_jobs(jobs)
        taken = yield from bulk.stored_in_chunks(
            jobs, self.shard_keys, lambda keys, chunk: self._store(calls.enqueue, keys, jobs=chunk)
        )
        if not taken:
            return jobs
        holders = yield from self._get_jobs(set(taken.values()))
        # A holder that ended (and expired) since is still the job this call resolved to.
        return [
            holders.get(taken[job.id]) or dataclasses.replace(job, id=taken[job.id])
            if job.id in taken
            else job
            for job in jobs
        ]

    def _enqueue_flow(self, jobs: list[Job], groups: list[dict[str, Any]]) -> Plan[None]:
        """Store a whole chain or group in one round trip (:mod:`django_jobs.workflow` builds
        the ``jobs`` and ``groups``), sent once more like :meth:`enqueue_many`: storing is
        idempotent on the job and group ids."""
        # workflow.py refuses a workflow whose steps' queues live in several shards.
        (shard,) = shards.by_shard_of(jobs) or [shards.DEFAULT]
        keys = self.shard_keys(shard)
        yield from self._store(calls.enqueue_flow, keys, jobs=jobs, groups=groups)

    def _store(
        self, plan: Callable[..., Plan[T]], keys: Keys, *, jobs: list[Job], **values: Any
    ) -> Plan[T]:
        """Run the storing ``plan`` of ``jobs`` inside their enqueue span (which writes each
        job's trace context into its meta), sent once more before
        :class:`~django_jobs.exceptions.RedisUnavailable` is raised: Redis may have stored the
        jobs and lost only its reply."""
        now, job_ttl = utcnow().timestamp(), int(jobs_settings.JOB_TTL)
        with tracing.enqueue_span(jobs):
            try:
                return (yield from plan(keys, jobs=jobs, now=now, job_ttl=job_ttl, **values))
            except RedisUnavailable:
                return (yield from plan(keys, jobs=jobs, now=now, job_ttl=job_ttl, **values))

    def _cancel_flow(self, job_ids: list[str]) -> Plan[list[str]]:
        """Cancel the steps of a chain or group in one round trip, in order, as
        :meth:`cancel_job` cancels one (a step's cancellation also cancels the steps that wait
        for it); returns each one's reply."""
        ids = validation.ids(job_ids, "cancel_flow()")
        now, job_ttl = utcnow().timestamp(), int(jobs_settings.JOB_TTL)
        if not ids:
            return []
        # The steps of a workflow share its shard: the first step's says where.
        keys, _ = yield from spread.locate(
            self, ids[0], lambda keys: calls.watch(keys, job_id=ids[0]), lambda s: not s[0]
        )
        return (yield from calls.cancel_flow(keys, ids=ids, now=now, job_ttl=job_ttl))

    def _group(self, group_id: str) -> Plan[dict[str, str]]:
        """The record of a group of a workflow (``{}`` if unknown or expired)."""
        group_id = validation.job_id(group_id, "group()")
        _, found = yield from spread.locate(
            self, group_id, lambda keys: calls.group(keys, group_id=group_id), lambda g: not g
        )
        return found

    def _get_job(self, job_id: str) -> Plan[Job | None]:
        """The job with its result, or ``None`` if it does not exist (or expired)."""
        job_id = validation.job_id(job_id, "get_job()")
        found = yield from spread.fetched(self, [job_id], calls.fetch)
        return found.get(job_id)

    def _get_jobs(self, job_ids: Iterable[str]) -> Plan[dict[str, Job]]:
        """The jobs of ``job_ids`` that exist, with their results, by id: one round trip."""
        ids = list(dict.fromkeys(validation.ids(job_ids, "get_jobs()")))
        if not ids:
            return {}
        return (yield from spread.fetched(self, ids, calls.fetch))

    def _watch(self, job_id: str) -> Plan[JobStatus | None]:
        """The job's status (``None`` if unknown); unless it is final, its outcome will be
        pushed to ``keys.done(job_id)`` for :meth:`wait_for` to block on."""
        _, status, _ = yield from self._watch_in(validation.job_id(job_id, "watch()"))
        return status

    def _watch_in(
        self, job_id: str, read: bool = False
    ) -> Plan[tuple[Keys, JobStatus | None, Job | None]]:
        """:meth:`watch`, and the keys of the shard that holds the job; with ``read`` the job
        too when it is finished already (otherwise ``None``)."""
        keys, (status, job) = yield from spread.locate(
            self,
            job_id,
            lambda keys: calls.watch(keys, job_id=job_id, read=read),
            lambda reply: not reply[0],
        )
        return keys, JobStatus(status) if status else None, job

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
            wait = (
                WAIT_RECHECK if deadline is None else min(deadline - time.monotonic(), WAIT_RECHECK)
            )
            if wait <= 0:
                # No time left to wait: one look, a job finished already coming with it.
                _, status, job = yield from self._watch_in(job_id, read=True)
                status_text = "" if status is None else status.value
            else:
                # The watch, the wait and the read in one write: when the script that finishes
                # the job pushes to its done list, no round trip is left between the end and
                # the result.
                _, (status_text, job) = yield from spread.locate(
                    self,
                    job_id,
                    functools.partial(calls.wait_watched, job_id=job_id, timeout=max(wait, 0.01)),
                    lambda reply: not reply[0],
                )
            if not status_text:
                raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
            if job is not None and job.status.is_finished:
                return job
            if wait <= 0:
                raise TimeoutError(f"Job {job_id} is still {status_text} after {timeout} s.")

    def _cancel_job(self, job_id: str, lease_token: str = "") -> Plan[str]:
        """Cancel a job.

        A pending (also delayed) or retrying job is CANCELLED at once: returns
        ``"cancelled"``. For a running job a cancellation is requested and its worker stops
        it: returns ``"requested"``. A finished job is left alone (its status is returned),
        an unknown id gives ``"missing"``. A worker confirms a requested cancellation by
        passing its ``lease_token``.
        """
        job_id = validation.job_id(job_id, "cancel_job()")
        now, job_ttl = utcnow().timestamp(), int(jobs_settings.JOB_TTL)
        _, reply = yield from spread.locate(
            self,
            job_id,
            lambda keys: calls.cancel(
                keys, job_id=job_id, now=now, job_ttl=job_ttl, token=lease_token
            ),
            lambda reply: reply == "missing",
        )
        return reply

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    # What enqueues and what a handle calls; in a testing MODE the in-process store answers.
    enqueue, aenqueue = routed(_enqueue)
    enqueue_many, aenqueue_many = routed(_enqueue_many)
    get_job, aget_job = routed(_get_job)
    get_jobs, aget_jobs = routed(_get_jobs)
    watch, awatch = routed(_watch)
    wait_for, await_for = routed(_wait_for)
    cancel_job, acancel_job = routed(_cancel_job)
    enqueue_flow, aenqueue_flow = routed(_enqueue_flow)
    cancel_flow, acancel_flow = routed(_cancel_flow)
    group, agroup = routed(_group)
