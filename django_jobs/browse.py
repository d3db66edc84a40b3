"""The read side of :class:`~django_jobs.queue.JobQueue`: counts, pages of jobs by state or
user, the runs of a periodic task, the workers, the throughput and the flow control limits.

:class:`JobBrowser` is ``JobQueue``'s base class; nothing here changes a job. Every method is
one Redis round trip, written once as a plan and exposed with the sync and asyncio clients
(``stats()`` and ``astats()``, ...), like the rest of ``JobQueue``; in a testing ``MODE`` the
in-process store of :mod:`django_jobs.testing` answers them instead
(:func:`~django_jobs.routing.routed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_jobs import rules, spread, validation
from django_jobs.conf import jobs_settings
from django_jobs.job import PRIORITIES_HIGH_FIRST, Job, JobPriority, JobStatus
from django_jobs.routing import routed
from django_jobs.serialization import from_timestamp, utcnow
from django_jobs.store import console_calls, worker_calls
from django_jobs.store.calls import TASK_RUNS_KEPT
from django_jobs.store.commands import Plan
from django_jobs.store.console_calls import Counts, LimitInfo
from django_jobs.store.keys import Keys, Namespace

# A worker that died (its heartbeat expired) is listed as dead this long after its last beat.
DEAD_WORKERS_KEPT = 3600.0
#: A filtered page looks at this many entries at most per call (and says where it stopped), so
#: that every call is bounded however many jobs there are.
SCAN_LIMIT = 10_000
#: The most jobs one page may hold.
MAX_PAGE = 10_000
#: How many waiting lists of parked jobs (held back by a rate or concurrency limit, one list per
#: limit, queue and priority) a page of PENDING jobs reads at most per shard: the first ones of
#: their index, those claims look at soonest. Those after them (``Page.parked_unread``) are left
#: out of the page and of its total, so that a page stays bounded with a limit per customer.
PARKED_LISTS = 1000
#: How many rate and concurrency limits ``limits()`` and ``stats()`` read at most, the latest
#: used first, so that a limit per customer does not make them slow.
LIMITS_SHOWN = 200


@dataclass(frozen=True)
class Page:
    """One page of jobs (see :meth:`JobBrowser.page`)."""

    jobs: list[Job]
    #: Pass back as ``cursor=`` for the next page; ``None`` when there is no more.
    cursor: int | None
    #: Entries in the state's structures being paged (before filters).
    total: int
    #: Entries looked at to make this page.
    scanned: int
    #: PENDING: waiting lists of parked jobs left out, beyond :data:`PARKED_LISTS` per shard.
    parked_unread: int = 0


def state_sources(
    keys: Keys, status: JobStatus, queues: list[str], *, parked: bool = False
) -> list[tuple[str, str]]:
    """The (kind, key) structures that hold the jobs of ``status`` (of ``queues`` for PENDING,
    whose ready lists are per queue), in listing order; kinds as page.lua reads them.

    With ``parked``, PENDING lists the parked jobs too: before each ready list, a "P" source
    that page.lua reads as the waiting lists of that priority and queue. That is where a claim
    looks for them (the due waiting lists of a queue and priority before its ready list: see
    ``claim_next``), so strict priority holds in the listing as it does for the workers; lists
    not due yet are listed there too, as the order must not move with the clock between two
    pages of one listing.
    """
    if status is JobStatus.PENDING:
        ready = [
            source
            for priority in PRIORITIES_HIGH_FIRST
            for queue in queues
            for source in (
                *([("P", f"{priority.value}|{queue}")] if parked else []),
                ("L", keys.queue(queue, priority)),
            )
        ]
        return [*ready, ("Z", keys.scheduled)]
    return [
        {
            JobStatus.RETRYING: ("Z", keys.retrying),
            JobStatus.RUNNING: ("Z", keys.processing),
            JobStatus.FAILED: ("R", keys.dead),
            JobStatus.COMPLETED: ("R", keys.completed),
            JobStatus.CANCELLED: ("R", keys.cancelled),
            JobStatus.WAITING: ("Z", keys.waiting_jobs),
        }[status]
    ]


def page_arguments(
    status: JobStatus | str | None,
    queue: str | None,
    name: str | None,
    user_id: str | int | None,
    cursor: int,
    limit: int,
) -> tuple[JobStatus | None, str, str, str | None, int, int]:
    """The arguments of :meth:`JobBrowser.page` checked: (state, queue or ``""``, name filter,
    user id as text or ``None``, cursor, limit). The in-memory store checks them alike."""
    cursor = rules.integer(cursor, "cursor", minimum=0)
    limit = rules.integer(limit, "limit", minimum=1, maximum=MAX_PAGE)
    name = validation.name_filter(name)
    state = None if status is None else validation.stored_status(status)
    queue = "" if queue is None else validation.queue_name(queue)
    if user_id is None and state is None:
        raise ValueError("page() needs a status (or a user_id, whose jobs it pages).")
    user = None if user_id is None else str(validation.user(user_id))
    return state, queue, name, user, cursor, limit


def task_runs_arguments(task_name: str, limit: int) -> int:
    """The arguments of :meth:`JobBrowser.task_runs` checked: ``limit``, a whole number from
    1 to :data:`~django_jobs.store.calls.TASK_RUNS_KEPT`. The in-memory store checks them
    alike."""
    if not isinstance(task_name, str) or not task_name:
        raise ValueError(f"task_runs() takes a task's name, not {task_name!r}.")
    return rules.integer(limit, "limit", minimum=1, maximum=TASK_RUNS_KEPT)


def _latest(limits: list[LimitInfo]) -> list[LimitInfo]:
    """The :data:`LIMITS_SHOWN` limits used latest, the latest first (of several shards)."""
    return sorted(limits, key=lambda limit: limit.last_used, reverse=True)[:LIMITS_SHOWN]


class JobBrowser(Namespace):
    """Looking at the jobs of one namespace (key prefix) in Redis; see
    :class:`~django_jobs.queue.JobQueue`, which adds everything that changes them."""

    @property
    def queues(self) -> list[str]:
        """The configured queue names (``DJANGO_JOBS['QUEUES']``)."""
        return list(jobs_settings.QUEUES)

    # -- plans --------------------------------------------------------------------------------

    def _page(
        self,
        status: JobStatus | str | None = None,
        *,
        queue: str | None = None,
        name: str | None = None,
        user_id: str | int | None = None,
        cursor: int = 0,
        limit: int = 50,
    ) -> Plan[Page]:
        """A page of the jobs in one state, or of one user, from position ``cursor`` on.

        By state: PENDING in the order workers take them: the highest priority first, and
        within one each queue in turn (``QUEUES``' order), the jobs a rate or concurrency limit
        holds back (parked: :attr:`Job.waiting_on` names the limit; per limit, the list a claim
        looks at soonest first, FIFO within one) before the ready jobs (FIFO); then the delayed
        jobs by due time. The parked jobs of the first :data:`PARKED_LISTS` waiting lists only
        are listed (``Page.parked_unread`` counts the lists left out). RETRYING by due time; RUNNING
        by lease deadline; FAILED (the dead letters), COMPLETED and CANCELLED newest first.
        With ``user_id`` the jobs enqueued with it, newest first, of every state or of
        ``status`` if given. ``queue`` and ``name`` keep the jobs of that queue and name.

        Unfiltered, a page is read by rank and ``cursor`` is a position: the page ``n`` of
        ``limit`` jobs starts at ``cursor=n * limit``. Filtered (by ``name``, a ``status`` of a
        user's jobs, or ``queue`` where the jobs of all queues share a set), a call looks at
        :data:`SCAN_LIMIT` entries at most: a page may come back short, or empty, with a
        ``cursor`` to go on from. ``Page.cursor`` is ``None`` after the last entry.
        """
        state, queue, name, user, cursor, limit = page_arguments(
            status, queue, name, user_id, cursor, limit
        )
        if user is not None:
            shards_sources = [(keys, [("R", keys.user(user))]) for keys in self.all_keys()]
        else:
            assert state is not None
            shards_sources = [
                (keys, state_sources(keys, state, queues, parked=True))
                for keys, queues in spread.queues_by_keys(self, [queue] if queue else self.queues)
            ]
        # With SHARDS the shards' structures are paged as if end to end (the default shard's
        # first): a cursor is a position in that concatenation. Each shard is asked once, for
        # its size at least (the total), so a page costs a round trip per shard.
        jobs: list[Job] = []
        total = scanned = unread = 0
        next_cursor: int | None = None
        for keys, sources in shards_sources:
            offset = total
            found, end, size, looked, left_out = yield from console_calls.page(
                keys,
                sources=sources,
                cursor=max(cursor - offset, 0),
                limit=max(limit - len(jobs), 1),
                scan_limit=SCAN_LIMIT,
                parked_lists=PARKED_LISTS,
                queue=queue,
                name=name,
                status=state.value if user is not None and state else "",
            )
            total += size
            unread += left_out
            if next_cursor is not None or size == 0 or cursor - offset >= size:
                continue  # the page ended before this shard, or starts after it, or it is empty
            if len(jobs) >= limit:
                next_cursor = max(cursor, offset)  # the page was full at the shard before
                continue
            jobs += found[: limit - len(jobs)]
            scanned += looked
            if end is not None:
                next_cursor = offset + end
        return Page(jobs, next_cursor, total, scanned, unread)

    def _list_jobs(
        self,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 100,
        name: str | None = None,
    ) -> Plan[list[Job]]:
        """The jobs of :meth:`page` ``(status, queue=queue, name=name, cursor=offset,
        limit=limit)``. Filtered by ``name`` (or by ``queue`` for a state other than PENDING)
        the list may come back short, or empty, before the end: :meth:`page` says where to go
        on from."""
        found = yield from self._page(status, queue=queue, name=name, cursor=offset, limit=limit)
        return found.jobs

    def _jobs_for_user(
        self, user_id: str | int, *, offset: int = 0, limit: int = 100
    ) -> Plan[list[Job]]:
        """A page of the jobs enqueued with ``user_id``, newest first (kept ``JOB_TTL``)."""
        found = yield from self._page(user_id=user_id, cursor=offset, limit=limit)
        return found.jobs

    def _task_runs(self, task_name: str, limit: int = 20) -> Plan[list[Job]]:
        """The jobs the schedulers enqueued for the latest runs of periodic task
        ``task_name``, newest first (the latest 50 are indexed); jobs whose records expired
        are left out. Each carries ``meta["scheduled_task"]``, the task's name."""
        limit = task_runs_arguments(task_name, limit)
        # A task's runs are indexed on the shard of its job's queue: the newest of each shard.
        jobs: list[Job] = []
        for keys in self.all_keys():
            found, *_ = yield from console_calls.page(
                keys,
                sources=[("R", keys.task_runs(task_name))],
                cursor=0,
                limit=limit,
                scan_limit=limit,
            )
            jobs += found
        jobs.sort(key=lambda job: job.created_at.timestamp() if job.created_at else 0.0)
        jobs.reverse()
        return jobs[:limit]

    def _stats(self) -> Plan[dict[str, Any]]:
        """Counts of jobs: ready ones per queue and priority, all per state, and counters; the
        age of the oldest ready job of each list; the workers; the queues whose ready jobs
        no live worker serves; and the rate and concurrency limits. One round trip.

        ``{"queues": {"default": {"critical": 0, "high": 2, ...}}, "states": {"pending": 2,
        "scheduled": 0, "limited": 0, "retrying": 0, "running": 1, "failed": 0, "completed": 9,
        "cancelled": 0, "waiting": 0}, "counters": {"stale_acks": 0, "recovered": 0}, "workers":
        {"live": 1, "dead": 0}, "unserved": {"emails": 3}, "oldest": {"default": {"critical":
        None, "high": 12.5, ...}}, "limits": [{"kind": "rate", "key": "api", "tokens": 3.5,
        "running": None, "size": 10, "per": 1.0, "waiting": 0, "last_used": "2026-..."}]}``;
        ``pending`` counts ready, delayed and limited jobs, ``scheduled`` the delayed ones
        among them and ``limited`` those a rate or concurrency limit holds back (on the
        first :data:`PARKED_LISTS` waiting lists per shard, those a page of pending jobs
        lists); ``waiting`` the steps of chains and groups waiting for the steps
        before them. ``workers`` counts as :meth:`workers` lists. ``unserved`` maps each
        queue that has ready jobs while no live worker serves it to their number: they wait
        until a worker that serves the queue starts. ``oldest`` gives, per queue and
        priority, the seconds the job at the head of the list has waited since it became ready
        (since it was enqueued, or was due if it was delayed); ``None`` for an empty list.
        ``limits`` lists :meth:`limits` as dicts (:meth:`LimitInfo.to_dict`).
        """
        queues = self.queues
        now = utcnow().timestamp()
        lists, counts = yield from self._counts(queues, now)
        per_queue: dict[str, dict[str, int]] = {q: {} for q in queues}
        oldest: dict[str, dict[str, float | None]] = {q: {} for q in queues}
        for key, length, head in zip(lists, counts.lengths, counts.heads, strict=True):
            queue, priority = key.rsplit(":", 2)[1:]
            level = JobPriority(int(priority)).name.lower()
            per_queue[queue][level] = length
            ready_since = max((t for t in head or () if t is not None), default=None)
            oldest[queue][level] = None if ready_since is None else max(now - ready_since, 0.0)
        scheduled, retrying, running, failed, completed, cancelled, waiting = counts.states
        limited = counts.parked
        live = [w for w in counts.workers if w.alive]
        served = {q for w in live for q in w.queues}
        ready = {q: sum(levels.values()) for q, levels in per_queue.items()}
        return {
            "queues": per_queue,
            "states": {
                "pending": sum(counts.lengths) + scheduled + limited,
                "scheduled": scheduled,
                "limited": limited,
                "retrying": retrying,
                "running": running,
                "failed": failed,
                "completed": completed,
                "cancelled": cancelled,
                "waiting": waiting,
            },
            "counters": {"stale_acks": 0, "recovered": 0, **counts.counters},
            "workers": {"live": len(live), "dead": len(counts.workers) - len(live)},
            "unserved": {q: n for q, n in ready.items() if n and q not in served},
            "oldest": oldest,
            "limits": [limit.to_dict() for limit in counts.limits],
        }

    def _counts(self, queues: list[str], now: float) -> Plan[tuple[list[str], Counts]]:
        """The ready lists of ``queues`` and their counts, one stats call per shard added up
        (the workers are the default shard's: the other shards' stats read an empty index)."""
        by_shard = dict(spread.queues_by_keys(self, queues))
        by_shard.setdefault(self.keys, [])
        lists: list[str] = []
        parts: list[Counts] = []
        for keys, shard_queues in by_shard.items():
            lists += keys.queues_high_first(shard_queues)
            parts.append(
                (
                    yield from console_calls.stats(
                        keys,
                        lists=keys.queues_high_first(shard_queues),
                        keep_since=now - int(jobs_settings.JOB_TTL),
                        workers_since=now - DEAD_WORKERS_KEPT,
                        now=now,
                        limits_count=LIMITS_SHOWN,
                        parked_lists=PARKED_LISTS,
                    )
                )
            )
        if len(parts) == 1:
            return lists, parts[0]
        return lists, Counts(
            lengths=[n for part in parts for n in part.lengths],
            states=[sum(column) for column in zip(*(part.states for part in parts), strict=True)],
            counters=spread.merged_counts([part.counters for part in parts]),
            heads=[head for part in parts for head in part.heads],
            workers=[worker for part in parts for worker in part.workers],
            limits=_latest([limit for part in parts for limit in part.limits]),
            parked=sum(part.parked for part in parts),
        )

    def _limits(self) -> Plan[list[LimitInfo]]:
        """The rate and concurrency limits (:mod:`django_jobs.flow`) used in the last day, the
        latest used first, :data:`LIMITS_SHOWN` at most: each one's tokens or running jobs, its
        size, and how many jobs wait on it (see :class:`LimitInfo`). A limit on which jobs wait
        stays listed however long ago it was used. One round trip, no scan."""
        now = utcnow().timestamp()
        found: list[LimitInfo] = []
        for keys in self.all_keys():
            found += yield from console_calls.limits(keys, now=now, count=LIMITS_SHOWN)
        return _latest(found)

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
        totals: dict[int, list[int]] = {}
        for keys in self.all_keys():  # the scripts of each shard count its own attempts
            for start, *counts in (
                yield from worker_calls.throughput(keys, last=last, count=minutes)
            ):
                added = totals.setdefault(start, [0, 0, 0])
                added[:] = [a + b for a, b in zip(added, counts, strict=True)]
        return [
            {"minute": from_timestamp(start), "completed": done, "failed": failed, "dead": dead}
            for start, (done, failed, dead) in sorted(totals.items())
        ]

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    # In a testing MODE the in-process store answers each of them (django_jobs.routing).
    page, apage = routed(_page)
    list_jobs, alist_jobs = routed(_list_jobs)
    jobs_for_user, ajobs_for_user = routed(_jobs_for_user)
    task_runs, atask_runs = routed(_task_runs)
    stats, astats = routed(_stats)
    workers, aworkers = routed(_workers)
    throughput, athroughput = routed(_throughput)
    limits, alimits = routed(_limits)
