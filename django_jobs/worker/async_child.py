"""Async jobs side by side in one child process, on its event loop.

When a child claims an ``async def`` job it runs it as a task on its event loop and goes on
claiming, up to ``--async-concurrency`` jobs at once. Each job has a slot of its own in the
child's shared memory (``slots.py``), so the supervisor renews its lease with all the others;
each has its own timeout, enforced here (the job's task is cancelled and the attempt recorded as
a timed-out failure, retried as any), and is stopped here when the supervisor says it was
cancelled or its lease was lost. Only a job that will not stop (it blocks the event loop, or
ignores its cancellation) makes the supervisor kill the process, as it does a sync job.

Strict priority holds, and a sync job never shares the process with async ones: while async jobs
run, a claim takes the next job only if it is one of the registered async jobs
(``execute.async_names``: names read from Redis select among registered code, never more).
When the next job is another kind the claim is *held*: the child takes no more async jobs for a
moment and takes that job once its async jobs are done, unless another process took it first.

The steady state stays one round trip per job: the completion of one job and the claim of the
next are one script call, as for sync jobs. When a claim finds nothing the child tells its
supervisor, which wakes it when a job is enqueued, as it wakes an idle child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from django.dispatch import Signal

from django_jobs import signals
from django_jobs.context import JobContext
from django_jobs.job import Job
from django_jobs.queue import JobQueue
from django_jobs.worker.children import in_thread, record_stop
from django_jobs.worker.execute import (
    Outcome,
    arun_job,
    failure,
    log_completed,
    log_failed,
    log_started,
    notify,
    notify_failed,
)
from django_jobs.worker.leases import Claim, Leases
from django_jobs.worker.retry import WAITED_OUT, auntil_redis_answers
from django_jobs.worker.slots import ASYNC, END, GO, RECORDING, STOP, Board

logger = logging.getLogger("django_jobs.worker")

# How long a child whose claim was held (the next job is a sync one) waits before it claims
# again, if no job of its own finishes meanwhile.
HELD_RETRY = 1.0


@dataclass(eq=False)
class Entry:
    """One async job the child runs."""

    job: Job
    index: int  # its slot
    deadline: float  # loop.time() at which its timeout ends it
    context: JobContext  # what current_job() gives the job: its progress
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    outcome: Outcome | None = None
    # Why it was stopped before it ended ("timeout", "cancel", "lost"), if it was.
    stop_reason: str | None = None


class Child(Protocol):
    """What the async jobs use of their process's loop (:class:`~.child.ChildLoop`)."""

    conn: Connection
    board: Board
    config: Any  # ChildConfig
    jobs: JobQueue
    leases: Leases
    held: bool  # it took no job because its supervisor was silent
    reported: bool  # it said it has room for work, and has had no GO or STOP since

    def report(self, next_due: float | None) -> None: ...
    def reserve(self, wanted: int = 1) -> int: ...
    def unreserve(self, count: int = 1) -> None: ...
    def stopping(self) -> bool: ...
    def taken(self, claim: Claim) -> None: ...


def _listened(*sent: Signal) -> bool:
    return any(signal.receivers for signal in sent)


