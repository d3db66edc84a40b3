"""What operators do to many jobs at once: requeue dead letters, purge the jobs of a state,
delete jobs for good. :class:`JobUpkeep` sits between the read side
(:class:`~django_jobs.browse.JobBrowser`) and :class:`~django_jobs.queue.JobQueue`, which users
call; each operation is a plan run with the sync client and, ``a``-prefixed, the asyncio one.

The bulk ``requeue_dead()`` and ``purge()`` make one round trip per bounded batch, so that no
script holds Redis up for long; ``delete_jobs()`` makes one per shard. In a testing ``MODE``
the in-process store of :mod:`django_jobs.testing` answers them instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django_jobs import rules, spread, validation
from django_jobs.browse import JobBrowser, state_sources
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import JobIsRunning
from django_jobs.job import Job, JobStatus
from django_jobs.routing import routed
from django_jobs.serialization import utcnow
from django_jobs.store import calls, console_calls, worker_calls
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys


@dataclass(frozen=True)
class RequeueOutcome:
    """What a requeue of dead letters did (:meth:`JobUpkeep.requeue_dead_outcome`)."""

    #: The ids requeued, in order.
    requeued: list[str]
    #: The dead jobs left as they are because another live job holds their unique key:
    #: ``{id: the holder's id}``.
    held: dict[str, str]


def purge_arguments(
    status: JobStatus | str,
    queue: str | None,
    name: str | None,
    older_than: float | timedelta | None,
) -> tuple[JobStatus, str, str, float | None]:
    """The arguments of :meth:`JobUpkeep.purge` checked: (state, queue or ``""``, name filter,
    ``older_than`` in seconds or ``None``). The in-memory store checks them alike."""
    state = validation.stored_status(status)
    if state is JobStatus.RUNNING:
        raise ValueError(
            "Running jobs cannot be purged: cancel running jobs first (cancel_job()), then "
            "purge them as cancelled."
        )
    name = validation.name_filter(name)
    queue = "" if queue is None else validation.queue_name(queue)
    if older_than is None:
        return state, queue, name, None
    if not state.is_finished:
        raise ValueError(
            f"older_than applies to finished jobs (completed, failed, cancelled), not to "
            f"{state.value} ones."
        )
    seconds = rules.seconds(older_than, "older_than")
    if seconds < 0:
        raise rules.refused("older_than", "0 seconds or more", older_than)
    return state, queue, name, seconds


def running_refused(running: list[str]) -> JobIsRunning:
    """The error of a :meth:`JobUpkeep.delete_jobs` refused because of the ``running`` jobs."""
    return JobIsRunning(
        f"Cannot delete running job{'s' if len(running) > 1 else ''} {', '.join(running)}: "
        "cancel it first (cancel_job()), then delete it once it is cancelled. Nothing was "
        "deleted."
    )


class JobUpkeep(JobBrowser):
    """Requeue, purge and delete: the base of :class:`~django_jobs.queue.JobQueue`."""

    def _requeue_dead_outcome(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        name: str | None = None,
        limit: int = 0,
        batch: int = 1000,
    ) -> Plan[RequeueOutcome]:
        """Move dead-letter jobs back to the tail of their lists with a fresh retry budget, as
        :meth:`requeue_dead` does; returns the ids requeued and, apart, the jobs left in the
        dead letters because another live job holds their unique key, with that job's id."""
        if job_ids is not None:
            ids = validation.ids(job_ids, "requeue_dead()")
            if not ids:
                return RequeueOutcome([], {})
            replies = yield from spread.by_id(
                self,
                ids,
                lambda keys, part: calls.requeue(keys, ids=part),
                lambda reply: [*reply[0], *reply[2]],
            )
            return RequeueOutcome(
                [job_id for done, _, _ in replies for job_id in done],
                {job_id: holder for _, _, held in replies for job_id, holder in held.items()},
            )
        name = validation.name_filter(name)
        limit = rules.integer(limit, "limit", minimum=0)
        batch = rules.integer(batch, "batch", minimum=1)
        outcome = RequeueOutcome([], {})
        for keys in self.all_keys():
            start: int | None = 0
            while start is not None and (not limit or len(outcome.requeued) < limit):
                want = batch if not limit else min(batch, limit - len(outcome.requeued))
                # The jobs a held key keeps in the dead letters keep their ranks: ``start``
                # goes on after them.
                done, start, held = yield from calls.requeue(
                    keys, ids=[], start=start, scan=batch, limit=want, name=name
                )
                outcome.requeued.extend(done)
                outcome.held.update(held)
        return outcome

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

        A job with a unique key takes it again, as its enqueue did; one whose key another live
        job holds stays in the dead letters as it is (:meth:`requeue_dead_outcome` says which
        job holds it).
        """
        outcome = yield from self._requeue_dead_outcome(
            job_ids, name=name, limit=limit, batch=batch
        )
        return outcome.requeued

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
        state, queue, name, seconds = purge_arguments(status, queue, name, older_than)
        batch = rules.integer(batch, "batch", minimum=1)
        max_score = None if seconds is None else utcnow().timestamp() - seconds
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
            raise running_refused(running)
        return deleted

    def _delete_job(self, job_id: str) -> Plan[Job | None]:
        """Delete one job (see :meth:`delete_jobs`): the job as it was, or ``None`` if there
        was none. A running job raises :class:`~django_jobs.exceptions.JobIsRunning`."""
        deleted = yield from self._delete_jobs([validation.job_id(job_id, "delete_job()")])
        return deleted[0] if deleted else None

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    # In a testing MODE the in-process store answers each of them (django_jobs.routing).
    requeue_dead, arequeue_dead = routed(_requeue_dead)
    requeue_dead_outcome, arequeue_dead_outcome = routed(_requeue_dead_outcome)
    purge, apurge = routed(_purge)
    delete_jobs, adelete_jobs = routed(_delete_jobs)
    delete_job, adelete_job = routed(_delete_job)
