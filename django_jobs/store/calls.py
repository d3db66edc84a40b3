"""One plan per Lua script (and per plain command), with named parameters.

Each function here yields one :class:`~django_jobs.store.scripts.Call` built by name
(:meth:`Script.call`; the order lives in the script's header) or one
:class:`~django_jobs.store.commands.Command`, and turns the reply into Python values. They know
the key layout but not the settings: callers pass times, limits and time-to-lives.
Run a plan with :func:`~django_jobs.store.execute.run` or ``arun``, or ``yield from`` it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from itertools import chain, islice
from typing import Any

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord
from django_jobs.job import Job, shape_key
from django_jobs.record import HASH_WRITERS, LEADING_FIELDS, VARYING_FIELDS
from django_jobs.serialization import dumps, from_timestamp, loads, utcnow
from django_jobs.store.commands import Command, Plan
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import SCRIPTS, Call


def text(value: bytes | str) -> str:
    """A reply value as text; bytes that are not UTF-8 are an unreadable record."""
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidJobRecord(f"unreadable record: {value[:60]!r} is not UTF-8 ({exc})") from None


def record(flat: list[Any]) -> dict[str, str]:
    """A flat field/value reply (``HGETALL``) as a dict of text."""
    try:  # all bytes of UTF-8, as a worker's claims are: one pass (a worker reads one per job)
        items = [v.decode() for v in flat]
    except (AttributeError, UnicodeDecodeError):
        items = [text(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def stamp(seconds: float) -> str:
    return f"{seconds:.6f}"


def result_since() -> str:
    """When the oldest result still kept finished: ``RESULT_TTL`` ago. The scripts that read
    jobs (see ``read_jobs`` in ``_lib.lua``) leave out an older result kept in its record; one
    in a key of its own has expired with the key."""
    return stamp(utcnow().timestamp() - jobs_settings.RESULT_TTL)


# -- enqueue ------------------------------------------------------------------------------------


def _due_and_user(job: Job, now: float) -> tuple[str, str]:
    """The due time ('' = now) and user id ('' = none) of ``job`` as the enqueue scripts take
    them."""
    if job.created_at is None:
        raise ValueError(f"Job {job.id} has no created_at: build jobs with build_job().")
    due = job.scheduled_at
    due_at = due.timestamp() if due is not None else now
    user = job.user_id
    return stamp(due_at) if due_at > now else "", "" if user is None else str(user)


def job_values(job: Job, now: float) -> list[str]:
    """The ``job`` argument of the enqueue scripts for a call of one job (see ``enqueue_job``
    in ``_enqueue.lua``): its id, due time and user id, the values of
    ``record.LEADING_FIELDS`` (the script writes their names), then the other fields of its
    hash and their values (``Job.to_hash``). No JSON: Redis would spend more on decoding it
    than on storing the job."""
    due, user = _due_and_user(job, now)
    record = _record(job)
    others = islice(record.items(), len(LEADING_FIELDS), None)
    return [job.id, due, user, *_leading_values(record), *chain.from_iterable(others)]


_leading_values = operator.itemgetter(*LEADING_FIELDS)


def _record(job: Job) -> dict[str, str]:
    """``job``'s hash (``Job.to_hash``), which the enqueue scripts read with
    ``record.LEADING_FIELDS`` first."""
    record = job.to_hash()
    if tuple(record)[: len(LEADING_FIELDS)] != LEADING_FIELDS:
        raise ValueError(f"Job {job.id}'s record does not start with {LEADING_FIELDS}.")
    return record


def enqueue_values(jobs: Iterable[Job], now: float) -> str:
    """The ``jobs`` argument of the enqueue scripts for a call of many jobs (see
    ``enqueue_jobs`` in ``_enqueue.lua``): one JSON value, ``[shapes, values]``. A shape is what
    jobs share (``job.shape_key``): their name, queue, priority, status, the names of the
    fields whose values each job has (``record.VARYING_FIELDS`` it holds) and the other fields
    of their hash with their values (``Job.to_hash`` of its first job), flat. ``values`` is
    flat: per job its id, due time ('' = now), user id ('' = none), the index of its shape
    (from 1), created_at, then its values of the fields its shape names.

    One argument encoded by the C encoder, each name and shared value in it once, costs both
    sides far less than a dozen or more arguments per job; and the record of each job is
    written from its varying values only, not field by field."""
    shapes: dict[tuple[Any, ...], tuple[int, list[tuple[str, Any]]]] = {}
    encoded: list[list[Any]] = []
    values: list[Any] = []
    last: tuple[Any, ...] | None = None
    created, created_text = None, ""
    for job in jobs:
        fields = job.__dict__
        # Most calls hold jobs of one shape: each compared with the one before, not hashed.
        key = shape_key(fields)
        if key != last:
            found = shapes.get(key)
            if found is None:
                found = shapes[key] = (len(shapes) + 1, _shape(job, encoded))
            index, writers = found
            last = key
        due, user = _due_and_user(job, now)
        if job.created_at is not created:  # build_jobs() gives its jobs one creation time
            created = job.created_at
            created_text = _write_created("created_at", created)
        values += (job.id, due, user, index, created_text)
        for name, write in writers:
            values.append(write(name, fields[name]))
    return dumps([encoded, values])


_write_created = HASH_WRITERS["created_at"]


def _shape(job: Job, encoded: list[list[Any]]) -> list[tuple[str, Any]]:
    """Add the shape of ``job``'s record to ``encoded`` (see :func:`enqueue_values`); returns
    the writers of the values its jobs send each."""
    record = _record(job)
    varying = [name for name in record if name in VARYING_FIELDS]
    shared = [
        item
        for name, value in record.items()
        if name not in VARYING_FIELDS and name not in LEADING_FIELDS
        for item in (name, value)
    ]
    leading = [record[name] for name in ("name", "queue", "priority", "status")]
    encoded.append([*leading, varying, shared])
    return [(name, HASH_WRITERS[name]) for name in varying]


def enqueue(keys: Keys, *, jobs: list[Job], now: float, job_ttl: int) -> Plan[dict[str, str]]:
    """Store ``jobs`` and make them ready (or due later). Returns, for each job not stored
    because another job holds its unique key, that job's id: ``{id: holder's id}``."""
    one = len(jobs) == 1
    reply = yield SCRIPTS["enqueue"].call(
        scheduled=keys.scheduled,
        wakeup=keys.wakeup,
        prefix=keys.prefix,
        keep_since=now - job_ttl,
        user_ttl=job_ttl,
        jobs="" if one else enqueue_values(jobs, now),
        job=job_values(jobs[0], now) if one else [],
    )
    return _pairs(reply)


def _pairs(flat: list[Any]) -> dict[str, str]:
    """A flat ``{id, other id, ...}`` reply as a dict of text."""
    items = [text(value) for value in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


# The runs of a periodic task that its index (``Keys.task_runs``) keeps.
TASK_RUNS_KEPT = 50


def fire(
    keys: Keys, *, task: str, due: float, job: Job, ttl: int, now: float, job_ttl: int
) -> Plan[str]:
    """Enqueue ``job`` for the tick of ``task`` due at ``due`` unless it was enqueued before
    (the tick is remembered ``ttl`` seconds) and index it among the task's runs; returns the id
    of the tick's job."""
    reply = yield SCRIPTS["fire"].call(
        tick=keys.tick(task, due),
        task_runs=keys.task_runs(task),
        scheduled=keys.scheduled,
        wakeup=keys.wakeup,
        ttl=int(ttl),
        due=stamp(due),
        runs_kept=TASK_RUNS_KEPT,
        prefix=keys.prefix,
        keep_since=now - job_ttl,
        user_ttl=job_ttl,
        job=job_values(job, now),
    )
    return text(reply)


