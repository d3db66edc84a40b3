"""The read side of :class:`~django_jobs.queue.JobQueue` (:mod:`django_jobs.browse`) in the
in-memory store of the testing modes: pages and lists of jobs, counts, the workers, the
throughput and the limits, answered from the store's records as Redis answers them.

:class:`~django_jobs.testing.store.MemoryStore` takes them from :class:`Reads`. A page reads
the store's jobs as ``page.lua`` reads the structures that hold them in Redis, in the same
order, and walks them with the same cursor: PENDING as a worker takes them (per priority, high
first, each queue of ``QUEUES`` in turn, FIFO within one) and then the delayed jobs by due
time; RETRYING by due time; RUNNING by start; FAILED, COMPLETED and CANCELLED newest first;
WAITING by creation; a user's jobs newest first. A job is delayed while its due time is ahead
of the store's clock. Filters cost a scan as in Redis (:data:`~django_jobs.browse.SCAN_LIMIT`
entries at most per call), so a filtered page may come back short with a cursor to go on from,
as it may with Redis.

What has no counterpart in memory reads as empty, not as Redis's: no ``runworker`` serves
the store (``workers()`` is ``[]``, ``stats()`` counts no worker, and every queue with ready
jobs is unserved), and rate and concurrency limits hold nothing back (``limits()`` is ``[]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from django_jobs.browse import SCAN_LIMIT, Page, page_arguments, task_runs_arguments
from django_jobs.job import PRIORITIES_HIGH_FIRST, Job, JobStatus
from django_jobs.serialization import from_timestamp
from django_jobs.store.console_calls import LimitInfo
from django_jobs.store.worker_calls import WorkerInfo

if TYPE_CHECKING:
    import threading

    from django_jobs.queue import JobQueue
    from django_jobs.testing.clock import Clock

# A source of a page, as page.lua reads one: whether the queue filter applies to it (a ready
# list is of one queue already), and its jobs in order.
Source = tuple[bool, list[Job]]

# The time each state's structure in Redis orders its jobs by (its zset's score).
_SCORES: dict[JobStatus, Callable[[Job], datetime | None]] = {
    JobStatus.RETRYING: lambda job: job.scheduled_at,
    JobStatus.RUNNING: lambda job: job.started_at,
    JobStatus.FAILED: lambda job: job.finished_at,
    JobStatus.COMPLETED: lambda job: job.finished_at,
    JobStatus.CANCELLED: lambda job: job.finished_at,
    JobStatus.WAITING: lambda job: job.created_at,
}

# The counts of throughput() per minute, in this order.
MINUTE_COUNTS = ("completed", "failed", "dead")


class StoredJob(Protocol):
    """What this module reads of a job's record in the store (``store._Record``)."""

    prefix: str
    order: int


def stamp(moment: datetime | None) -> float:
    """``moment`` in epoch seconds (0 for none)."""
    return moment.timestamp() if moment is not None else 0.0


def by_score(
    jobs: list[Job], score: Callable[[Job], datetime | None], newest_first: bool
) -> list[Job]:
    """``jobs`` as a Redis zset scored by ``score`` orders them: by score, then id; reversed
    for a newest-first read (ZREVRANGE)."""
    return sorted(jobs, key=lambda job: (stamp(score(job)), job.id), reverse=newest_first)


def scan(
    sources: list[Source],
    match: Callable[[Job, bool], bool],
    filtered: bool,
    cursor: int,
    limit: int,
) -> tuple[list[Job], int | None, int, int]:
    """The walk of ``page.lua`` over ``sources`` read end to end, from position ``cursor``:
    (the jobs found, where to go on from or ``None`` at the end, the entries in all sources,
    the entries looked at). Unfiltered, a source is read by rank; filtered, ``match`` (a job,
    and whether the queue filter applies) is asked of each entry, :data:`SCAN_LIMIT` at
    most."""
    total = sum(len(jobs) for _, jobs in sources)
    found: list[Job] = []
    scanned = base = 0
    position = cursor
    for check_queue, jobs in sources:
        if len(found) >= limit or scanned >= SCAN_LIMIT:
            break
        if position < base + len(jobs):
            at = position - base
            if not filtered and not check_queue:
                taken = jobs[at : at + limit - len(found)]
                found += taken
                scanned += len(taken)
                at += len(taken)
            while (filtered or check_queue) and at < len(jobs):
                if len(found) >= limit or scanned >= SCAN_LIMIT:
                    break
                scanned, at = scanned + 1, at + 1
                if match(jobs[at - 1], check_queue):
                    found.append(jobs[at - 1])
            position = base + at
        base += len(jobs)
    return found, None if position >= total else position, total, scanned


