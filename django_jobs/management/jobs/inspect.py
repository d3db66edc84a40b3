"""The subcommands that look without changing anything: ``stats`` (and ``--watch``), ``list``,
``show`` and ``workers``."""

from __future__ import annotations

import json
import shlex
import time
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_jobs import browse, describe
from django_jobs.exceptions import StoreError
from django_jobs.job import PRIORITIES_HIGH_FIRST, STORED_STATUSES, Job, JobStatus
from django_jobs.management.jobs import output
from django_jobs.management.jobs.base import Context, Subcommand, job_dict, one_line
from django_jobs.serialization import utcnow

# The states ``list --state`` takes: the job statuses Redis holds, and ``dead`` for ``failed``
# (the dead-letter queue).
STATES = {
    **{s.value: s for s in STORED_STATUSES},
    "dead": JobStatus.FAILED,
}
LIST_LIMIT = 50

# -- stats --------------------------------------------------------------------------------------


def _stats_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--watch",
        type=output.positive_seconds,
        metavar="N",
        help=(
            "Refresh every N seconds (2, 5s, 1m) like top, until Ctrl-C. With --json: one "
            "document a line."
        ),
    )


def run_stats(ctx: Context) -> None:
    interval = ctx.options["watch"]
    if interval is None:
        _write_stats(ctx, ctx.queue.stats())
        return
    try:
        while True:
            _watch_once(ctx, interval)
            time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends: status 0
        if not ctx.json:
            ctx.write()


def _watch_once(ctx: Context, interval: float) -> None:
    """One refresh of ``stats --watch``; Redis not answering is shown, and the watch goes on."""
    try:
        stats: dict[str, Any] | None = ctx.queue.stats()
        problem = ""
    except StoreError as exc:
        stats, problem = None, one_line(exc)
    if ctx.json:
        if stats is None:
            ctx.command.stderr.write(problem)
        else:
            ctx.write_json(_stats_document(stats), compact=True)
    else:
        ctx.write(output.CLEAR_SCREEN, ending="")
        header = f"Every {interval:g}s: manage.py jobs stats"
        ctx.write(f"{header}    {utcnow():%Y-%m-%d %H:%M:%S} UTC\n", ctx.style.HTTP_INFO)
        if stats is None:
            ctx.write(problem, ctx.style.ERROR)
        else:
            _write_stats(ctx, stats)
    ctx.flush()


def _stats_document(stats: dict[str, Any]) -> dict[str, Any]:
    return {"at": output.iso(utcnow()), **stats}


def _write_stats(ctx: Context, stats: dict[str, Any]) -> None:
    if ctx.json:
        ctx.write_json(_stats_document(stats))
        return
    rows = []
    for queue, counts in stats["queues"].items():
        oldest = stats["oldest"].get(queue, {})
        levels = [p.name.lower() for p in PRIORITIES_HIGH_FIRST if counts.get(p.name.lower())]
        for name in levels:
            rows.append([queue, name, counts[name], describe.age(oldest.get(name))])
        if not levels:  # one line for an empty queue, not one per priority
            rows.append([queue, "-", 0, "-"])
    for line in output.table(["QUEUE", "PRIORITY", "PENDING", "OLDEST"], rows):
        ctx.write(line)
    if stats["limits"]:
        ctx.write("")
        now = utcnow()
        limits = [
            [
                limit["kind"],
                limit["key"],
                describe.limit_size(limit["kind"], limit["size"], limit["per"]),
                describe.limit_now(limit),
                limit["waiting"],
                output.since(datetime.fromisoformat(limit["last_used"]), now),
            ]
            for limit in stats["limits"]
        ]
        for line in output.table(["LIMIT", "KEY", "SIZE", "NOW", "WAITING", "USED"], limits):
            ctx.write(line)
    states = stats["states"]
    limited = f", {states['limited']} waiting on a limit" if states["limited"] else ""
    ctx.write(
        f"\nJobs: {states['pending']} pending ({states['scheduled']} of them scheduled for "
        f"later{limited}), {states['retrying']} retrying, "
        f"{states['running']} running, {states['failed']} dead, {states['completed']} completed, "
        f"{states['cancelled']} cancelled"
    )
    workers = stats["workers"]
    ctx.write(f"Workers: {workers['live']} live, {workers['dead']} dead in the last hour")
    for queue, ready in stats["unserved"].items():
        ctx.write(
            f"Warning: no live worker serves queue {queue!r}; its {ready} ready job"
            f"{'s wait' if ready != 1 else ' waits'}.",
            ctx.style.WARNING,
        )


# -- list ---------------------------------------------------------------------------------------


def _list_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--state",
        choices=list(STATES),
        help="Jobs in this state (dead = failed). Default: pending; with --user, every state.",
    )
    parser.add_argument("--queue", help="Only jobs of this queue.")
    parser.add_argument("--name", help="Only jobs of this name.")
    parser.add_argument("--user", help="Only jobs enqueued with this user_id.")
    parser.add_argument(
        "--limit",
        type=output.count(1),
        default=LIST_LIMIT,
        help="Jobs per page (default: %(default)s).",
    )
    parser.add_argument(
        "--cursor",
        type=output.count(0),
        default=0,
        help="Where the page starts: the cursor the previous page gave.",
    )


