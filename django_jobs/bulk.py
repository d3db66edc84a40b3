"""Bulk enqueue: the jobs of one ``JobQueue.enqueue_many()`` sent to Redis in chunks, one
enqueue script call per chunk of at most :data:`CHUNK` jobs of one shard.

A chunk is one script call, which no other client's command interleaves with. A call that
fails after others stored their chunks raises its error with what was and was not enqueued
(see :func:`stored_in_chunks`), never a silent partial enqueue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.job import Job
from django_jobs.serialization import check_arguments
from django_jobs.status import new_ids
from django_jobs.store import shards
from django_jobs.store.batch import rest_of
from django_jobs.store.commands import Plan, Stream
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import Call

# Jobs per enqueue script call. Past a few hundred jobs a call costs Redis about the same per
# job (callgrind: 43.7k instructions per job in calls of 100, 41.9k of 1,000, 41.6k of 5,000),
# while a bigger call holds Redis up longer for every other client (a call of 1,000 plain jobs
# takes about 5 ms of the server on the 2-core test machine) and builds a bigger argument.
CHUNK = 1000

# A chunk is one argument of the script call, and Redis refuses an argument over 512 MB (its
# proto-max-bulk-len): with jobs of up to MAX_PAYLOAD_BYTES each, a chunk holds fewer jobs so
# as to stay under half of that (256 jobs with the default 1 MB).
CHUNK_BYTES = 256 * 1024 * 1024


def chunk_size() -> int:
    """Jobs per script call: :data:`CHUNK`, fewer where large payloads are allowed."""
    return max(1, min(CHUNK, CHUNK_BYTES // int(jobs_settings.MAX_PAYLOAD_BYTES)))


def stored_in_chunks(
    jobs: list[Job],
    shard_keys: Callable[[str], Keys],
    store: Callable[[Keys, list[Job]], Plan[dict[str, str]]],
) -> Plan[dict[str, str]]:
    """Store ``jobs`` with ``store(keys, chunk)`` per chunk (the ``enqueue`` plan of
    :class:`~django_jobs.queue.JobQueue`), shard by shard, each in the order given; returns
    the merged replies (``{id: holder's id}`` of the unique jobs another job stood in for).

    The calls of a shard's chunks go one behind another (a :class:`Stream`): each chunk is
    encoded while Redis stores the one before, and their replies are read after the last.
    When a call fails its error is raised with ``enqueued`` (the jobs of the calls that stored
    theirs) and ``not_enqueued`` (the others, in the order given: not stored, or, when a reply
    was lost, not known to be) set on it, and a note that says so. Sending the
    ``not_enqueued`` again is safe: storing is idempotent on the job ids.
    """
    if len(jobs) == 1:  # .delay(): one call, no chunks to keep apart
        try:
            return (yield from store(shard_keys(shards.of_queue(jobs[0].queue)), jobs))
        except Exception as exc:
            _tell_what_was_enqueued(exc, jobs, [])
            raise
    taken: dict[str, str] = {}
    done: list[Job] = []
    for shard, part in shards.by_shard_of(jobs).items():
        keys = shard_keys(shard)
        size = chunk_size()
        chunks = [part[start : start + size] for start in range(0, len(part), size)]
        plans = [store(keys, chunk) for chunk in chunks]
        made: list[tuple[Plan[dict[str, str]], list[Job]]] = []
        refused: list[Exception] = []

        def calls() -> Iterator[Call]:
            # Each chunk's call is made (encoded) as the stream sends the one before.
            for plan, chunk in zip(plans, chunks, strict=True):  # noqa: B023 (used at once)
                try:
                    step = next(plan)
                except Exception as exc:  # a job that cannot be sent: the ones after are not
                    refused.append(exc)  # noqa: B023
                    return
                made.append((plan, chunk))  # noqa: B023
                yield step

        replies: list[Any] = []
        if len(plans) > 1:
            try:
                replies = yield Stream(calls())
            except StoreError as exc:  # no connection for it: its calls are sent one by one
                replies = [exc] * len(made)
        failed: Exception | None = None
        for (plan, chunk), reply in zip(made, replies, strict=True):
            try:  # the rest of the chunk's plan: its reply read, or its error sent again
                taken.update((yield from rest_of(plan, reply)))
            except Exception as exc:
                failed = failed or exc
            else:
                done += chunk
        failed = failed or (refused[0] if refused else None)
        # The chunks no stream sent (a shard's only chunk), one by one, unless one failed.
        for plan, chunk in zip(plans[len(made) :], chunks[len(made) :], strict=True):
            if failed is not None:
                break
            try:
                taken.update((yield from plan))
            except Exception as exc:
                failed = exc
            else:
                done += chunk
        if failed is not None:
            _tell_what_was_enqueued(failed, jobs, done)
            raise failed
    return taken


def _tell_what_was_enqueued(exc: Exception, jobs: list[Job], done: list[Job]) -> None:
    stored = {job.id for job in done}
    exc.enqueued = done  # type: ignore[attr-defined]
    exc.not_enqueued = [job for job in jobs if job.id not in stored]  # type: ignore[attr-defined]
    if done:
        exc.add_note(
            f"{len(done)} of the {len(jobs)} jobs of this enqueue_many() were enqueued despite "
            f"this error (its 'enqueued'); the other {len(jobs) - len(done)} were not, or not "
            "for sure (its 'not_enqueued'): sending them again is safe."
        )


def built_like(
    first: Job,
    more: Sequence[Any],
    function: Callable[..., Any] | None,
    takes_context: bool,
) -> list[Job]:
    """``first`` (built by ``JobQueue.build_job``) and a job like it for each item of ``more``:
    its positional arguments, checked as ``build_job`` checks them (JSON, the payload's size,
    and that they fit ``function``'s parameters), the rest of the job copied from ``first``
    (``JobQueue.build_jobs``). The flow control of ``first`` must not depend on its arguments
    (no unique key, no limit keyed on them): the caller builds those one by one."""
    jobs = [first]
    shared, kwargs, meta, limits = first.__dict__, first.kwargs, first.meta, first.limits
    # What every job shares is looked up and sized once: the shard's part of an id
    # (tag_id("", queue) + raw == tag_id(raw, queue)), kwargs and meta as JSON, and how many
    # positional arguments bind to the function's parameters.
    shard = shards.tag_id("", first.queue)
    shared_size = validation.json_size(kwargs) + validation.json_size(meta)
    limit = int(jobs_settings.MAX_PAYLOAD_BYTES)
    counts = None
    if function is not None:
        counts = validation.positional_counts(function, kwargs, skip_first=takes_context)
    for number, (args, raw_id) in enumerate(zip(more, new_ids(len(more)), strict=True), 1):
        if not isinstance(args, (list, tuple)):
            raise TypeError(
                f"build_jobs(): args[{number}] (a job's arguments) must be a list or a tuple, "
                f"not {type(args).__name__}."
            )
        args = list(args)
        check_arguments(args, "args", number)
        if function is not None and not validation.binds(counts, args):
            validation.arguments(first.name, function, args, kwargs, skip_first=takes_context)
        size = shared_size + validation.json_size(args)
        if size > limit:
            validation.checked_payload(size, limit)  # raises, naming the size and the limit
        # A copy of the first job's fields (a dataclass's __init__ of 40 fields costs more
        # than the checks above), with its own containers, which an enqueue may write into
        # (the trace context goes into each job's meta).
        fields = shared.copy()
        fields["id"] = shard + raw_id
        fields["args"] = args
        fields["kwargs"] = dict(kwargs)
        fields["meta"] = dict(meta)
        fields["errors"] = []
        fields["limits"] = [list(each) for each in limits] if limits else []
        job = Job.__new__(Job)
        job.__dict__ = fields
        jobs.append(job)
    return jobs
