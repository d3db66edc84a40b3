"""Transactional enqueue: a job made inside ``transaction.atomic()`` exists if and only if the
transaction commits, even when Redis does not answer at that moment.

``.delay()`` inside a transaction writes the job to the ``OutboxJob`` table in that transaction,
next to the caller's data. Right after the commit it is moved to Redis (the fast path); if Redis
does not answer then, the row stays, and every worker moves waiting rows to Redis every few
seconds (:func:`move_waiting`). Moving is idempotent: the job id is made before anything is
written, and enqueueing an id that exists in Redis changes nothing, so a job moved twice (the
fast path and a worker at once, or a row whose deletion failed) is still one job. A rollback
leaves no row, so no job.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import QuerySet

from django_jobs.exceptions import StoreError
from django_jobs.job import Job
from django_jobs.serialization import dumps, utcnow
from django_jobs.store.errors import refuses_every_call, trouble

if TYPE_CHECKING:
    from django_jobs.queue import JobQueue

logger = logging.getLogger("django_jobs.outbox")

# A row younger than this is left to the fast path (its commit may be under way right now).
SWEEP_AFTER = 5.0
# How many rows one sweep moves at most.
SWEEP_LIMIT = 500
# The key of an outbox row that holds a whole chain or group rather than one job.
WORKFLOW = "workflow"
# When sweep() last said that the database could not be read, and that Redis refused rows
# (time.monotonic()).
_database_warned = -60.0
_refusal_warned = -60.0


def _rows(using: str) -> QuerySet[Any]:
    # Looked up, not imported: the models module imports the scheduler, which imports the
    # registry, which imports this module.
    return apps.get_model("django_jobs", "OutboxJob").objects.using(using)


@dataclass
class Deferred:
    """A job in the outbox, waiting for the commit of the transaction that made it."""

    job: Job
    jobs: JobQueue
    using: str
    # Set by JobHandle.cancel() before the commit: the commit then moves nothing.
    cancelled: bool = False

    def waiting(self) -> bool:
        """Whether the job is still in the outbox, as this connection sees it: inside the
        transaction that made it, before the commit (or after, while Redis did not answer)."""
        return _rows(self.using).filter(job_id=self.job.id).exists()

    def in_transaction(self) -> bool:
        """Whether the caller is still inside a transaction (so the job cannot run yet)."""
        return transaction.get_connection(self.using).in_atomic_block

    def cancel(self) -> None:
        """Take the job out of the outbox: it never exists, whether the transaction commits
        or not."""
        self.cancelled = True
        _rows(self.using).filter(job_id=self.job.id).delete()


def enqueue_on_commit(jobs: JobQueue, job: Job, using: str) -> Deferred:
    """Write ``job`` to the outbox in the current transaction of database ``using``, and move
    it to Redis once that transaction commits."""
    _rows(using).create(
        job_id=job.id, prefix=jobs.prefix, record=job.to_json(), created=utcnow().timestamp()
    )
    deferred = Deferred(job, jobs, using)
    transaction.on_commit(lambda: _move_committed(deferred), using=using)
    return deferred


def enqueue_flow_on_commit(
    jobs: JobQueue, steps: list[Job], groups: list[dict[str, Any]], using: str
) -> None:
    """Write a whole chain or group (:mod:`django_jobs.workflow`) to the outbox, one row, in
    the current transaction of database ``using``, and store it in Redis in one call once that
    transaction commits (or, when Redis does not answer then, a worker's sweep does)."""
    row_id = steps[0].id
    record = dumps({WORKFLOW: {"jobs": [job.to_dict() for job in steps], "groups": groups}})
    _rows(using).create(
        job_id=row_id, prefix=jobs.prefix, record=record, created=utcnow().timestamp()
    )

    def move() -> None:
        try:
            jobs.enqueue_flow(steps, groups)
        except StoreError as exc:
            _left_in_outbox(f"workflow {row_id}", exc)
            return
        _forget(using, [row_id])

    transaction.on_commit(move, using=using)


def _move_committed(deferred: Deferred) -> None:

    job = deferred.job
    if deferred.cancelled:
        return
    try:
        deferred.jobs.enqueue_many([job])
    except StoreError as exc:
        _left_in_outbox(f"job {job.id} {job.name}", exc)
        return
    _forget(deferred.using, [job.id])


def _left_in_outbox(what: str, exc: StoreError) -> None:
    """Say that ``what`` was committed but not stored in Redis, and why (:func:`trouble`: it
    does not answer, or it refused the call, a key of the wrong type say)."""
    logger.warning(
        "%s: committed, but not stored in Redis (%s); it waits in the outbox and a worker "
        "moves it to Redis once Redis takes it",
        what,
        trouble(exc),
    )


def _forget(using: str, job_ids: list[str]) -> None:
    """Delete the rows of jobs that are in Redis now.

    Their deletion need not survive a crash: a row left behind is moved again, which changes
    nothing. So on PostgreSQL its commit does not wait for the disk (``synchronous_commit``
    off for this transaction only), which halves what a ``.delay()`` in a transaction costs.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        _rows(using).filter(job_id__in=job_ids).delete()
        return
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        _rows(using).filter(job_id__in=job_ids).delete()


def move_waiting(using: str, *, older_than: float = SWEEP_AFTER, limit: int = SWEEP_LIMIT) -> int:
    """Move the outbox rows of database ``using`` committed more than ``older_than`` seconds
    ago to Redis, and delete them; return how many were moved. Safe to run from many processes
    at once. A row that cannot be read is logged and left in place."""
    from django_jobs.queue import JobQueue

    rows = _rows(using).filter(created__lte=utcnow().timestamp() - older_than)
    by_prefix: dict[str, list[Job]] = defaultdict(list)
    refused: list[tuple[str, StoreError]] = []
    moved = 0
    for row in rows.order_by("created")[:limit]:
        try:
            if row.record.startswith(f'{{"{WORKFLOW}"'):
                moved += _move_flow(row, using)
            else:
                by_prefix[row.prefix].append(Job.from_json(row.record))
        except StoreError as exc:
            if refuses_every_call(exc):
                raise
            refused.append((f"workflow {row.job_id}", exc))
        except Exception:
            logger.exception("outbox row %s cannot be read or moved; left in place", row.job_id)
    for prefix, batch in by_prefix.items():
        moved += _move_jobs(JobQueue(prefix=prefix), batch, using, refused)
    _warn_refused(refused)
    return moved


def _move_jobs(
    queue: JobQueue, batch: list[Job], using: str, refused: list[tuple[str, StoreError]]
) -> int:
    """Store ``batch`` in Redis and delete its rows; return how many were moved. When Redis
    refuses a call (a key of one queue of the wrong type, say) the jobs go one by one, so that
    one broken queue holds up only its own jobs, whose rows stay (added to ``refused``)."""
    try:
        queue.enqueue_many(batch)
    except StoreError as exc:
        if refuses_every_call(exc):
            raise
        stored = []
        for job in batch:
            try:
                queue.enqueue_many([job])
            except StoreError as alone:
                if refuses_every_call(alone):
                    raise
                refused.append((f"job {job.id} {job.name}", alone))
            else:
                stored.append(job)
        batch = stored
    if batch:
        _forget(using, [job.id for job in batch])
    for job in batch:
        logger.info("job %s %s: moved from the outbox to Redis", job.id, job.name)
    return len(batch)


def _warn_refused(refused: list[tuple[str, StoreError]]) -> None:
    """One line a minute at most while Redis refuses rows of the outbox: they stay, and each
    sweep tries them again (a refusal is mended by hand, not by waiting)."""
    global _refusal_warned
    if not refused or time.monotonic() - _refusal_warned < 60:
        return
    _refusal_warned = time.monotonic()
    what, exc = refused[0]
    logger.warning(
        "%d outbox row%s committed but refused by Redis, left in place and tried again at "
        "each sweep; the first, %s: %s",
        len(refused),
        "" if len(refused) == 1 else "s",
        what,
        trouble(exc),
    )


def _move_flow(row: Any, using: str) -> int:
    """Store the chain or group of an outbox row in Redis (again, if it was stored already:
    storing a workflow is idempotent on its ids) and delete the row; return its job count."""
    from django_jobs.queue import JobQueue

    flow = json.loads(row.record)[WORKFLOW]
    steps = [Job.from_dict(data) for data in flow["jobs"]]
    JobQueue(prefix=row.prefix).enqueue_flow(steps, flow["groups"])
    _forget(using, [row.job_id])
    logger.info("workflow %s: moved from the outbox to Redis", row.job_id)
    return len(steps)


def sweep() -> int:
    """:func:`move_waiting` for the default database (where ``.delay()`` writes), from a
    worker's thread. The thread's database connection is closed afterwards: none is held
    between sweeps, nor inherited by a process the worker forks meanwhile."""
    global _database_warned
    try:
        return move_waiting(DEFAULT_DB_ALIAS)
    except DatabaseError as exc:
        # An outage, or migrations not run: one line a minute, not a traceback every 5 s.
        if time.monotonic() - _database_warned >= 60:
            _database_warned = time.monotonic()
            logger.warning(
                "the outbox cannot be read (%s): jobs committed while Redis did not answer "
                "wait there until it can (has `manage.py migrate` run?)",
                exc,
            )
        return 0
    finally:
        connections[DEFAULT_DB_ALIAS].close()
