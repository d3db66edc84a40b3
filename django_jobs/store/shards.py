"""Sharding by queue: which hash tag (and so which Redis Cluster slot) holds the jobs of a queue.

``DJANGO_JOBS['SHARDS']`` maps a shard's name to its queues, e.g. ``{"mail": ["emails",
"newsletters"]}``. A shard's keys are the usual layout (:class:`~django_jobs.store.keys.Keys`)
under a prefix whose hash tag carries the shard's name: ``{django_jobs}`` becomes
``{django_jobs:mail}``. Every script works on the keys of one shard, so each call stays in one
slot, and the slots of several shards may live on different masters of a cluster.

The *default shard* (the name ``""``) holds the queues no shard lists, and everything that is
not a queue's: the workers' heartbeats, the schedulers and the schedules' version. Its prefix is
``PREFIX`` itself: without ``SHARDS`` no key moves.

A job's id tells its shard (``"mail.3f2a..."``; an id of the default shard is plain hex as
before): a handle, the console or the CLI find a job with one round trip, not one per shard.
The id is only a hint, though: a job moved to another shard (``manage.py jobs move-queue``, or
``SHARDS`` changed while it waited in the outbox) keeps its id, so a lookup that misses the
hinted shard asks the others (:func:`shards_to_try`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django_jobs.conf import HASH_TAG, SHARD_NAME, jobs_settings
from django_jobs.job import Job

#: The name of the default shard.
DEFAULT = ""


def shard_prefix(prefix: str, shard: str) -> str:
    """The prefix of ``shard``'s keys: ``prefix`` with ``:<shard>`` at the end of its hash tag
    (``{django_jobs}:x`` -> ``{django_jobs:mail}:x``); ``prefix`` itself for the default."""
    if shard == DEFAULT:
        return prefix
    tag = HASH_TAG.search(prefix)
    if tag is None:  # the PREFIX rule refuses this; a test's own prefix may lack a tag
        return f"{{{prefix}:{shard}}}"
    end = tag.end() - 1
    return f"{prefix[:end]}:{shard}{prefix[end:]}"


def names() -> list[str]:
    """Every shard, the default first, then in the order of ``SHARDS``."""
    return [DEFAULT, *map(str, jobs_settings.SHARDS)]


def of_queue(queue: str) -> str:
    """The shard that holds ``queue``'s jobs (``""``, the default, unless ``SHARDS`` lists it)."""
    for shard, queues in jobs_settings.SHARDS.items():
        if queue in queues:
            return str(shard)
    return DEFAULT


def by_shard(queues: Iterable[str]) -> dict[str, list[str]]:
    """``queues`` grouped by shard, each group in the order given, the shards in the order of
    their first queue."""
    grouped: dict[str, list[str]] = {}
    for queue in queues:
        grouped.setdefault(of_queue(queue), []).append(queue)
    return grouped


def by_shard_of(jobs: Iterable[Job]) -> dict[str, list[Job]]:
    """``jobs`` grouped by the shard of their queues, each group in the order given."""
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(of_queue(job.queue), []).append(job)
    return grouped


def of_id(job_id: str) -> str:
    """The shard a job id was made for (``"mail.3f2a..."`` -> ``"mail"``)."""
    shard, dot, _ = job_id.partition(".")
    return shard if dot and SHARD_NAME.match(shard) else DEFAULT


def tag_id(raw_id: str, queue: str) -> str:
    """A new id (``raw_id``, random hex) for a job of ``queue``: prefixed with its shard's name
    unless it is the default shard's."""
    shard = of_queue(queue)
    return f"{shard}.{raw_id}" if shard else raw_id


def shards_to_try(job_id: str) -> list[str]:
    """The shards to look in for ``job_id``: the one its id names first, then the others (a
    job moved since keeps its id; a missing id costs a round trip per shard)."""
    hinted = of_id(job_id)
    return [hinted, *(s for s in names() if s != hinted)]


def same_shard(name: str, declared: str | None, queue: str | None) -> None:
    """Refuse to put job ``name``, which has a unique key or limits, on ``queue`` when that
    queue is on another shard than its declared queue (``None``: ``DEFAULT_QUEUE``): the
    scripts count a unique key and limits per shard, so two shards would hold two of each."""
    default = jobs_settings.DEFAULT_QUEUE
    declared, queue = declared or default, queue or default
    if of_queue(declared) != of_queue(queue):
        raise ValueError(
            f"Job {name!r} has a unique key or limits, counted on the shard of its queue "
            f"{declared!r}; queue {queue!r} is on another shard (DJANGO_JOBS['SHARDS']), where "
            "they would be counted apart. Declare the job on a queue of that shard instead."
        )
