"""Chains and groups: jobs that wait for other jobs.

``add.s(1, 2)`` is a *signature*: a job with its arguments, not yet enqueued. A step of a chain
receives the result of the step before it as its first argument, unless it is immutable
(``add.si(1, 2)``)::

    chain(fetch.s(url), parse.s(), store.si(url)).delay()   # or fetch.s(url).then(parse.s())
    group(resize.s(i) for i in images).then(summarise.s()).delay()

A group's members run in parallel; what follows the group receives the list of their results,
in member order, once the last one completed. ``.delay()`` stores the whole workflow in one
round trip: every step's record is written up front, the steps that wait with status WAITING.
The ack of a step starts what follows it in the same script call (``lua/_workflow.lua``):
there is no polling and no extra process. A step that ends in the dead letters stops its chain
(the steps after it are cancelled, their error names it); a group member that does marks its
group failed, and what follows the group waits until that member is requeued and completes.
In the testing modes the in-memory store follows the same rules
(:mod:`django_jobs.testing.workflows`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol, Union

from django.db import DEFAULT_DB_ALIAS, transaction

from django_jobs import outbox
from django_jobs.conf import jobs_settings
from django_jobs.handle import Cancellation, JobHandle
from django_jobs.job import Job, JobStatus, new_id
from django_jobs.queue import JobQueue
from django_jobs.store import shards


class StepCall(Protocol):
    """What a step needs of the job it runs: a :class:`~django_jobs.registry.JobCall` (a job
    function with the options of ``.using(...)``), named here without importing the registry,
    which makes signatures."""

    options: dict[str, Any]
    jobs: JobQueue

    @property
    def job_function(self) -> Any: ...

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job: ...

    def delay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]: ...

    async def adelay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]: ...


__all__ = ["Chain", "ChainHandle", "Group", "GroupHandle", "Signature", "chain", "group"]

Step = Union["Signature", "Group"]
StepHandle = Union[JobHandle[Any], "GroupHandle"]


class Signature:
    """One job with its arguments (and the options of ``.using(...)``), not yet enqueued:
    made by ``job.s(...)`` (receives the result of the step before it as its first argument)
    or ``job.si(...)`` (immutable: it does not)."""

    def __init__(
        self,
        call: StepCall,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        immutable: bool = False,
    ) -> None:
        self.call, self.args, self.kwargs, self.immutable = call, args, kwargs, immutable

    def __repr__(self) -> str:
        arguments = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        kind = "si" if self.immutable else "s"
        return f"{self.call.job_function.name}.{kind}({', '.join(arguments)})"

    def then(self, *steps: Step | Chain) -> Chain:
        """A chain of this step and ``steps`` after it."""
        return Chain(self, *steps)

    def delay(self) -> JobHandle[Any]:
        """Enqueue this job alone (as ``job.delay(*args, **kwargs)`` does)."""
        return self.call.delay(*self.args, **self.kwargs)

    async def adelay(self) -> JobHandle[Any]:
        return await self.call.adelay(*self.args, **self.kwargs)

    def _job(self, waits: bool) -> Job:
        """The job of this step; ``waits``: it follows another step (and so starts WAITING)."""
        options = self.call.options
        name = self.call.job_function.name
        if waits and ("delay" in options or "at" in options):
            raise ValueError(f"{self!r}: only the first step of a chain may be delayed.")
        receives = waits and not self.immutable
        # The arguments must fit the function with the result it will receive in front.
        args = (None, *self.args) if receives else self.args
        job = self.call._build(args, self.kwargs)
        if job.unique_key is not None:
            raise ValueError(f"{self!r}: a unique job ({name}) cannot be a step of a workflow.")
        if receives:
            job.args = job.args[1:]
        if waits:
            job.status, job.immutable = JobStatus.WAITING, self.immutable
        return job


class Group:
    """Members that run in parallel: ``group(resize.s(i) for i in images)``."""

    def __init__(self, *members: Signature | Iterable[Signature]) -> None:
        if len(members) == 1 and not isinstance(members[0], Signature):
            members = tuple(members[0])
        for member in members:
            if not isinstance(member, Signature):
                raise TypeError(
                    f"A group's members are signatures (job.s(...)), not {type(member).__name__}."
                )
        if not members:
            raise ValueError("A group needs at least one member.")
        self.members: list[Signature] = list(members)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"group({len(self.members)} members)"

    def then(self, *steps: Step | Chain) -> Chain:
        """A chain of this group and ``steps`` after it: the next step receives the list of
        the members' results, in member order."""
        return Chain(self, *steps)

    def delay(self) -> GroupHandle:
        """Enqueue the group (one round trip); returns its handle."""
        handle = Chain(self).delay().steps[0]
        assert isinstance(handle, GroupHandle)
        return handle

    async def adelay(self) -> GroupHandle:
        handle = (await Chain(self).adelay()).steps[0]
        assert isinstance(handle, GroupHandle)
        return handle