# -- what users do to jobs ----------------------------------------------------------------------


def cancel(keys: Keys, *, job_id: str, now: float, job_ttl: int, token: str = "") -> Plan[str]:
    """Cancel a job: ``"cancelled"``, ``"requested"`` (running), ``"missing"`` or the finished
    status it had. Its worker confirms a requested cancellation with its lease ``token``."""
    reply = yield SCRIPTS["cancel"].call(
        job=keys.job(job_id),
        scheduled=keys.scheduled,
        retrying=keys.retrying,
        processing=keys.processing,
        cancelled=keys.cancelled,
        id=job_id,
        prefix=keys.prefix,
        now=stamp(now),
        job_ttl=job_ttl,
        keep_since=now - job_ttl,
        token=token,
    )
    return text(reply)


def requeue(
    keys: Keys, *, ids: list[str], start: int = 0, scan: int = 0, limit: int = 0, name: str = ""
) -> Plan[tuple[list[str], int | None, dict[str, str]]]:
    """Move dead-letter jobs back to their lists: ``ids``, or when empty those named ``name``
    ("" = any), up to ``limit``, among ``scan`` dead letters from rank ``start`` on (oldest
    first). A job with a unique key takes it again; one whose key another live job holds stays
    dead. Returns (the ids requeued, the rank to go on from, or ``None`` when all were looked
    at, ``{id: holder's id}`` for the jobs that stayed because their key is held)."""
    done, next_start, held = yield SCRIPTS["requeue"].call(
        dead=keys.dead,
        wakeup=keys.wakeup,
        prefix=keys.prefix,
        start=start,
        scan=scan,
        limit=limit,
        name=name,
        ids=ids,
    )
    return [text(i) for i in done], (None if int(next_start) < 0 else int(next_start)), _pairs(held)


