"""The idle child that waits on its shard's wake-up list itself (``wakeups.py``): it sends its
claim behind each wait, in the same write (``BLPOP``, then the claim script: see
``store/waiting.py``). Redis runs the claim as soon as a token comes (or the block runs out), so
the job's record follows the token without a round trip of its own: from an enqueue to the start
of its job, an idle worker takes one reply, not two.

The claim may run up to a block after it was sent: it runs by the server's clock (its lease
starts when it runs; see ``claim.lua``). What the child checks before any claim (stopping, its
``max_jobs``, a silent supervisor: ``ChildLoop.reserve``) it checks once the reply came; the
jobs it may not keep go back to the head of their lists at once, unstarted, as do those of a
claim that STOP ended.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from django_jobs.job import Job
from django_jobs.store.commands import Plan
from django_jobs.worker.execute import report_given_back
from django_jobs.worker.leases import Claim, Leases
from django_jobs.worker.retry import WAITED_OUT, until_redis_answers
from django_jobs.worker.slots import STOP
from django_jobs.worker.wakeups import ChildWakeups


class Child(Protocol):
    """What the idle path needs of a child process (``ChildLoop``)."""

    conn: Connection
    leases: Leases

    def claim_options(self, batch: int | None = None) -> dict[str, Any]: ...

    def reserve(self, wanted: int = 1) -> int: ...

    def taken(self, claim: Claim, wanted: int = 1) -> None: ...

    def stopping(self) -> bool: ...


class IdleClaims:
    """The waits of an idle child with its claims behind them (:meth:`wait`)."""

    def __init__(
        self, child: Child, wakeups: ChildWakeups, queues: list[str], lease: float
    ) -> None:
        self.child = child
        self.wakeups = wakeups
        self.queues = queues
        self.lease = lease

    def wait(self, next_due: float | None) -> Claim | bytes:
        """Wait for work and claim it: the claim (it may have taken nothing, when the jobs went
        back), or ``GO`` (claim now, without a wait in front) or ``STOP``."""
        message, claim = self.wakeups.wait(self.child.conn, next_due, self._plan)
        if claim is None or claim.job is None:
            return message
        jobs = [claim.job, *claim.more]
        if message == STOP:
            self._give_back(jobs)
            return STOP
        kept = self.child.reserve(len(jobs))  # stopping, max_jobs, a silent supervisor
        self._give_back(jobs[kept:])
        if not kept:
            return Claim(None, None)
        claim = Claim(jobs[0], None, more=tuple(jobs[1:kept]))
        self.child.taken(claim, kept)
        return claim

    def _plan(self) -> Plan[Claim] | None:
        """The claim to send behind the next block; none while the worker stops."""
        if self.child.stopping():
            return None
        # By the server's clock, when it runs (see lease_calls.claim).
        options = {**self.child.claim_options(), "now": None, "deadline": None}
        return self.child.leases._claim(self.queues, options={**options, "lease": self.lease})

    def _give_back(self, jobs: Sequence[Job]) -> None:
        """Give ``jobs``, leased and not started, back to the head of their lists (the last
        first: they keep their order). If Redis does not answer while the worker stops, their
        leases run out and recovery takes them up again."""
        for job in reversed(jobs):
            try:
                outcome = until_redis_answers(
                    functools.partial(self.child.leases.release_job, job),
                    give_up=self.child.stopping,
                )
            except WAITED_OUT:
                return
            report_given_back(
                job, outcome, "claimed as its process stopped taking jobs, not started"
            )