class Chain:
    """Steps (signatures or groups) that run one after the other, each when the one before it
    completed: ``chain(a.s(1), b.s(), c.s())``. A chain given as a step is spliced in."""

    def __init__(self, *steps: Step | Chain) -> None:
        flat: list[Step] = []
        for step in steps:
            if isinstance(step, Chain):
                flat += step.steps
            elif isinstance(step, Signature | Group):
                flat.append(step)
            else:
                raise TypeError(
                    f"A chain's steps are signatures (job.s(...)) or groups, not "
                    f"{type(step).__name__}."
                )
        if not flat:
            raise ValueError("A chain needs at least one step.")
        self.steps: list[Step] = flat

    def __repr__(self) -> str:
        return f"chain({', '.join(repr(step) for step in self.steps)})"

    def then(self, *steps: Step | Chain) -> Chain:
        return Chain(self, *steps)

    def _build(self) -> tuple[JobQueue, list[Job], list[dict[str, Any]], list[StepHandle]]:
        """Every job and group of the workflow, linked, and the handles of its steps."""
        signatures = [
            s for step in self.steps for s in (step.members if isinstance(step, Group) else [step])
        ]
        queue = signatures[0].call.jobs
        if len({s.call.jobs.prefix for s in signatures}) > 1:
            raise ValueError("The steps of a workflow must share one namespace (key prefix).")
        jobs: list[Job] = []
        groups: list[dict[str, Any]] = []
        handles: list[StepHandle] = []
        previous: Job | dict[str, Any] | None = None
        ref = ""
        for position, step in enumerate(self.steps):
            waits = position > 0
            current: Job | dict[str, Any]
            if isinstance(step, Signature):
                job = step._job(waits)
                members, current, here = [job], job, job.id
                handles.append(JobHandle(job, queue))
            else:
                members = [member._job(waits) for member in step.members]
                # A group's id names its shard, as a job's does (store/shards.py).
                gid = shards.tag_id(new_id(), members[0].queue)
                here = f"group:{gid}"
                stored: dict[str, Any] = {"id": gid, "total": len(members)}
                stored["members"] = ",".join(m.id for m in members)
                for index, member in enumerate(members):
                    member.group, member.group_index = gid, index
                if waits:
                    stored["after"] = ref
                groups.append(stored)
                current = stored
                handles.append(GroupHandle(gid, [JobHandle(m, queue) for m in members], queue))
            for member in members:
                if waits:
                    member.after = ref
            if isinstance(previous, Job):
                previous.then = here
            elif previous is not None:
                previous["then"] = here
            jobs += members
            previous, ref = current, here
        spread_over = shards.by_shard_of(jobs)
        if len(spread_over) > 1:
            # One script stores a workflow and each step's completion starts the next: every
            # step's keys must share one slot.
            where = "; ".join(
                f"{', '.join(sorted({j.queue for j in part}))} in "
                + (f"shard {shard!r}" if shard else "the default shard")
                for shard, part in spread_over.items()
            )
            raise ValueError(
                f"The steps of a workflow must run on queues of one shard "
                f"(DJANGO_JOBS['SHARDS']): its queues are {where}."
            )
        return queue, jobs, groups, handles

    def delay(self) -> ChainHandle:
        """Enqueue the whole chain in one round trip; returns its handle.

        Inside ``transaction.atomic()`` (with ``DJANGO_JOBS['ENQUEUE_ON_COMMIT']``) it is
        written to the outbox table in that transaction, as one row, and stored in Redis when it
        commits (by a worker, if Redis does not answer then); after a rollback it never exists
        (:mod:`django_jobs.outbox`).
        """
        queue, jobs, groups, handles = self._build()
        connection = transaction.get_connection(DEFAULT_DB_ALIAS)
        if jobs_settings.ENQUEUE_ON_COMMIT and connection.in_atomic_block:
            outbox.enqueue_flow_on_commit(queue, jobs, groups, DEFAULT_DB_ALIAS)
        else:
            queue.enqueue_flow(jobs, groups)
        return _ran(ChainHandle(handles, queue))

    async def adelay(self) -> ChainHandle:
        """:meth:`delay` for async code: enqueues at once with the asyncio client."""
        queue, jobs, groups, handles = self._build()
        await queue.aenqueue_flow(jobs, groups)
        return _ran(ChainHandle(handles, queue))


def chain(*steps: Step | Chain) -> Chain:
    """Steps that run one after the other; see :class:`Chain`."""
    return Chain(*steps)


def group(*members: Signature | Iterable[Signature]) -> Group:
    """Members that run in parallel; see :class:`Group`."""
    return Group(*members)


