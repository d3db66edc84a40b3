"""The queue API: enqueue, claim, acknowledge, fail, cancel, requeue, inspect.

Every method that changes a job's state makes exactly one Redis round trip: one call of a Lua
script from ``scripts/``. The logic of each operation is written once, as a *plan*: a generator
that yields :class:`Call` objects and receives their replies. The sync method runs the plan
with the sync client, the ``a``-prefixed twin with the asyncio client.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import redis
from redis.exceptions import NoScriptError

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord, JobNotFound, RedisUnavailable
from django_jobs.job import Job, JobPriority, JobStatus, new_id
from django_jobs.serialization import check_json, dumps, loads, utcnow
from django_jobs.store.connection import connection_url, get_async_redis, get_redis, redact_url
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import scripts_for

T = TypeVar("T")
P = ParamSpec("P")

# How many due jobs one claim or promote call moves at most, to keep each script call short.
PROMOTE_LIMIT = 100
RECOVER_LIMIT = 100
# A waiter for a job's outcome looks again this often even without a notification.
WAIT_RECHECK = 5.0


@dataclass(frozen=True)
class Call:
    """One script call: the only thing a plan asks of Redis."""

    script: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class Block:
    """Wait up to ``timeout`` seconds until the list ``key`` is not empty, leaving it as it is
    (a rotating ``BLMOVE``, so that every waiter sees the same element)."""

    key: str
    timeout: float


Plan = Generator[Call | Block, Any, T]


def _sync(
    plan: Callable[Concatenate[JobQueue, P], Plan[T]],
) -> Callable[Concatenate[JobQueue, P], T]:
    @functools.wraps(plan)
    def run(self: JobQueue, *args: P.args, **kwargs: P.kwargs) -> T:
        steps = plan(self, *args, **kwargs)
        reply = None
        try:
            while True:
                reply = self._call(get_redis(), steps.send(reply))
        except StopIteration as done:
            return done.value

    run.__name__ = run.__qualname__ = plan.__name__.lstrip("_")
    return run


def _async(
    plan: Callable[Concatenate[JobQueue, P], Plan[T]],
) -> Callable[Concatenate[JobQueue, P], Coroutine[Any, Any, T]]:
    @functools.wraps(plan)
    async def run(self: JobQueue, *args: P.args, **kwargs: P.kwargs) -> T:
        steps = plan(self, *args, **kwargs)
        reply = None
        try:
            while True:
                reply = await self._acall(get_async_redis(), steps.send(reply))
        except StopIteration as done:
            return done.value

    run.__name__ = run.__qualname__ = f"a{plan.__name__.lstrip('_')}"
    return run


def _send(client: Any, call: Call | Block) -> Any:
    """Make the call with a sync client, or start it (a coroutine) with an asyncio one.

    Scripts go as a plain ``EVALSHA``: the hot path skips redis-py's script wrappers, and
    :func:`_load` loads a script the server does not know (yet, or after a restart).
    """
    if isinstance(call, Block):
        return client.blmove(call.key, call.key, call.timeout, "RIGHT", "LEFT")
    sha = scripts_for(client)[call.script].sha
    return client.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *call.args)


def _load(client: Any, call: Call | Block) -> Any:
    """Load the script of ``call`` into the server (a coroutine with an asyncio client)."""
    assert isinstance(call, Call)
    return client.script_load(scripts_for(client)[call.script].script)


def _unavailable(exc: Exception) -> RedisUnavailable:
    return RedisUnavailable(f"Cannot reach Redis at {redact_url(connection_url())}: {exc}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(flat: list[Any]) -> dict[str, str]:
    items = [v.decode() if isinstance(v, bytes) else v for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


class Leased(Protocol):
    """What lease renewal needs of a running job (a :class:`Job` has both)."""

    @property
    def id(self) -> str: ...

    @property
    def lease_token(self) -> str | None: ...


@dataclass(frozen=True)
class Claim:
    """What a claim found: a leased job, or the time (epoch seconds) the next one is due."""

    job: Job | None
    next_due: float | None


@dataclass(frozen=True)
class Recovered:
    """What :meth:`JobQueue.recover_expired` did."""

    requeued: list[str]
    buried: list[str]


@dataclass(frozen=True)
class LeaseState:
    """What :meth:`JobQueue.extend_lease` learned about a worker's running jobs."""

    lost: list[str]
    cancel_requested: list[str]


