"""Unique keys in the in-memory store of the testing modes, held as Redis holds them.

A small Python mirror of ``unique_holder`` and ``unique_take`` in ``store/lua/_flow.lua`` (the
rules are Lua only: there is no Python description of them to reuse); the names and branches
follow the Lua so the two can be read side by side, and the tests run the same scenarios on
both (tests/test_testing_unique.py). What the ``unique_*`` fields of a record mean is
:mod:`django_jobs.flow`'s.

A lock is (holder id, when it expires or ``None``) per (prefix, key), as the key
``<prefix>:unique:<key>`` with its TTL. Time is the store's clock, not the real one: capture
mode's ``drain()`` and ``advance()`` move it, so a ``unique_for`` window ends when the test
says. The release at a job's start or end (``unique_release``) has no twin here: the holder's
status, read at each take as ``unique_holder`` reads it, frees the key past its point of
release, so deleting the lock as well would change no answer. Only a record deleted for good
(``delete_jobs()``, ``purge()``) gives its key back (:meth:`UniqueKeys.release`), as
``delete_job`` does in Redis: without its record, a lock with a time would hold on. A requeued
dead letter takes its key again (:meth:`UniqueKeys.take`), as ``requeue.lua`` does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Protocol

from django_jobs.job import Job

# The statuses past which an "until it finishes" key is free (the job ended).
_ENDED = ("completed", "failed", "cancelled")


class _Stored(Protocol):
    """What the store keeps of a job that this module reads: its prefix and its hash."""

    prefix: str
    fields: dict[str, str]


class UniqueKeys:
    """The unique locks of one :class:`~django_jobs.testing.store.MemoryStore`, read against
    its records (``records``: the store's own dict of them, by job id) at its clock's time
    (``now``: epoch seconds)."""

    def __init__(self, records: Mapping[str, _Stored], now: Callable[[], float]) -> None:
        self._records = records
        self._now = now
        self._locks: dict[tuple[str, str], tuple[str, float | None]] = {}

    def held(self, prefix: str, job: Job, holders: dict[str, str]) -> bool:
        """Whether another job holds ``job``'s unique key, so that ``job`` is not stored: that
        job's id is then put in ``holders[job.id]``. Otherwise ``job`` takes the key, if it
        has one (:meth:`take`)."""
        holder = self.take(prefix, job, self._now())
        if holder is None:
            return False
        holders[job.id] = holder
        return True

    def take(self, prefix: str, job: Job, now: float) -> str | None:
        """Take ``job``'s unique key (if it has one) at ``now``, for its ``unique_for``
        seconds or until its holder's status frees it; returns the id of the job that holds
        the key instead, or ``None``. As ``unique_take``."""
        if not job.unique_key:
            return None
        holder = self.holder(prefix, job.unique_key, now)
        if holder is not None and holder != job.id:
            return holder
        seconds = job.unique_for
        expires = None
        if seconds is not None and 0 < seconds < 1e12:
            # Redis keeps the TTL in whole milliseconds, rounded up (SET ... PX).
            expires = now + math.ceil(seconds * 1000) / 1000
        self._locks[prefix, job.unique_key] = (job.id, expires)
        return None

    def holder(self, prefix: str, key: str, now: float) -> str | None:
        """The id of the job that holds ``key`` at ``now``, or ``None`` when it is free. As
        ``unique_holder``: a lock past its time is gone; one whose holder's record is gone
        holds while its window runs; otherwise the holder's mode and status say."""
        lock = self._locks.get((prefix, key))
        if lock is None:
            return None
        holder, expires = lock
        if expires is not None and now >= expires:
            del self._locks[prefix, key]  # as Redis expires the key
            return None
        record = self._records.get(holder)
        if record is None or record.prefix != prefix:
            return holder if expires is not None else None
        status, mode = record.fields.get("status"), record.fields.get("unique_until")
        if mode == "window":
            return holder
        if mode == "started" and status != "pending":
            return None
        if status in _ENDED:
            return None
        return holder

    def release(self, prefix: str, job: Job) -> None:
        """Give ``job``'s unique key back as its record is deleted, if it still holds it and its
        mode is not a window (which runs its time). As ``unique_release`` at a job's end."""
        lock = self._locks.get((prefix, job.unique_key or ""))
        if lock is not None and lock[0] == job.id and job.unique_until != "window":
            del self._locks[prefix, job.unique_key or ""]

    def as_stored(
        self, jobs: list[Job], held: Mapping[str, str], read: Callable[[str], Job]
    ) -> list[Job]:
        """What an enqueue of ``jobs`` returns, each as stored now (``read``); in place of a
        job whose key another held (``held``: its id -> the holder's), the holder, or, if the
        holder's record is gone (a window outlives it), the job under the holder's id, as
        ``JobQueue.enqueue_many`` answers."""
        return [
            dataclasses.replace(job, id=held[job.id])
            if job.id in held and held[job.id] not in self._records
            else read(held.get(job.id, job.id))
            for job in jobs
        ]

    def clear(self) -> None:
        """Drop every lock (the store forgets its jobs)."""
        self._locks.clear()
