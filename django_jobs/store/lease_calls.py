"""The plans of the worker's lease protocol: claim, acknowledge, fail, release, renew, recover
and promote. Like :mod:`django_jobs.store.calls`, one plan per script, with named parameters;
:class:`~django_jobs.worker.leases.Leases` is their one caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_jobs.serialization import dumps
from django_jobs.store.calls import record, result_since, stamp, text
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys
from django_jobs.store.scripts import SCRIPTS


@dataclass(frozen=True)
class Claimed:
    """What a claim script answered: a leased job's id and record, or when the next job is due.

    ``job_id`` is ``""`` when nothing was taken; then ``next_due`` (epoch seconds) is set if a
    delayed or retrying job is waiting, and ``held`` when a claim of ``only`` some names left
    the next job (by strict priority) because its name is not one of them. ``more``: the id and
    record of each job a claim of a batch leased after the first, in order.
    """

    job_id: str
    record: dict[str, str] | None
    next_due: float | None
    held: bool = False
    more: tuple[tuple[str, dict[str, str]], ...] = ()


def _claimed(reply: list[Any]) -> Claimed:
    job_id = text(reply[0])
    if not job_id:
        due, held = text(reply[1]), text(reply[2] if len(reply) > 2 else "")
        return Claimed("", None, float(due) if due else None, held == "1")
    more = tuple((text(reply[i]), record(reply[i + 1])) for i in range(2, len(reply), 2))
    return Claimed(job_id, record(reply[1]), None, more=more)


def _claim_values(
    keys: Keys,
    now: float | None,
    deadline: float | None,
    token: str,
    worker: str,
    limit: int,
    resend: bool,
    only: str = "",
    batch: int = 1,
    skip: str = "",
) -> dict[str, Any]:
    return {
        "scheduled": keys.scheduled,
        "retrying": keys.retrying,
        "processing": keys.processing,
        "dead": keys.dead,
        "wakeup": keys.wakeup,
        "prefix": keys.prefix,
        # None: the server's clock (only the claim script takes it, see claim).
        "now": "" if now is None else stamp(now),
        "deadline": "" if deadline is None else stamp(deadline),
        "token": token,
        "worker": worker,
        "promote_limit": limit,
        "resend": "1" if resend else "0",
        "only": only,
        "batch": batch,
        "skip": skip,
    }


def claim(
    keys: Keys,
    *,
    queues: list[str],
    now: float | None,
    deadline: float | None,
    token: str,
    worker: str,
    promote_limit: int,
    resend: bool = False,
    only: str = "",
    batch: int = 1,
    skip: str = "",
    lease: float | None = None,
) -> Plan[Claimed]:
    """Promote due jobs, then lease the first job of the served ``queues`` in strict priority.

    ``resend`` says that this very claim (same ``token`` and ``deadline``) was sent before and
    its reply lost: the jobs it leased then, if it did, come back again. ``only`` (a JSON list
    of job names, ``""`` for any) takes that first job only if it has one of those names.
    ``batch`` > 1 leases up to that many jobs when the list they come from is deep, none of
    them named in ``skip`` (a JSON list, ``""`` for none): see ``claim_next`` in _jobs.lua.

    ``now`` and ``deadline`` ``None``: the claim runs by the server's clock, its lease ending
    ``lease`` seconds after it runs (a claim sent behind a blocking wait, which runs when the
    wait ends). Such a claim cannot be resent (see claim.lua).
    """
    values = _claim_values(
        keys, now, deadline, token, worker, promote_limit, resend, only, batch, skip
    )
    clock = "" if lease is None else stamp(lease)
    reply = yield SCRIPTS["claim"].call(**values, lease=clock, queues=queues)
    return _claimed(reply)


def ack_claim(
    keys: Keys,
    *,
    done: list[tuple[str, str, str]],
    result_ttl: int,
    job_ttl: int,
    queues: list[str],
    now: float,
    deadline: float,
    token: str,
    worker: str,
    promote_limit: int,
    resend: bool = False,
    only: str = "",
    batch: int = 1,
    skip: str = "",
) -> Plan[tuple[list[bool], Claimed]]:
    """Record the completion of the ``done`` jobs (id, lease token, result as JSON) and claim
    the next job or batch, in one round trip (``resend``, ``only``, ``batch`` and ``skip``: see
    :func:`claim`; each completion is recorded once either way). Returns whether each
    completion was recorded, and the claim."""
    values = _claim_values(
        keys, now, deadline, token, worker, promote_limit, resend, only, batch, skip
    )
    acked, *claimed = yield SCRIPTS["ack_claim"].call(
        **values,
        completed=keys.completed,
        counters=keys.counters,
        result_ttl=result_ttl,
        job_ttl=job_ttl,
        queues=dumps(queues),
        done=[value for finished in done for value in finished],
    )
    return [bool(a) for a in acked], _claimed(claimed)


def ack(
    keys: Keys,
    *,
    job_id: str,
    token: str,
    worker: str,
    now: float,
    result: str,
    result_ttl: int,
    job_ttl: int,
) -> Plan[bool]:
    """Record a completion; ``False`` when the lease was not held (counted as a stale ack).
    ``worker``: the worker id the job was leased to (a resend by it answers ``True`` again)."""
    reply = yield SCRIPTS["ack"].call(
        job=keys.job(job_id),
        result_key=keys.result(job_id),
        processing=keys.processing,
        completed=keys.completed,
        counters=keys.counters,
        wakeup=keys.wakeup,
        prefix=keys.prefix,
        id=job_id,
        token=token,
        worker=worker,
        now=stamp(now),
        result=result,
        result_ttl=result_ttl,
        job_ttl=job_ttl,
    )
    return bool(reply)


def fail(
    keys: Keys,
    *,
    job_id: str,
    token: str,
    now: float,
    error: str,
    traceback: str,
    entry: str,
    backoff_base: float,
    backoff_max: float,
    retry: bool,
    finished: bool,
    job_ttl: int,
) -> Plan[tuple[str, str]]:
    """Record a failed attempt: ``("retrying", due)``, ``("failed", "")`` or ``("stale", "")``
    when the lease was not held. ``finished``: the job's own process ran it to its end (not a
    crash or a timeout the supervisor records). ``job_ttl``: how long the steps of a chain that
    a dead step stops are kept, cancelled."""
    outcome, due = yield SCRIPTS["fail"].call(
        job=keys.job(job_id),
        processing=keys.processing,
        retrying=keys.retrying,
        dead=keys.dead,
        counters=keys.counters,
        wakeup=keys.wakeup,
        id=job_id,
        token=token,
        now=stamp(now),
        error=error,
        traceback=traceback,
        entry=entry,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        retry="1" if retry else "0",
        finished="1" if finished else "0",
        prefix=keys.prefix,
        job_ttl=job_ttl,
    )
    return text(outcome), text(due)


def release(keys: Keys, *, job_id: str, token: str, now: float, job_ttl: int) -> Plan[str]:
    """Give a running job back to the head of its list: ``"released"``; ``"cancelled"`` when
    its cancellation was requested meanwhile (it is cancelled instead, not run again);
    ``"lost"`` if the lease was not held."""
    reply = yield SCRIPTS["release"].call(
        job=keys.job(job_id),
        processing=keys.processing,
        wakeup=keys.wakeup,
        scheduled=keys.scheduled,
        retrying=keys.retrying,
        cancelled=keys.cancelled,
        id=job_id,
        token=token,
        prefix=keys.prefix,
        now=stamp(now),
        job_ttl=job_ttl,
        keep_since=now - job_ttl,
    )
    return text(reply)


def progress(keys: Keys, *, job_id: str, token: str, progress: str) -> Plan[bool]:
    """Write a running job's ``progress`` (JSON text); ``False`` if the lease was not held."""
    reply = yield SCRIPTS["progress"].call(job=keys.job(job_id), token=token, progress=progress)
    return bool(reply)


