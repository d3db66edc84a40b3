"""The worker's side of the job protocol: lease a job, record its outcome, renew and recover
leases. Each call is one Lua script (one round trip) through :mod:`django_jobs.store.calls`.

A claimed job carries a fresh ``lease_token``; only the holder of the current token may record
a completion or a failure, so a worker that lost its lease (it froze, or another worker
recovered the job) can never record a second outcome.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django_jobs import spread, validation
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord
from django_jobs.job import Job, JobStatus, new_id
from django_jobs.serialization import check_json, dumps, from_timestamp, utcnow
from django_jobs.store import lease_calls
from django_jobs.store.commands import Plan
from django_jobs.store.execute import async_twin, sync_twin
from django_jobs.store.keys import Keys
from django_jobs.worker.turns import Claim as Claim
from django_jobs.worker.turns import ShardTurns, _names

# How many due jobs one claim or promote call moves at most, to keep each script call short.
PROMOTE_LIMIT = 100
RECOVER_LIMIT = 100


class Leased(Protocol):
    """What lease renewal needs of a running job (a :class:`Job` has both)."""

    @property
    def id(self) -> str: ...

    @property
    def lease_token(self) -> str | None: ...


@dataclass(frozen=True)
class Recovered:
    """What :meth:`Leases.recover_expired` did."""

    requeued: list[str]
    buried: list[str]


@dataclass(frozen=True)
class Failure:
    """What recording a failed attempt came to (:meth:`Leases.record_failure`): the job's new
    status (``None``: the lease was not held, nothing was recorded) and, for a retry, when it
    is due."""

    status: JobStatus | None
    due: datetime | None = None


@dataclass(frozen=True)
class LeaseState:
    """What :meth:`Leases.extend_lease` learned about a worker's running jobs."""

    lost: list[str]
    cancel_requested: list[str]


