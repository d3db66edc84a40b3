"""The plans behind looking at and operating many jobs at once: the counts, the flow control
limits, pages of jobs and purges. Like :mod:`django_jobs.store.calls`, one plan per script,
with named parameters; callers pass times, limits and filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_jobs.job import Job
from django_jobs.serialization import from_timestamp
from django_jobs.store.calls import _jobs, record, result_since, stamp, text
from django_jobs.store.commands import Command, Plan
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import SCRIPTS
from django_jobs.store.worker_calls import WorkerInfo, read_workers


@dataclass(frozen=True)
class LimitInfo:
    """A rate or concurrency limit (:mod:`django_jobs.flow`) as it stands.

    ``id`` is ``"<kind>:<key>"``, ``kind`` ``"rate"`` or ``"concurrency"``. A rate limit has
    ``tokens`` in its bucket now, of ``size`` (its count: the burst) refilled over ``per``
    seconds; a concurrency limit has ``running`` slots held by live leases, of ``size``.
    ``size`` and ``per`` are as the latest claim that took the limit saw them, ``None`` when no
    job that takes it is known; a rate limit's ``tokens`` are then ``None`` too (its bucket has
    been full for a while). ``waiting``: the jobs parked until the limit lets them start.
    ``last_used``: when a job last took the limit or was parked on it.
    """

    id: str
    kind: str
    key: str
    last_used: datetime
    waiting: int
    tokens: float | None = None
    running: int | None = None
    size: int | None = None
    per: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``last_used`` in ISO 8601), as ``stats()["limits"]`` lists it."""
        return {
            "kind": self.kind,
            "key": self.key,
            "tokens": self.tokens,
            "running": self.running,
            "size": self.size,
            "per": self.per,
            "waiting": self.waiting,
            "last_used": self.last_used.isoformat(),
        }


def _number(value: Any) -> float | None:
    value = text(value)
    return float(value) if value else None


def _limit(entry: list[Any]) -> LimitInfo:
    lid, last_used, level, size, per, waiting = entry
    lid = text(lid)
    kind, _, key = lid.partition(":")
    level_value, size_value = _number(level), _number(size)
    return LimitInfo(
        id=lid,
        kind=kind,
        key=key,
        last_used=from_timestamp(last_used),
        waiting=int(waiting),
        tokens=level_value if kind == "rate" else None,
        running=int(level_value) if kind == "concurrency" and level_value is not None else None,
        size=None if size_value is None else int(size_value),
        per=_number(per),
    )


def limits(keys: Keys, *, now: float, count: int) -> Plan[list[LimitInfo]]:
    """The ``count`` limits used latest, the latest first (see limits.lua)."""
    reply = yield SCRIPTS["limits"].call(
        route=keys.limits, prefix=keys.prefix, now=stamp(now), count=count
    )
    return [_limit(entry) for entry in reply]


@dataclass(frozen=True)
class Counts:
    """What :func:`stats` reads: the lengths of the ready lists; the sizes of scheduled,
    retrying, processing, dead, completed and cancelled; the counters; per ready list the
    (created_at, scheduled_at) epoch seconds of its head job (``None`` for an empty list, each
    time ``None`` when unset); the workers; the limits; and the jobs a limit holds back (on
    the waiting lists a page of pending jobs reads)."""

    lengths: list[int]
    states: list[int]
    counters: dict[str, int]
    heads: list[tuple[float | None, float | None] | None]
    workers: list[WorkerInfo]
    limits: list[LimitInfo]
    parked: int


def _time(value: Any) -> float | None:
    return float(value) if value else None


def stats(
    keys: Keys,
    *,
    lists: list[str],
    keep_since: float,
    workers_since: float,
    now: float,
    limits_count: int,
    parked_lists: int,
) -> Plan[Counts]:
    """The counts of ``lists`` and of every state, the heads of ``lists``, the workers that
    beat since ``workers_since``, the ``limits_count`` limits used latest, and the jobs held
    back on the first ``parked_lists`` waiting lists of the queues of ``lists`` (see
    stats.lua)."""
    lengths, states, counters, heads, workers, limits, parked = yield SCRIPTS["stats"].call(
        **keys.state_sets,
        counters=keys.counters,
        workers=keys.workers,
        lists=lists,
        prefix=keys.prefix,
        keep_since=keep_since,
        workers_since=stamp(workers_since),
        now=stamp(now),
        limits_count=limits_count,
        parked_lists=parked_lists,
    )
    return Counts(
        lengths=[int(n) for n in lengths],
        states=[int(n) for n in states],
        counters={k: int(v) for k, v in record(counters).items()},
        heads=[(_time(head[0]), _time(head[1])) if head else None for head in heads],
        workers=read_workers(workers),
        limits=[_limit(entry) for entry in limits],
        parked=int(parked),
    )


def page(
    keys: Keys,
    *,
    sources: list[tuple[str, str]],
    cursor: int,
    limit: int,
    scan_limit: int,
    parked_lists: int = 0,
    queue: str = "",
    name: str = "",
    status: str = "",
) -> Plan[tuple[list[Job], int | None, int, int, int]]:
    """A page of the jobs of the (kind, key) ``sources`` read as one sequence from position
    ``cursor`` (see page.lua; a "P" source stands for the waiting lists of parked jobs of one
    priority and queue, of the first ``parked_lists`` of their index): (the jobs, the position
    to go on from or ``None`` at the end, the entries in the sources, the entries looked at,
    the waiting lists of the index left out)."""
    jobs, position, total, scanned, left_out = yield SCRIPTS["page"].call(
        route=keys.dead,
        prefix=keys.prefix,
        result_since=result_since(),
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        parked_lists=parked_lists,
        queue=queue,
        name=name,
        status=status,
        sources=[value for source in sources for value in source],
    )
    position = int(position)
    end = None if position < 0 else position
    return _jobs(jobs), end, int(total), int(scanned), int(left_out)


def waiting_lists(keys: Keys, *, start: int, count: int) -> Plan[list[str]]:
    """``count`` entries of the index of the waiting lists of parked jobs from rank ``start``:
    ``"<priority>|<queue>|<limit id>"`` each (see ``_flow.lua``)."""
    reply = yield Command(("ZRANGE", keys.parked, start, start + count - 1))
    return [text(member) for member in reply]


def purge(
    keys: Keys,
    *,
    kind: str,
    source: str,
    start: int,
    batch: int,
    max_score: float | None = None,
    queue: str = "",
    name: str = "",
    now: float,
    job_ttl: int,
) -> Plan[tuple[int, int | None]]:
    """Delete for good a batch of the jobs of ``source`` (``kind`` "L": a ready list, "W": a
    waiting list of parked jobs; else a zset, of which those scored ``max_score`` or less) of
    ``queue`` named ``name`` ("" = any),
    looking at ``batch`` entries from rank ``start`` (see purge.lua): (how many were deleted,
    the rank to go on from, or ``None`` when the source was all looked at)."""
    deleted, next_start = yield SCRIPTS["purge"].call(
        **keys.state_sets,
        source=source,
        prefix=keys.prefix,
        kind=kind,
        start=start,
        batch=batch,
        max_score="+inf" if max_score is None else stamp(max_score),
        queue=queue,
        name=name,
        now=stamp(now),
        job_ttl=job_ttl,
    )
    return int(deleted), (None if int(next_start) < 0 else int(next_start))
