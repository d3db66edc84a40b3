"""The plans behind looking at and operating many jobs at once: the counts, pages of jobs and
purges. Like :mod:`django_jobs.store.calls`, one plan per script, with named parameters;
callers pass times, limits and filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_jobs.job import Job
from django_jobs.store.calls import _jobs, record, stamp
from django_jobs.store.execute import Plan
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import SCRIPTS
from django_jobs.store.worker_calls import WorkerInfo, read_workers


@dataclass(frozen=True)
class Counts:
    """What :func:`stats` reads: the lengths of the ready lists; the sizes of scheduled,
    retrying, processing, dead, completed and cancelled; the counters; per ready list the
    (created_at, scheduled_at) epoch seconds of its head job (``None`` for an empty list, each
    time ``None`` when unset); and the workers."""

    lengths: list[int]
    states: list[int]
    counters: dict[str, int]
    heads: list[tuple[float | None, float | None] | None]
    workers: list[WorkerInfo]


def _time(value: Any) -> float | None:
    return float(value) if value else None


def stats(keys: Keys, *, lists: list[str], keep_since: float, workers_since: float) -> Plan[Counts]:
    """The counts of ``lists`` and of every state, the heads of ``lists``, and the workers
    that beat since ``workers_since`` (see stats.lua)."""
    lengths, states, counters, heads, workers = yield SCRIPTS["stats"].call(
        **keys.state_sets,
        counters=keys.counters,
        workers=keys.workers,
        lists=lists,
        prefix=keys.prefix,
        keep_since=keep_since,
        workers_since=stamp(workers_since),
    )
    return Counts(
        lengths=[int(n) for n in lengths],
        states=[int(n) for n in states],
        counters={k: int(v) for k, v in record(counters).items()},
        heads=[(_time(head[0]), _time(head[1])) if head else None for head in heads],
        workers=read_workers(workers),
    )


def page(
    keys: Keys,
    *,
    sources: list[tuple[str, str]],
    cursor: int,
    limit: int,
    scan_limit: int,
    queue: str = "",
    name: str = "",
    status: str = "",
) -> Plan[tuple[list[Job], int | None, int, int]]:
    """A page of the jobs of the (kind, key) ``sources`` read as one sequence from position
    ``cursor`` (see page.lua): (the jobs, the position to go on from or ``None`` at the end,
    the entries in the sources, the entries looked at)."""
    jobs, position, total, scanned = yield SCRIPTS["page"].call(
        route=keys.dead,
        prefix=keys.prefix,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        queue=queue,
        name=name,
        status=status,
        sources=[value for source in sources for value in source],
    )
    position = int(position)
    return _jobs(jobs), (None if position < 0 else position), int(total), int(scanned)


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
) -> Plan[tuple[int, int | None]]:
    """Delete for good a batch of the jobs of ``source`` (``kind`` "L": a ready list; else a
    zset, of which those scored ``max_score`` or less) of ``queue`` named ``name`` ("" = any),
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
    )
    return int(deleted), (None if int(next_start) < 0 else int(next_start))