def watch(keys: Keys, *, job_id: str, read: bool = False) -> Plan[tuple[str, Job | None]]:
    """The job's status (``""`` if unknown); unless final, its outcome will be pushed to
    ``keys.done(job_id)``. With ``read`` a job that is final already comes with it, as
    :func:`fetch` reads it (otherwise ``None``): a waiter has it in the same round trip."""
    reply = yield _watch_call(keys, job_id, read=read)
    if not isinstance(reply, list):
        return text(reply), None
    found = _jobs(reply[1:])
    return text(reply[0]), found[0] if found else None


def _watch_call(keys: Keys, job_id: str, *, read: bool = False, wait: bool = False) -> Call:
    return SCRIPTS["watch"].call(
        job=keys.job(job_id),
        prefix=keys.prefix,
        id=job_id,
        read=int(read),
        wait=int(wait),
        result_since=result_since() if read else "",
    )


def wait_watched(keys: Keys, *, job_id: str, timeout: float) -> Plan[tuple[str, Job | None]]:
    """Watch the job (:func:`watch`), wait up to ``timeout`` seconds for its done list, leaving
    it as it is (a rotating ``BLMOVE``, so that every waiter sees the same element), and read
    the job as the wait ends (:func:`fetch`), all three in one write: a waiter pays one round
    trip, and none is left between the end of the job and its result. The wait ends at once
    for a job that is final already or unknown (the watch gives the list a token). Returns the
    status the watch read (``""`` if unknown) and the job as read after the wait (``None`` if
    it does not exist)."""
    key = keys.done(job_id)
    status, _, reply = yield Command(
        ("BLMOVE", key, key, "RIGHT", "LEFT", timeout),
        block=timeout,
        first=_watch_call(keys, job_id, wait=True),
        then=_fetch_call(keys, [job_id]),
    )
    found = _jobs(reply)
    return text(status), found[0] if found else None


def _jobs(reply: list[Any]) -> list[Job]:
    jobs = []
    for index in range(0, len(reply), 3):
        job_id, raw_result = text(reply[index]), reply[index + 2]
        result = loads(raw_result) if raw_result else None
        # Inspection must not fail on one corrupt record (the worker buries those).
        jobs.append(Job.from_hash(job_id, record(reply[index + 1]), result, strict=False))
    return jobs


def fetch(keys: Keys, *, ids: list[str]) -> Plan[list[Job]]:
    """The jobs of these ids that exist, with their results."""
    return _jobs((yield _fetch_call(keys, ids)))