class GroupHandle:
    """An enqueued group: its members' handles and, after :meth:`refresh`, how far it is."""

    def __init__(self, group_id: str, members: list[JobHandle[Any]], queue: JobQueue) -> None:
        self.id, self.members, self.queue = group_id, members, queue
        self.total, self.done = len(members), 0
        #: The member last found in the dead letters (``None`` when none is there).
        self.failed: JobHandle[Any] | None = None
        #: Why the group was cancelled (``None`` unless it was).
        self.cancelled: str | None = None
        #: What starts once every member completed: a step's id (or ``group:<id>``), or
        #: ``None`` (as last read).
        self.then: str | None = None

    def __repr__(self) -> str:
        return f"<GroupHandle {self.id} {self.done} of {self.total} done>"

    @classmethod
    def of(cls, job: Job, queue: JobQueue | None = None) -> GroupHandle | None:
        """The group ``job`` is a member of, or whose callback it is (``job.group``, or
        ``job.after``), read in two round trips; ``None`` for a job outside any group, or
        once the group expired. E.g. on a status page: ``GroupHandle.of(handle.job)``."""
        queue = queue or JobQueue()
        after = job.after or ""
        group_id = job.group or (after.removeprefix("group:") if after.startswith("group:") else "")
        record = queue.group(group_id) if group_id else {}
        if not record:
            return None
        ids = record["members"].split(",")
        found = queue.get_jobs(ids)
        members = [JobHandle(found[i], queue) for i in ids if i in found]
        return cls(group_id, members, queue)._read(record)

    def refresh(self) -> GroupHandle:
        """Read the group's counts again (one round trip)."""
        return self._read(self.queue.group(self.id))

    def _read(self, record: dict[str, str]) -> GroupHandle:
        self.then = record.get("then", self.then)
        self.total = int(record.get("total", self.total))
        self.done = int(record.get("done", self.done))
        by_id = {member.id: member for member in self.members}
        failed = record.get("failed_member") if int(record.get("failed", "0")) > 0 else None
        self.failed = by_id.get(failed) if failed else None
        self.cancelled = record.get("cancelled")
        return self

    def results(self, timeout: float | None = None) -> list[Any]:
        """Wait until every member completed (``timeout`` seconds at most in all) and return
        their results in member order. Raises as :meth:`JobHandle.result` does for the first
        member that failed or was cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            member.result(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            for member in self.members
        ]

    def cancel(self) -> Cancellation:
        """Cancel the members that did not start and stop those running (and what follows the
        group). True when one of them was cancelled or asked to stop."""
        return _cancelled(self.queue.cancel_flow([m.id for m in self.members]))


class ChainHandle:
    """An enqueued chain: the handles of its steps (a :class:`GroupHandle` for a group)."""

    def __init__(self, steps: list[StepHandle], queue: JobQueue) -> None:
        self.steps, self.queue = steps, queue

    def __repr__(self) -> str:
        return f"<ChainHandle of {len(self.steps)} steps>"

    def _ids(self) -> list[str]:
        ids: list[str] = []
        for step in self.steps:
            ids += [m.id for m in step.members] if isinstance(step, GroupHandle) else [step.id]
        return ids

    def refresh(self) -> ChainHandle:
        """Read every step again: one round trip for the jobs, one per group."""
        found = self.queue.get_jobs(self._ids())
        for step in self.steps:
            for handle in step.members if isinstance(step, GroupHandle) else [step]:
                if handle.id in found:
                    handle.job = found[handle.id]
            if isinstance(step, GroupHandle):
                step.refresh()
        return self

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the last step and return its result (for a group, the list of results).
        Raises :class:`~django_jobs.exceptions.JobCancelled` when the chain stopped before it
        (the error says which step failed), as :meth:`JobHandle.result` does."""
        last = self.steps[-1]
        if isinstance(last, GroupHandle):
            return last.results(timeout)
        return last.result(timeout)

    async def aresult(self, timeout: float | None = None) -> Any:
        last = self.steps[-1]
        if isinstance(last, GroupHandle):
            return [await member.aresult(timeout) for member in last.members]
        return await last.aresult(timeout)

    def cancel(self) -> Cancellation:
        """Cancel the steps that did not start and stop the one running. True when a step was
        cancelled or asked to stop."""
        return _cancelled(self.queue.cancel_flow(self._ids()))


def _ran(handle: ChainHandle) -> ChainHandle:
    """``handle``, read again in the ``"immediate"`` testing mode, where the steps ran during
    ``.delay()``: its steps show their outcomes, as a job's handle does there. (In memory: no
    round trip, from async code too.)"""
    return handle.refresh() if jobs_settings.MODE == "immediate" else handle


def _cancelled(replies: list[str]) -> Cancellation:
    """One :class:`Cancellation` for the replies of many steps: CANCELLED or REQUESTED when a
    step was (REQUESTED when one still runs), else FINISHED (or MISSING when none exists)."""
    found = {Cancellation.of(reply) for reply in replies}
    for outcome in (Cancellation.REQUESTED, Cancellation.CANCELLED, Cancellation.FINISHED):
        if outcome in found:
            return outcome
    return Cancellation.MISSING
