"""What operators do to many jobs at once (:mod:`django_jobs.upkeep`: requeue dead letters,
purge the jobs of a state, delete jobs for good) in the in-memory store of the testing modes,
by the rules of ``requeue.lua``, ``purge.lua`` and ``delete.lua``.

:class:`~django_jobs.testing.store.MemoryStore` takes them from :class:`Upkeep`. A requeued
dead letter goes back to the tail of its list, PENDING, with a fresh retry budget and what
belonged to its last run dropped (its history of failed attempts stays); a unique one takes its
key again, or stays dead while another job holds it; a group member that is requeued no longer
holds its group's callback back. In immediate mode the requeued jobs run at once, as an
enqueue's do. A deleted job gives its unique key back, and a workflow step deleted before it
completed cancels what waits for it. Time is the store's clock (``purge(older_than=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from django_jobs import rules, validation
from django_jobs.conf import jobs_settings
from django_jobs.job import Job, JobStatus
from django_jobs.testing.reads import Reads, StoredJob
from django_jobs.upkeep import RequeueOutcome, purge_arguments, running_refused

if TYPE_CHECKING:
    import itertools

    from django_jobs.queue import JobQueue
    from django_jobs.testing.unique import UniqueKeys


class KeptJob(StoredJob, Protocol):
    """What this module reads and writes of a job's record in the store (``store._Record``)."""

    fields: dict[str, str]


# What belonged to a dead job's last run, dropped by its requeue (requeue.lua's HDEL).
RUN_FIELDS = (
    "started_at",
    "finished_at",
    "scheduled_at",
    "worker_id",
    "error",
    "traceback",
    "lease_token",
    "done_token",
    "lost_tokens",
    "late_count",
    "cancel_requested",
    "watched",
)