class Reads:
    """The read side of :class:`~django_jobs.testing.store.MemoryStore`: what
    :class:`~django_jobs.browse.JobBrowser` hands over in a testing mode."""

    if TYPE_CHECKING:  # the store's own (store.py), used here
        clock: Clock
        _records: Mapping[str, StoredJob]
        _lock: threading.RLock
        _minutes: dict[int, list[int]]

        def _read(self, job_id: str) -> Job: ...

    # -- what JobBrowser hands over (django_jobs.routing) -------------------------------------

    def page(
        self,
        space: JobQueue,
        /,
        status: JobStatus | str | None = None,
        *,
        queue: str | None = None,
        name: str | None = None,
        user_id: str | int | None = None,
        cursor: int = 0,
        limit: int = 50,
    ) -> Page:
        """A page of the jobs in one state, or of one user, as ``JobQueue.page()`` reads it
        from Redis (see the module's docstring for the order)."""
        state, queue, name, user, cursor, limit = page_arguments(
            status, queue, name, user_id, cursor, limit
        )
        wanted = state.value if user is not None and state is not None else ""

        def match(job: Job, check_queue: bool) -> bool:
            return (
                (not check_queue or not queue or job.queue == queue)
                and (not name or job.name == name)
                and (not wanted or job.status.value == wanted)
            )

        with self._lock:
            sources = self._sources(space, state, [queue] if queue else space.queues, user)
        filtered = bool(name or wanted)
        if not queue:
            sources = [(False, jobs) for _, jobs in sources]  # no queue filter to apply
        jobs, end, total, scanned = scan(sources, match, filtered, cursor, limit)
        if total == 0 or cursor >= total:
            return Page([], None, total, 0)
        return Page(jobs, end, total, scanned)

    def list_jobs(
        self,
        space: JobQueue,
        /,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 100,
        name: str | None = None,
    ) -> list[Job]:
        """The jobs of :meth:`page` ``(status, queue=queue, name=name, cursor=offset,
        limit=limit)``."""
        return self.page(space, status, queue=queue, name=name, cursor=offset, limit=limit).jobs

    def jobs_for_user(
        self, space: JobQueue, /, user_id: str | int, *, offset: int = 0, limit: int = 100
    ) -> list[Job]:
        """A page of the jobs enqueued with ``user_id``, newest first."""
        return self.page(space, user_id=user_id, cursor=offset, limit=limit).jobs

    def task_runs(self, space: JobQueue, /, task_name: str, limit: int = 20) -> list[Job]:
        """The jobs of the runs of periodic task ``task_name``, newest first: those whose meta
        names it, which only a scheduler enqueues (and it enqueues to Redis), so none unless a
        test stored one so."""
        limit = task_runs_arguments(task_name, limit)
        with self._lock:
            runs = [j for j in self._jobs(space) if j.meta.get("scheduled_task") == task_name]
        return by_score(runs, lambda job: job.created_at, newest_first=True)[:limit]

    def stats(self, space: JobQueue, /) -> dict[str, Any]:
        """The counts of ``JobQueue.stats()``, of the store's jobs, in the same shape: ready
        jobs per queue and priority, all per state, the age of each list's head by the
        store's clock; no counters, no worker (so each queue with ready jobs is unserved),
        no limit."""
        queues, now = space.queues, self.clock.now()
        with self._lock:
            ready = self._sources(space, JobStatus.PENDING, queues, None)
            jobs = self._jobs(space)
        per_queue: dict[str, dict[str, int]] = {q: {} for q in queues}
        oldest: dict[str, dict[str, float | None]] = {q: {} for q in queues}
        lists = iter(ready)
        for priority in PRIORITIES_HIGH_FIRST:
            for queue in queues:
                _, listed = next(lists)
                level = priority.name.lower()
                per_queue[queue][level] = len(listed)
                head = listed[0] if listed else None
                since = (
                    None if head is None else max(stamp(head.created_at), stamp(head.scheduled_at))
                )
                oldest[queue][level] = None if since is None else max(now - since, 0.0)
        count = {state: sum(job.status is state for job in jobs) for state in JobStatus}
        scheduled = len(ready[-1][1])
        ready_counts = {q: sum(levels.values()) for q, levels in per_queue.items()}
        return {
            "queues": per_queue,
            "states": {
                "pending": sum(ready_counts.values()) + scheduled,
                "scheduled": scheduled,
                "limited": 0,
                **{
                    state.value: count[state]
                    for state in (
                        JobStatus.RETRYING,
                        JobStatus.RUNNING,
                        JobStatus.FAILED,
                        JobStatus.COMPLETED,
                        JobStatus.CANCELLED,
                        JobStatus.WAITING,
                    )
                },
            },
            "counters": {"stale_acks": 0, "recovered": 0},
            "workers": {"live": 0, "dead": 0},
            "unserved": {q: n for q, n in ready_counts.items() if n},
            "oldest": oldest,
            "limits": [],
        }

    def workers(self, space: JobQueue, /) -> list[WorkerInfo]:
        """No ``runworker`` serves the store: ``[]``."""
        return []

    def limits(self, space: JobQueue, /) -> list[LimitInfo]:
        """Rate and concurrency limits hold nothing back in memory: ``[]``."""
        return []

    def throughput(self, space: JobQueue, /, minutes: int = 60) -> list[dict[str, Any]]:
        """Attempts completed, failed and dead-lettered per minute of the store's clock, for
        the last ``minutes`` (1 to 60), oldest first, as ``JobQueue.throughput()`` counts
        them."""
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 60:
            raise ValueError(f"throughput() takes 1 to 60 minutes, not {minutes!r}.")
        last = int(self.clock.now()) // 60 * 60
        with self._lock:
            counted = {start: list(counts) for start, counts in self._minutes.items()}
        return [
            {"minute": from_timestamp(start)}
            | dict(zip(MINUTE_COUNTS, counted.get(start, [0, 0, 0]), strict=True))
            for start in range(last - 60 * (minutes - 1), last + 1, 60)
        ]

    # -- for the store ------------------------------------------------------------------------

    def _count_minute(self, *kinds: str) -> None:
        """Count an attempt's outcome (``kinds`` of :data:`MINUTE_COUNTS`) in the minute of the
        store's clock, as the scripts count it for ``throughput()``."""
        counts = self._minutes.setdefault(int(self.clock.now()) // 60 * 60, [0, 0, 0])
        for kind in kinds:
            counts[MINUTE_COUNTS.index(kind)] += 1

    def _jobs(self, space: JobQueue) -> list[Job]:
        """The store's jobs of ``space``'s prefix, in the order they were stored."""
        return [
            self._read(job_id) for job_id, r in self._records.items() if r.prefix == space.prefix
        ]

    def _sources(
        self, space: JobQueue, state: JobStatus | None, queues: list[str], user: str | None
    ) -> list[Source]:
        """The jobs of ``state`` (of ``queues`` for PENDING's ready lists) or of ``user``, as
        the structures ``page.lua`` reads in Redis hold them (``browse.state_sources``): for
        PENDING one ready list per priority and queue, in the order a worker takes them, then
        the delayed jobs."""
        jobs = self._jobs(space)
        if user is not None:
            mine = [job for job in jobs if job.user_id is not None and str(job.user_id) == user]
            return [(True, by_score(mine, lambda job: job.created_at, newest_first=True))]
        assert state is not None
        if state is not JobStatus.PENDING:
            kept = [job for job in jobs if job.status is state]
            return [(True, by_score(kept, _SCORES[state], newest_first=state.is_finished))]
        now = self.clock.now()
        pending = [job for job in jobs if job.status is JobStatus.PENDING]
        delayed = [job for job in pending if stamp(job.scheduled_at) > now]
        ready = sorted(
            (job for job in pending if stamp(job.scheduled_at) <= now),
            # As drain() takes them: due first, then in the order they became ready.
            key=lambda job: (stamp(job.scheduled_at), self._records[job.id].order),
        )
        lists: list[Source] = [
            (False, [job for job in ready if job.queue == queue and job.priority == priority])
            for priority in PRIORITIES_HIGH_FIRST
            for queue in queues
        ]
        return [*lists, (True, by_score(delayed, lambda job: job.scheduled_at, newest_first=False))]
