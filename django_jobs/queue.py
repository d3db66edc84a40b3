"""``JobQueue``: what users call to enqueue, inspect, cancel, requeue, delete, purge and wait
for jobs, and to see the workers (the read side lives in its base class,
:class:`django_jobs.browse.JobBrowser`).

Every method that changes a job's state is one Redis round trip: one Lua script, called
through :mod:`django_jobs.store.calls` (or :mod:`~django_jobs.store.worker_calls`); the bulk
``requeue_dead()`` and ``purge()`` make one per bounded batch. Each operation is written once,
as a *plan* (a generator of store steps); the sync method runs it with the sync client, the
``a``-prefixed twin with the asyncio client. The worker's side of the protocol (claim,
acknowledge, fail, renew leases, recover) is :class:`django_jobs.worker.leases.Leases`.

The methods that enqueue, and those a handle calls (get, watch, wait for, cancel), are made by
:func:`~django_jobs.routing.routed`: in a testing ``MODE`` (:mod:`django_jobs.testing`) the
in-process store answers them instead of Redis.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from django_jobs import bulk, rules, spread, tracing, validation
from django_jobs.browse import (
    DEAD_WORKERS_KEPT,
    JobBrowser,
    Page,
    state_sources,
)
from django_jobs.catalog import registry
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import JobIsRunning, JobNotFound, RedisUnavailable
from django_jobs.flow import NO_FLOW
from django_jobs.job import Job, JobStatus
from django_jobs.routing import checked_jobs, routed
from django_jobs.serialization import utcnow
from django_jobs.store import calls, console_calls, shards, worker_calls
from django_jobs.store.commands import Plan
from django_jobs.store.execute import async_twin, sync_twin
from django_jobs.store.keys import Keys

__all__ = ["DEAD_WORKERS_KEPT", "JobQueue", "Page"]

# A waiter for a job's outcome looks again this often even without a notification.
WAIT_RECHECK = 5.0

T = TypeVar("T")


class JobQueue(JobBrowser):
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
        registered = registry.get(name)
        if "function" not in options and registered is not None:
            options["function"] = registered.func
            options["takes_context"] = registered.takes_context
            for option in ("queue", "priority", "max_retries", "timeout", "flow"):
                if options.get(option) is None:
                    options[option] = getattr(registered, option)
        flow = options.get("flow")  # only SHARDS puts queues on two shards (a compare costs)
        if registered is not None and jobs_settings.SHARDS and flow not in (None, NO_FLOW):
            shards.same_shard(name, registered.queue, options.get("queue"))
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
            self, ids[0], lambda keys: calls.watch(keys, job_id=ids[0]), lambda s: not s
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
        _, status = yield from self._watch_in(validation.job_id(job_id, "watch()"))
        return status

    def _watch_in(self, job_id: str) -> Plan[tuple[Keys, JobStatus | None]]:
        """:meth:`watch`, and the keys of the shard that holds the job."""
        keys, status = yield from spread.locate(
            self, job_id, lambda keys: calls.watch(keys, job_id=job_id), lambda s: not s
        )
        return keys, JobStatus(status) if status else None

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
            keys, status = yield from self._watch_in(job_id)
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
            # Read as the wait ends, in the same write: when the script that finished it
            # pushed to the done list, no round trip is left between the end and the result.
            _, job = yield from calls.wait_done(keys, job_id=job_id, timeout=max(wait, 0.01))
            if job is not None and job.status.is_finished:
                return job

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

    def _requeue_dead(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        name: str | None = None,
        limit: int = 0,
        batch: int = 1000,
    ) -> Plan[list[str]]:
        """Move dead-letter jobs back to the tail of their lists with a fresh retry budget.
        Returns their ids.

        With ``job_ids``, those (one round trip). Without, all of them (only those named
        ``name`` if given), oldest first, up to ``limit`` if given: in batches of one round
        trip each, each looking at ``batch`` dead letters at most, until none is left.
        """
        if job_ids is not None:
            ids = validation.ids(job_ids, "requeue_dead()")
            if not ids:
                return []
            replies = yield from spread.by_id(
                self, ids, lambda keys, part: calls.requeue(keys, ids=part), lambda r: r[0]
            )
            return [job_id for done, _ in replies for job_id in done]
        name = validation.name_filter(name)
        limit = rules.integer(limit, "limit", minimum=0)
        batch = rules.integer(batch, "batch", minimum=1)
        requeued: list[str] = []
        for keys in self.all_keys():
            start: int | None = 0
            while start is not None and (not limit or len(requeued) < limit):
                want = batch if not limit else min(batch, limit - len(requeued))
                done, start = yield from calls.requeue(
                    keys, ids=[], start=start, scan=batch, limit=want, name=name
                )
                requeued += done
        return requeued

    def _purge(
        self,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        name: str | None = None,
        older_than: float | timedelta | None = None,
        batch: int = 1000,
    ) -> Plan[int]:
        """Delete the jobs in one state for good, as :meth:`delete_jobs` does (record, result,
        index entries), optionally only those of ``queue`` and named ``name``. Returns how
        many were deleted.

        PENDING takes ready, delayed and parked jobs (those a rate or concurrency limit holds
        back; with ``queue``: empties that queue); RETRYING,
        FAILED (the dead letters), COMPLETED and CANCELLED the jobs in that state; for the
        last three, ``older_than`` (seconds or a timedelta) keeps those that finished since
        then. RUNNING is refused (``ValueError``): cancel running jobs first. Works in batches
        of one round trip each, each looking at ``batch`` entries at most, so a purge of many
        jobs does not hold Redis up; jobs that reach the state meanwhile may be purged too.
        """
        state = validation.stored_status(status)
        if state is JobStatus.RUNNING:
            raise ValueError(
                "Running jobs cannot be purged: cancel running jobs first (cancel_job()), then "
                "purge them as cancelled."
            )
        name = validation.name_filter(name)
        queue = "" if queue is None else validation.queue_name(queue)
        batch = rules.integer(batch, "batch", minimum=1)
        max_score = None
        if older_than is not None:
            if not state.is_finished:
                raise ValueError(
                    f"older_than applies to finished jobs (completed, failed, cancelled), not to "
                    f"{state.value} ones."
                )
            seconds = rules.seconds(older_than, "older_than")
            if seconds < 0:
                raise rules.refused("older_than", "0 seconds or more", older_than)
            max_score = utcnow().timestamp() - seconds
        deleted = 0
        # Each shard in turn: the shards of the queues (all shards without ``queue``).
        for keys, queues in spread.queues_by_keys(self, [queue] if queue else self.queues):
            for kind, key in state_sources(keys, state, queues):
                deleted += yield from self._purge_source(
                    keys, kind, key, batch, max_score, queue, name
                )
            if state is JobStatus.PENDING:
                # Read after the ready lists were purged: a claim meanwhile may have parked some.
                for key in (yield from self._waiting_lists(keys, queues, batch)):
                    deleted += yield from self._purge_source(
                        keys, "W", key, batch, None, queue, name
                    )
        return deleted

    def _purge_source(
        self,
        keys: Keys,
        kind: str,
        key: str,
        batch: int,
        max_score: float | None,
        queue: str,
        name: str,
    ) -> Plan[int]:
        """Purge one state structure (see purge.lua), a batch a round trip."""
        deleted = 0
        start: int | None = 0
        while start is not None:
            count, start = yield from console_calls.purge(
                keys,
                kind=kind,
                source=key,
                start=start,
                batch=batch,
                max_score=max_score,
                queue=queue,
                name=name,
                now=utcnow().timestamp(),
                job_ttl=int(jobs_settings.JOB_TTL),
            )
            deleted += count
        return deleted

    def _waiting_lists(self, keys: Keys, queues: list[str], batch: int) -> Plan[list[str]]:
        """The keys of the waiting lists of the jobs of ``queues`` that a limit holds back
        (``_flow.lua``), their index read ``batch`` entries a round trip."""
        found: list[str] = []
        start = 0
        while True:
            members = yield from console_calls.waiting_lists(keys, start=start, count=batch)
            found += [keys.waiting(m) for m in members if m.split("|", 2)[1] in queues]
            if len(members) < batch:
                return found
            start += batch

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
        now, job_ttl = utcnow().timestamp(), int(jobs_settings.JOB_TTL)
        # One call per shard (nothing is deleted on a shard where one of its ids runs).
        replies = yield from spread.by_id(
            self,
            ids,
            lambda keys, part: worker_calls.delete(keys, ids=part, now=now, job_ttl=job_ttl),
            lambda reply: [*reply[0], *(job.id for job in reply[1])],
        )
        running = [job_id for found, _ in replies for job_id in found]
        deleted = [job for _, jobs in replies for job in jobs]
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

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    # What enqueues and what a handle calls; in a testing MODE the in-process store answers.
    enqueue, aenqueue = routed(_enqueue)
    enqueue_many, aenqueue_many = routed(_enqueue_many)
    get_job, aget_job = routed(_get_job)
    get_jobs, aget_jobs = routed(_get_jobs)
    watch, awatch = routed(_watch)
    wait_for, await_for = routed(_wait_for)
    cancel_job, acancel_job = routed(_cancel_job)
    enqueue_flow = sync_twin(_enqueue_flow)
    aenqueue_flow = async_twin(_enqueue_flow)
    cancel_flow = sync_twin(_cancel_flow)
    acancel_flow = async_twin(_cancel_flow)
    group = sync_twin(_group)
    agroup = async_twin(_group)
    requeue_dead = sync_twin(_requeue_dead)
    arequeue_dead = async_twin(_requeue_dead)
    purge = sync_twin(_purge)
    apurge = async_twin(_purge)
    delete_jobs = sync_twin(_delete_jobs)
    adelete_jobs = async_twin(_delete_jobs)
    delete_job = sync_twin(_delete_job)
    adelete_job = async_twin(_delete_job)
