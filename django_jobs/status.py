"""The states and priorities of a job, and its ids."""

from __future__ import annotations

import enum
import os


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    #: A step of a chain or group waiting for the steps before it (django_jobs.workflow).
    WAITING = "waiting"
    #: Made by ``.delay()`` inside ``transaction.atomic()``: in the outbox table, not yet in
    #: Redis (a handle's status only; Redis never holds it).
    WAITING_FOR_COMMIT = "waiting_for_commit"

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


#: The statuses a job in Redis can have (WAITING_FOR_COMMIT is only a handle's).
STORED_STATUSES: tuple[JobStatus, ...] = tuple(
    s for s in JobStatus if s is not JobStatus.WAITING_FOR_COMMIT
)


class JobPriority(enum.IntEnum):
    """Strict priorities: a worker always takes CRITICAL before HIGH before NORMAL before LOW."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: JobPriority | int | str) -> JobPriority:
        """Accept a member, its value or its name in any case; raise ``ValueError`` otherwise."""
        if value.__class__ is cls:  # the common case, first: a member (each enqueue parses one)
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(f"{p.name} ({p.value})" for p in cls)
        raise ValueError(f"Unknown priority {value!r}; use one of {choices}.")


def new_id() -> str:
    """A random 128-bit id in hex, for jobs and lease tokens (like ``uuid4().hex``, faster)."""
    return os.urandom(16).hex()


def new_ids(count: int) -> list[str]:
    """``count`` ids like :func:`new_id`'s, from one read of the system's random source (a
    system call per id costs more than the rest of building a job of ``build_jobs()``)."""
    raw = os.urandom(16 * count).hex()
    return [raw[start : start + 32] for start in range(0, 32 * count, 32)]


# Highest first: the order in which a worker looks at the lists of a queue.
PRIORITIES_HIGH_FIRST: tuple[JobPriority, ...] = tuple(sorted(JobPriority, reverse=True))
