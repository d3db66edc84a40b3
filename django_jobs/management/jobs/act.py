"""The subcommands that change jobs: ``requeue``, ``cancel``, ``delete`` and ``purge`` (each
asks first unless ``--noinput``), and ``enqueue``.

``requeue``, ``cancel`` and ``delete`` of several ids do what they can: each id gets its
outcome, and the command fails (status 1) if any id could not be done.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_jobs import describe, moving, validation
from django_jobs.catalog import registry
from django_jobs.exceptions import JobIsRunning
from django_jobs.job import JobPriority, JobStatus
from django_jobs.management.jobs import output
from django_jobs.management.jobs.base import Context, Subcommand, job_dict, one_line
from django_jobs.store import shards


def _ids_argument(parser: CommandParser, nargs: str = "+") -> None:
    parser.add_argument("ids", nargs=nargs, metavar="ID", help="Job ids.")


# One id's outcome: (id, outcome for --json, what to tell people, whether it was done).
Result = tuple[str, str, str, bool]

MISSING = "no such job (unknown, or expired)"


def _report(
    ctx: Context, verb: str, results: list[Result], details: dict[str, dict[str, str]] | None = None
) -> None:
    """Write each id's outcome (with ``details``: more fields of some ids in ``--json``); then
    fail if any id was not done (the others were)."""
    if ctx.json:
        details = details or {}
        ctx.write_json(
            {
                "jobs": [
                    {"id": i, "outcome": outcome, "ok": ok, **details.get(i, {})}
                    for i, outcome, _, ok in results
                ]
            }
        )
    else:
        for job_id, _, message, ok in results:
            ctx.write(f"{job_id}: {message}", ctx.style.SUCCESS if ok else ctx.style.ERROR)
    _fail_unless_done(verb, results)


def _fail_unless_done(verb: str, results: list[Result]) -> None:
    failed = [job_id for job_id, _, _, ok in results if not ok]
    if failed:
        raise CommandError(
            f"{len(failed)} of {describe.plural(len(results), 'job')} could not be {verb}: "
            f"{', '.join(failed)}."
        )


# -- requeue ------------------------------------------------------------------------------------


def _requeue_arguments(parser: CommandParser) -> None:
    _ids_argument(parser, "*")
    parser.add_argument(
        "--all-dead", action="store_true", help="Requeue every job of the dead-letter queue."
    )
    parser.add_argument("--name", help="With --all-dead: only the dead jobs of this name.")


def _held(job_id: str, holder: str) -> Result:
    """The outcome of a dead job that stays because another job holds its unique key."""
    return (
        job_id,
        "held",
        f"its unique key is held by job {holder}; left in the dead letters",
        False,
    )


def run_requeue(ctx: Context) -> None:
    ids, everything, name = ctx.options["ids"], ctx.options["all_dead"], ctx.options["name"]
    if bool(ids) == everything:
        ctx.usage_error("give the ids of dead jobs, or --all-dead, not both.")
    if name is not None and not everything:
        ctx.usage_error("--name goes with --all-dead.")
    if everything:
        if name is None:
            dead = ctx.queue.stats()["states"]["failed"]
            ctx.confirm(f"Requeue all {describe.plural(dead, 'dead job')}?")
        else:
            ctx.confirm(f"Requeue every dead job named {name!r}?")
        outcome = ctx.queue.requeue_dead_outcome(name=name)
        held = [_held(i, holder) for i, holder in outcome.held.items()]
        results: list[Result] = [(i, "requeued", "requeued", True) for i in outcome.requeued]
        results += held
        if ctx.json:
            _report(ctx, "requeued", results, _held_by(outcome.held))
            return
        count = len(outcome.requeued)
        ctx.write(f"Requeued {describe.plural(count, 'dead job')}.", ctx.style.SUCCESS)
        # Those left behind by id; those requeued, which may be thousands, by their count.
        for job_id, _, message, _ in held:
            ctx.write(f"{job_id}: {message}", ctx.style.ERROR)
        _fail_unless_done("requeued", results)
        return
    ids = list(dict.fromkeys(ids))
    ctx.confirm(f"Requeue {describe.plural(len(ids), 'dead job')}?")
    outcome = ctx.queue.requeue_dead_outcome(ids)
    requeued = set(outcome.requeued)
    left = ctx.queue.get_jobs([i for i in ids if i not in requeued and i not in outcome.held])
    results = []
    for job_id in ids:
        if job_id in requeued:
            results.append((job_id, "requeued", "requeued", True))
        elif job_id in outcome.held:
            results.append(_held(job_id, outcome.held[job_id]))
        elif (job := left.get(job_id)) is None:
            results.append((job_id, "missing", MISSING, False))
        else:
            state = job.status.value
            results.append((job_id, state, f"not dead: it is {state}; left as it is", False))
    _report(ctx, "requeued", results, _held_by(outcome.held))


def _held_by(held: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ``--json`` field of a held job: the id of the job that holds its key."""
    return {job_id: {"held_by": holder} for job_id, holder in held.items()}


