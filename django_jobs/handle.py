"""The handle ``.delay()`` returns: the job's id, its status, and a way to wait for it."""

from __future__ import annotations

import enum
from typing import Any

from django_jobs.exceptions import JobCancelled, JobFailed, JobNotFound
from django_jobs.job import Job, JobStatus
from django_jobs.queue import JobQueue


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


class JobHandle:
    """A job that was enqueued (or will be, when the surrounding transaction commits).

    ``status`` and ``job`` are what was last read; :meth:`refresh` reads them again.
    """

    def __init__(self, job: Job, queue: JobQueue) -> None:
        self.id = job.id
        self.job = job
        self.queue = queue

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.job.name} {self.status.value}>"

    @classmethod
    def from_id(cls, job_id: str, queue: JobQueue | None = None) -> JobHandle:
        """The handle of a stored job, e.g. in a status view that got the id from a URL.

        Raises :class:`JobNotFound` if there is no such job (or it expired).
        """
        queue = queue or JobQueue()
        return cls._found(job_id, queue.get_job(job_id), queue)

    @classmethod
    async def afrom_id(cls, job_id: str, queue: JobQueue | None = None) -> JobHandle:
        queue = queue or JobQueue()
        return cls._found(job_id, await queue.aget_job(job_id), queue)

    @classmethod
    def _found(cls, job_id: str, job: Job | None, queue: JobQueue) -> JobHandle:
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
        return cls(job, queue)

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def refresh(self) -> JobHandle:
        """Read the job again; raise :class:`JobNotFound` if it is not (or no longer) there."""
        return self._update(self.queue.get_job(self.id))

    async def arefresh(self) -> JobHandle:
        return self._update(await self.queue.aget_job(self.id))

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job finished (``timeout`` seconds at most) and return its result.

        Raises :class:`JobFailed` (with the remote error and traceback) when it ended in the
        dead-letter queue, :class:`JobCancelled` when it was cancelled and ``TimeoutError``
        when the wait ran out. It blocks on a notification from Redis, not a polling loop.
        """
        return self._outcome(self.queue.wait_for(self.id, timeout))

    async def aresult(self, timeout: float | None = None) -> Any:
        return self._outcome(await self.queue.await_for(self.id, timeout))

    def cancel(self) -> Cancellation:
        """Cancel the job: at once if it has not started, by its worker if it is running.

        Returns :attr:`Cancellation.CANCELLED` (cancelled now) or
        :attr:`~Cancellation.REQUESTED` (running: its worker stops it), both true, or
        :attr:`~Cancellation.FINISHED` (it had already finished) or
        :attr:`~Cancellation.MISSING`, both false. The values are strings:
        ``handle.cancel() == "requested"``.
        """
        return Cancellation.of(self.queue.cancel_job(self.id))

    async def acancel(self) -> Cancellation:
        return Cancellation.of(await self.queue.acancel_job(self.id))

    def _update(self, job: Job | None) -> JobHandle:
        if job is None:
            raise JobNotFound(f"There is no job {self.id!r} (unknown, or expired).")
        self.job = job
        return self

    def _outcome(self, job: Job) -> Any:
        self.job = job
        if job.status is JobStatus.FAILED:
            raise JobFailed(job)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(job)
        return job.result
