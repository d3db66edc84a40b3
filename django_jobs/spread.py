"""Plans that reach jobs over every shard (:mod:`django_jobs.store.shards`): by id, where the id
points first; by queue, where the queue lives; and the sums the console shows.

Without ``SHARDS`` there is one shard and each of these is the single call it always was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django_jobs.job import Job
from django_jobs.store import shards
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys, Namespace

R = TypeVar("R")


def hinted(job_ids: Iterable[str]) -> dict[str, list[str]]:
    """``job_ids`` grouped by the shard each id names."""
    grouped: dict[str, list[str]] = {}
    for job_id in job_ids:
        grouped.setdefault(shards.of_id(job_id), []).append(job_id)
    return grouped


def by_id(
    space: Namespace,
    job_ids: list[str],
    plan: Callable[[Keys, list[str]], Plan[R]],
    handled: Callable[[R], Iterable[str]],
) -> Plan[list[R]]:
    """Run ``plan`` on each shard for the ids it may hold: first every id on the shard it names
    (one call per shard named), then the ids no call ``handled`` on each other shard, in turn
    (a job moved to another shard keeps its id). Returns the replies in the order made."""
    replies: list[R] = []
    left = dict.fromkeys(job_ids)
    for shard, ids in hinted(job_ids).items():
        reply = yield from plan(space.shard_keys(shard), ids)
        replies.append(reply)
        for job_id in handled(reply):
            left.pop(job_id, None)
    for shard in shards.names() if left else ():
        ids = [job_id for job_id in left if shards.of_id(job_id) != shard]
        if not ids:
            continue
        reply = yield from plan(space.shard_keys(shard), ids)
        replies.append(reply)
        for job_id in handled(reply):
            left.pop(job_id, None)
        if not left:
            break
    return replies


def locate(
    space: Namespace, job_id: str, plan: Callable[[Keys], Plan[R]], missing: Callable[[R], bool]
) -> Plan[tuple[Keys, R]]:
    """Run ``plan`` for one job on the shard its id names, then on the others while the reply
    says it is ``missing`` there; the keys of the shard that answered last, and its reply."""
    found: tuple[Keys, R] | None = None
    for shard in shards.shards_to_try(job_id):
        keys = space.shard_keys(shard)
        reply = yield from plan(keys)
        found = (keys, reply)
        if not missing(reply):
            break
    assert found is not None
    return found


def fetched(
    space: Namespace, job_ids: list[str], fetch: Callable[..., Plan[list[Job]]]
) -> Plan[dict[str, Job]]:
    """The jobs of ``job_ids`` that exist, by id, wherever they are (``fetch`` is
    :func:`django_jobs.store.calls.fetch`)."""
    replies = yield from by_id(
        space,
        job_ids,
        lambda keys, ids: fetch(keys, ids=ids),
        lambda jobs: [job.id for job in jobs],
    )
    return {job.id: job for jobs in replies for job in jobs}


def queues_by_keys(space: Namespace, queues: Iterable[str]) -> list[tuple[Keys, list[str]]]:
    """``queues`` grouped by the keys of their shards."""
    return [(space.shard_keys(s), qs) for s, qs in shards.by_shard(queues).items()]


def merged_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of several shards added up, key by key (numbers only)."""
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total
