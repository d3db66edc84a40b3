"""Chains and groups in the in-memory store of the testing modes: the rules of
``django_jobs/store/lua/_workflow.lua``, in Python, once for ``"immediate"`` and ``"capture"``.

:class:`~django_jobs.testing.store.MemoryStore` takes them from :class:`Workflows`, and calls
its hooks where the scripts call theirs: the completion of a step starts what follows it
(``ack``), a step in the dead letters cancels the rest of its chain or marks its group failed
(``fail``), a cancelled or deleted step cancels what waits for it (``cancel``, ``delete``), a
requeued member no longer holds its group's callback back (``requeue``). So a workflow moves in
memory as it moves in Redis: a step that waits has status WAITING, becomes PENDING with the
result before it in front of its arguments (unless immutable), and runs when ``drain()`` (or, in
immediate mode, the ``.delay()``) takes it. A step counts as enqueued (``assert_enqueued``)
when it becomes ready, with the arguments it will run with.

A group is held as Redis holds it: the fields of its hash (``total``, ``done``, ``members``,
``then``, ``after``, ``failed``, ``failed_member``, ``cancelled``), as text, which
:meth:`~django_jobs.queue.JobQueue.group` returns, and its members' results as JSON text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django_jobs import validation
from django_jobs.job import Job, JobStatus

if TYPE_CHECKING:
    import itertools
    import threading
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from django_jobs.queue import JobQueue

GROUP = "group:"
EMPTY_ARGS = re.compile(r"^\[\s*\]$")


class StepRecord(Protocol):
    """What this module reads and writes of a job's record in the store (``store._Record``)."""

    fields: dict[str, str]
    order: int


@dataclass
class FlowGroup:
    """A group of a workflow: its hash's fields, and each member's result (JSON text) by
    member index."""

    prefix: str
    fields: dict[str, str]
    results: dict[int, str] = field(default_factory=dict)


