"""The in-memory store that stands in for Redis while ``DJANGO_JOBS['MODE']`` is
``"immediate"`` or ``"capture"``.

:class:`~django_jobs.queue.JobQueue` hands it what would go to Redis (enqueues, the reads and
cancellations of a handle, the reads of pages and counts, requeue, purge and delete) through
its one switch, :func:`django_jobs.routing.local_jobs`.
Records are kept as Redis keeps them: a job is its hash (``Job.to_hash``, JSON text for the
arguments) and its result JSON text, and each read builds a fresh :class:`Job` from them, so
arguments and results make the JSON round trip a worker's do. The state changes follow the
Lua scripts: enqueue, claim, ack, fail (with the same backoff), cancel; those of workflows,
reads and upkeep are in :mod:`~django_jobs.testing.workflows`,
:mod:`~django_jobs.testing.reads` and :mod:`~django_jobs.testing.upkeep`.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs import rules, tracing, validation
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord, JobNotFound
from django_jobs.job import Job, JobStatus, new_id
from django_jobs.routing import checked_jobs
from django_jobs.serialization import check_json, dumps, from_timestamp, loads
from django_jobs.testing import assertions, runner, unique
from django_jobs.testing.clock import Clock
from django_jobs.testing.upkeep import Upkeep
from django_jobs.testing.workflows import FlowGroup, Workflows
from django_jobs.worker.leases import Failure

if TYPE_CHECKING:
    from django_jobs.queue import JobQueue

#: A drain runs this many attempts at most, then raises: a job that enqueues itself again
#: and again would otherwise never let it end.
DRAIN_LIMIT = 10_000

# What a job claimed in-process has as its worker_id (a runworker's is host:pid:...).
WORKER_ID = "in-process"


@dataclass
class _Record:
    """One job as Redis would hold it: its hash, its result's JSON, and where it lives."""

    prefix: str
    fields: dict[str, str]
    order: int
    result: str | None = None