class AsyncJobs:
    """The async jobs of one child process (:class:`~django_jobs.worker.child.ChildLoop`)."""

    def __init__(self, child: Child, names: Collection[str]) -> None:
        self.child = child
        self.names = names
        self.board = child.board
        self.leases = child.leases
        self.config = child.config
        self.running: dict[int, Entry] = {}  # by slot
        self.starved = False  # its last claim found nothing: it waits for the supervisor's GO
        self.told_to_stop = False
        self.retry: asyncio.TimerHandle | None = None
        self.next_due: float | None = None
        self.signalling: set[asyncio.Task[Any]] = set()

    def is_async(self, job: Job) -> bool:
        return job.name in self.names

    # -- the phase ----------------------------------------------------------------------------

    async def serve(self, first: Job) -> Claim | None:
        """Run ``first`` and the async jobs claimed after it until none is left.

        Returns the claim that ended it: a sync job to run now, or nothing (``Claim(None,
        next_due)``: wait for work); ``None`` when the supervisor said to stop.
        """
        loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.starved = self.told_to_stop = False
        self.next_due = None
        conn = self.child.conn
        loop.add_reader(conn.fileno(), self._on_message)
        try:
            self._start(first)
            self.events.put_nowait(("fill",))  # more of them, while there is room
            while self.running:
                event = await self.events.get()
                try:
                    ended = await self._handle(*event)
                except Exception:
                    logger.exception(
                        "worker %s: handling %s of its async jobs failed; going on",
                        self.config.worker_id,
                        event[0],
                    )
                    ended = None
                if ended is not None:
                    return ended
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(conn.fileno())
            if self.retry is not None:
                self.retry.cancel()
                self.retry = None
            # As a sync job's receivers do, they run before the process goes on (or exits).
            await asyncio.gather(*self.signalling, return_exceptions=True)
        return None if self.told_to_stop else Claim(None, self.next_due)

    async def _handle(self, kind: str, *args: Any) -> Claim | None:
        if kind == "done":
            return await self._finished(args[0])
        if kind == "go":
            self.starved = False
            return await self._fill()
        if kind == "retry":
            self.retry = None
        return await self._fill()

    def _on_message(self, *_: Any) -> None:
        """A message of the supervisor: GO, STOP, or END for one job."""
        try:
            message = self.child.conn.recv_bytes()
        except (EOFError, OSError):  # the supervisor is gone: finish and exit
            asyncio.get_running_loop().remove_reader(self.child.conn.fileno())
            self.told_to_stop = True
            return
        if message == GO:
            self.child.reported = False
            self.events.put_nowait(("go",))
        elif message == STOP:
            self.child.reported = False
            self.told_to_stop = True
        elif message.startswith(END + b" "):
            try:
                reason, job_id, token = message.decode().split(" ")[1:]
                self._end(reason, job_id, token)
            except Exception:
                logger.exception("worker %s: unreadable message %r", self.config.worker_id, message)

    def _end(self, reason: str, job_id: str, token: str) -> None:
        """Stop the async job ``job_id`` of lease ``token`` for ``reason`` (the supervisor asks)."""
        for entry in self.running.values():
            if entry.job.id == job_id and entry.job.lease_token == token:
                if entry.stop_reason is None and entry.task is not None and not entry.task.done():
                    entry.stop_reason = reason
                    entry.task.cancel()
                return

    # -- running ------------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        index = self.board.take(job, ASYNC)
        loop = asyncio.get_running_loop()
        entry = Entry(job, index, loop.time() + float(job.timeout), JobContext(job, self.leases))
        self.running[index] = entry
        log_started(job)
        entry.task = asyncio.create_task(self._run(entry), name=f"django-jobs job {job.id}")

    async def _run(self, entry: Entry) -> None:
        """The job's task: run it within its timeout, then hand it to :meth:`_finished`."""
        limit = asyncio.timeout_at(entry.deadline)
        try:
            async with limit:
                await self._notify(notify, signals.job_started, entry.job, wait=True)
                entry.outcome = await arun_job(entry.job, entry.context)
        except (TimeoutError, asyncio.CancelledError):
            pass  # why it stopped is in stop_reason, or it is the timeout
        except Exception as exc:  # not the job's (arun_job describes those): a failed attempt
            logger.exception("job %s: running it failed", entry.job.id)
            error = f"{type(exc).__qualname__}: {exc}"
            entry.outcome = failure(error, traceback.format_exc(), exception=exc)
        finally:
            if limit.expired() and entry.stop_reason is None:
                entry.stop_reason = "timeout"
            if entry.outcome is None and entry.stop_reason is None:
                entry.stop_reason = "evicted"  # it did not end: back to its queue
            self.events.put_nowait(("done", entry))

    async def _notify(
        self, call: Callable[..., object], signal: Signal, *args: Any, wait: bool, **kw: Any
    ) -> None:
        """Send a signal: inline when nobody listens, else in a thread (receivers are blocking
        code, and Django's ORM refuses to run on an event loop). ``wait``: before going on."""
        sent = (signal, signals.job_dead) if call is notify_failed else (signal,)
        if not _listened(*sent):
            return
        arguments = (signal, *args) if call is notify else args
        if wait:
            await in_thread(call, *arguments, **kw)
            return
        task = asyncio.create_task(in_thread(call, *arguments, **kw))
        self.signalling.add(task)
        task.add_done_callback(self.signalling.discard)

    def _release(self, entry: Entry) -> None:
        self.running.pop(entry.index, None)
        self.board.release(entry.index)

    # -- recording ----------------------------------------------------------------------------

    async def _finished(self, entry: Entry) -> Claim | None:
        """Record how ``entry`` ended and, in the same round trip when it can, claim the next.

        Whatever fails here, the slot is freed: a job whose outcome was not recorded is no
        longer renewed, and lease recovery brings it back.
        """
        self.board[entry.index].set_mode(RECORDING)
        try:
            return await self._record(entry)
        finally:
            if entry.index in self.running and self.running[entry.index] is entry:
                self._release(entry)

    async def _record(self, entry: Entry) -> Claim | None:
        job, seconds = entry.job, time.monotonic() - entry.started
        jobs, leases = self.child.jobs, self.leases
        if entry.stop_reason is not None:
            entry.context.abandon()  # what is recorded of a stopped job does not wait for it
            await record_stop(jobs, leases, entry.stop_reason, job, seconds)
            self._release(entry)
            return await self._fill()
        outcome = entry.outcome
        assert outcome is not None
        # Its last progress, before its outcome (then no longer "running") is recorded.
        await entry.context.afinish()
        if not outcome.ok:
            failed = await auntil_redis_answers(
                lambda: leases.arecord_failure(
                    job, outcome.error, outcome.traceback, retry=outcome.retry
                )
            )
            report = (job, failed, seconds, outcome.error, outcome.traceback, outcome.exception)
            log_failed(*report)
            self._release(entry)
            await self._notify(notify_failed, signals.job_failed, *report, wait=False)
            return await self._fill()
        others = len(self.running) - 1
        claim = None
        wanted = not self.told_to_stop and (not self.starved or others == 0)
        if wanted and self.child.reserve():
            acked, claim = await self._complete_and_claim(job, outcome.result, others > 0)
        else:
            acked = await auntil_redis_answers(lambda: leases.acomplete_job(job, outcome.result))
        log_completed(job, seconds, acked)
        self._release(entry)
        if acked:  # else another worker has the job: nothing was recorded
            await self._notify(
                notify,
                signals.job_succeeded,
                job,
                result=outcome.result,
                seconds=seconds,
                wait=False,
            )
        return self._took(claim) if claim is not None else None

    # -- claiming -----------------------------------------------------------------------------

    def _only(self, some_running: bool) -> Collection[str] | None:
        """While async jobs run, a claim takes only another async job."""
        return self.names if some_running else None

    async def _complete_and_claim(self, job: Job, result: Any, others: bool) -> tuple[bool, Claim]:
        config, leases = self.config, self.leases
        options = leases.claim_options(config.worker_id, config.lease)

        def send(resend: bool) -> Any:
            return leases.acomplete_and_claim(
                job,
                result,
                config.queues,
                config.worker_id,
                config.lease,
                options=options,
                resend=resend,
                only=self._only(others),
            )

        return await auntil_redis_answers(lambda: send(False), again=lambda: send(True))

    async def _claim(self) -> Claim:
        config, leases = self.config, self.leases
        options = leases.claim_options(config.worker_id, config.lease)
        only = self._only(bool(self.running))

        def send(resend: bool) -> Any:
            return leases.aclaim(
                config.queues,
                config.worker_id,
                config.lease,
                options=options,
                resend=resend,
                only=only,
            )

        try:
            return await auntil_redis_answers(
                lambda: send(False), again=lambda: send(True), give_up=self.child.stopping
            )
        except WAITED_OUT:
            return Claim(None, None)  # stopping while Redis does not answer: see child._claim

    async def _fill(self) -> Claim | None:
        """Claim async jobs while there is room; a sync job claimed while none runs is
        returned (it ends the phase)."""
        while (
            len(self.running) < self.board.size
            and not self.starved
            and self.retry is None
            and not self.told_to_stop
        ):
            if not self.child.reserve():
                if self.child.held:  # its supervisor is silent: ask again once it answers
                    self._starve(None)
                return None
            claim = await self._claim()
            ended = self._took(claim)
            if ended is not None or claim.job is None:
                return ended
        return None

    def _took(self, claim: Claim) -> Claim | None:
        """Start the claimed job if it is async; return the claim if it ends the phase."""
        job = claim.job
        if job is None:
            self.child.unreserve()
            if claim.held:
                if self.retry is None and not self.starved:
                    self.retry = asyncio.get_running_loop().call_later(
                        HELD_RETRY, self.events.put_nowait, ("retry",)
                    )
            else:
                self._starve(claim.next_due)
            return None
        if self.starved:
            # There was work after all: there may be more, so fill up again.
            self.starved = False
            self.events.put_nowait(("fill",))
        if self.is_async(job):
            self._start(job)
            return None
        # Only an unrestricted claim, made while no async job runs, gives another kind: it is
        # published (its lease renewed, its timeout watched) as the process goes to run it.
        self.child.taken(claim)
        return claim

    def _starve(self, next_due: float | None) -> None:
        """Nothing to claim: tell the supervisor, which wakes the child when there is."""
        self.starved = True
        self.next_due = next_due
        self.child.report(next_due)