def extend(
    keys: Keys, *, leases: list[tuple[str, str]], deadline: float
) -> Plan[tuple[list[str], list[str]]]:
    """Renew the (id, token) ``leases``; returns the ids whose lease was lost and those whose
    cancellation was requested."""
    lost, cancel = yield SCRIPTS["extend"].call(
        processing=keys.processing,
        prefix=keys.prefix,
        deadline=stamp(deadline),
        leases=[value for lease in leases for value in lease],
    )
    return [text(i) for i in lost], [text(i) for i in cancel]


def recover(
    keys: Keys, *, now: float, max_lost: int, limit: int, job_ttl: int
) -> Plan[tuple[list[str], list[str]]]:
    """Bring back running jobs whose lease expired; returns the ids requeued and buried.

    The script buries a record it cannot read (an id or field that is not UTF-8) with the
    reason ``unreadable record: ...``; its id comes back with backslash escapes, to be logged:
    one such id must not make recovery fail for every other job.
    """
    requeued, buried = yield SCRIPTS["recover"].call(
        processing=keys.processing,
        dead=keys.dead,
        cancelled=keys.cancelled,
        wakeup=keys.wakeup,
        counters=keys.counters,
        completed=keys.completed,
        results_swept=keys.results_swept,
        prefix=keys.prefix,
        now=stamp(now),
        max_lost=max_lost,
        limit=limit,
        job_ttl=job_ttl,
        keep_since=now - job_ttl,
        result_since=result_since(),
    )

    def logged(value: bytes | str) -> str:
        return value if isinstance(value, str) else value.decode(errors="backslashreplace")

    return [logged(i) for i in requeued], [logged(i) for i in buried]


def promote(keys: Keys, *, now: float, limit: int) -> Plan[int]:
    """Move due delayed and retrying jobs to their lists; returns how many."""
    reply = yield SCRIPTS["promote"].call(
        scheduled=keys.scheduled,
        retrying=keys.retrying,
        dead=keys.dead,
        wakeup=keys.wakeup,
        prefix=keys.prefix,
        now=stamp(now),
        limit=limit,
    )
    return int(reply)
