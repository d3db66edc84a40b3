"""The plans behind operating django-jobs: worker heartbeats, deleting jobs, and the counts of
attempts per minute. Like :mod:`django_jobs.store.calls` (which is full), one plan per script,
with named parameters; callers pass times and time-to-lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_jobs.job import Job
from django_jobs.serialization import dumps, from_timestamp, loads
from django_jobs.store.calls import _jobs, record, result_since, stamp, text
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import SCRIPTS

# -- worker heartbeats --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """A ``runworker`` supervisor as its heartbeat describes it.

    ``alive`` is false once its record expired: it stopped beating without a clean stop (killed,
    its machine lost, frozen); then only ``id`` and ``last_beat`` are known. ``jobs`` are the ids
    of the jobs its processes were running at its last beat; ``stopping`` says that it takes no
    more jobs and waits for the running ones to finish.
    """

    id: str
    alive: bool
    last_beat: datetime
    host: str = ""
    pid: int | None = None
    queues: tuple[str, ...] = ()
    concurrency: int | None = None
    started_at: datetime | None = None
    jobs: tuple[str, ...] = ()
    version: str = ""
    stopping: bool = False


def worker_record(
    *,
    host: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    started_at: float,
    jobs: list[str],
    version: str,
    stopping: bool,
) -> dict[str, str]:
    """The fields of a heartbeat record, as :func:`workers` reads them back."""
    return {
        "host": host,
        "pid": str(pid),
        "queues": dumps(queues),
        "concurrency": str(concurrency),
        "started_at": stamp(started_at),
        "jobs": dumps(jobs),
        "version": version,
        "stopping": "1" if stopping else "0",
    }


def _strings(value: str | None) -> tuple[str, ...]:
    """A JSON list of strings as a tuple; anything else (a record of another version) as ()."""
    try:
        items = loads(value or "[]")
    except ValueError:
        return ()
    return tuple(str(item) for item in items) if isinstance(items, list) else ()


def _worker(worker_id: Any, beat: Any, flat: list[Any]) -> WorkerInfo:
    fields = record(flat)
    last_beat = from_timestamp(text(beat))
    if not fields:
        return WorkerInfo(text(worker_id), False, last_beat)
    started = fields.get("started_at")
    return WorkerInfo(
        id=text(worker_id),
        alive=True,
        last_beat=last_beat,
        host=fields.get("host", ""),
        pid=int(fields["pid"]) if fields.get("pid", "").isdigit() else None,
        queues=_strings(fields.get("queues")),
        concurrency=int(fields["concurrency"]) if fields.get("concurrency", "").isdigit() else None,
        started_at=from_timestamp(started) if started else None,
        jobs=_strings(fields.get("jobs")),
        version=fields.get("version", ""),
        stopping=fields.get("stopping") == "1",
    )


def worker_beat(
    keys: Keys,
    *,
    worker_id: str,
    fields: dict[str, str],
    now: float,
    ttl: float,
    forget_before: float,
) -> Plan[None]:
    """Write the heartbeat record ``fields`` of ``worker_id``, to expire ``ttl`` seconds from
    now unless written again, and index it at ``now``; forget the workers not seen since
    ``forget_before``."""
    yield SCRIPTS["worker_beat"].call(
        workers=keys.workers,
        worker=keys.worker(worker_id),
        id=worker_id,
        now=stamp(now),
        ttl_ms=max(int(ttl * 1000), 1),
        forget_before=stamp(forget_before),
        fields=[value for item in fields.items() for value in item],
    )


def worker_gone(keys: Keys, *, worker_id: str) -> Plan[None]:
    """A worker stopped cleanly: its record and index entry go."""
    yield SCRIPTS["worker_gone"].call(
        workers=keys.workers, worker=keys.worker(worker_id), id=worker_id
    )


def workers(keys: Keys, *, since: float) -> Plan[list[WorkerInfo]]:
    """The workers that beat at ``since`` (epoch seconds) or later: the live ones and those
    whose record expired since, in the order of their last beats."""
    reply = yield SCRIPTS["workers"].call(
        workers=keys.workers, prefix=keys.prefix, since=stamp(since)
    )
    return read_workers(reply)


def read_workers(reply: list[Any]) -> list[WorkerInfo]:
    """The workers of a reply of ``read_workers`` (``_lib.lua``)."""
    return [_worker(*reply[i : i + 3]) for i in range(0, len(reply), 3)]


# -- deleting jobs ------------------------------------------------------------------------------


def delete(
    keys: Keys, *, ids: list[str], now: float, job_ttl: int
) -> Plan[tuple[list[str], list[Job]]]:
    """Delete the jobs ``ids`` for good, unless one is running: returns (the running ones, of
    which none was deleted, and nothing else was either) or ([], the deleted jobs as they were,
    with their results; ids without a record are left out). The workflow steps that wait for a
    deleted step are cancelled at ``now``, kept ``job_ttl``."""
    running, deleted = yield SCRIPTS["delete"].call(
        **keys.state_sets,
        prefix=keys.prefix,
        now=stamp(now),
        job_ttl=job_ttl,
        result_since=result_since(),
        ids=ids,
    )
    return [text(i) for i in running], _jobs(deleted)


# -- attempts per minute ------------------------------------------------------------------------


def throughput(keys: Keys, *, last: int, count: int) -> Plan[list[tuple[int, int, int, int]]]:
    """Per minute, oldest first, for the ``count`` minutes up to the one starting at ``last``
    (epoch seconds, a multiple of 60): (its start, attempts completed, failed, dead-lettered)."""
    reply = yield SCRIPTS["throughput"].call(
        route=keys.workers, prefix=keys.prefix, last=last, count=count
    )
    start = last - 60 * (count - 1)
    minutes = []
    for i, (completed, failed, dead) in enumerate(reply):
        counts = [int(value) if value else 0 for value in (completed, failed, dead)]
        minutes.append((start + 60 * i, counts[0], counts[1], counts[2]))
    return minutes
