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
# A job of a batch its sync process leased and has not started yet (it runs after the one in
# slot 0): its lease is renewed, no timeout runs for it, and when its process dies it goes back
# to the head of its list, no attempt counted (children.exit_records).
LEASED = 4


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
    highest slot in use), so that the supervisor reads only as many slots as are in use. A sync
    process publishes the jobs of a batch it has not started in slots 1 to ``held``.
    """

    def __init__(self, context: Any, size: int) -> None:
        self.slots = context.RawArray(Slot, size)
        self.top = context.RawValue(ctypes.c_int, 0)
        self.free: list[int] = list(range(size))  # the child's own: which slots it may take
        self.held = 0  # the child's own: slots 1 to held hold LEASED jobs (some may be over)
        # The supervisor's to write: the seq of a LEASED job whose cancellation was requested,
        # in its slot's entry; the child cancels it rather than start it (see :meth:`dropped`).
        self.drops = context.RawArray(ctypes.c_uint64, size)

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
        self.top.value = self.held + 1 if self.held else int(job is not None)

    def hold(self, jobs: tuple[Job, ...]) -> None:
        """Publish the jobs of a batch that the process runs after the one in slot 0 (LEASED),
        in slots 1, 2, ... (the next batch is leased once they are all over)."""
        for index, job in enumerate(jobs, 1):
            self.slots[index].publish(job, LEASED)
        self.held = len(jobs)
        self.top.value = self.held + 1

    def dropped(self, index: int) -> bool:
        """Whether the supervisor asked that the job held in slot ``index`` not be started
        (its cancellation was requested). The seq tells that job from a later one."""
        return bool(self.drops[index] == self.slots[index].seq)

    def start(self, index: int, job: Job) -> None:
        """Publish ``job``, held in slot ``index``, as the one the process runs now. It is in
        slot 0 before it leaves its slot: a crash in between finds it running, not nowhere."""
        self.slots[0].publish(job, SYNC)
        self.let_go(index)

    def let_go(self, index: int) -> None:
        """The job held in slot ``index`` is no longer held (started, cancelled or given
        back); with the last slot of the batch, the process holds none."""
        self.slots[index].publish(None)
        if index == self.held:
            self.held = 0
            self.top.value = int(bool(self.slots[0].job_id))

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
        self.held = 0
        self.top.value = 0

    # -- the supervisor's side ----------------------------------------------------------------

    def drop(self, running: Running) -> None:
        """Ask the child not to start ``running``, a LEASED job (see :meth:`dropped`)."""
        self.drops[running.index] = running.seq

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
