"""The handle ``.delay()`` returns: the job's id, its status, and a way to wait for it."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any, Generic, Protocol, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db.transaction import TransactionManagementError

from django_jobs.exceptions import JobCancelled, JobFailed, JobNotFound
from django_jobs.job import Job, JobStatus
from django_jobs.progress import Progress
from django_jobs.queue import JobQueue


class Deferred(Protocol):
    """A job waiting in the outbox for its transaction's commit (``outbox.Deferred``)."""

    def waiting(self) -> bool: ...

    def in_transaction(self) -> bool: ...

    def cancel(self) -> None: ...


# How often a handle looks whether its job left the outbox (Redis did not answer at the commit).
OUTBOX_RECHECK = 0.5

#: What the job returns (for an ``async def`` job, what its coroutine returns): the type of
#: :meth:`JobHandle.result`. Covariant: a ``JobHandle[bool]`` is a ``JobHandle[int]``.
R = TypeVar("R", covariant=True)


class Cancellation(enum.StrEnum):
    """What :meth:`JobHandle.cancel` did; true when the job is, or is about to be, cancelled
    (so ``if handle.cancel():`` reads as it did when ``cancel()`` returned a bool)."""

    #: It had not started (or was cancelled before): it is CANCELLED now.
    CANCELLED = "cancelled"
    #: It is running: cancellation is requested, and its worker stops it within seconds.
    REQUESTED = "requested"
    #: It had already completed or failed: it was left alone. False.
    FINISHED = "finished"
    #: There is no such job (unknown, or expired). False.
    MISSING = "missing"

    def __bool__(self) -> bool:
        return self is Cancellation.CANCELLED or self is Cancellation.REQUESTED

    @classmethod
    def of(cls, reply: str) -> Cancellation:
        """The cancellation that :meth:`JobQueue.cancel_job`'s ``reply`` tells of."""
        try:
            return cls(reply)
        except ValueError:
            return cls.FINISHED  # the reply is the status it finished with


