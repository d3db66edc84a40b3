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
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from django_jobs import signals
from django_jobs.job import Job
from django_jobs.queue import JobQueue
from django_jobs.serialization import dumps
from django_jobs.store import connection as store_connection
from django_jobs.store.connection import reset_connections
from django_jobs.worker.async_child import AsyncJobs
from django_jobs.worker.execute import (
    async_names,
    log_completed,
    log_failed,
    notify,
    notify_failed,
    run_job,
)
from django_jobs.worker.leases import Claim, Leases
from django_jobs.worker.retry import WAITED_OUT, until_redis_answers
from django_jobs.worker.slots import ASYNC, GO, STOP, Board
from django_jobs.worker.wakeups import ChildWakeups

logger = logging.getLogger("django_jobs.worker")

_PR_SET_PDEATHSIG = 1

# The supervisor's asyncio Redis clients, as a forked child inherits them: kept, never used.
_INHERITED_CLIENTS: list[Any] = []

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
        self.wakeups = ChildWakeups.of(self.leases, config.queues, config.idle_block)

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
                    claim = self._claim() if self._wait_for_work(claim.next_due) else None

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

    def _wait_for_work(self, next_due: float | None) -> bool:
        """Report, if not done yet, and wait for work (``True``) or STOP.

        With its queues on one shard it waits on the wake-up list itself, unless it is owed an
        answer to a report (its async jobs left it room) or its supervisor is silent (it waits
        until the supervisor answers): then it waits for GO.
        """
        if self.wakeups is not None and not self.reported and not self.held:
            # Idle (for --burst and max_jobs), but no GO: STOP is the only answer it takes.
            self._tell(next_due, waits=True)
            return self.wakeups.wait(self.conn, next_due) == GO
        self.report(next_due)
        try:
            while True:
                message = self.conn.recv_bytes()
                if message in (GO, STOP):
                    self.reported = False
                    return message == GO
                # Anything else is about an async job that is over (see async_child).
        except (EOFError, OSError):
            return False  # the supervisor is gone

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

    def reserve(self) -> bool:
        """Count one more job taken, unless the worker is stopping, took its ``max_jobs``, or
        its supervisor is silent."""
        if self.shared.stopping.value or self._supervisor_silent():
            return False
        taken = self.shared.taken
        with taken.get_lock():
            if self.config.max_jobs is not None and taken.value >= self.config.max_jobs:
                return False
            taken.value += 1
        return True

    def unreserve(self) -> None:
        """Give back what :meth:`reserve` counted: the claim took no job."""
        with self.shared.taken.get_lock():
            self.shared.taken.value -= 1

    def stopping(self) -> bool:
        """Whether the worker takes no more jobs."""
        return bool(self.shared.stopping.value)

    def _claim(self) -> Claim:
        if not self.reserve():
            return Claim(None, None)
        config = self.config
        options = self.leases.claim_options(config.worker_id, config.lease)
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
            # Stopping while Redis does not answer. Had a send leased a job after all, its
            # lease runs out and recovery takes it up again.
            claim = Claim(None, None)
        self.taken(claim)
        return claim

    def taken(self, claim: Claim) -> None:
        """Publish the job a claim took (its lease is renewed from now on), or unreserve."""
        job = claim.job
        if job is None:
            self.unreserve()
        elif self.async_jobs.is_async(job):
            # Published at once (its lease is renewed); it starts on the event loop.
            self.board.publish(job, ASYNC)
        else:
            self.board.publish(job)
            logger.info("job %s %s attempt %d started", job.id, job.name, job.attempt)

    def _process(self, job: Job) -> Claim:
        """Run ``job``, record its outcome and, in the same round trip if it can, claim the next.

        An outcome is recorded however long Redis takes to answer (sent again, it is recorded
        once): the supervisor ends the wait if the worker stops meanwhile.
        """
        notify(signals.job_started, job)
        started = time.monotonic()
        outcome = run_job(job, self.loop, recorder=self.leases)
        seconds = time.monotonic() - started
        config = self.config
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
            return self._claim()
        if not self.reserve():  # stopping, max_jobs reached, or its supervisor is silent
            acked = until_redis_answers(lambda: self.leases.complete_job(job, outcome.result))
            log_completed(job, seconds, acked)
            self.board.publish(None)
            self._succeeded(job, outcome.result, seconds, acked)
            return Claim(None, None)
        options = self.leases.claim_options(config.worker_id, config.lease)

        def complete_and_claim(resend: bool) -> tuple[bool, Claim]:
            return self.leases.complete_and_claim(
                job,
                outcome.result,
                config.queues,
                config.worker_id,
                config.lease,
                options=options,
                resend=resend,
            )

        acked, claim = until_redis_answers(
            lambda: complete_and_claim(False), again=lambda: complete_and_claim(True)
        )
        log_completed(job, seconds, acked)
        # The next job is published first, so that its lease is renewed while the receivers
        # of this one run (they run before it starts, within its timeout).
        self.taken(claim)
        if claim.job is None:
            self.board.publish(None)
        self._succeeded(job, outcome.result, seconds, acked)
        return claim

    @staticmethod
    def _succeeded(job: Job, result: Any, seconds: float, acked: bool) -> None:
        if acked:  # else another worker has the job: nothing was recorded
            notify(signals.job_succeeded, job, result=result, seconds=seconds)


def _become_child() -> None:
    # The supervisor decides when a job stops: Ctrl-C in a terminal, or systemd signalling the
    # whole group, must not interrupt the job in the middle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    # A process group of its own, which the supervisor ends as a whole (worker/children.py):
    # the subprocesses a job starts die with it on a timeout, a cancellation or a shutdown.
    # Ctrl-C in a terminal no longer reaches the job's subprocesses either; like the job, they
    # stop when the supervisor says so.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if sys.platform == "linux":
        # Die with the supervisor rather than finish a job that is being handed to another worker.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # A forked child shares the supervisor's epoll instance, in which the sockets of the
    # supervisor's asyncio clients are registered. Closing those clients here (which forgetting
    # them does, once they are collected) would unregister the sockets for the supervisor too:
    # it would never hear the reply it waits for, and time out. So they are kept, unused.
    _INHERITED_CLIENTS.extend(store_connection._async_clients.values())
    reset_connections()


def child_main(
    conn: Connection,
    board: Board,
    shared: Shared,
    config: ChildConfig,
    inherited: list[Connection],
) -> None:
    """Entry point of a worker child process.

    ``inherited`` are the supervisor's ends of the other children's pipes, which a forked
    child holds copies of; closing them lets every child see EOF when the supervisor is gone.
    """
    for other in inherited:
        other.close()
    _become_child()
    if not config.forked:  # a spawned child starts from nothing
        import django

        from django_jobs.log import configure_command_logging

        django.setup()
        configure_command_logging("django_jobs", config.verbosity)
    ChildLoop(conn, board, shared, config).run()