class Upkeep(Reads):
    """Requeue, purge and delete in :class:`~django_jobs.testing.store.MemoryStore`: what
    :class:`~django_jobs.upkeep.JobUpkeep` hands over in a testing mode."""

    if TYPE_CHECKING:  # the store's own (store.py, workflows.py), used here
        _records: dict[str, KeptJob]
        _order: itertools.count[int]
        _unique: UniqueKeys
        _running: int

        def drain(self, until: float | None = None) -> int: ...

        def get_jobs(self, space: JobQueue, job_ids: Iterable[str]) -> dict[str, Job]: ...

        def _step_requeued(self, job: Job) -> None: ...

        def _step_cancelled(self, job: Job, what: str = "cancelled") -> None: ...

    def requeue_dead_outcome(
        self,
        space: JobQueue,
        /,
        job_ids: Iterable[str] | None = None,
        *,
        name: str | None = None,
        limit: int = 0,
        batch: int = 1000,
    ) -> RequeueOutcome:
        """Move dead letters back to the tail of their lists with a fresh retry budget, as
        ``JobQueue.requeue_dead_outcome()`` does: those of ``job_ids``, or all of them (named
        ``name``), oldest first, up to ``limit``. Returns the ids requeued and, apart, those
        left dead because another job holds their unique key, with that job's id."""
        if job_ids is not None:
            ids = validation.ids(job_ids, "requeue_dead()")
            name, limit = "", 0
        else:
            name = validation.name_filter(name)
            limit = rules.integer(limit, "limit", minimum=0)
            rules.integer(batch, "batch", minimum=1)  # one pass in memory: checked only
        outcome = RequeueOutcome([], {})
        with self._lock:
            if job_ids is None:
                dead = self._sources(space, JobStatus.FAILED, space.queues, None)[0][1]
                ids = [job.id for job in reversed(dead)]  # oldest first
            for job_id in ids:
                if job_ids is None and limit and len(outcome.requeued) >= limit:
                    break
                self._requeue(space.prefix, job_id, name, outcome)
        if outcome.requeued and jobs_settings.MODE == "immediate" and not self._running:
            self.drain(math.inf)
        return outcome

    def requeue_dead(
        self, space: JobQueue, /, job_ids: Iterable[str] | None = None, **options: Any
    ) -> list[str]:
        """The ids :meth:`requeue_dead_outcome` (with the same options) requeued."""
        return self.requeue_dead_outcome(space, job_ids, **options).requeued

    def purge(
        self,
        space: JobQueue,
        /,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        name: str | None = None,
        older_than: float | timedelta | None = None,
        batch: int = 1000,
    ) -> int:
        """Delete the jobs in one state for good, as ``JobQueue.purge()`` does, of ``queue``
        and named ``name`` if given; ``older_than`` keeps the finished jobs that finished
        since then, by the store's clock. Returns how many were deleted."""
        state, queue, name, seconds = purge_arguments(status, queue, name, older_than)
        rules.integer(batch, "batch", minimum=1)
        newest = math.inf if seconds is None else self.clock.now() - seconds
        with self._lock:
            sources = self._sources(space, state, [queue] if queue else space.queues, None)
            doomed = [
                job
                for check_queue, jobs in sources
                for job in jobs
                if (not check_queue or not queue or job.queue == queue)
                and (not name or job.name == name)
                and (job.finished_at is None or job.finished_at.timestamp() <= newest)
            ]
            # As purge.lua's window: each job read before it deletes any (one it cancels, a
            # step after a deleted one, is deleted all the same).
            for job in doomed:
                self._delete(job)
        return len(doomed)

    def delete_jobs(self, space: JobQueue, /, job_ids: Iterable[str]) -> list[Job]:
        """Delete jobs for good, as ``JobQueue.delete_jobs()`` does; returns them as they were.
        A running one is refused (``JobIsRunning``) and nothing is deleted."""
        ids = list(dict.fromkeys(validation.ids(job_ids, "delete_jobs()")))
        with self._lock:
            found = list(self.get_jobs(space, ids).values())
            running = [job.id for job in found if job.status is JobStatus.RUNNING]
            if running:
                raise running_refused(running)
            for job in found:
                self._delete(job)
        return found

    def delete_job(self, space: JobQueue, /, job_id: str) -> Job | None:
        """Delete one job (see :meth:`delete_jobs`): the job as it was, or ``None``."""
        deleted = self.delete_jobs(space, [validation.job_id(job_id, "delete_job()")])
        return deleted[0] if deleted else None

    # -- inside -------------------------------------------------------------------------------

    def _requeue(self, prefix: str, job_id: str, name: str, outcome: RequeueOutcome) -> None:
        """Requeue dead letter ``job_id`` (named ``name``, if given) as ``requeue.lua`` does,
        and say so in ``outcome``; anything else stays as it is."""
        record = self._records.get(job_id)
        if record is None or record.prefix != prefix:
            return
        if record.fields.get("status") != "failed" or (name and record.fields["name"] != name):
            return
        job = self._read(job_id)
        holder = self._unique.take(prefix, job, self.clock.now())
        if holder is not None:
            outcome.held[job_id] = holder
            return
        for field in RUN_FIELDS:
            record.fields.pop(field, None)
        record.fields.update(status=JobStatus.PENDING.value, retry_count="0", lost_count="0")
        record.order = next(self._order)  # at the tail of its list, as RPUSH puts it
        if job.group is not None:
            self._step_requeued(job)
        outcome.requeued.append(job_id)

    def _delete(self, job: Job) -> None:
        """Forget ``job`` (as read before) as ``delete_job`` does in Redis: its unique key goes
        back, and if it is a workflow step that had not completed, what waits for it is
        cancelled."""
        prefix = self._records[job.id].prefix
        if job.unique_key:
            self._unique.release(prefix, job)
        if (job.then or job.group is not None) and job.status is not JobStatus.COMPLETED:
            self._step_cancelled(job, "deleted")
        del self._records[job.id]
