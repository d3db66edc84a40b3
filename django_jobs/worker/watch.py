"""The supervisor's watch over the jobs its children run: lease renewal, timeouts, and stopping a
job that was cancelled or whose lease was lost.

It reads what each child publishes in shared memory (``slots.py``). A sync job is stopped by
killing its process (with the job's own subprocesses). An async job is stopped by its process,
which the supervisor asks (``END``) and which enforces the job's timeout itself; only a job that
has not stopped a moment later (``ASYNC_STOP_GRACE``: it blocks the event loop, or ignores its
cancellation) gets its process killed, and the other async jobs of that process go back to the
head of their lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from django_jobs.worker.children import Child
from django_jobs.worker.retry import auntil_redis_answers, pause
from django_jobs.worker.slots import ASYNC, END, LEASED, SYNC, Running

if TYPE_CHECKING:
    from django_jobs.worker.child import Shared
    from django_jobs.worker.leases import Leases

logger = logging.getLogger("django_jobs.worker")

# How often running jobs are checked against their timeouts (and the children are told that the
# supervisor is alive: see child.SUPERVISOR_SILENT).
WATCH_EVERY = 0.1
# How long an async job may go on after its timeout, or after its process was asked to stop it,
# before the process is killed.
ASYNC_STOP_GRACE = 2.0


class Watch:
    """What :class:`~django_jobs.worker.supervisor.Worker` does about running jobs (a mixin)."""

    children: list[Child]
    leases: Leases
    lease: float
    shared: Shared
    finished: asyncio.Event

    # The worker's own: kill a child's process (for one job, or for all), and run a loop that
    # survives any error.
    _kill: Callable[[Child, str, Running | None], None]
    _keep_going: Callable[
        [str, Callable[[], Awaitable[object]], Callable[[], bool]], Awaitable[None]
    ]

    def _running(self) -> list[tuple[Child, Running]]:
        """Every job the live children publish, with its child."""
        found = []
        for child in self.children:
            if child.process is not None and child.kill_reason is None:
                found.extend((child, running) for running in child.board.running())
        return found

    def _stop_job(self, child: Child, reason: str, running: Running) -> None:
        """Stop a job that was cancelled or whose lease was lost (``reason``)."""
        if running.mode == SYNC:
            self._kill(child, reason, running)
            return
        if running.mode == LEASED:
            # Not started: its process cancels it instead of starting it. Lost, it is left
            # alone until it starts (a SYNC job then).
            if reason == "cancel":
                child.board.drop(running)
            return
        key = (running.index, running.seq)
        if running.mode != ASYNC or key in child.asked or child.conn is None:
            return  # its outcome is being recorded, or its process was asked already
        child.asked[key] = (reason, time.time())
        message = f" {reason} {running.job_id} {running.token}".encode()
        with contextlib.suppress(OSError):
            child.conn.send_bytes(END + message)

    async def _watch_timeouts(self) -> None:
        """Stop the jobs that overran their timeout, until no child is left."""
        await self._keep_going("the timeout check", self._check_timeouts, self.finished.is_set)

    async def _check_timeouts(self) -> None:
        self.shared.beat()
        now = time.time()
        for child, running in self._running():
            if running.mode == SYNC and now > running.started + running.timeout:
                self._kill(child, "timeout", running)
            elif running.mode == ASYNC:
                # Its process stops it at its timeout; one that goes on is stuck.
                due = running.started + running.timeout
                reason, since = child.asked.get((running.index, running.seq), ("timeout", due))
                if now > min(since, due) + ASYNC_STOP_GRACE:
                    logger.warning(
                        "job %s: still running %.1fs after it should have stopped (%s); killing "
                        "its process",
                        running.job_id,
                        now - min(since, due),
                        reason if since < due else "timeout",
                    )
                    self._kill(child, reason if since < due else "timeout", running)
        await pause(WATCH_EVERY, self.finished)

    async def _keep_leases(self) -> None:
        """Renew the leases of all running jobs in one call, a few times per lease period.

        This goes on while jobs run during a graceful stop.
        """
        await self._keep_going("lease renewal", self._renew_leases, self.finished.is_set)

    async def _renew_leases(self) -> None:
        await pause(self.lease / 3, self.finished)
        running = self._running()
        if not running:
            return
        state = await auntil_redis_answers(
            functools.partial(self.leases.aextend_lease, [r for _, r in running], self.lease),
            until=self.finished,
        )
        lost, cancel = set(state.lost), set(state.cancel_requested)
        suspects: dict[int, dict[str, Running]] = {}
        published: dict[int, set[tuple[int, int]]] = {}
        for child, snapshot in running:
            published.setdefault(id(child), set()).add((snapshot.index, snapshot.seq))
            now = child.board.read(snapshot.index)
            if now is None or now.seq != snapshot.seq:
                continue  # the child moved on meanwhile: that job is done
            if snapshot.job_id in cancel:
                self._stop_job(child, "cancel", snapshot)
            elif snapshot.job_id in lost:
                # Lost twice in a row for the same run: it really belongs to another worker.
                if child.suspects.get(snapshot.job_id) == snapshot:
                    logger.warning("job %s: lease lost, stopping it", snapshot.job_id)
                    self._stop_job(child, "lost", snapshot)
                suspects.setdefault(id(child), {})[snapshot.job_id] = snapshot
        for child in self.children:
            child.suspects = suspects.get(id(child), {})
            seen = published.get(id(child), set())
            child.asked = {key: value for key, value in child.asked.items() if key in seen}