def _fetch_call(keys: Keys, ids: list[str]) -> Call:
    return SCRIPTS["fetch"].call(
        route=keys.dead, prefix=keys.prefix, result_since=result_since(), ids=ids
    )


# -- workers and schedulers ---------------------------------------------------------------------


def wait_wakeup(keys: Keys, *, timeout: float) -> Plan[bool]:
    """Wait up to ``timeout`` seconds for a wake-up token; ``True`` if one came."""
    return bool((yield Command(("BLPOP", keys.wakeup, timeout), block=timeout)))


def scheduler_beat(
    keys: Keys, *, scheduler_id: str, now: float, forget_before: float
) -> Plan[None]:
    """Record that a scheduler is alive at ``now``; forget those not seen since
    ``forget_before``."""
    yield SCRIPTS["beat"].call(
        schedulers=keys.schedulers, id=scheduler_id, now=now, forget_before=forget_before
    )


def scheduler_gone(keys: Keys, *, scheduler_id: str) -> Plan[None]:
    """A scheduler stopped."""
    yield Command(("ZREM", keys.schedulers, scheduler_id))


def schedulers_seen(keys: Keys, *, since: float) -> Plan[dict[str, Any]]:
    """The schedulers seen since ``since`` (epoch seconds), with when (aware datetimes)."""
    seen = yield Command(("ZRANGEBYSCORE", keys.schedulers, since, "+inf", "WITHSCORES"))
    # Older redis-py answers a flat member, score, ... list here; newer ones, pairs.
    if seen and not isinstance(seen[0], list | tuple):
        seen = zip(seen[::2], seen[1::2], strict=True)
    return {text(name): from_timestamp(score) for name, score in seen}


def schedules_version(keys: Keys) -> Plan[str | None]:
    """A value that changes whenever a periodic task is saved (see :func:`bump_schedules`)."""
    value = yield Command(("GET", keys.schedules_version))
    return None if value is None else text(value)


def bump_schedules(keys: Keys) -> Plan[None]:
    """Tell running schedulers that the periodic tasks changed."""
    yield Command(("INCR", keys.schedules_version))


# -- chains and groups --------------------------------------------------------------------------


def enqueue_flow(
    keys: Keys, *, jobs: list[Job], groups: list[dict[str, Any]], now: float, job_ttl: int
) -> Plan[None]:
    """Store a whole workflow in one call: ``jobs`` (the steps that wait for others with status
    WAITING) and ``groups`` (``{"id", "total", "members", "then", "after"}``, the last two
    left out when unset; see ``store_groups`` in ``_workflow.lua``)."""
    yield SCRIPTS["enqueue_flow"].call(
        scheduled=keys.scheduled,
        wakeup=keys.wakeup,
        prefix=keys.prefix,
        keep_since=now - job_ttl,
        user_ttl=job_ttl,
        groups=dumps(groups),
        jobs=enqueue_values(jobs, now),
    )


def cancel_flow(keys: Keys, *, ids: list[str], now: float, job_ttl: int) -> Plan[list[str]]:
    """Cancel the steps ``ids`` in order (see :func:`cancel`); returns each one's reply."""
    replies = yield SCRIPTS["cancel_flow"].call(
        scheduled=keys.scheduled,
        retrying=keys.retrying,
        processing=keys.processing,
        cancelled=keys.cancelled,
        prefix=keys.prefix,
        now=stamp(now),
        job_ttl=job_ttl,
        keep_since=now - job_ttl,
        ids=ids,
    )
    return [text(reply) for reply in replies]


def group(keys: Keys, *, group_id: str) -> Plan[dict[str, str]]:
    """A group's hash (``{}`` when it does not exist, or expired)."""
    reply = yield Command(("HGETALL", keys.group(group_id)))
    # redis-py answers HGETALL with a dict.
    return (
        {text(k): text(v) for k, v in reply.items()} if isinstance(reply, dict) else record(reply)
    )
