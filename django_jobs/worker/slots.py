"""What a child process runs, in memory shared with its supervisor, and the messages between
them.

A child publishes each job it runs in a :class:`Slot` of its :class:`Board`: one slot for a
sync job (a process runs one at a time), one per async job it runs side by side (up to
``--async-concurrency``). The supervisor reads the boards, without a system call, to renew the
leases of all running jobs in one call, enforce timeouts, stop cancelled jobs, list the jobs in
the worker's heartbeat, and record what a crashed child's jobs could not.
"""

from __future__ import annotations

import ctypes
import heapq
import time
from dataclasses import dataclass
from typing import Any

from django_jobs.job import Job

# What the supervisor tells a child that said it has room for work (``GO``: claim; ``STOP``),
# and how it asks a child to stop one of its async jobs: b"end <reason> <job id> <lease token>",
# the reason being "cancel" or "lost".
GO = b"go"
STOP = b"stop"
END = b"end"

# What a slot holds (``Slot.mode``). A sync job's process is killed to stop it; an async job is
# stopped by its process (the supervisor asks it), and is no longer running its code once it
# is RECORDING (its outcome is on the way to Redis, its lease still renewed).
SYNC = 1
ASYNC = 2
RECORDING = 3


@dataclass(frozen=True)
class Running:
    """A snapshot of a job a child is running. ``seq`` tells one snapshot of a slot from the
    next; ``index`` is the slot."""

    seq: int
    job_id: str
    token: str
    started: float
    timeout: float
    mode: int = SYNC
    index: int = 0

    # What Leases.extend_lease reads of a job.
    @property
    def id(self) -> str:
        return self.job_id

    @property
    def lease_token(self) -> str:
        return self.token


class Slot(ctypes.Structure):
    """One running job, in memory shared with the supervisor.

    The child writes, the supervisor reads. ``seq`` is odd while the child writes, so that the
    supervisor can tell a torn read and read again.
    """

    _fields_ = (
        ("seq", ctypes.c_uint64),
        ("job_id", ctypes.c_char * 64),
        ("token", ctypes.c_char * 32),
        ("started", ctypes.c_double),
        ("timeout", ctypes.c_double),
        ("mode", ctypes.c_uint8),
    )

    def publish(self, job: Job | None, mode: int = SYNC) -> None:
        self.seq += 1
        self.job_id = job.id.encode() if job else b""
        self.token = (job.lease_token or "").encode() if job else b""
        self.started = time.time()
        self.timeout = float(job.timeout) if job else 0.0
        self.mode = mode if job else 0
        self.seq += 1

    def set_mode(self, mode: int) -> None:
        self.seq += 1
        self.mode = mode
        self.seq += 1

    def read(self, index: int = 0) -> Running | None:
        for _ in range(1000):
            seq = self.seq
            snapshot = (self.job_id, self.token, self.started, self.timeout, self.mode)
            if seq % 2 == 0 and self.seq == seq:
                break
        job_id, token, started, timeout, mode = snapshot
        if not job_id:
            return None
        return Running(seq, job_id.decode(), token.decode(), started, timeout, mode, index)


class Board:
    """The slots of one child: ``size`` of them, in shared memory made by ``context``.

    The child takes the lowest free slot for each job it starts and keeps ``top`` (one past the
    highest slot in use), so that the supervisor reads only as many slots as are in use.
    """

    def __init__(self, context: Any, size: int) -> None:
        self.slots = context.RawArray(Slot, size)
        self.top = context.RawValue(ctypes.c_int, 0)
        self.free: list[int] = list(range(size))  # the child's own: which slots it may take

    @property
    def size(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> Slot:
        return self.slots[index]

    # -- the child's side ---------------------------------------------------------------------

    def publish(self, job: Job | None, mode: int = SYNC) -> None:
        """Publish the job the process runs now (slot 0), or that it runs none: a sync job, or
        the first of async jobs (:meth:`take` then publishes it again in the same slot).

        A process never runs a sync job while async ones run, so slot 0 is free then.
        """
        self.slots[0].publish(job, mode)
        self.top.value = 1 if job else 0

    def take(self, job: Job, mode: int) -> int:
        """Publish ``job`` in the lowest free slot; return that slot's index."""
        index = heapq.heappop(self.free)
        self.slots[index].publish(job, mode)
        if index >= self.top.value:
            self.top.value = index + 1
        return index

    def release(self, index: int) -> None:
        """The job of slot ``index`` is over: the slot is free again."""
        self.slots[index].publish(None)
        heapq.heappush(self.free, index)
        top = self.top.value
        while top > 0 and not self.slots[top - 1].job_id:
            top -= 1
        self.top.value = top

    def clear(self) -> None:
        """Every slot free (a new process starts with an empty board)."""
        for index in range(self.size):
            if self.slots[index].job_id:
                self.slots[index].publish(None)
        self.free = list(range(self.size))
        self.top.value = 0

    # -- the supervisor's side ----------------------------------------------------------------

    def running(self) -> list[Running]:
        """Every job published now."""
        found = []
        for index in range(min(self.top.value, self.size)):
            snapshot = self.slots[index].read(index)
            if snapshot is not None:
                found.append(snapshot)
        return found

    def read(self, index: int) -> Running | None:
        return self.slots[index].read(index)

    def busy(self) -> int:
        """How many slots are (or were, a moment ago) in use: 0 when the child runs nothing."""
        return int(self.top.value)