# -- cancel -------------------------------------------------------------------------------------


def run_cancel(ctx: Context) -> None:
    ids = list(dict.fromkeys(ctx.options["ids"]))
    ctx.confirm(f"Cancel {describe.plural(len(ids), 'job')}?")
    results: list[Result] = []
    for job_id in ids:
        outcome = ctx.queue.cancel_job(job_id)
        if outcome == "cancelled":
            results.append((job_id, outcome, "cancelled", True))
        elif outcome == "requested":
            results.append((job_id, outcome, "running: its worker was asked to stop it", True))
        elif outcome == "missing":
            results.append((job_id, outcome, MISSING, False))
        else:  # it had finished: completed or failed
            results.append((job_id, outcome, f"already {outcome}; left as it is", False))
    _report(ctx, "cancelled", results)


# -- delete -------------------------------------------------------------------------------------


def run_delete(ctx: Context) -> None:
    ids = list(dict.fromkeys(ctx.options["ids"]))
    ctx.confirm(f"Delete {describe.plural(len(ids), 'job')} for good?")
    results: list[Result] = []
    for job_id in ids:  # one at a time: a running job refuses only its own deletion
        try:
            job = ctx.queue.delete_job(job_id)
        except JobIsRunning:
            results.append((job_id, "running", "running: cancel it first, then delete it", False))
            continue
        if job is None:
            results.append((job_id, "missing", MISSING, False))
        else:
            results.append((job_id, "deleted", f"deleted (it was {job.status.value})", True))
    _report(ctx, "deleted", results)


# -- purge --------------------------------------------------------------------------------------

# purge's options of a state: the state, and what the messages call its jobs.
PURGED = {
    "dead": (JobStatus.FAILED, "dead"),
    "completed": (JobStatus.COMPLETED, "completed"),
    "cancelled": (JobStatus.CANCELLED, "cancelled"),
}


def _purge_arguments(parser: CommandParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--queue", metavar="Q", help="The pending jobs of queue Q.")
    which.add_argument("--dead", action="store_true", help="The dead-letter queue.")
    which.add_argument("--completed", action="store_true", help="Completed jobs.")
    which.add_argument("--cancelled", action="store_true", help="Cancelled jobs.")
    parser.add_argument(
        "--older-than",
        type=output.duration,
        metavar="AGE",
        help="With --dead, --completed or --cancelled: only jobs that finished over AGE ago "
        "(30s, 15m, 12h, 7d).",
    )
    parser.add_argument("--name", help="Only the jobs of this name.")


def run_purge(ctx: Context) -> None:
    options = ctx.options
    queue, name, older_than = options["queue"], options["name"], options["older_than"]
    if queue is not None:
        if older_than is not None:
            ctx.usage_error("--older-than goes with --dead, --completed or --cancelled.")
        state, what = JobStatus.PENDING, f"pending jobs of queue {queue!r}"
    else:
        state, what = next(PURGED[dest] for dest in PURGED if options[dest])
        what += " jobs"
    if name is not None:
        what += f" named {name!r}"
    if older_than is not None:
        what += f" older than {describe.age(older_than)}"
    ctx.confirm(f"Delete for good every one of the {what}?")
    try:
        purged = ctx.queue.purge(state, queue=queue, name=name, older_than=older_than)
    except ValueError as exc:  # an unknown queue
        raise CommandError(one_line(exc)) from None
    if ctx.json:
        ctx.write_json(
            {
                "purged": purged,
                "state": state.value,
                "queue": queue,
                "name": name,
                "older_than": older_than,
            }
        )
    else:
        ctx.write(f"Purged {purged} {what}.", ctx.style.SUCCESS)


# -- move-queue ---------------------------------------------------------------------------------


def _move_arguments(parser: CommandParser) -> None:
    parser.add_argument("queue", metavar="QUEUE", help="The queue whose pending jobs to move.")


def _shard_name(shard: str) -> str:
    return f"shard {shard!r}" if shard else "the default shard"


def run_move_queue(ctx: Context) -> None:
    queue = ctx.options["queue"]
    try:
        target = shards.of_queue(validation.queue_name(queue))
        waiting = moving.pending_elsewhere(ctx.queue, queue)
    except ValueError as exc:  # an unknown queue
        raise CommandError(one_line(exc)) from None
    where = _shard_name(target)
    if not waiting:
        if ctx.json:
            ctx.write_json({"queue": queue, "shard": target, "moved": [], "left": []})
        else:
            ctx.write(
                f"No pending job of queue {queue!r} waits outside {where}.", ctx.style.SUCCESS
            )
        return
    found = ", ".join(f"{n} on {_shard_name(s)}" for s, n in waiting.items())
    ctx.confirm(
        f"Move the pending jobs of queue {queue!r} to {where} (entries to look at: {found})?"
    )
    done = moving.move_queue(ctx.queue, queue)
    if ctx.json:
        ctx.write_json({"queue": queue, "shard": target, "moved": done.moved, "left": done.left})
        return
    ctx.write(
        f"Moved {describe.plural(len(done.moved), 'job')} of queue {queue!r} to {where}.",
        ctx.style.SUCCESS,
    )
    if done.left:
        ctx.write(
            f"Left {describe.plural(len(done.left), 'job')} where they were (taken by a worker "
            "meanwhile, a step of a workflow, or a unique key held on the target): "
            + ", ".join(done.left)
        )


# -- enqueue ------------------------------------------------------------------------------------


def _json_of(kind: type, example: str) -> Callable[[str], Any]:
    """An argparse ``type``: JSON text that holds a ``kind`` (a list, a dict)."""

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc}).") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a JSON {'list' if kind is list else 'object'}, like {example}."
            )
        return value

    parse.__name__ = "JSON"
    return parse