class Workflows:
    """The workflow side of :class:`~django_jobs.testing.store.MemoryStore`: what
    :class:`~django_jobs.queue.JobQueue` hands over for chains and groups (``enqueue_flow``,
    ``cancel_flow``, ``group``), and the hooks of the store's transitions."""

    if TYPE_CHECKING:  # the store's own (store.py), used here
        _records: Mapping[str, StepRecord]
        _enqueued: list[Job]
        _order: itertools.count[int]
        _lock: threading.RLock
        _groups: dict[str, FlowGroup]

        def enqueue_many(self, queue: JobQueue, jobs: Iterable[Job]) -> list[Job]: ...

        def cancel_job(self, queue: JobQueue, job_id: str, lease_token: str = "") -> str: ...

        def _read(self, job_id: str) -> Job: ...

        def _write(self, job: Job) -> None: ...

        def _now(self) -> datetime: ...

    # -- what JobQueue hands over (django_jobs.routing) ---------------------------------------

    def enqueue_flow(self, queue: JobQueue, jobs: list[Job], groups: list[dict[str, Any]]) -> None:
        """Store a whole chain or group as ``enqueue_flow.lua`` does: its groups, then its jobs
        (the steps that wait with status WAITING); in immediate mode the ready ones run, and
        what they start after them. A group or job whose id is stored already stays as it is."""
        with self._lock:
            for stored in groups:
                if stored["id"] in self._groups:
                    continue
                fields = {"total": str(stored["total"]), "done": "0"}
                fields["members"] = stored["members"]
                fields.update({k: stored[k] for k in ("then", "after") if stored.get(k)})
                self._groups[stored["id"]] = FlowGroup(queue.prefix, fields)
        self.enqueue_many(queue, jobs)

    def cancel_flow(self, queue: JobQueue, job_ids: list[str]) -> list[str]:
        """Cancel the steps of a chain or group, in order, as ``cancel_flow.lua`` does: each as
        :meth:`cancel_job` cancels one. Returns each one's reply."""
        ids = validation.ids(job_ids, "cancel_flow()")
        with self._lock:
            return [self.cancel_job(queue, job_id) for job_id in ids]

    def group(self, queue: JobQueue, group_id: str) -> dict[str, str]:
        """The record of a group of a workflow (``{}`` if unknown)."""
        group_id = validation.job_id(group_id, "group()")
        with self._lock:
            found = self._groups.get(group_id)
            return dict(found.fields) if found and found.prefix == queue.prefix else {}

    # -- hooks of the store's transitions -----------------------------------------------------

    def _step_completed(self, job: Job, result: str) -> None:
        """Step ``job`` completed with ``result`` (JSON text): start what follows it
        (``step_completed``)."""
        if job.group is not None:
            self._member_done(job.group, job.group_index or 0, result)
        elif job.then:
            self._start_next(job.then, result)

    def _step_dead(self, job: Job) -> None:
        """Step ``job`` went to the dead letters (``step_dead``): the rest of its chain is
        cancelled; a group member marks its group failed, and what follows the group waits."""
        if job.group is not None:
            found = self._groups.get(job.group)
            if found is not None:
                found.fields["failed"] = str(int(found.fields.get("failed", "0")) + 1)
                found.fields["failed_member"] = job.id
        elif job.then:
            why = f"Not run: step {job.id} before it failed (it is in the dead letters)."
            self._abandon(job.then, why)

    def _step_requeued(self, job: Job) -> None:
        """Dead step ``job``, a group member, was requeued (``step_requeued``): its group is no
        longer marked failed by it, so its callback starts once it completes."""
        found = self._groups.get(job.group or "")
        failed = int(found.fields.get("failed", "0")) if found is not None else 0
        if found is not None and failed > 0:
            found.fields["failed"] = str(failed - 1)
            if failed == 1:
                found.fields.pop("failed_member", None)

    def _step_cancelled(self, job: Job, what: str = "cancelled") -> None:
        """Step ``job`` was cancelled, or deleted before it completed (``what``)
        (``step_cancelled``): what follows it can never start and is cancelled too; a member
        cancels its group (members that run finish, uncounted)."""
        why = f"Not run: step {job.id} before it was {what}."
        if job.then:
            self._abandon(job.then, why)
        if job.group is not None:
            self._abandon(GROUP + job.group, why)

    def _why_waiting(self, job: Job) -> str:
        """Why step ``job`` still waits, for ``wait_for``'s ``TimeoutError``."""
        after = job.after or ""
        found = self._groups.get(after.removeprefix(GROUP)) if after.startswith(GROUP) else None
        if found is not None and int(found.fields.get("failed", "0")) > 0:
            return (
                f"it waits for group {after.removeprefix(GROUP)}, whose member "
                f"{found.fields.get('failed_member')} is in the dead letters"
            )
        return f"it waits for {after or 'the step before it'}, which has not completed"

    # -- inside (the functions of _workflow.lua, by the same names) ----------------------------

    def _release_step(self, job_id: str, result: str) -> int:
        """Make waiting step ``job_id`` ready, ``result`` in front of its arguments unless it is
        immutable; 1, or 0 when it no longer waits (cancelled)."""
        record = self._records.get(job_id)
        if record is None or record.fields.get("status") != JobStatus.WAITING.value:
            return 0
        if record.fields.get("immutable") != "1":
            # Joined as text, as the script does: the result is never decoded and encoded again.
            args = record.fields.get("args") or "[]"
            rest = "]" if EMPTY_ARGS.match(args) else "," + args[1:]
            record.fields["args"] = "[" + result + rest
        record.fields["status"] = JobStatus.PENDING.value
        record.order = next(self._order)  # at the tail of its list, as RPUSH puts it
        self._enqueued.append(self._read(job_id))
        return 1

    def _start_next(self, target: str, result: str) -> int:
        """Start ``target`` (a step's id, or ``group:<id>``: each of its members) with
        ``result``; how many jobs became ready."""
        if not target.startswith(GROUP):
            return self._release_step(target, result)
        found = self._groups.get(target.removeprefix(GROUP))
        members = found.fields["members"].split(",") if found else []
        return sum(self._release_step(member, result) for member in members)

    def _member_done(self, group_id: str, index: int, result: str) -> None:
        """Member ``index`` of group ``group_id`` completed: counted once; the last one starts
        what follows the group with the list of results in member order."""
        found = self._groups.get(group_id)
        if found is None or "cancelled" in found.fields or index in found.results:
            return
        found.results[index] = result
        total, done = int(found.fields["total"]), int(found.fields["done"]) + 1
        found.fields["done"] = str(done)
        if done < total or not found.fields.get("then"):
            return
        gathered = ",".join(found.results.get(i, "null") for i in range(total))
        self._start_next(found.fields["then"], f"[{gathered}]")

    def _abandon(self, target: str, reason: str) -> None:
        """Cancel ``target`` (a step's id or ``group:<id>``) and everything after it that still
        waits, with ``reason`` as their error: a work list, as chains may be long."""
        todo = [target]
        while todo:
            current = todo.pop()
            if current.startswith(GROUP):
                found = self._groups.get(current.removeprefix(GROUP))
                if found is None or "cancelled" in found.fields:
                    continue
                found.fields["cancelled"] = reason
                todo += found.fields["members"].split(",")
                todo += [found.fields["then"]] if found.fields.get("then") else []
                continue
            record = self._records.get(current)
            if record is None or record.fields.get("status") != JobStatus.WAITING.value:
                continue
            job = self._read(current)
            job.status, job.finished_at, job.error = JobStatus.CANCELLED, self._now(), reason
            self._write(job)
            if job.then:
                todo.append(job.then)