class Leases(ShardTurns):
    """The lease protocol of the workers of one namespace (``DJANGO_JOBS['PREFIX']`` unless
    ``prefix`` is given)."""

    #: Seconds between two writes of one job's progress (see :mod:`django_jobs.context`).
    progress_interval = 0.25

    def __repr__(self) -> str:
        return f"<Leases {self.prefix}>"

    def claim_options(
        self,
        worker_id: str = "",
        lease: float | None = None,
        *,
        batch: int = 1,
        skip: Collection[str] = (),
    ) -> dict[str, Any]:
        """The arguments of one claim: the time, the lease's deadline and a fresh token; and
        how many jobs it may lease when the backlog is deep (``batch``), none of them named in
        ``skip`` (see ``claim_next`` in _jobs.lua).

        A worker that got no reply to a claim sends it again with the same options (and
        ``resend=True``), so that the jobs the first send leased, if it did, are taken up again
        rather than stranded until their lease expires.
        """
        now = utcnow().timestamp()
        lease = float(jobs_settings.LEASE_TIMEOUT if lease is None else lease)
        return {
            "now": now,
            "deadline": now + lease,
            "token": new_id(),
            "worker": worker_id,
            "promote_limit": PROMOTE_LIMIT,
            "batch": batch,
            "skip": _names(skip) if skip else "",
        }

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
        self,
        queues: Iterable[str] | None = None,
        worker_id: str = "",
        lease: float | None = None,
        *,
        options: dict[str, Any] | None = None,
        resend: bool = False,
        only: Collection[str] | None = None,
    ) -> Plan[Claim]:
        """:meth:`dequeue`, also telling when the next delayed or retrying job is due.

        ``options`` (from :meth:`claim_options`) and ``resend`` send a claim again whose reply
        was lost. ``only`` (job names) takes the next job only if it has one of these names;
        otherwise the claim is ``held`` (see :class:`Claim`).
        """
        served = validation.served_queues(queues)
        options = options or self.claim_options(worker_id, lease)
        return (yield from self._claim_from(self._rotation(served), only, options, resend))

    def _complete_and_claim(
        self,
        job: Job,
        result: Any,
        queues: Iterable[str] | None = None,
        worker_id: str = "",
        lease: float | None = None,
        *,
        options: dict[str, Any] | None = None,
        resend: bool = False,
        only: Collection[str] | None = None,
    ) -> Plan[tuple[bool, Claim]]:
        """:meth:`complete_job` and :meth:`claim` in one round trip: a worker's steady state.

        Returns whether the completion was recorded (see :meth:`complete_job`) and the claim.
        ``options``, ``resend`` and ``only`` as for :meth:`claim`: sent again, the completion is
        recorded once and the job leased the first time comes back.
        """
        acked, claim = yield from self._complete_many_and_claim(
            [(job, result)], queues, worker_id, lease, options=options, resend=resend, only=only
        )
        return acked[0], claim

    def _complete_many_and_claim(
        self,
        done: list[tuple[Job, Any]],
        queues: Iterable[str] | None = None,
        worker_id: str = "",
        lease: float | None = None,
        *,
        options: dict[str, Any] | None = None,
        resend: bool = False,
        only: Collection[str] | None = None,
    ) -> Plan[tuple[list[bool], Claim]]:
        """:meth:`complete_and_claim` for the jobs of a batch: each (job, result) of ``done``
        is recorded completed, and the next job or batch claimed (``options``, from
        :meth:`claim_options`, say how many), in one round trip. Returns whether each
        completion was recorded, and the claim."""
        served = validation.served_queues(queues)
        options = options or self.claim_options(worker_id, lease)
        rotation = self._rotation(served)
        keys = rotation[0][0]
        if any(self.queue_keys(job.queue) is not keys for job, _ in done):
            # The next claim asks another shard first: the acknowledgements go on their own.
            acked = []
            for job, result in done:
                acked.append((yield from self._complete_job(job, result)))
            return acked, (yield from self._claim_from(rotation, only, options, resend))
        acked, claimed = yield from lease_calls.ack_claim(
            keys,
            done=[(job.id, job.lease_token or "", self._result(result)) for job, result in done],
            result_ttl=int(jobs_settings.RESULT_TTL),
            job_ttl=int(jobs_settings.JOB_TTL),
            queues=rotation[0][1],
            resend=resend,
            only=_names(only),
            **options,
        )
        claim = yield from self._claimed(keys, claimed, options["token"])
        if claim is None:
            claim = yield from self._claim(served, worker_id, lease, only=only)
        elif claim.job is not None and len(rotation) > 1:
            self._took(keys)
        elif claim.job is None and not claim.held and len(rotation) > 1:
            # Nothing on this shard: the others, in turn, with the same token (it leased
            # nothing here), so that a resend finds a job one of them leased under it.
            more = yield from self._claim_from(rotation[1:], only, options, resend)
            due = [d for d in (claim.next_due, more.next_due) if d is not None]
            claim = (
                more if more.job is not None or more.held else Claim(None, min(due, default=None))
            )
        return acked, claim

    def _claimed(self, keys: Keys, claimed: lease_calls.Claimed, token: str) -> Plan[Claim | None]:
        """Read a claim's reply. An unreadable record is buried (``None``: no job of the claim
        could be read; claim again)."""
        if claimed.record is None:
            return Claim(None, claimed.next_due, claimed.held)
        jobs = []
        for job_id, fields in ((claimed.job_id, claimed.record), *claimed.more):
            try:
                jobs.append(Job.from_hash(job_id, fields))
            except InvalidJobRecord as exc:
                # Each job of a batch has a token of its own: its record holds it.
                held = fields.get("lease_token", token)
                yield from self._fail(keys, job_id, held, str(exc), "", retry=False)
        if not jobs:
            return None
        return Claim(jobs[0], None, more=tuple(jobs[1:]))

    @staticmethod
    def _result(result: Any) -> str:
        """A job's result as the acknowledging scripts store it (JSON text)."""
        check_json(result, "the result")
        return dumps(result)

    def _complete_job(self, job: Job, result: Any = None) -> Plan[bool]:
        """Record ``job`` as completed with ``result`` (JSON), if its lease is still held.

        Returns ``False`` when the lease was lost (another worker has the job, or it was
        recovered): the stale completion is refused and counted in ``stats()['counters']``.
        """
        return (
            yield from lease_calls.ack(
                self.queue_keys(job.queue),
                job_id=job.id,
                token=job.lease_token or "",
                worker=job.worker_id or "",
                now=utcnow().timestamp(),
                result=self._result(result),
                result_ttl=int(jobs_settings.RESULT_TTL),
                job_ttl=int(jobs_settings.JOB_TTL),
            )
        )

    def _fail(
        self,
        keys: Keys,
        job_id: str,
        token: str,
        error: str,
        tb: str,
        *,
        retry: bool,
        attempt: int = 1,
        worker_id: str = "",
        backoff: tuple[float | None, float | None] = (None, None),
        finished: bool = True,
    ) -> Plan[Failure]:
        now = utcnow().timestamp()
        entry = {
            "attempt": attempt,
            "error": error,
            "traceback": tb,
            "worker_id": worker_id,
            "failed_at": now,
        }
        outcome, due = yield from lease_calls.fail(
            keys,
            job_id=job_id,
            token=token,
            now=now,
            error=error,
            traceback=tb,
            entry=dumps(entry),
            backoff_base=jobs_settings.RETRY_BACKOFF_BASE if backoff[0] is None else backoff[0],
            backoff_max=jobs_settings.RETRY_BACKOFF_MAX if backoff[1] is None else backoff[1],
            retry=retry,
            finished=finished,
            job_ttl=int(jobs_settings.JOB_TTL),
        )
        if outcome == "stale":
            return Failure(None)
        return Failure(JobStatus(outcome), from_timestamp(due) if due else None)

    def _fail_job(
        self,
        job: Job,
        error: str,
        traceback: str = "",
        *,
        retry: bool = True,
        finished: bool = True,
    ) -> Plan[JobStatus | None]:
        """:meth:`record_failure`, returning only the new status (``None``: not recorded)."""
        failure = yield from self._record_failure(
            job, error, traceback, retry=retry, finished=finished
        )
        return failure.status

    def _record_failure(
        self,
        job: Job,
        error: str,
        traceback: str = "",
        *,
        retry: bool = True,
        finished: bool = True,
    ) -> Plan[Failure]:
        """Record a failed attempt of ``job``.

        With retries left (and ``retry`` true) the job becomes RETRYING, due again after
        ``min(RETRY_BACKOFF_BASE * 2**n, RETRY_BACKOFF_MAX)`` seconds for its n-th retry (the
        job's own ``retry_backoff_base`` and ``retry_backoff_max`` when set); otherwise it is
        FAILED and kept in the dead-letter queue. Each attempt's error is kept in ``job.errors``.
        Returns the new status (``None`` if the lease was not held) and when a retry is due
        (the worker logs it and tells ``job_failed`` receivers). ``finished`` is false
        when the job did not run to its end (its process crashed or was killed): the supervisor
        records that.
        """
        return (
            yield from self._fail(
                self.queue_keys(job.queue),
                job.id,
                job.lease_token or "",
                error,
                traceback,
                retry=retry,
                attempt=job.attempt,
                worker_id=job.worker_id or "",
                backoff=(job.retry_backoff_base, job.retry_backoff_max),
                finished=finished,
            )
        )

    def _release_job(self, job: Job) -> Plan[str]:
        """Give a running job back unfinished, to the head of its list, without using a retry:
        ``"released"``; ``"cancelled"`` instead if its cancellation was requested; ``"lost"``."""
        return (
            yield from lease_calls.release(
                self.queue_keys(job.queue),
                job_id=job.id,
                token=job.lease_token or "",
                now=utcnow().timestamp(),
                job_ttl=int(jobs_settings.JOB_TTL),
            )
        )

    def _record_progress(self, job: Job, progress: str) -> Plan[bool]:
        """Write ``progress`` (JSON text, see :class:`~django_jobs.progress.Progress`) on the
        record of ``job`` if it is still running under ``job``'s lease; ``False`` otherwise (a
        stale worker never overwrites the progress of the attempt that took its job over)."""
        return (
            yield from lease_calls.progress(
                self.queue_keys(job.queue),
                job_id=job.id,
                token=job.lease_token or "",
                progress=progress,
            )
        )

    def _extend_lease(self, jobs: Iterable[Leased], lease: float | None = None) -> Plan[LeaseState]:
        """Renew the leases of a worker's running ``jobs`` in one call.

        Returns the ids whose lease is no longer held (stop working on them: another worker
        may have them) and those whose cancellation was requested.
        """
        leases = [(job.id, job.lease_token or "") for job in jobs]
        if not leases:
            return LeaseState([], [])
        lease = float(jobs_settings.LEASE_TIMEOUT if lease is None else lease)
        deadline = utcnow().timestamp() + lease
        tokens = dict(leases)

        def extend(keys: Keys, ids: list[str]) -> Plan[tuple[set[str], list[str]]]:
            lost, cancel = yield from lease_calls.extend(
                keys, leases=[(i, tokens[i]) for i in ids], deadline=deadline
            )
            return set(ids) - set(lost), cancel

        # By id: the supervisor knows a running job by its id and token only, and an id names
        # its shard; a lease lost there is looked for on the other shards (a moved job).
        replies = yield from spread.by_id(self, list(tokens), extend, lambda reply: reply[0])
        held = set().union(*(reply[0] for reply in replies))
        cancel = list(dict.fromkeys(i for reply in replies for i in reply[1]))
        return LeaseState([i for i in tokens if i not in held], cancel)

    def _recover_expired(self) -> Plan[Recovered]:
        """Bring back running jobs whose lease expired, at the head of their list.

        A job whose worker was lost ``MAX_LOST`` times goes to the dead-letter queue instead
        (a poison pill); one whose cancellation was requested is cancelled. Safe to run from
        many workers at once.
        """
        recovered = Recovered([], [])
        for keys in self.all_keys():  # every shard, whichever queues this worker serves
            requeued, buried = yield from lease_calls.recover(
                keys,
                now=utcnow().timestamp(),
                max_lost=jobs_settings.MAX_LOST,
                limit=RECOVER_LIMIT,
                job_ttl=int(jobs_settings.JOB_TTL),
            )
            recovered.requeued.extend(requeued)
            recovered.buried.extend(buried)
        return recovered

    def _promote_due(self) -> Plan[int]:
        """Move delayed and retrying jobs whose time has come to their lists; return how many."""
        promoted = 0
        for keys in self.all_keys():
            promoted += yield from lease_calls.promote(
                keys, now=utcnow().timestamp(), limit=PROMOTE_LIMIT
            )
        return promoted

    # -- each plan run with the sync client, and with the asyncio one -------------------------

    dequeue = sync_twin(_dequeue)
    adequeue = async_twin(_dequeue)
    claim = sync_twin(_claim)
    aclaim = async_twin(_claim)
    complete_and_claim = sync_twin(_complete_and_claim)
    complete_many_and_claim = sync_twin(_complete_many_and_claim)
    acomplete_and_claim = async_twin(_complete_and_claim)
    complete_job = sync_twin(_complete_job)
    acomplete_job = async_twin(_complete_job)
    fail_job = sync_twin(_fail_job)
    afail_job = async_twin(_fail_job)
    record_failure = sync_twin(_record_failure)
    arecord_failure = async_twin(_record_failure)
    release_job = sync_twin(_release_job)
    arelease_job = async_twin(_release_job)
    record_progress = sync_twin(_record_progress)
    extend_lease = sync_twin(_extend_lease)
    aextend_lease = async_twin(_extend_lease)
    recover_expired = sync_twin(_recover_expired)
    arecover_expired = async_twin(_recover_expired)
    promote_due = sync_twin(_promote_due)
    apromote_due = async_twin(_promote_due)