class JobHandle(Generic[R]):
    """A job that was enqueued (or will be, when the surrounding transaction commits).

    ``status`` and ``job`` are what was last read; :meth:`refresh` reads them again. A job
    made inside ``transaction.atomic()`` is WAITING_FOR_COMMIT until it reaches Redis.

    Generic in what the job returns: ``send_welcome.delay(pk)`` of a job declared
    ``-> str`` is a ``JobHandle[str]``, whose :meth:`result` type checkers know to be a
    ``str``; a handle found by id (:meth:`from_id`) is a ``JobHandle[Any]``.

    ``created`` says whether the call that made this handle created the job: ``False`` when a
    unique job's key was held by another job, which this handle then follows; ``None`` when
    it is not known yet (inside a transaction: the job is enqueued at commit, as a duplicate
    dropped then) or not asked (a handle found by id).
    """

    def __init__(
        self,
        job: Job,
        queue: JobQueue,
        *,
        deferred: Deferred | None = None,
        created: bool | None = None,
    ) -> None:
        self.id = job.id
        self.queue = queue
        self.deferred = deferred
        self.created = created
        if deferred is not None:  # a copy: the job itself is written to Redis as PENDING
            job = dataclasses.replace(job, status=JobStatus.WAITING_FOR_COMMIT)
        self.job = job

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.job.name} {self.status.value}>"

    @classmethod
    def from_id(cls, job_id: str, queue: JobQueue | None = None) -> JobHandle[Any]:
        """The handle of a stored job, e.g. in a status view that got the id from a URL.

        Raises :class:`JobNotFound` if there is no such job (or it expired).
        """
        queue = queue or JobQueue()
        return cls._found(job_id, queue.get_job(job_id), queue)

    @classmethod
    async def afrom_id(cls, job_id: str, queue: JobQueue | None = None) -> JobHandle[Any]:
        queue = queue or JobQueue()
        return cls._found(job_id, await queue.aget_job(job_id), queue)

    @classmethod
    def _found(cls, job_id: str, job: Job | None, queue: JobQueue) -> JobHandle[Any]:
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
        return cls(job, queue)

    @property
    def status(self) -> JobStatus:
        return self.job.status

    @property
    def progress(self) -> Progress | None:
        """How far the job is, as its current (or last) attempt last reported it
        (``current``, ``total``, ``message``, ``fraction``, ``percent``, ``at``); ``None``
        until it reports. As last read, as :attr:`status`: :meth:`refresh` reads it again."""
        return self.job.progress

    def refresh(self) -> JobHandle[R]:
        """Read the job again; raise :class:`JobNotFound` if it is not (or no longer) there.

        A job still in the outbox (before the commit, or after it while Redis did not answer)
        stays WAITING_FOR_COMMIT; after a rollback there is no job.
        """
        if self.deferred is not None and self.deferred.waiting():
            return self
        return self._update(self.queue.get_job(self.id))

    async def arefresh(self) -> JobHandle[R]:
        if self.deferred is not None and await sync_to_async(self.deferred.waiting)():
            return self
        return self._update(await self.queue.aget_job(self.id))

    def result(self, timeout: float | None = None) -> R:
        """Wait until the job finished (``timeout`` seconds at most) and return its result.

        Raises :class:`JobFailed` (with the remote error and traceback) when it ended in the
        dead-letter queue, :class:`JobCancelled` when it was cancelled and ``TimeoutError``
        when the wait ran out. It blocks on a notification from Redis, not a polling loop.

        A job made inside ``transaction.atomic()`` runs after the commit: waiting for it inside
        that transaction raises ``TransactionManagementError`` rather than wait for ever.
        """
        if self.deferred is not None:
            timeout = self._until_in_redis(timeout)
        return self._outcome(self.queue.wait_for(self.id, timeout))

    async def aresult(self, timeout: float | None = None) -> R:
        if self.deferred is not None:
            timeout = await sync_to_async(self._until_in_redis)(timeout)
        return self._outcome(await self.queue.await_for(self.id, timeout))

    def _until_in_redis(self, timeout: float | None) -> float | None:
        """Wait while the job is in the outbox; return what is left of ``timeout``."""
        assert self.deferred is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.deferred.waiting():
            if self.deferred.in_transaction():
                raise TransactionManagementError(
                    f"Job {self.id} runs only after the commit of the transaction that made it: "
                    "wait for its result outside that transaction (in a TestCase, whose "
                    "transaction never commits, make the job under "
                    "captureOnCommitCallbacks(execute=True))."
                )
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"Job {self.id} is still in the outbox after {timeout} s: Redis did not "
                    "answer at the commit, and no worker has moved it yet."
                )
            time.sleep(OUTBOX_RECHECK if left is None else min(OUTBOX_RECHECK, left))
        self.deferred = None  # in Redis now (or rolled back: wait_for says JobNotFound)
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def cancel(self) -> Cancellation:
        """Cancel the job: at once if it has not started, by its worker if it is running.

        Returns :attr:`Cancellation.CANCELLED` (cancelled now) or
        :attr:`~Cancellation.REQUESTED` (running: its worker stops it), both true, or
        :attr:`~Cancellation.FINISHED` (it had already finished) or
        :attr:`~Cancellation.MISSING`, both false. The values are strings:
        ``handle.cancel() == "requested"``.

        A job still in the outbox (see :meth:`refresh`) is taken out of it: CANCELLED, it never
        reaches Redis.
        """
        if self.deferred is not None and self.deferred.waiting():
            self.deferred.cancel()
            return Cancellation.CANCELLED
        return Cancellation.of(self.queue.cancel_job(self.id))

    async def acancel(self) -> Cancellation:
        if self.deferred is not None and await sync_to_async(self.deferred.waiting)():
            await sync_to_async(self.deferred.cancel)()
            return Cancellation.CANCELLED
        return Cancellation.of(await self.queue.acancel_job(self.id))

    def _update(self, job: Job | None) -> JobHandle[R]:
        if job is None:
            raise JobNotFound(f"There is no job {self.id!r} (unknown, or expired).")
        self.job, self.deferred = job, None
        return self

    def _outcome(self, job: Job) -> R:
        self.job = job
        if job.status is JobStatus.FAILED:
            raise JobFailed(job)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(job)
        # What the job returned, read back from JSON (a worker refuses a value JSON changes).
        return cast(R, job.result)