def run_list(ctx: Context) -> None:
    options = ctx.options
    state = STATES[options["state"] or "pending"]
    if options["state"] is None and options["user"] is not None:
        state = None  # a user's jobs of every state
    try:
        page = ctx.queue.page(
            state,
            queue=options["queue"],
            name=options["name"],
            user_id=options["user"],
            cursor=options["cursor"],
            limit=options["limit"],
        )
    except ValueError as exc:  # an unknown queue
        raise CommandError(one_line(exc)) from None
    if ctx.json:
        ctx.write_json(
            {
                "jobs": [job_dict(job) for job in page.jobs],
                "cursor": page.cursor,
                "total": page.total,
                "scanned": page.scanned,
                "parked_unread": page.parked_unread,
            }
        )
        return
    now = utcnow()
    rows = [
        [
            job.id,
            _state(job),
            job.name,
            job.queue,
            job.priority.name.lower(),
            job.attempt,
            output.since(job.created_at, now),
            _note(job, now),
        ]
        for job in page.jobs
    ]
    headers = ["ID", "STATE", "NAME", "QUEUE", "PRIORITY", "ATTEMPT", "CREATED", "NOTE"]
    if rows:
        for line in output.table(headers, rows):
            ctx.write(line)
    else:
        ctx.write("No jobs on this page." if page.cursor is not None else "No jobs.")
    what = f"{state.value} jobs" if state else "jobs"
    if any(options[f] is not None for f in ("queue", "name", "user")):
        ctx.write(f"\n{len(rows)} shown; the filters looked at {page.scanned} of {page.total}.")
    else:
        ctx.write(f"\n{len(rows)} shown of {page.total} {what}.")
    if page.parked_unread:
        ctx.write(
            f"Not listed: the jobs of {page.parked_unread} more waiting list"
            f"{'s' if page.parked_unread != 1 else ''} of jobs held back by a limit (a page "
            f"reads the first {browse.PARKED_LISTS}); 'jobs stats' lists the limits with the "
            "jobs waiting on each."
        )
    if page.cursor is not None:
        ctx.write(f"More: {_next_page(options, page.cursor)}")


def _state(job: Job) -> str:
    if job.status is JobStatus.RUNNING and job.cancel_requested:
        return "running (cancelling)"
    if job.status is JobStatus.PENDING and job.scheduled_at and job.scheduled_at > utcnow():
        return "scheduled"
    return job.status.value


def _note(job: Job, now: datetime) -> str:
    """What matters most about a job in a list: its error, the limit that holds it back, its
    due time or its worker."""
    if job.status in (JobStatus.FAILED, JobStatus.RETRYING) and job.error:
        return describe.first_line(job.error, 60)
    if job.status is JobStatus.PENDING and job.waiting_on:
        return f"waiting on limit {job.waiting_on}"
    if job.status in (JobStatus.PENDING, JobStatus.RETRYING) and job.scheduled_at:
        return f"due {output.since(job.scheduled_at, now)}"
    if job.status is JobStatus.RUNNING:
        return f"on {job.worker_id}, started {output.since(job.started_at, now)}"
    if job.finished_at:
        return f"finished {output.since(job.finished_at, now)}"
    return ""


def _next_page(options: dict[str, Any], cursor: int) -> str:
    """The command that lists the next page: this one's filters and limit, the new cursor."""
    words = ["manage.py", "jobs", "list"]
    for option in ("state", "queue", "name", "user"):
        if options[option] is not None:
            words += [f"--{option}", str(options[option])]
    if options["limit"] != LIST_LIMIT:
        words += ["--limit", str(options["limit"])]
    return shlex.join([*words, "--cursor", str(cursor)])


# -- show ---------------------------------------------------------------------------------------


def _show_arguments(parser: CommandParser) -> None:
    parser.add_argument("id", metavar="ID", help="The job's id.")


