"""The worker: a supervisor process with N child processes, each running one job at a time.

The supervisor claims jobs, hands each to a child over a pipe, and records the outcome. Because
the supervisor, not the job's process, renews the leases, a job that holds the GIL for minutes
keeps its lease as long as its process lives; and because the job runs in a child, a job that
runs past its timeout is stopped for certain by killing that child and starting a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import redis
from django.db import connections

from django_jobs.conf import jobs_settings
from django_jobs.connection import get_async_redis
from django_jobs.exceptions import RedisUnavailable
from django_jobs.job import Job, JobStatus
from django_jobs.queue import RECOVER_LIMIT, JobQueue
from django_jobs.registry import registry
from django_jobs.runner import child_main, failure
from django_jobs.serialization import dumps, loads

logger = logging.getLogger("django_jobs.worker")
T = TypeVar("T")

# An idle worker blocks on the wake-up list at most this long at a time, so that it sends
# about one request per second while idle. Enqueues wake it at once; so does a delayed or
# retrying job due before all others, whose due time it then waits for.
IDLE_BLOCK = 1.0
# Every this many idle blocks it claims anyway, in case a wake-up was missed.
IDLE_CLAIM_EVERY = 5


async def _until_redis_answers(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()``, calling again (with backoff) while Redis does not answer.

    A worker outlives a Redis restart: it logs, waits and goes on. An outcome that could not
    be recorded in time is safe too: the job's lease expires and it runs again.
    """
    pause = 0.1
    while True:
        try:
            return await call()
        except (RedisUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            logger.error("Redis does not answer (%s); trying again in %.1fs", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


class ChildDied(Exception):
    """The process running a job exited (crashed, or was stopped by the supervisor)."""


@dataclass(eq=False)
class Slot:
    """One child process and the job it is running, if any."""

    index: int
    worker_id: str
    process: BaseProcess | None = None
    conn: Connection | None = None
    job: Job | None = None
    # Why the supervisor killed the child under the current job: 'cancel', 'lost', 'shutdown'.
    stop_reason: str | None = None
    done: asyncio.Future[Any] | None = field(default=None, repr=False)


class Worker:
    """Serve ``queues`` with ``concurrency`` child processes until stopped.

    ``burst`` stops when the served queues are empty; ``max_jobs`` after that many jobs.
    SIGTERM or SIGINT stops taking jobs and lets running ones finish within ``grace`` seconds;
    the rest go back to the head of their lists. A second signal exits at once.
    """

    def __init__(
        self,
        queues: list[str] | None = None,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        max_jobs: int | None = None,
        worker_id: str | None = None,
        grace: float = 30.0,
        jobs: JobQueue | None = None,
    ) -> None:
        self.jobs = jobs or JobQueue()
        self.queues = self.jobs.served_queues(queues)
        self.concurrency = concurrency or os.cpu_count() or 1
        self.burst = burst
        self.max_jobs = max_jobs
        self.worker_id = worker_id or f"{socket.gethostname()}.{os.getpid()}"
        self.grace = grace
        self.lease = float(jobs_settings.LEASE_TIMEOUT)
        self.taken = 0
        self.stopping = False
        self.signals = 0
        self.last_signal, self.last_signal_at = 0, 0.0
        self.next_due: float | None = None
        self.context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        self.slots = [Slot(i, f"{self.worker_id}:{i}") for i in range(self.concurrency)]

    # -- running ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit status (0 after a graceful stop)."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        for slot in self.slots:
            self._spawn(slot)
        self.work = asyncio.Condition()
        self.idle = 0
        self.someone_idle = asyncio.Event()
        self.stopped = asyncio.Event()  # no new jobs
        self.finished = asyncio.Event()  # no running jobs either
        self.claimed = asyncio.Event()  # a slot's claim came back
        logger.info(
            "worker %s serving %s with %d processes",
            self.worker_id,
            ", ".join(self.queues),
            self.concurrency,
        )
        background = [
            asyncio.create_task(self._keep_leases()),
            asyncio.create_task(self._recover()),
            asyncio.create_task(self._wake_idle()),
        ]
        serving = [asyncio.create_task(self._serve(slot)) for slot in self.slots]
        try:
            await asyncio.gather(*serving)
        finally:
            # The background loops end by themselves, each within about a second: cancelling
            # a Redis call in flight could leave its connection in an unknown state.
            self._begin_stop()
            self.finished.set()
            await asyncio.gather(*background, return_exceptions=True)
            for slot in self.slots:
                self._stop_child(slot)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        logger.info("worker %s stopped after %d jobs", self.worker_id, self.taken)
        return 0

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self.signals and signum != self.last_signal and now - self.last_signal_at < 1.0:
            # Ctrl-C reaches the whole process group, and a process manager may forward a
            # SIGTERM right after: that is one request to stop, not two.
            return
        self.signals += 1
        self.last_signal, self.last_signal_at = signum, now
        if self.signals > 1:
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            for slot in self.slots:
                if slot.process is not None and slot.process.pid is not None:
                    os.kill(slot.process.pid, signal.SIGKILL)
            os._exit(1)
        logger.info(
            "%s: finishing running jobs (up to %ss), then exiting",
            signal.Signals(signum).name,
            self.grace,
        )
        self._begin_stop()
        asyncio.get_running_loop().call_later(self.grace, self._end_grace)

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stopped.set()
        self.someone_idle.set()  # lets the wake-up loop see that it should end
        asyncio.get_running_loop().create_task(self._notify_all())

    @staticmethod
    async def _pause(seconds: float, until: asyncio.Event) -> None:
        """Sleep, but return early when ``until`` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), seconds)

    async def _notify_all(self) -> None:
        async with self.work:
            self.work.notify_all()

    def _end_grace(self) -> None:
        for slot in self.slots:
            if slot.job is not None:
                self._kill_child(slot, "shutdown")

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self, slot: Slot) -> None:
        while not self.stopping:
            if self.max_jobs is not None and self.taken >= self.max_jobs:
                self._begin_stop()
                break
            claim = await _until_redis_answers(
                lambda: self.jobs.aclaim(self.queues, slot.worker_id, self.lease)
            )
            self.claimed.set()
            if claim.job is None:
                self.next_due = claim.next_due
                if self.burst:
                    break
                await self._wait_for_work()
                continue
            self.taken += 1
            await self._execute(slot, claim.job)

    async def _wait_for_work(self) -> None:
        async with self.work:
            self.idle += 1
            self.someone_idle.set()
            try:
                await self.work.wait()
            finally:
                self.idle -= 1

    async def _wake_idle(self) -> None:
        """Block on the wake-up list while some slot is idle; wake one slot per token."""
        client = get_async_redis()
        quiet = 0
        while not self.stopping:
            if self.idle == 0:
                self.someone_idle.clear()
                await self.someone_idle.wait()
                if self.stopping:
                    break
            timeout = IDLE_BLOCK
            if self.next_due is not None:
                timeout = min(IDLE_BLOCK, max(self.next_due - time.time(), 0.001))
            token = await _until_redis_answers(
                functools.partial(client.blpop, [self.jobs.keys.wakeup], timeout=timeout)
            )
            quiet = 0 if token else quiet + 1
            due = self.next_due is not None and self.next_due <= time.time()
            if token or due or quiet % IDLE_CLAIM_EVERY == 0:
                # Wait for that slot's claim: it tells when the next delayed job is due.
                self.claimed.clear()
                async with self.work:
                    self.work.notify(1)
                await self._pause(IDLE_BLOCK, self.claimed)

    async def _execute(self, slot: Slot, job: Job) -> None:
        attempt = job.attempt
        logger.info("job %s %s attempt %d started", job.id, job.name, attempt)
        started = time.monotonic()
        slot.job, slot.stop_reason = job, None
        try:
            if job.name not in registry:
                reply = failure(
                    f"UnregisteredJob: no job named {job.name!r} is registered in this worker."
                )
            else:
                reply = await self._run_in_child(slot, job)
            outcome = await _until_redis_answers(lambda: self._record(slot, job, reply))
        finally:
            slot.job = None
        outcome, detail = outcome
        logger.info(
            "job %s %s attempt %d %s after %.3fs%s",
            job.id,
            job.name,
            attempt,
            outcome,
            time.monotonic() - started,
            f": {detail}" if detail else "",
        )

    async def _run_in_child(self, slot: Slot, job: Job) -> dict[str, Any] | None:
        """The child's reply, a timeout failure, or ``None`` when the supervisor stopped it."""
        if slot.process is None or not slot.process.is_alive():
            self._spawn(slot)
        assert slot.conn is not None
        assert slot.process is not None
        loop = asyncio.get_running_loop()
        slot.done = loop.create_future()
        conn = slot.conn
        loop.add_reader(conn.fileno(), self._on_readable, slot)
        try:
            request = {"id": job.id, "name": job.name, "args": job.args, "kwargs": job.kwargs}
            conn.send_bytes(dumps(request).encode())
            return await asyncio.wait_for(asyncio.shield(slot.done), job.timeout)
        except TimeoutError:
            self._kill_child(slot, "timeout")
            return failure(
                f"JobTimeout: the job ran longer than its timeout of {job.timeout}s "
                "and was stopped."
            )
        except (ChildDied, BrokenPipeError, OSError):
            if slot.stop_reason is not None:
                return None
            code = slot.process.exitcode
            self._respawn(slot)
            return failure(f"WorkerCrashed: the process running the job died (exit code {code}).")
        finally:
            if slot.conn is conn:  # else it was closed and unregistered with its child
                loop.remove_reader(conn.fileno())

    def _on_readable(self, slot: Slot) -> None:
        assert slot.conn is not None
        assert slot.done is not None
        if slot.done.done():
            return
        try:
            slot.done.set_result(loads(slot.conn.recv_bytes()))
        except (EOFError, OSError) as exc:
            slot.done.set_exception(ChildDied(str(exc)))

    async def _record(self, slot: Slot, job: Job, reply: dict[str, Any] | None) -> tuple[str, str]:
        """Store the outcome of one attempt; return what happened, for the log line."""
        if reply is None:
            reason = slot.stop_reason
            if reason == "cancel":
                await self.jobs.acancel_job(job.id, lease_token=job.lease_token or "")
                return "cancelled", ""
            if reason == "shutdown":
                await self.jobs.arelease_job(job)
                return "stopped", "the worker is stopping; it goes back to the head of its queue"
            return "abandoned", "its lease was lost, so another worker may run it"
        if reply["ok"]:
            if await self.jobs.acomplete_job(job, reply["result"]):
                return "completed", ""
            return "completed", "but its lease was lost, so the outcome was not recorded"
        status = await self.jobs.afail_job(
            job, reply["error"], reply["traceback"], retry=reply["retry"]
        )
        error = reply["error"].splitlines()[0] if reply["error"] else ""
        if status is None:
            return "failed", f"{error} (its lease was lost, so the outcome was not recorded)"
        if status is JobStatus.RETRYING:
            return "failed (to be retried)", error
        return "failed (moved to the dead-letter queue)", error

    # -- leases and recovery ------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Renew the leases of all running jobs in one call, a few times per lease period.

        This goes on while jobs run during a graceful stop.
        """
        while not self.finished.is_set():
            await self._pause(self.lease / 3, self.finished)
            running = {slot.job.id: slot for slot in self.slots if slot.job is not None}
            jobs = [slot.job for slot in running.values() if slot.job is not None]
            state = await _until_redis_answers(
                functools.partial(self.jobs.aextend_lease, jobs, self.lease)
            )
            for job_id in state.lost:
                if job_id in running:
                    logger.warning("job %s: lease lost, stopping it", job_id)
                    self._kill_child(running[job_id], "lost")
            for job_id in state.cancel_requested:
                if job_id in running:
                    self._kill_child(running[job_id], "cancel")

    async def _recover(self) -> None:
        """Bring back the jobs of workers that died (their leases expired)."""
        while not self.stopping:
            recovered = await _until_redis_answers(self.jobs.arecover_expired)
            for job_id in recovered.requeued:
                logger.warning("job %s: its worker was lost; requeued", job_id)
            for job_id in recovered.buried:
                logger.error("job %s: its worker was lost too often; moved to dead letters", job_id)
            if len(recovered.requeued) + len(recovered.buried) < RECOVER_LIMIT:
                await self._pause(min(self.lease / 2, 30.0), self.stopped)

    # -- child processes ----------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        # A forked child must not share the supervisor's database sockets.
        connections.close_all()
        parent_end, child_end = self.context.Pipe()
        forked = self.context.get_start_method() == "fork"
        inherited = [s.conn for s in self.slots if s.conn is not None] + [parent_end]
        process = self.context.Process(
            target=child_main,
            args=(child_end, inherited if forked else [], not forked),
            name=f"django-jobs {slot.worker_id}",
            daemon=True,
        )
        process.start()
        child_end.close()
        slot.process, slot.conn = process, parent_end

    def _kill_child(self, slot: Slot, reason: str) -> None:
        slot.stop_reason = reason
        if slot.process is not None and slot.process.is_alive():
            slot.process.kill()
        if slot.done is not None and not slot.done.done():
            slot.done.set_exception(ChildDied(reason))
        self._respawn(slot)

    def _respawn(self, slot: Slot) -> None:
        self._stop_child(slot)
        if not self.stopping or slot.stop_reason != "shutdown":
            self._spawn(slot)

    def _stop_child(self, slot: Slot) -> None:
        if slot.conn is not None:
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            with contextlib.suppress(OSError):
                slot.conn.send_bytes(b"null")  # asks an idle child to exit
            slot.conn.close()
        if slot.process is not None:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
        slot.process, slot.conn = None, None
