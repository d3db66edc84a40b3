"""The worker: a supervisor process and N child processes, each running one sync job at a time
or up to ``async_concurrency`` async jobs side by side.

Children claim, run and record jobs themselves (see ``child.py``). The supervisor watches
(``watch.py``): it renews the leases of the jobs its children publish, so a job that holds the
GIL for minutes keeps its lease as long as its process lives; it stops a job that overran its
timeout or was cancelled (a sync job by killing and replacing its child, with the job's
subprocesses: ``children.py``); it records what a crashed child could not; it blocks on the
wake-up list for idle children that do not block on it themselves (``wakeups.py``); it recovers
the jobs of dead workers; and it stops the children gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import connections

from django_jobs import outbox, validation
from django_jobs.conf import jobs_settings
from django_jobs.queue import JobQueue
from django_jobs.serialization import loads
from django_jobs.store import calls, shards
from django_jobs.store.execute import arun
from django_jobs.worker.child import ChildConfig, Shared
from django_jobs.worker.child_process import child_main
from django_jobs.worker.children import (
    Child,
    exit_records,
    exit_status,
    kill_group,
    lead_own_group,
    record_exit,
    report_buried,
)
from django_jobs.worker.execute import log_serving
from django_jobs.worker.heartbeat import Heartbeat
from django_jobs.worker.leases import RECOVER_LIMIT, Leases
from django_jobs.worker.retry import auntil_redis_answers, keep_going, pause
from django_jobs.worker.slots import GO, STOP, Board, Running
from django_jobs.worker.wakeups import IDLE_BLOCK, IDLE_CLAIM_EVERY, ShardWakeups
from django_jobs.worker.watch import Watch

logger = logging.getLogger("django_jobs.worker")

# How long the outcomes of jobs whose processes ended may still wait for Redis once the worker
# has no children left: a stop is bounded even while Redis is down.
RECORD_AFTER_STOP = 3.0
# How often the outbox (jobs committed while Redis did not answer) is looked at.
OUTBOX_EVERY = 5.0
# How many async jobs a child process runs side by side at most (runworker --async-concurrency).
DEFAULT_ASYNC_CONCURRENCY = 100


class Worker(Watch):
    """Serve ``queues`` with ``concurrency`` child processes until stopped.

    Each runs one sync job at a time, or up to ``async_concurrency`` ``async def`` jobs side by
    side on its event loop. ``burst`` stops when the served queues are empty; ``max_jobs``
    after that many jobs.
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
        verbosity: int = 1,
        jobs: JobQueue | None = None,
        async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
    ) -> None:
        if (
            isinstance(async_concurrency, bool)
            or not isinstance(async_concurrency, int)
            or async_concurrency < 1
        ):
            raise ValueError(
                f"async_concurrency must be a positive integer, not {async_concurrency!r}."
            )
        self.async_concurrency = async_concurrency
        self.jobs = jobs or JobQueue()
        self.leases = Leases(self.jobs.prefix)
        self.queues = validation.served_queues(queues)
        self.concurrency = concurrency or os.cpu_count() or 1
        self.burst = burst
        self.worker_id = worker_id or f"{socket.gethostname()}.{os.getpid()}"
        self.grace = grace
        self.lease = float(jobs_settings.LEASE_TIMEOUT)
        self.stopping = False
        self.signals = 0
        self.last_signal, self.last_signal_at = 0, 0.0
        self.next_due: float | None = None
        self.wakeups: ShardWakeups | None = None  # set in _main when queues span shards
        self.quiet = 0  # idle blocks on the wake-up list in a row that brought no token
        # Jobs of processes that died whose outcome could not be recorded: still RUNNING.
        self.unrecorded: set[str] = set()
        self.context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        self.config = ChildConfig(
            queues=self.queues,
            worker_id="",
            lease=self.lease,
            max_jobs=max_jobs,
            forked=self.context.get_start_method() == "fork",
            verbosity=verbosity,
            # Its idle children block in turn: together about one wait a second.
            idle_block=IDLE_BLOCK * self.concurrency,
        )
        self.shared = Shared(
            stopping=self.context.RawValue(ctypes.c_bool, False),
            taken=self.context.Value(ctypes.c_longlong, 0),
            heartbeat=self.context.RawValue(ctypes.c_double, time.monotonic()),
        )
        self.children = [
            Child(f"{self.worker_id}:{i}", Board(self.context, async_concurrency))
            for i in range(self.concurrency)
        ]

    # -- running ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit status (0 after a graceful stop)."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        self.someone_idle = asyncio.Event()
        self.stopped = asyncio.Event()  # no new jobs
        self.finished = asyncio.Event()  # no children left
        self.abandon = asyncio.Event()  # stop waiting for Redis: the worker exits
        self.pending: set[asyncio.Task[Any]] = set()
        for child in self.children:
            self._spawn(child)
        log_serving(self.worker_id, self.queues, self.concurrency, self.jobs.prefix)
        served = [self.leases.shard_keys(s) for s in shards.by_shard(self.queues)]
        self.wakeups = ShardWakeups(served, IDLE_BLOCK) if len(served) > 1 else None
        background = [
            asyncio.create_task(self._keep_leases()),
            asyncio.create_task(self._recover()),
            asyncio.create_task(self._wake_idle()),
            asyncio.create_task(self._watch_timeouts()),
            asyncio.create_task(self._keep_going("the outbox", self._sweep, self.stopped.is_set)),
            asyncio.create_task(self._keep_going("the heartbeat", *Heartbeat(self).loop())),
        ]
        if self.wakeups is not None:  # queues on several shards: one blocking wait each
            background.append(
                asyncio.create_task(self.wakeups.run(self.someone_idle, self.stopped))
            )
        try:
            await self.finished.wait()
        finally:
            self._begin_stop()
            await self._wind_down([*background, *self.pending])
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        logger.info("worker %s stopped after %d jobs", self.worker_id, self.shared.taken.value)
        orphans = set(self.unrecorded)
        return await exit_status(self.jobs, self.worker_id, orphans, self.burst, self.lease)

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
            for child in self.children:
                if child.process is not None:
                    kill_group(child.process)
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
        self.shared.stopping.value = True
        self.stopped.set()
        self.someone_idle.set()  # lets the wake-up loop see that it should end
        for child in self.children:
            if child.idle:
                self._send(child, STOP)

    def _end_grace(self) -> None:
        """Kill what is left: running jobs go back to their lists (or, while Redis does not
        answer, to lease recovery), and a child that is still waiting for Redis ends too."""
        for child in self.children:
            if child.process is not None:
                self._kill(child, "shutdown", None)

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    # -- children -----------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        # A forked child must not share the supervisor's database sockets.
        connections.close_all()
        parent_end, child_end = self.context.Pipe()
        inherited = [c.conn for c in self.children if c.conn is not None] + [parent_end]
        child.board.clear()
        process = self.context.Process(
            target=child_main,
            args=(
                child_end,
                child.board,
                self.shared,
                dataclasses.replace(self.config, worker_id=child.worker_id),
                inherited if self.config.forked else [],
            ),
            name=f"django-jobs {child.worker_id}",
            daemon=True,
        )
        process.start()
        # The child does this too as it starts; doing it here as well leaves no moment in
        # which killing the child's group (a timeout right away) would miss it.
        assert process.pid is not None
        lead_own_group(process.pid)
        child_end.close()
        child.process, child.conn, child.idle = process, parent_end, False
        child.kill_reason = child.killed_running = None
        child.suspects, child.asked = {}, {}
        child.started = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_end.fileno(), self._on_message, child)
        loop.add_reader(process.sentinel, self._on_exit, child)

    def _send(self, child: Child, message: bytes) -> None:
        if child.conn is None:
            return
        child.idle = False
        with contextlib.suppress(OSError):
            child.conn.send_bytes(message)

    def _on_message(self, child: Child) -> None:
        """A child found no work (it says when the next delayed job is due)."""
        assert child.conn is not None
        try:
            report = loads(child.conn.recv_bytes())
        except Exception as exc:
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
            if not isinstance(exc, (EOFError, OSError)):  # it exited; _on_exit deals with that
                logger.exception("worker %s: unreadable report of a child", self.worker_id)
                self._kill(child, "crash", None)
            return
        self.next_due = report["next_due"]
        child.idle, child.waits = True, bool(report.get("waits"))
        child.reported.set()
        if self.stopping:
            self._send(child, STOP)
        elif (self.burst or self._took_enough()) and all(
            # One that waits on the wake-up list itself may have taken a job since it said
            # it was idle: it runs it now.
            (c.idle and not c.board.busy()) or c.process is None
            for c in self.children
        ):
            self._begin_stop()
        elif not child.waits:
            self.someone_idle.set()

    def _took_enough(self) -> bool:
        limit = self.config.max_jobs
        return limit is not None and self.shared.taken.value >= limit

    def _kill(self, child: Child, reason: str, running: Running | None) -> None:
        if child.kill_reason is not None or child.process is None:
            return
        child.kill_reason, child.killed_running = reason, running
        # The whole group: the job's own subprocesses must not outlive it.
        kill_group(child.process)

    def _on_exit(self, child: Child) -> None:
        """A child exited: told to, killed by us, or crashed. Record what it could not."""
        assert child.process is not None
        assert child.conn is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.process.sentinel)
        loop.remove_reader(child.conn.fileno())
        reason, culprit = child.kill_reason, child.killed_running
        published = child.board.running()
        if reason is None and published:
            reason = "crash"
            # What the crashed jobs started dies with them, as for a timeout. Before join():
            # until the child is reaped its group id cannot be anyone else's.
            kill_group(child.process)
        child.process.join()
        code = child.process.exitcode
        child.conn.close()
        child.process, child.conn, child.idle = None, None, False
        for why, running in exit_records(reason, culprit, published):
            self._background(self._after_exit(why, running, code))
        if child.kill_reason is None and (wait := child.restart_pause(code)):
            loop.call_later(wait, self._replace, child)
        else:
            self._replace(child)

    def _replace(self, child: Child) -> None:
        """Start a process in the place of one that ended, or finish once none is left.

        A failed start (no memory, too many processes) is logged and tried again a second
        later: the worker must not lose a process for the rest of its life.
        """
        if not self.stopping:
            try:
                self._spawn(child)
            except Exception:
                logger.exception(
                    "worker %s: could not start a process; again in 1s", self.worker_id
                )
                asyncio.get_running_loop().call_later(1.0, self._replace, child)
        elif all(c.process is None for c in self.children):
            self.finished.set()

    async def _after_exit(self, reason: str, running: Running, code: int | None) -> None:
        """Record the outcome of a job whose process was killed or crashed."""
        self.unrecorded.add(running.job_id)  # until it is recorded, also if this is cancelled
        if await record_exit(self.jobs, self.leases, reason, running, code, self.abandon):
            self.unrecorded.discard(running.job_id)

    async def _wind_down(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Let the background loops and the recording of outcomes end, within bounds.

        While Redis answers they end by themselves within about a second. While it does not,
        they stop waiting for it after ``RECORD_AFTER_STOP`` seconds; a call still in flight
        then (a frozen server answers nothing until the socket timeout) is cancelled, as the
        worker exits anyway. What was not recorded is left to lease recovery, and logged.
        """
        asyncio.get_running_loop().call_later(RECORD_AFTER_STOP, self.abandon.set)
        _, left = await asyncio.wait(tasks, timeout=RECORD_AFTER_STOP + 1.0)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    # -- watching -----------------------------------------------------------------------------

    async def _keep_going(
        self, name: str, step: Callable[[], Awaitable[object]], done: Callable[[], bool]
    ) -> None:
        await keep_going(f"worker {self.worker_id}: {name}", step, done, self.finished)

    async def _recover(self) -> None:
        """Bring back the jobs of workers that died (their leases expired)."""
        await self._keep_going("recovery", self._recover_expired, lambda: self.stopping)

    async def _recover_expired(self) -> None:
        recovered = await auntil_redis_answers(self.leases.arecover_expired, until=self.stopped)
        for job_id in recovered.requeued:
            logger.warning("job %s: its worker was lost; requeued", job_id)
        await report_buried(self.jobs, recovered.buried)
        if len(recovered.requeued) + len(recovered.buried) < RECOVER_LIMIT:
            await pause(min(self.lease / 2, 30.0), self.stopped)

    async def _sweep(self) -> None:
        """Move jobs committed while Redis did not answer from the outbox to Redis."""
        await pause(OUTBOX_EVERY, self.stopped)
        if not self.stopping:
            await asyncio.to_thread(outbox.sweep)

    async def _wait_wakeup(self, timeout: float) -> bool:
        if self.wakeups is not None:
            return await self.wakeups.wait(timeout)
        keys = self.leases.queue_keys(self.queues[0])  # the one shard of the served queues
        return await arun(calls.wait_wakeup(keys, timeout=timeout))

    async def _wake_idle(self) -> None:
        """Block on the wake-up list while some child is idle and waits for a GO (not on the
        list itself: see wakeups.py); wake one child per token."""
        await self._keep_going("the wake-up loop", self._wake_one, lambda: self.stopping)

    def _waiting_for_go(self) -> list[Child]:
        return [c for c in self.children if c.idle and not c.waits]

    async def _wake_one(self) -> None:
        idle = self._waiting_for_go()
        if not idle:
            self.someone_idle.clear()
            await self.someone_idle.wait()
            return
        timeout = IDLE_BLOCK
        if self.next_due is not None:
            timeout = min(IDLE_BLOCK, max(self.next_due - time.time(), 0.001))
        token = await auntil_redis_answers(
            functools.partial(self._wait_wakeup, timeout), until=self.stopped
        )
        self.quiet = 0 if token else self.quiet + 1
        due = self.next_due is not None and self.next_due <= time.time()
        # One that runs nothing first: it takes a job of any kind at once.
        idle = self._waiting_for_go()
        child = min(idle, key=lambda c: c.board.busy(), default=None)
        if (
            child is not None
            and not self.stopping
            and (token or due or self.quiet % IDLE_CLAIM_EVERY == 0)
        ):
            # Give its claim a moment to report when the next delayed job is due.
            child.reported.clear()
            self._send(child, GO)
            await pause(0.01, child.reported)