def run_show(ctx: Context) -> None:
    job_id = ctx.options["id"]
    job = ctx.queue.get_job(job_id)
    if job is None:
        raise CommandError(f"There is no job {job_id!r} (unknown, or expired).")
    events = describe.timeline(job)
    if ctx.json:
        data = job_dict(job)
        data["timeline"] = [
            {"at": output.iso(at), "event": event, "detail": detail} for at, event, detail in events
        ]
        ctx.write_json(data)
        return
    now = utcnow()
    ctx.write(f"Job {job.id}", ctx.style.MIGRATE_HEADING)
    fields = [
        ("name", job.name),
        ("state", _state(job)),
        ("queue", job.queue),
        ("priority", job.priority.name.lower()),
        (
            "attempt",
            f"{job.attempt} ({job.retry_count} of {job.max_retries} retries used, "
            f"{job.lost_count} lost to dead workers"
            + (f", {job.late_count} run again after a late worker" if job.late_count else "")
            + ")",
        ),
        ("timeout", describe.age(job.timeout)),
        ("unique", describe.unique(job)),
        ("limits", "; ".join(describe.limits(job))),
        ("waiting", job.waiting_on and f"on limit {job.waiting_on}"),
        ("user", job.user_id),
        ("worker", job.worker_id),
        ("progress", job.progress and describe.progress(job.progress)),
        ("due", output.since(job.scheduled_at, now) if job.scheduled_at else None),
        ("error", job.error and describe.first_line(job.error, 200)),
    ]
    for label, value in fields:
        if value not in (None, ""):
            ctx.write(f"  {label:<9} {value}")
    for label, value in (("Args", job.args), ("Kwargs", job.kwargs), ("Meta", job.meta)):
        if value or label != "Meta":
            _block(ctx, label, value)
    if job.result is not None or job.status is JobStatus.COMPLETED:
        _block(ctx, "Result", job.result)
    if job.errors:
        ctx.write("Attempts that failed:", ctx.style.MIGRATE_HEADING)
        for entry in job.errors:
            if not isinstance(entry, dict):
                continue
            at = output.iso(describe.moment(entry.get("failed_at"))) or "?"
            where = f" on {entry['worker_id']}" if entry.get("worker_id") else ""
            ctx.write(f"  attempt {entry.get('attempt', '?')}, {at}{where}: {entry.get('error')}")
            for line in str(entry.get("traceback") or "").rstrip().splitlines():
                ctx.write(f"    {line}")
    ctx.write("Timeline:", ctx.style.MIGRATE_HEADING)
    for at, event, detail in events:
        ctx.write(f"  {output.iso(at)}  {event}{f': {detail}' if detail else ''}")


def _block(ctx: Context, label: str, value: Any) -> None:
    """``value`` as JSON under a heading: on one line if it fits, else indented."""
    ctx.write(f"{label}:", ctx.style.MIGRATE_HEADING)
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 96:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    for line in text.splitlines():
        ctx.write(f"  {line}")


# -- workers ------------------------------------------------------------------------------------


def _workers_arguments(parser: CommandParser) -> None:
    """``workers`` takes no options of its own."""


def run_workers(ctx: Context) -> None:
    workers = ctx.queue.workers()
    # The running jobs, for their names: one round trip.
    running = ctx.queue.get_jobs([job_id for worker in workers for job_id in worker.jobs])
    documents = [
        {
            "id": w.id,
            "state": "dead" if not w.alive else "stopping" if w.stopping else "live",
            "alive": w.alive,
            "host": w.host or None,
            "pid": w.pid,
            "queues": list(w.queues),
            "concurrency": w.concurrency,
            "started_at": output.iso(w.started_at),
            "last_beat": output.iso(w.last_beat),
            "version": w.version or None,
            "jobs": [_current(job_id, running.get(job_id)) for job_id in w.jobs],
        }
        for w in workers
    ]
    if ctx.json:
        ctx.write_json({"workers": documents})
        return
    if not workers:
        ctx.write("No workers beat in the last hour.")
        return
    now = utcnow()
    headers = ["ID", "STATE", "HOST", "PID", "QUEUES", "CONCURRENCY", "STARTED", "LAST BEAT"]
    rows = [
        [
            w.id,
            document["state"],
            w.host,
            w.pid,
            ",".join(w.queues),
            w.concurrency,
            output.since(w.started_at, now) if w.started_at else None,
            output.since(w.last_beat, now),
        ]
        for w, document in zip(workers, documents, strict=True)
    ]
    lines = output.table(headers, rows)
    ctx.write(lines[0])
    for line, w in zip(lines[1:], workers, strict=True):
        ctx.write(line, None if w.alive else ctx.style.WARNING)
        for job_id in w.jobs:
            job = running.get(job_id)
            what = f"{job.name}, started {output.since(job.started_at, now)}" if job else "(gone)"
            ctx.write(f"    running {job_id} {what}")


def _current(job_id: str, job: Job | None) -> dict[str, Any]:
    """A worker's current job: its id, and its name and start if it still exists."""
    return {
        "id": job_id,
        "name": job.name if job else None,
        "status": job.status.value if job else None,
        "started_at": output.iso(job.started_at) if job else None,
    }


SUBCOMMANDS = [
    Subcommand(
        "stats",
        "Counts: pending jobs and the oldest one's age per queue and priority; scheduled, "
        "retrying, running and dead jobs; live and dead workers; queues no worker serves.",
        _stats_arguments,
        run_stats,
    ),
    Subcommand(
        "list",
        "List jobs, a page at a time, by state, queue, name or user.",
        _list_arguments,
        run_list,
    ),
    Subcommand(
        "show",
        "One job: its record, arguments, result, each failed attempt's error and traceback, "
        "and its timeline.",
        _show_arguments,
        run_show,
    ),
    Subcommand(
        "workers",
        "The live workers and those that died in the last hour, with their current jobs.",
        _workers_arguments,
        run_workers,
    ),
]