def _enqueue_arguments(parser: CommandParser) -> None:
    parser.add_argument("name", metavar="NAME", help="A registered job's name.")
    parser.add_argument(
        "job_args",  # not "args", which Django's command line takes for its own
        nargs="?",
        type=_json_of(list, "'[42, \"x\"]'"),
        default=[],
        metavar="ARGS_JSON",
        help="The positional arguments, a JSON list: '[42, \"welcome\"]'.",
    )
    parser.add_argument(
        "--kwargs",
        type=_json_of(dict, "'{\"user_id\": 42}'"),
        default={},
        metavar="JSON",
        help="The keyword arguments, a JSON object: '{\"user_id\": 42}'.",
    )
    parser.add_argument("--queue", help="Default: the job's own, or DJANGO_JOBS['DEFAULT_QUEUE'].")
    parser.add_argument(
        "--priority",
        choices=[p.name.lower() for p in sorted(JobPriority, reverse=True)],
        help="Default: the job's own.",
    )
    parser.add_argument(
        "--delay", type=output.duration, metavar="AGE", help="Run it this much later (30s, 15m)."
    )


def run_enqueue(ctx: Context) -> None:
    options = ctx.options
    name = options["name"]
    if registry.get(name) is None:
        raise CommandError(_unknown_job(name))
    try:
        job = ctx.queue.enqueue(
            name,
            options["job_args"],
            options["kwargs"],
            queue=options["queue"],
            priority=options["priority"],
            delay=options["delay"],
        )
    except (ValueError, TypeError) as exc:  # arguments or options the job refuses
        raise CommandError(one_line(exc)) from None
    if ctx.json:
        ctx.write_json(job_dict(job))
        return
    due = f", due {output.since(job.scheduled_at)}" if job.scheduled_at else ""
    ctx.write(
        f"Enqueued {job.id} ({job.name}) on queue {job.queue}, priority "
        f"{job.priority.name.lower()}{due}.",
        ctx.style.SUCCESS,
    )


def _unknown_job(name: str) -> str:
    """The error for a name no job is registered under, with the names it may have meant."""
    names = registry.names()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    # A short name ("send_welcome") may be the end of a dotted one.
    close += [n for n in names if n.rsplit(".", 1)[-1] == name and n not in close]
    if close:
        return f"No job is registered as {name!r}. Did you mean: {', '.join(close)}?"
    if names:
        shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
        return f"No job is registered as {name!r}. Registered jobs: {shown}."
    return f"No job is registered as {name!r}, nor any other (no app's jobs.py defines one)."


SUBCOMMANDS = [
    Subcommand(
        "requeue",
        "Move dead jobs (the ids given, or --all-dead) back to their queues, with a fresh "
        "retry budget.",
        _requeue_arguments,
        run_requeue,
        confirms=True,
    ),
    Subcommand(
        "cancel",
        "Cancel jobs: pending and retrying ones at once; running ones are stopped by their worker.",
        _ids_argument,
        run_cancel,
        confirms=True,
    ),
    Subcommand(
        "delete",
        "Delete jobs for good, in any state but running (cancel those first).",
        _ids_argument,
        run_delete,
        confirms=True,
    ),
    Subcommand(
        "purge",
        "Delete for good every job of a queue's pending ones, the dead-letter queue, the "
        "completed or the cancelled jobs, optionally only the older ones.",
        _purge_arguments,
        run_purge,
        confirms=True,
    ),
    Subcommand(
        "move-queue",
        "Move a queue's pending jobs from the shards it left to the one DJANGO_JOBS['SHARDS'] "
        "gives it now.",
        _move_arguments,
        run_move_queue,
        confirms=True,
    ),
    Subcommand(
        "enqueue",
        "Enqueue a registered job by hand.",
        _enqueue_arguments,
        run_enqueue,
    ),
]
