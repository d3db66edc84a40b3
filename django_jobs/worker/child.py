"""The child side of the worker: a process that claims, runs and records jobs: sync jobs one at
a time, ``async def`` jobs side by side on its event loop (``async_child.py``).

A child talks to Redis itself, so that its steady state is one round trip per job: the
completion of one job and the claim of the next are one script call. Its supervisor watches
from outside. The child publishes the jobs it is running in memory shared with the supervisor
(``slots.py``), which renews the leases, enforces timeouts and stops the child when it must.
When the child finds no work it says so over its pipe and waits: on the wake-up list itself, or
until the supervisor wakes it (``wakeups.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from django_jobs import signals
from django_jobs.job import Job
from django_jobs.queue import JobQueue
from django_jobs.serialization import dumps
from django_jobs.worker.async_child import AsyncJobs
from django_jobs.worker.execute import (
    async_names,
    log_completed,
    log_failed,
    log_finished,
    log_started,
    notify,
    notify_failed,
    report_given_back,
    run_job,
)
from django_jobs.worker.idle import IdleClaims
from django_jobs.worker.leases import Claim, Leases
from django_jobs.worker.retry import WAITED_OUT, until_redis_answers
from django_jobs.worker.slots import ASYNC, GO, STOP, Board
from django_jobs.worker.wakeups import ChildWakeups

logger = logging.getLogger("django_jobs.worker")

# A child takes no job while its supervisor has not beaten its heart (``Worker.heartbeat``,
# about ten times a second) for this long, nor for half a lease: a frozen supervisor (SIGSTOP,
# a debugger, a paused container) renews no lease, so another worker would recover the job
# and run it a second time, and again for the next one. It waits until the supervisor is back.
SUPERVISOR_SILENT = 2.0


@dataclass(frozen=True)
class Shared:
    """Values in memory shared by the supervisor and all its children."""

    stopping: Any  # c_bool: take no more jobs
    taken: Any  # c_longlong with a lock: how many jobs the worker took
    heartbeat: Any  # c_double: the supervisor's time.monotonic() at its last beat

    def beat(self) -> None:
        """The supervisor is alive and answering (its children may take jobs)."""
        self.heartbeat.value = time.monotonic()


# A sync process leases up to BATCH jobs in one call (a call costs it and Redis what several
# trivial jobs do) when the list it takes from is deep and its last job took less than QUICK
# seconds: they run one after the other while they are quick (after a slower one the rest go
# back to the head of their list), so a job of higher priority enqueued meanwhile waits for 15
# quick jobs at most. The completions of the finished jobs go with the next call: they wait at
# most for the jobs after them in the batch, as before starting one the process records on their
# own those that ended more than ACK_WITHIN seconds ago.
BATCH = 16
QUICK = 0.005
ACK_WITHIN = 0.05


@dataclass(frozen=True)
class Done:
    """A job run to its end whose completion is to be recorded."""

    job: Job
    result: Any
    seconds: float
    finished: float  # time.monotonic() when it ended


@dataclass(frozen=True)
class ChildConfig:
    queues: list[str]
    worker_id: str
    lease: float
    max_jobs: int | None
    forked: bool
    verbosity: int
    # How long an idle process blocks on the wake-up list at a time (see wakeups.py).
    idle_block: float = 1.0


class ChildLoop:
    """The loop of one child process: claim, run, record, and wait when there is no work."""

    def __init__(
        self,
        conn: Connection,
        board: Board,
        shared: Shared,
        config: ChildConfig,
    ) -> None:
        self.conn = conn
        self.board = board
        self.shared = shared
        self.config = config
        self.jobs = JobQueue()
        self.leases = Leases()
        self.silent_after = min(SUPERVISOR_SILENT, config.lease / 2)
        # Set when it took no job because its supervisor was silent: it asks again at once.
        self.held = False
        # It told the supervisor that it has room for work, and has had no answer yet.
        self.reported = False
        self.async_jobs = AsyncJobs(self, async_names())
        wakeups = ChildWakeups.of(self.leases, config.queues, config.idle_block)
        self.idle = IdleClaims(self, wakeups, config.queues, config.lease) if wakeups else None
        # The jobs of a batch leased and not started yet, with their slots, in order.
        self.hand: deque[tuple[int, Job]] = deque()
        # The jobs run to their end whose completion is not recorded yet (it goes with the
        # next call), and whether the last job was quick (the next claim may lease a batch).
        self.done: list[Done] = []
        self.quick = True
        # Whether the jobs in hand came from a wait for work (see _next).
        self.woken = False

    def run(self) -> None:
        with asyncio.Runner() as loop:
            self.loop = loop
            claim: Claim | None = self._claim()
            while claim is not None:
                if claim.job is not None and self.async_jobs.is_async(claim.job):
                    # Until no async job is left: then a sync job to run, or none.
                    claim = loop.run(self.async_jobs.serve(claim.job))
                elif claim.job is not None:
                    claim = self._process(claim.job)
                else:
                    self.board.publish(None)
                    claim = self._wait_for_work(claim.next_due)
                    self.woken = claim is not None and claim.job is not None

    def report(self, next_due: float | None) -> None:
        """Tell the supervisor that this process has room for work (it answers GO or STOP)."""
        if self.reported:
            return
        if self.held:
            # Due now: the supervisor, once it answers this, sends it back to work at once.
            next_due, self.held = time.time(), False
        self._tell(next_due, waits=False)
        self.reported = True

    def _tell(self, next_due: float | None, waits: bool) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: the next read says so
            self.conn.send_bytes(dumps({"next_due": next_due, "waits": waits}).encode())

    def _wait_for_work(self, next_due: float | None) -> Claim | None:
        """Report, if not done yet, wait for work and claim it (``None``: STOP).

        With its queues on one shard it waits on the wake-up list itself, its claim sent behind
        the wait (idle.py), unless it is owed an answer to a report (its async jobs left it
        room) or its supervisor is silent (it waits until the supervisor answers): then it
        waits for GO.
        """
        if self.idle is not None and not self.reported and not self.held:
            # Idle (for --burst and max_jobs), but no GO: STOP is the only answer it takes.
            self._tell(next_due, waits=True)
            woken = self.idle.wait(next_due)
            return woken if isinstance(woken, Claim) else self._claim() if woken == GO else None
        self.report(next_due)
        try:
            while True:
                message = self.conn.recv_bytes()
                if message in (GO, STOP):
                    self.reported = False
                    return self._claim() if message == GO else None
                # Anything else is about an async job that is over (see async_child).
        except (EOFError, OSError):
            return None  # the supervisor is gone

    def _supervisor_silent(self) -> bool:
        silent = time.monotonic() - self.shared.heartbeat.value
        if silent < self.silent_after:
            return False
        logger.warning(
            "worker %s: its supervisor has been silent for %.1fs; taking no job until it answers",
            self.config.worker_id,
            silent,
        )
        self.held = True
        return True

    def reserve(self, wanted: int = 1) -> int:
        """Count up to ``wanted`` more jobs taken, unless the worker is stopping, took its
        ``max_jobs``, or its supervisor is silent; return how many were counted."""
        if self.shared.stopping.value or self._supervisor_silent():
            return 0
        taken, limit = self.shared.taken, self.config.max_jobs
        with taken.get_lock():
            room = wanted if limit is None else min(wanted, limit - taken.value)
            if room <= 0:
                return 0
            taken.value += room
        return room

    def unreserve(self, count: int = 1) -> None:
        """Give back what :meth:`reserve` counted: the claim took fewer jobs, or they went back
        unstarted."""
        with self.shared.taken.get_lock():
            self.shared.taken.value -= count

    def stopping(self) -> bool:
        """Whether the worker takes no more jobs."""
        return bool(self.shared.stopping.value)

    def _batch(self) -> int:
        """How many jobs the next claim may lease: a batch after a quick job, else one."""
        return min(BATCH, self.board.size) if self.quick else 1

    def claim_options(self, batch: int | None = None) -> dict[str, Any]:
        """A claim's options: up to ``batch`` jobs (default: what the next claim may lease)."""
        config, batch = self.config, self._batch() if batch is None else batch
        skip = self.async_jobs.names
        return self.leases.claim_options(config.worker_id, config.lease, batch=batch, skip=skip)

    def _claim(self) -> Claim:
        wanted = self.reserve(self._batch())
        if not wanted:
            return Claim(None, None)
        config, options = self.config, self.claim_options(wanted)
        try:
            claim = until_redis_answers(
                lambda: self.leases.claim(
                    config.queues, config.worker_id, config.lease, options=options
                ),
                again=lambda: self.leases.claim(
                    config.queues, config.worker_id, config.lease, options=options, resend=True
                ),
                give_up=self.stopping,
            )
        except WAITED_OUT:
            # Stopping while Redis does not answer. Had a send leased jobs after all, their
            # lease runs out and recovery takes them up again.
            claim = Claim(None, None)
        self.taken(claim, wanted)
        return claim

    def taken(self, claim: Claim, wanted: int = 1) -> None:
        """Publish the jobs a claim took (their leases are renewed from now on), and unreserve
        those of the ``wanted`` it did not take."""
        job = claim.job
        took = 0 if job is None else 1 + len(claim.more)
        if took < wanted:
            self.unreserve(wanted - took)
        if job is None:
            return
        if claim.more:
            self.board.hold(claim.more)
            self.hand.extend(enumerate(claim.more, 1))
        if self.async_jobs.is_async(job):
            # Published at once (its lease is renewed); it starts on the event loop.
            self.board.publish(job, ASYNC)
        else:
            self.board.publish(job)
            log_started(job)

    def _process(self, job: Job) -> Claim:
        """Run ``job``, record its outcome and go on with the next job: the next of the batch
        in hand, or what the call that records the finished jobs claims.

        An outcome is recorded however long Redis takes to answer (sent again, it is recorded
        once): the supervisor ends the wait if the worker stops meanwhile.
        """
        notify(signals.job_started, job)
        started = time.monotonic()
        outcome = run_job(job, self.loop, recorder=self.leases)
        finished = time.monotonic()
        seconds = finished - started
        self.quick = seconds < QUICK
        if not outcome.ok:
            failed = until_redis_answers(
                lambda: self.leases.record_failure(
                    job, outcome.error, outcome.traceback, retry=outcome.retry
                )
            )
            report = (job, failed, seconds, outcome.error, outcome.traceback, outcome.exception)
            log_failed(*report)
            # Recorded: the receivers run outside the job's timeout and lease.
            self.board.publish(None)
            notify_failed(*report)
        else:
            self.done.append(Done(job, outcome.result, seconds, finished))
        return self._next()

    def _next(self) -> Claim:
        """The next job: the next of the batch in hand, unless the worker stops (they go back
        to the head of their lists); else the one (or the batch) that the call recording the
        finished jobs claims."""
        # After a slow job, the rest of the batch goes back for other processes to take: a
        # batch must not line up slow jobs in one process while others are idle.
        if self.hand and (not self.quick or self.stopping() or self._supervisor_silent()):
            self._hand_back()
        if self.hand:
            if self.done and time.monotonic() - self.done[0].finished > ACK_WITHIN:
                self._record_done()  # results are not held back for long by slower jobs
            index, job = self.hand.popleft()
            if self.board.dropped(index):
                self._cancel_unstarted(index, job)
                return self._next()
            self.board.start(index, job)
            log_started(job)
            return Claim(job, None)
        woken, self.woken = self.woken, False
        if not self.done:
            return self._claim()
        if woken and len(self.done) == 1:
            # A lone job taken after a wait is recorded on its own, the next claim sent once
            # that is answered. Redis tells the job's waiter in the pass of its event loop
            # that runs the record (with the waiter's read of the job behind it), and a claim in
            # the same call would hold that pass back by what it costs, cold, after the wait;
            # it most likely finds nothing, too. One more round trip, once per wait.
            self._record_done()
            return self._claim()
        wanted = self.reserve(self._batch())
        if not wanted:  # stopping, max_jobs reached, or its supervisor is silent
            self._record_done()
            self.board.publish(None)
            return Claim(None, None)
        config, options = self.config, self.claim_options(wanted)
        done, self.done = self.done, []

        def complete_and_claim(resend: bool) -> tuple[list[bool], Claim]:
            return self.leases.complete_many_and_claim(
                [(d.job, d.result) for d in done],
                config.queues,
                config.worker_id,
                config.lease,
                options=options,
                resend=resend,
            )

        acked, claim = until_redis_answers(
            lambda: complete_and_claim(False), again=lambda: complete_and_claim(True)
        )
        for d, ok in zip(done, acked, strict=True):
            log_completed(d.job, d.seconds, ok)
        # The next job is published first, so that its lease is renewed while the receivers
        # of the finished ones run (they run before it starts, within its timeout).
        self.taken(claim, wanted)
        if claim.job is None:
            self.board.publish(None)
        for d, ok in zip(done, acked, strict=True):
            self._succeeded(d.job, d.result, d.seconds, ok)
        return claim

    def _record_done(self) -> None:
        """Record the finished jobs, on their own (no claim)."""
        done, self.done = self.done, []
        for d in done:
            record = functools.partial(self.leases.complete_job, d.job, d.result)
            acked = until_redis_answers(record)
            log_completed(d.job, d.seconds, acked)
            self._succeeded(d.job, d.result, d.seconds, acked)

    def _cancel_unstarted(self, index: int, job: Job) -> None:
        """Cancel ``job``, held unstarted, whose cancellation was requested (its lease token
        confirms it, as a supervisor does for a running job)."""
        outcome = until_redis_answers(
            lambda: self.jobs.cancel_job(job.id, lease_token=job.lease_token or "")
        )
        self.board.let_go(index)
        if outcome == "cancelled":
            log_finished(job, "cancelled", 0.0, "before it started")
            notify(signals.job_cancelled, job, seconds=0.0)

    def _hand_back(self) -> None:
        """Give the jobs of the batch in hand back to the head of their lists, unstarted (the
        last first: they keep their order), and free their slots. One whose cancellation was
        requested is cancelled instead."""
        for index, job in reversed(self.hand):
            if self.board.dropped(index):
                self._cancel_unstarted(index, job)
                continue
            outcome = until_redis_answers(functools.partial(self.leases.release_job, job))
            report_given_back(job, outcome, "leased in a batch, not started")
            self.board.let_go(index)
        self.unreserve(len(self.hand))
        self.hand.clear()

    @staticmethod
    def _succeeded(job: Job, result: Any, seconds: float, acked: bool) -> None:
        if acked:  # else another worker has the job: nothing was recorded
            notify(signals.job_succeeded, job, result=result, seconds=seconds)