class MemoryStore(Upkeep, Workflows):
    """Jobs enqueued while a testing mode is on: what was enqueued, and each job's record.

    In ``"immediate"`` mode every enqueue is followed by :meth:`drain` of everything (delayed
    jobs and retries included, the clock moved to each one's due time); in ``"capture"`` mode
    nothing runs until the test calls :meth:`drain`. The methods named like
    :class:`~django_jobs.queue.JobQueue`'s answer for it; the others are for tests.
    """

    #: Progress is written at each report (a worker writes it a few times a second at most).
    progress_interval = 0.0

    def __init__(self) -> None:
        self.clock = Clock()
        self._records: dict[str, _Record] = {}
        self._unique = unique.UniqueKeys(self._records, lambda: self.clock.now())
        self._groups: dict[str, FlowGroup] = {}  # chains and groups: workflows.py
        self._minutes: dict[int, list[int]] = {}  # throughput() per minute: reads.py
        self._enqueued: list[Job] = []
        self._order = itertools.count()
        self._lock = threading.RLock()
        # Attempts under way: a job enqueued by a running job waits until it ends, as it would
        # wait for a worker.
        self._running = 0

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._records)} jobs>"

    # -- what JobQueue hands over (django_jobs.routing.LocalJobs) -------------------------------

    def enqueue(
        self,
        queue: JobQueue,
        name: str,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        (job,) = self.enqueue_many(queue, [queue.build_job(name, args, kwargs, **options)])
        return job

    def enqueue_many(self, queue: JobQueue, jobs: Iterable[Job]) -> list[Job]:
        """Store the jobs as Redis does (one whose id is stored is left as it is; a unique one
        whose key another job holds is not stored, that job stands in for it); in immediate
        mode run them, and what they enqueue, to their end. Returns the jobs as stored now."""
        jobs = checked_jobs(jobs)
        held: dict[str, str] = {}
        with tracing.enqueue_span(jobs), self._lock:
            for job in jobs:
                if job.id in self._records or self._unique.held(queue.prefix, job, held):
                    continue
                record = _Record(queue.prefix, job.to_hash(), next(self._order))
                self._records[job.id] = record
                if job.status is not JobStatus.WAITING:  # a workflow's step counts once ready
                    record.fields["status"] = JobStatus.PENDING.value
                    self._enqueued.append(self._read(job.id))
        if jobs_settings.MODE == "immediate" and not self._running:
            self.drain(math.inf)
        return self._unique.as_stored(jobs, held, self._read)

    def get_job(self, queue: JobQueue, job_id: str) -> Job | None:
        return self.get_jobs(queue, [validation.job_id(job_id, "get_job()")]).get(job_id)

    def get_jobs(self, queue: JobQueue, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = validation.ids(job_ids, "get_jobs()")
        with self._lock:
            return {
                job_id: self._read(job_id)
                for job_id in dict.fromkeys(ids)
                if job_id in self._records and self._records[job_id].prefix == queue.prefix
            }

    def watch(self, queue: JobQueue, job_id: str) -> JobStatus | None:
        job = self.get_job(queue, validation.job_id(job_id, "watch()"))
        return None if job is None else job.status

    def wait_for(self, queue: JobQueue, job_id: str, timeout: float | None = None) -> Job:
        """The finished job. In immediate mode what is pending runs first; otherwise nothing
        would ever run it, so ``TimeoutError`` says why at once rather than after ``timeout``."""
        validation.job_id(job_id, "wait_for()")
        job = self.get_job(queue, job_id)
        if job is not None and not job.is_finished and jobs_settings.MODE == "immediate":
            self.drain(math.inf)  # e.g. a job waiting for one it enqueued
            job = self.get_job(queue, job_id)
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
        if job.is_finished:
            return job
        if job.status is JobStatus.RUNNING:
            why = "it is running in this process, around this wait"
        elif job.status is JobStatus.WAITING and jobs_settings.MODE == "immediate":
            why = self._why_waiting(job)
        else:
            why = "in DJANGO_JOBS['MODE'] 'capture' jobs run only when drain() runs them"
        raise TimeoutError(f"Job {job_id} is still {job.status.value}: {why}.")

    def cancel_job(self, queue: JobQueue, job_id: str, lease_token: str = "") -> str:
        """As ``cancel.lua``: a pending or retrying job is CANCELLED; a running one gets a
        cancellation request, which an in-process run cannot act on (it runs to its end)."""
        validation.job_id(job_id, "cancel_job()")
        with self._lock:
            job = self.get_job(queue, job_id)
            if job is None:
                return "missing"
            if job.status is JobStatus.RUNNING:
                job.cancel_requested = True
                self._write(job)
                return "requested"
            if job.is_finished:
                return job.status.value
            job.status, job.finished_at = JobStatus.CANCELLED, self._now()
            job.lease_token, job.cancel_requested = None, False
            self._write(job)
            self._step_cancelled(job)
            return JobStatus.CANCELLED.value

    # -- the worker's side: what runner.attempt records an attempt's outcome through ----------

    def claim(self, job_id: str) -> Job | None:
        """Lease the job as ``claim.lua`` does and read it as a worker does (strictly); a record
        a worker could not run is failed with the reason instead (``None``)."""
        with self._lock:
            job = self._read(job_id)
            job.status, job.started_at = JobStatus.RUNNING, self._now()
            job.worker_id, job.lease_token = WORKER_ID, new_id()
            self._write(job)
            record = self._records[job_id]
            try:
                return Job.from_hash(job_id, dict(record.fields), job.result)
            except InvalidJobRecord as exc:
                self.record_failure(job, str(exc), retry=False)
                return None

    def complete_job(self, job: Job, result: Any = None) -> bool:
        """Record the completion as ``ack.lua`` does, if ``job``'s lease is still held."""
        check_json(result, "the result")
        with self._lock:
            stored = self._leased(job)
            if stored is None:
                return False
            stored.status, stored.finished_at = JobStatus.COMPLETED, self._now()
            stored.lease_token, stored.cancel_requested = None, False
            self._write(stored)
            self._records[job.id].result = text = dumps(result)
            self._count_minute("completed")
            self._step_completed(stored, text)
            return True

    def record_progress(self, job: Job, progress: str) -> bool:
        """Write a running job's progress (JSON text) as ``progress.lua`` does, if ``job``'s
        lease is still held."""
        with self._lock:
            if self._leased(job) is None:
                return False
            self._records[job.id].fields["progress"] = progress
            return True

    def record_failure(
        self,
        job: Job,
        error: str,
        traceback: str = "",
        *,
        retry: bool = True,
        finished: bool = True,
    ) -> Failure:
        """Record a failed attempt as ``fail.lua`` does: RETRYING, due after the backoff of
        its next retry (``min(BASE * 2**n, MAX)``), while retries are left, else FAILED."""
        with self._lock:
            stored = self._leased(job)
            if stored is None:
                return Failure(None)
            now = self.clock.now()
            entry = {
                "attempt": job.attempt,
                "error": error,
                "traceback": traceback,
                "worker_id": job.worker_id or "",
                "failed_at": now,
            }
            stored.errors = [*stored.errors, entry]
            stored.error, stored.traceback, stored.lease_token = error, traceback, None
            if retry and stored.retry_count < stored.max_retries:
                stored.retry_count += 1
                base, longest = stored.retry_backoff_base, stored.retry_backoff_max
                base = jobs_settings.RETRY_BACKOFF_BASE if base is None else base
                longest = jobs_settings.RETRY_BACKOFF_MAX if longest is None else longest
                due = from_timestamp(now + min(base * 2**stored.retry_count, longest))
                stored.status, stored.scheduled_at = JobStatus.RETRYING, due
                self._write(stored)
                self._count_minute("failed")
                return Failure(JobStatus.RETRYING, due)
            stored.status, stored.finished_at = JobStatus.FAILED, from_timestamp(now)
            self._write(stored)
            self._count_minute("failed", "dead")
            self._step_dead(stored)
            return Failure(JobStatus.FAILED)

    # -- for tests ----------------------------------------------------------------------------

    @property
    def enqueued(self) -> list[Job]:
        """Every job enqueued since the store was made, in order, as it was when enqueued
        (after the JSON round trip). See :meth:`records` for how they are now."""
        with self._lock:
            return list(self._enqueued)

    def records(self, status: JobStatus | str | None = None) -> list[Job]:
        """The jobs as they are now, in the order they were enqueued; of one ``status`` if
        given (e.g. ``"failed"``: those in the dead-letter queue)."""
        wanted = None if status is None else validation.stored_status(status)
        with self._lock:
            jobs = [self._read(job_id) for job_id in self._records]
        return [job for job in jobs if wanted is None or job.status is wanted]

    def record(self, job_id: str) -> Job:
        """The job ``job_id`` (a handle's ``id``) as it is now; ``JobNotFound`` if unknown."""
        with self._lock:
            if job_id not in self._records:
                raise JobNotFound(f"There is no job {job_id!r} in this store.")
            return self._read(job_id)

    def matching(self, job: Any = None, **filters: Any) -> list[Job]:
        """The enqueued jobs that fit (see :func:`django_jobs.testing.assertions.matching`)."""
        return assertions.matching(self.enqueued, job, **filters)

    def assert_enqueued(self, job: Any = None, **filters: Any) -> list[Job]:
        """Fail unless a job that fits was enqueued (exactly ``count`` of them, if given);
        return those. Filters: ``args``, ``kwargs``, ``queue``, ``priority``, ``delay``,
        ``at``, ``user_id``, ``count``."""
        return assertions.assert_enqueued(self.enqueued, job, **filters)

    def assert_not_enqueued(self, job: Any = None, **filters: Any) -> None:
        """Fail if a job that fits was enqueued."""
        assertions.assert_not_enqueued(self.enqueued, job, **filters)

    @property
    def now(self) -> datetime:
        """The store's clock, as an aware UTC datetime."""
        return from_timestamp(self.clock.now())

    def advance(self, by: float | timedelta) -> None:
        """Move the clock forward (nothing runs: :meth:`drain` runs what fell due)."""
        self.clock.advance(by)

    def drain(
        self,
        until: float | timedelta | datetime | None = None,
        *,
        queues: Iterable[str] | None = None,
        limit: int = DRAIN_LIMIT,
    ) -> int:
        """Run the jobs that are due, and those they enqueue, until none is left; return how
        many attempts ran.

        ``until`` (seconds or a ``timedelta`` from the clock's now, or an aware datetime) also
        runs what falls due until then, moving the clock to each due time in turn, and leaves
        the clock there. ``queues`` limits it to those queues. Raises ``RuntimeError`` after
        ``limit`` attempts.
        """
        target = runner.deadline(until, self.clock.now())
        served = validation.served_queues(queues)
        limit = rules.integer(limit, "limit", minimum=1)
        attempts = 0
        while True:
            job_id, due = self._next(served)
            if job_id is None:
                if due is None or due > target:
                    break
                self.clock.advance_to(due)
                continue
            if attempts >= limit:
                raise RuntimeError(
                    f"drain() ran {limit} attempts and jobs are still due: does a job enqueue "
                    "itself again and again? Pass drain(limit=...) for more."
                )
            attempts += 1
            self._attempt(job_id)
        if math.isfinite(target):
            self.clock.advance_to(target)
        return attempts

    def clear(self) -> None:
        """Forget every job, and set the clock back to the real time."""
        with self._lock:
            self._records.clear()
            self._groups.clear()
            self._enqueued.clear()
            self._unique.clear()
            self._minutes.clear()
            self.clock = Clock()

    # -- inside -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return from_timestamp(self.clock.now())

    def _read(self, job_id: str) -> Job:
        record = self._records[job_id]
        result = None if record.result is None else loads(record.result)
        return Job.from_hash(job_id, dict(record.fields), result, strict=False)

    def _write(self, job: Job) -> None:
        self._records[job.id].fields = job.to_hash()

    def _leased(self, job: Job) -> Job | None:
        """The stored job, if it is running under ``job``'s lease token (else ``None``)."""
        stored = self._read(job.id) if job.id in self._records else None
        if stored is None or stored.status is not JobStatus.RUNNING:
            return None
        return stored if stored.lease_token == job.lease_token else None

    def _next(self, queues: list[str]) -> tuple[str | None, float | None]:
        """The next job to run as a worker serving ``queues`` would take it (highest priority,
        then first ready), or else when the next one falls due."""
        now = self.clock.now()
        ready: list[tuple[int, float, int, str]] = []
        later: float | None = None
        with self._lock:
            for job_id, record in self._records.items():
                fields = record.fields
                if fields.get("status") not in ("pending", "retrying"):
                    continue
                if fields.get("queue") not in queues:
                    continue
                due = float(fields.get("scheduled_at") or 0)
                if due > now:
                    later = due if later is None else min(later, due)
                    continue
                ready.append((-int(fields.get("priority", "1")), due, record.order, job_id))
        if ready:
            return min(ready)[3], None
        return None, later

    def _attempt(self, job_id: str) -> None:
        job = self.claim(job_id)
        if job is None:
            return
        self._running += 1
        try:
            runner.attempt(job, self)
        finally:
            self._running -= 1


# The stores of the testing modes switched on by immediate_jobs() and capture_jobs(), innermost
# last; without one, the default store serves a MODE set by the settings alone.
_stack: list[MemoryStore] = []
_default: MemoryStore | None = None


def current() -> MemoryStore:
    """The store that answers for Redis now (see :func:`django_jobs.routing.local_jobs`)."""
    global _default
    if _stack:
        return _stack[-1]
    if _default is None:
        _default = MemoryStore()
    return _default


def push() -> MemoryStore:
    """Make a fresh store the current one, until :func:`pop`."""
    store = MemoryStore()
    _stack.append(store)
    return store


def pop(store: MemoryStore) -> None:
    _stack.remove(store)


def reset_default() -> None:
    """Start the default store afresh (the pytest plugin does it before each test)."""
    global _default
    _default = None


@receiver(setting_changed)
def _mode_switched(*, setting: str, value: Any, **kwargs: Any) -> None:
    # Switching the testing modes off (override_settings leaving them) drops the default
    # store's jobs, so that the next test that switches one on starts with none.
    mode = value.get("MODE", "redis") if isinstance(value, dict) else "redis"
    if setting == "DJANGO_JOBS" and mode == "redis":
        reset_default()