class JobQueue:
    """The jobs of one namespace (key prefix) in Redis.

    ``JobQueue()`` uses ``DJANGO_JOBS``: its ``PREFIX``, ``QUEUES`` and connection, read at
    each call so that ``override_settings`` applies. Pass ``prefix`` to work in another
    namespace, e.g. one per test.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix or jobs_settings.PREFIX

    @property
    def keys(self) -> Keys:
        return _keys(self.prefix)

    @property
    def queues(self) -> list[str]:
        """The configured queue names (``DJANGO_JOBS['QUEUES']``)."""
        return list(jobs_settings.QUEUES)

    def __repr__(self) -> str:
        return f"<JobQueue {self.prefix}>"

    def _call(self, client: Any, call: Call | Block) -> Any:
        try:
            try:
                return _send(client, call)
            except NoScriptError:
                _load(client, call)
                return _send(client, call)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def _acall(self, client: Any, call: Call | Block) -> Any:
        try:
            try:
                return await _send(client, call)
            except NoScriptError:
                await _load(client, call)
                return await _send(client, call)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _unavailable(exc) from exc

    def build_job(self, name: str, args: Any = (), kwargs: Any = None, **options: Any) -> Job:
        """Check every option and argument and return the job :meth:`enqueue` would store
        (see :func:`django_jobs.validation.build_job`). Nothing is written."""
        return validation.build_job(name, args, kwargs, **options)

    # -- plans --------------------------------------------------------------------------------

    def enqueue_args(self, jobs: Iterable[Job]) -> list[Any]:
        """The arguments of the ``enqueue_jobs`` Lua helper (``scripts/_lib.lua``) for ``jobs``.

        Scripts that enqueue as part of a larger transition (the scheduler's tick) pass these
        on unchanged.
        """
        now = utcnow().timestamp()
        job_ttl = int(jobs_settings.JOB_TTL)
        args: list[Any] = [self.prefix, now - job_ttl, job_ttl]
        for job in jobs:
            due = job.scheduled_at.timestamp() if job.scheduled_at else None
            fields = job.to_hash()
            args += [
                job.id,
                job.queue,
                job.priority.value,
                f"{due:.6f}" if due is not None and due > now else "",
                job.user_id or "",
                fields["created_at"],
                len(fields),
            ]
            for item in fields.items():
                args += item
        return args

    def _enqueue_jobs(self, jobs: list[Job]) -> Plan[list[Job]]:
        keys = self.keys
        yield Call("enqueue", [keys.scheduled, keys.wakeup], self.enqueue_args(jobs))
        return jobs

    def _enqueue(
        self,
        name: str,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Plan[Job]:
        """Store a job and make it ready, or due later with ``delay`` or ``scheduled_at``.

        Options: ``priority``, ``queue``, ``delay`` (seconds or timedelta), ``scheduled_at``
        (an aware datetime), ``max_retries``, ``timeout`` (seconds), ``user_id``. See
        :meth:`build_job` for what is checked. Returns the stored :class:`Job`.
        """
        (job,) = yield from self._enqueue_jobs([self.build_job(name, args, kwargs, **options)])
        return job

    def _enqueue_many(self, jobs: Iterable[Job]) -> Plan[list[Job]]:
        """Store many jobs built with :meth:`build_job` in one round trip."""
        return (yield from self._enqueue_jobs(list(jobs)))

    def _dequeue(
        self, queues: Iterable[str] | None = None, worker_id: str = "", lease: float | None = None
    ) -> Plan[Job | None]:
        """Lease the next job of the served ``queues`` (default: all), or return ``None``.

        Strict priority across the served queues, FIFO within a priority. Due delayed and
        retrying jobs are promoted first. The job comes back with a fresh ``lease_token``
        that :meth:`complete_job`, :meth:`fail_job` and :meth:`extend_lease` must present.
        A record that cannot be read is moved to the dead-letter queue and the next job taken.
        """
        claim = yield from self._claim(queues, worker_id, lease)
        return claim.job

    def _claim(
        self, queues: Iterable[str] | None = None, worker_id: str = "", lease: float | None = None
    ) -> Plan[Claim]:
        """:meth:`dequeue`, also telling when the next delayed or retrying job is due."""
        served = validation.served_queues(queues)
        while True:
            keys, args, token = self._claim_call_parts(worker_id, lease, utcnow())
            reply = yield Call("claim", keys, [*args, *served])
            claim = yield from self._claimed(reply[0], reply[1], token)
            if claim is not None:
                return claim

    def _complete_and_claim(
        self,
        job: Job,
        result: Any,
        queues: Iterable[str] | None = None,
        worker_id: str = "",
        lease: float | None = None,
    ) -> Plan[tuple[bool, Claim]]:
        """:meth:`complete_job` and :meth:`claim` in one round trip: a worker's steady state.

        Returns whether the completion was recorded (see :meth:`complete_job`) and the claim.
        """
        served = validation.served_queues(queues)
        now = utcnow()
        outcome = self._ack_values(result)
        keys, args, token = self._claim_call_parts(worker_id, lease, now)
        acked, job_id, rest = yield Call(
            "ack_claim",
            [*keys, self.keys.completed, self.keys.counters],
            [*args, job.id, job.lease_token or "", *outcome, *served],
        )
        claim = yield from self._claimed(job_id, rest, token)
        if claim is None:
            claim = yield from self._claim(served, worker_id, lease)
        return bool(acked), claim

    def _claim_call_parts(
        self, worker_id: str, lease: float | None, now: datetime
    ) -> tuple[list[str], list[Any], str]:
        """Keys and leading arguments of the claim scripts; the served queues follow."""
        keys = self.keys
        lease = float(jobs_settings.LEASE_TIMEOUT if lease is None else lease)
        timestamp = now.timestamp()
        token = new_id()
        return (
            [keys.scheduled, keys.retrying, keys.processing, keys.dead, keys.wakeup],
            [
                self.prefix,
                f"{timestamp:.6f}",
                f"{timestamp + lease:.6f}",
                token,
                worker_id,
                PROMOTE_LIMIT,
            ],
            token,
        )

    def _claimed(self, job_id: bytes | str, rest: Any, token: str) -> Plan[Claim | None]:
        """Read a claim's reply. An unreadable record is buried (``None``: claim again)."""
        job_id = _text(job_id)
        if not job_id:
            next_due = _text(rest)
            return Claim(None, float(next_due) if next_due else None)
        try:
            return Claim(Job.from_hash(job_id, _record(rest)), None)
        except InvalidJobRecord as exc:
            yield self._fail_call(job_id, token, str(exc), "", retry=False)
            return None

    def _release_job(self, job: Job) -> Plan[bool]:
        """Give a running job back unfinished, to the head of its list, without using a retry
        (its worker is stopping). Returns ``False`` if the lease was not held."""
        keys = self.keys
        reply = yield Call(
            "release",
            [keys.job(job.id), keys.processing, keys.wakeup],
            [job.id, job.lease_token or "", self.prefix],
        )
        return bool(reply)

    def _watch(self, job_id: str) -> Plan[JobStatus | None]:
        """The job's status (``None`` if unknown); unless it is final, its outcome will be
        pushed to ``keys.done(job_id)`` for :meth:`wait_for` to block on."""
        reply = yield Call("watch", [self.keys.job(job_id)], [])
        status = _text(reply)
        return JobStatus(status) if status else None

    def _wait_for(self, job_id: str, timeout: float | None = None) -> Plan[Job]:
        """Block until the job is COMPLETED, FAILED or CANCELLED and return it.

        Waits on a list that the finishing script pushes to, not by polling; it looks again
        every few seconds in case a notification was missed. Raises ``TimeoutError`` when
        ``timeout`` seconds pass first and :class:`~django_jobs.exceptions.JobNotFound` for an
        unknown or expired id.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = yield from self._watch(job_id)
            if status is None:
                raise JobNotFound(f"There is no job {job_id!r} (unknown, or expired).")
            if status.is_finished:
                job = yield from self._get_job(job_id)
                if job is None:
                    raise JobNotFound(f"Job {job_id!r} expired.")
                return job
            wait = WAIT_RECHECK
            if deadline is not None:
                wait = min(deadline - time.monotonic(), WAIT_RECHECK)
            if wait <= 0:
                raise TimeoutError(f"Job {job_id} is still {status.value} after {timeout} s.")
            yield Block(self.keys.done(job_id), max(wait, 0.01))

    def _get_job(self, job_id: str) -> Plan[Job | None]:
        """The job with its result, or ``None`` if it does not exist (or expired)."""
        jobs = yield from self._fetch(["ids", job_id])
        return jobs[0] if jobs else None

    def _complete_job(self, job: Job, result: Any = None) -> Plan[bool]:
        """Record ``job`` as completed with ``result`` (JSON), if its lease is still held.

        Returns ``False`` when the lease was lost (another worker has the job, or it was
        recovered): the stale completion is refused and counted in ``stats()['counters']``.
        """
        keys = self.keys
        now = utcnow()
        outcome = self._ack_values(result)
        reply = yield Call(
            "ack",
            [keys.job(job.id), keys.processing, keys.result(job.id), keys.completed, keys.counters],
            [self.prefix, job.id, job.lease_token or "", f"{now.timestamp():.6f}", *outcome],
        )
        return bool(reply)

    def _ack_values(self, result: Any) -> list[Any]:
        """The result and retention arguments of the ack scripts."""
        check_json(result, "the result")
        return [dumps(result), int(jobs_settings.RESULT_TTL), int(jobs_settings.JOB_TTL)]

    def _fail_call(
        self,
        job_id: str,
        token: str,
        error: str,
        tb: str,
        *,
        retry: bool,
        attempt: int = 1,
        worker_id: str = "",
        backoff: tuple[float | None, float | None] = (None, None),
    ) -> Call:
        keys = self.keys
        now = utcnow().timestamp()
        entry = {
            "attempt": attempt,
            "error": error,
            "traceback": tb,
            "worker_id": worker_id,
            "failed_at": now,
        }
        return Call(
            "fail",
            [
                keys.job(job_id),
                keys.processing,
                keys.retrying,
                keys.dead,
                keys.counters,
                keys.wakeup,
            ],
            [
                job_id,
                token,
                f"{now:.6f}",
                error,
                tb,
                dumps(entry),
                jobs_settings.RETRY_BACKOFF_BASE if backoff[0] is None else backoff[0],
                jobs_settings.RETRY_BACKOFF_MAX if backoff[1] is None else backoff[1],
                "1" if retry else "0",
                self.prefix,
            ],
        )

    def _fail_job(
        self, job: Job, error: str, traceback: str = "", *, retry: bool = True
    ) -> Plan[JobStatus | None]:
        """Record a failed attempt of ``job``.

        With retries left (and ``retry`` true) the job becomes RETRYING, due again after
        ``min(RETRY_BACKOFF_BASE * 2**n, RETRY_BACKOFF_MAX)`` seconds for its n-th retry (the
        job's own ``retry_backoff_base`` and ``retry_backoff_max`` when set); otherwise it is
        FAILED and kept in the dead-letter queue. Each attempt's error is kept in ``job.errors``.
        Returns the new status, or ``None`` if the lease was not held.
        """
        reply = yield self._fail_call(
            job.id,
            job.lease_token or "",
            error,
            traceback,
            retry=retry,
            attempt=job.attempt,
            worker_id=job.worker_id or "",
            backoff=(job.retry_backoff_base, job.retry_backoff_max),
        )
        outcome = _text(reply[0])
        return None if outcome == "stale" else JobStatus(outcome)

    def _cancel_job(self, job_id: str, lease_token: str = "") -> Plan[str]:
        """Cancel a job.

        A pending (also delayed) or retrying job is CANCELLED at once: returns
        ``"cancelled"``. For a running job a cancellation is requested and its worker stops
        it: returns ``"requested"``. A finished job is left alone (its status is returned),
        an unknown id gives ``"missing"``. A worker confirms a requested cancellation by
        passing its ``lease_token``.
        """
        keys = self.keys
        now = utcnow().timestamp()
        job_ttl = int(jobs_settings.JOB_TTL)
        reply = yield Call(
            "cancel",
            [keys.job(job_id), keys.scheduled, keys.retrying, keys.processing, keys.cancelled],
            [job_id, self.prefix, f"{now:.6f}", job_ttl, now - job_ttl, lease_token],
        )
        return _text(reply)

    def _requeue_dead(
        self, job_ids: Iterable[str] | None = None, *, limit: int = 0
    ) -> Plan[list[str]]:
        """Move dead-letter jobs (the given ids, or all, oldest first, up to ``limit`` if
        given) back to the tail of their lists with a fresh retry budget. Returns their ids.
        """
        keys = self.keys
        ids = [] if job_ids is None else list(job_ids)
        if job_ids is not None and not ids:
            return []
        reply = yield Call("requeue", [keys.dead, keys.wakeup], [self.prefix, limit, *ids])
        return [_text(i) for i in reply]

    def _extend_lease(self, jobs: Iterable[Leased], lease: float | None = None) -> Plan[LeaseState]:
        """Renew the leases of a worker's running ``jobs`` in one call.

        Returns the ids whose lease is no longer held (stop working on them: another worker
        may have them) and those whose cancellation was requested.
        """
        pairs: list[str] = []
        for job in jobs:
            pairs += [job.id, job.lease_token or ""]
        if not pairs:
            return LeaseState([], [])
        lease = float(jobs_settings.LEASE_TIMEOUT if lease is None else lease)
        deadline = utcnow().timestamp() + lease
        lost, cancel = yield Call(
            "extend", [self.keys.processing], [self.prefix, f"{deadline:.6f}", *pairs]
        )
        return LeaseState([_text(i) for i in lost], [_text(i) for i in cancel])

    def _recover_expired(self) -> Plan[Recovered]:
        """Bring back running jobs whose lease expired, at the head of their list.

        A job whose worker was lost ``MAX_LOST`` times goes to the dead-letter queue instead
        (a poison pill); one whose cancellation was requested is cancelled. Safe to run from
        many workers at once.
        """
        keys = self.keys
        now = utcnow().timestamp()
        job_ttl = int(jobs_settings.JOB_TTL)
        requeued, buried = yield Call(
            "recover",
            [
                keys.processing,
                keys.dead,
                keys.cancelled,
                keys.wakeup,
                keys.counters,
                keys.completed,
            ],
            [
                self.prefix,
                f"{now:.6f}",
                jobs_settings.MAX_LOST,
                RECOVER_LIMIT,
                job_ttl,
                now - job_ttl,
            ],
        )
        return Recovered([_text(i) for i in requeued], [_text(i) for i in buried])

    def _promote_due(self) -> Plan[int]:
        """Move delayed and retrying jobs whose time has come to their lists; return how many."""
        keys = self.keys
        now = utcnow().timestamp()
        reply = yield Call(
            "promote",
            [keys.scheduled, keys.retrying, keys.dead, keys.wakeup],
            [self.prefix, f"{now:.6f}", PROMOTE_LIMIT],
        )
        return int(reply)

    def _fire_tick(self, task: str, due: datetime, job: Job, ttl: int) -> Plan[str]:
        """Enqueue ``job`` for the run of periodic task ``task`` due at ``due``, unless that run
        was enqueued before, by this scheduler or another: one script claims the tick (kept
        ``ttl`` seconds) and enqueues. Returns the id of the tick's job: ``job.id`` if this
        call enqueued it.
        """
        keys = self.keys
        reply = yield Call(
            "fire",
            [keys.tick(task, due.timestamp()), keys.scheduled, keys.wakeup],
            [int(ttl), *self.enqueue_args([job])],
        )
        return _text(reply)

    def _fetch(self, args: list[Any]) -> Plan[list[Job]]:
        # The key is not read: it routes the call to the namespace's slot on Redis Cluster.
        reply = yield Call("fetch", [self.keys.dead], [self.prefix, *args])
        jobs = []
        for index in range(0, len(reply), 3):
            job_id, raw_result = _text(reply[index]), reply[index + 2]
            result = loads(raw_result) if raw_result else None
            # Inspection must not fail on one corrupt record (the worker buries those).
            jobs.append(Job.from_hash(job_id, _record(reply[index + 1]), result, strict=False))
        return jobs

    def _list_jobs(
        self,
        status: JobStatus | str,
        *,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Plan[list[Job]]:
        """A page of the jobs in one state, optionally of one queue.

        PENDING lists ready jobs in the order workers will take them, then delayed ones by
        due time; RETRYING by due time; RUNNING by lease deadline; FAILED (the dead-letter
        queue), COMPLETED and CANCELLED newest first.
        """
        keys = self.keys
        status = JobStatus(status)
        queues = [validation.queue_name(queue)] if queue is not None else list(jobs_settings.QUEUES)
        sources: list[str] = []
        if status is JobStatus.PENDING:
            for key in keys.queues_high_first(queues):
                sources += ["L", key]
            sources += ["Z", keys.scheduled]
        else:
            kind, key = {
                JobStatus.RETRYING: ("Z", keys.retrying),
                JobStatus.RUNNING: ("Z", keys.processing),
                JobStatus.FAILED: ("R", keys.dead),
                JobStatus.COMPLETED: ("R", keys.completed),
                JobStatus.CANCELLED: ("R", keys.cancelled),
            }[status]
            sources += [kind, key]
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative.")
        return (yield from self._fetch(["page", queue or "", offset, limit, *sources]))

    def _jobs_for_user(
        self, user_id: str | int, *, offset: int = 0, limit: int = 100
    ) -> Plan[list[Job]]:
        """A page of the jobs enqueued with ``user_id``, newest first (kept ``JOB_TTL``)."""
        return (
            yield from self._fetch(["page", "", offset, limit, "R", self.keys.user(str(user_id))])
        )

    def _stats(self) -> Plan[dict[str, Any]]:
        """Counts of jobs: ready ones per queue and priority, all per state, and counters.

        ``{"queues": {"default": {"critical": 0, "high": 2, ...}}, "states": {"pending": 2,
        "scheduled": 0, "retrying": 0, "running": 1, "failed": 0, "completed": 9,
        "cancelled": 0}, "counters": {"stale_acks": 0, "recovered": 0}}``; ``pending`` counts
        ready and delayed jobs, ``scheduled`` the delayed ones among them.
        """
        keys = self.keys
        queues = list(jobs_settings.QUEUES)
        lists = keys.queues_high_first(queues)
        keep_since = utcnow().timestamp() - int(jobs_settings.JOB_TTL)
        lengths, states, counters = yield Call(
            "stats",
            [
                keys.scheduled,
                keys.retrying,
                keys.processing,
                keys.dead,
                keys.completed,
                keys.cancelled,
                keys.counters,
                *lists,
            ],
            [keep_since],
        )
        per_queue: dict[str, dict[str, int]] = {q: {} for q in queues}
        for key, length in zip(lists, lengths, strict=True):
            queue, priority = key.rsplit(":", 2)[1:]
            per_queue[queue][JobPriority(int(priority)).name.lower()] = int(length)
        scheduled, retrying, running, failed, completed, cancelled = (int(n) for n in states)
        counts = {k: int(v) for k, v in _record(counters).items()}
        return {
            "queues": per_queue,
            "states": {
                "pending": sum(map(int, lengths)) + scheduled,
                "scheduled": scheduled,
                "retrying": retrying,
                "running": running,
                "failed": failed,
                "completed": completed,
                "cancelled": cancelled,
            },
            "counters": {"stale_acks": 0, "recovered": 0, **counts},
        }

    # -- public API: each plan run with the sync client, and with the asyncio one -------------

    enqueue = _sync(_enqueue)
    aenqueue = _async(_enqueue)
    enqueue_many = _sync(_enqueue_many)
    aenqueue_many = _async(_enqueue_many)
    dequeue = _sync(_dequeue)
    adequeue = _async(_dequeue)
    claim = _sync(_claim)
    aclaim = _async(_claim)
    complete_and_claim = _sync(_complete_and_claim)
    acomplete_and_claim = _async(_complete_and_claim)
    release_job = _sync(_release_job)
    arelease_job = _async(_release_job)
    watch = _sync(_watch)
    awatch = _async(_watch)
    wait_for = _sync(_wait_for)
    await_for = _async(_wait_for)
    get_job = _sync(_get_job)
    aget_job = _async(_get_job)
    complete_job = _sync(_complete_job)
    acomplete_job = _async(_complete_job)
    fail_job = _sync(_fail_job)
    afail_job = _async(_fail_job)
    cancel_job = _sync(_cancel_job)
    acancel_job = _async(_cancel_job)
    requeue_dead = _sync(_requeue_dead)
    arequeue_dead = _async(_requeue_dead)
    extend_lease = _sync(_extend_lease)
    aextend_lease = _async(_extend_lease)
    recover_expired = _sync(_recover_expired)
    arecover_expired = _async(_recover_expired)
    promote_due = _sync(_promote_due)
    apromote_due = _async(_promote_due)
    list_jobs = _sync(_list_jobs)
    alist_jobs = _async(_list_jobs)
    jobs_for_user = _sync(_jobs_for_user)
    ajobs_for_user = _async(_jobs_for_user)
    stats = _sync(_stats)
    astats = _async(_stats)
    fire_tick = _sync(_fire_tick)
    afire_tick = _async(_fire_tick)


@functools.lru_cache(maxsize=64)
def _keys(prefix: str) -> Keys:
    return Keys(prefix)
