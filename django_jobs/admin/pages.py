"""The console's pages that show: the dashboard, the jobs of a state, one job.

Each page's Redis work is a fixed number of round trips whatever the number of jobs: the
dashboard makes three (:meth:`~django_jobs.queue.JobQueue.stats`,
:meth:`~django_jobs.queue.JobQueue.throughput`, :meth:`~django_jobs.queue.JobQueue.workers`), a
list page two (the counts, and one bounded page), a job's page two (the job, the workers). When
Redis does not answer, a page says so instead of failing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from django_jobs import browse
from django_jobs.admin.display import (
    STATES,
    WHEN,
    Console,
    chart,
    job_row,
    limit_rows,
    priority_columns,
    queue_rows,
)
from django_jobs.catalog import registry
from django_jobs.describe import age, attempts, limits, progress, timeline, unique
from django_jobs.exceptions import StoreError
from django_jobs.job import JOB_ID, Job, JobStatus
from django_jobs.models import ScheduledTask
from django_jobs.queue import JobQueue
from django_jobs.serialization import utcnow
from django_jobs.store.errors import trouble

PAGE_SIZE = 50


def url(page: str, *args: Any, **query: Any) -> str:
    """The URL of a console page, with the non-empty ``query`` parameters."""
    link = reverse(f"admin:django_jobs_job_{page}", args=args)
    query = {key: value for key, value in query.items() if value not in (None, "")}
    return f"{link}?{urlencode(query)}" if query else link


def _redis_down(request: HttpRequest, exc: StoreError) -> None:
    messages.error(request, f"{trouble(exc)}; the jobs cannot be shown.")


def dashboard(admin: Console, request: HttpRequest) -> HttpResponse:
    """Pending jobs per queue and priority with the oldest one's age, the counts per state,
    the rate and concurrency limits, the attempts per minute over the last hour, and the
    workers."""
    found = _search(request)
    if found is not None:
        return found
    jobs = JobQueue()
    try:
        stats, minutes, workers = jobs.stats(), jobs.throughput(60), jobs.workers()
    except StoreError as exc:
        _redis_down(request, exc)
        stats, minutes, workers = None, [], []
    now = utcnow()
    context = admin.context(
        request,
        "Jobs",
        [("Jobs", "")],
        workers=[(w, age(since(w.started_at, now)), age(since(w.last_beat, now))) for w in workers],
        refresh=_refresh(request),
    )
    if stats is not None:
        for queue, count in stats["unserved"].items():
            messages.warning(
                request,
                f"Queue {queue!r} has {count} pending job{'s' if count != 1 else ''} but no live "
                "worker serves it: they wait until a 'manage.py runworker' that serves it starts.",
            )
        ready = sum(sum(counts.values()) for counts in stats["queues"].values())
        context.update(
            stats=stats,
            priorities=priority_columns(),
            queues=queue_rows(stats, {q: url("list", "pending", queue=q) for q in stats["queues"]}),
            states=[
                (label, stats["states"][key], url("list", state)) for key, state, label in STATES
            ],
            # The delayed jobs come after the ready and the parked ones: exact without SHARDS
            # and within the bounds of what stats() and page() read of the limits.
            scheduled_url=url("list", "pending", cursor=ready + stats["states"]["limited"]),
            chart=chart(minutes),
            limits=limit_rows(stats["limits"], now),
        )
    return TemplateResponse(request, "admin/django_jobs/job/dashboard.html", context)


def _refresh(request: HttpRequest) -> int | None:
    """``?refresh=N``: reload the page every N seconds (2 to 3600)."""
    try:
        seconds = int(request.GET.get("refresh", ""))
    except ValueError:
        return None
    return min(max(seconds, 2), 3600)


def _search(request: HttpRequest) -> HttpResponse | None:
    """``?q=``: a job id opens the job; anything else lists the jobs of that ``user_id``."""
    q = request.GET.get("q", "").strip()
    if not q:
        return None
    if JOB_ID.fullmatch(q):
        try:
            if JobQueue().get_job(q) is not None:
                return HttpResponseRedirect(url("change", q))
        except StoreError as exc:
            _redis_down(request, exc)
            return None
    return HttpResponseRedirect(url("list", "all", user=q))


def job_list(admin: Console, request: HttpRequest, state: str) -> HttpResponse:
    """A page of the jobs in ``state`` (or, with ``?user=``, of one user in any state),
    filtered by queue and job name, with a cursor to the next page."""
    found = _search(request)
    if found is not None:
        return found
    labels = {s: label for _, s, label in STATES}
    if state not in labels and state != "all":
        messages.warning(request, f"There is no job state {state!r}.")
        return HttpResponseRedirect(url("changelist"))
    jobs = JobQueue()
    queue = request.GET.get("queue") or None
    name = request.GET.get("name", "").strip() or None
    user = request.GET.get("user", "").strip() or None
    if state == "all" and user is None:
        return HttpResponseRedirect(url("changelist"))
    try:
        cursor = max(int(request.GET.get("cursor", 0)), 0)
    except ValueError:
        cursor = 0
    if queue is not None and queue not in jobs.queues:
        messages.warning(request, f"There is no queue {queue!r}; showing every queue.")
        queue = None
    status = None if state == "all" else JobStatus(state)
    page = None
    try:
        stats = jobs.stats()
        page = jobs.page(
            status, queue=queue, name=name, user_id=user, cursor=cursor, limit=PAGE_SIZE
        )
    except StoreError as exc:
        _redis_down(request, exc)
        stats = None
    except ValueError as exc:
        messages.error(request, str(exc))
    filters = {"queue": queue, "name": name, "user": user}
    # A filtered page is a bounded scan: it has a next page but no page numbers.
    filtered = bool(queue or name or (user and status))
    title = f"{labels.get(state, 'Jobs')} jobs" if user is None else f"Jobs of user {user}"
    context = admin.context(
        request,
        title,
        [("Jobs", url("changelist")), (title, "")],
        state=state,
        state_label=labels.get(state, "All"),
        when_label=WHEN.get(state, "Finished"),
        states=[
            (label, stats["states"][key] if stats else None, url("list", s, **filters))
            for key, s, label in STATES
        ],
        queues=jobs.queues,
        names=registry.names(),
        filters=filters,
        filtered=filtered,
        page=page,
        parked_lists=browse.PARKED_LISTS,
        rows=[job_row(job, url("change", job.id)) for job in page.jobs] if page else [],
        next_url=(
            url("list", state, cursor=page.cursor, **filters) if page and page.cursor else None
        ),
        previous_url=(
            url("list", state, cursor=max(cursor - PAGE_SIZE, 0), **filters)
            if page and cursor and not filtered
            else None
        ),
        first_url=url("list", state, **filters) if cursor else None,
        page_number=cursor // PAGE_SIZE + 1,
        page_count=max((page.total + PAGE_SIZE - 1) // PAGE_SIZE, 1) if page else 1,
        here=request.get_full_path(),
        actions=_list_actions(state),
        empty_queue=queue if state == "pending" and queue else None,
        requeue_all=state == "failed",
    )
    return TemplateResponse(request, "admin/django_jobs/job/list.html", context)


def _list_actions(state: str) -> list[tuple[str, str]]:
    """The actions the list of ``state`` offers for its selected jobs."""
    choices = []
    if state in ("waiting", "pending", "retrying", "running", "all"):
        choices.append(("cancel", "Cancel selected jobs"))
    if state in ("failed", "all"):
        choices.append(("requeue", "Requeue selected jobs"))
    if state != "running":
        choices.append(("delete", "Delete selected jobs"))
    return choices


def job_page(admin: Console, request: HttpRequest, job_id: str) -> HttpResponse:
    """One job: its record (with its progress, unique key and limits, and the limit it waits
    on), arguments, result, every failed attempt, its timeline, its worker and the scheduled
    task it came from. ``?refresh=N`` reloads it until the job is finished."""
    jobs = JobQueue()
    try:
        job = jobs.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
        workers = {w.id: w for w in jobs.workers()} if job is not None else {}
        workflow = _workflow(jobs, job) if job is not None else None
    except StoreError as exc:
        _redis_down(request, exc)
        return HttpResponseRedirect(url("changelist"))
    if job is None:
        messages.warning(
            request, f"There is no job with id “{job_id}”: unknown, deleted, or expired."
        )
        return HttpResponseRedirect(url("changelist"))
    task_name = job.meta.get("scheduled_task")
    task = ScheduledTask.objects.filter(name=task_name).first() if task_name else None
    supervisor = job.worker_id.rsplit(":", 1)[0] if job.worker_id else None
    context = admin.context(
        request,
        f"Job {job.id}",
        [
            ("Jobs", url("changelist")),
            (job.status.value.capitalize(), url("list", job.status.value)),
            (job.id if len(job.id) <= 20 else job.id[:19] + "…", ""),
        ],
        job=job,
        row=job_row(job, ""),
        args=_pretty(job.args),
        kwargs=_pretty(job.kwargs),
        result=_pretty(job.result) if job.status is JobStatus.COMPLETED else None,
        meta=_pretty(job.meta) if job.meta else None,
        errors=attempts(job),
        timeline=timeline(job),
        unique=unique(job),
        limits=limits(job),
        worker=workers.get(supervisor) if supervisor else None,
        task=task,
        task_name=task_name,
        task_url=(
            reverse("admin:django_jobs_scheduledtask_change", args=[task.pk]) if task else None
        ),
        workflow=workflow,
        workflow_places=[("Waits for", workflow["after"]), ("Then", workflow["then"])]
        if workflow
        else [],
        can_cancel=job.status
        in (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING, JobStatus.WAITING)
        and not job.cancel_requested,
        can_requeue=job.status is JobStatus.FAILED,
        can_delete=job.status is not JobStatus.RUNNING,
        here=request.get_full_path(),
        state_here=url("list", job.status.value),
        refresh=None if job.is_finished else _refresh(request),
        progress=progress(job.progress) if job.progress else None,
        progress_age=age(since(job.progress.at, utcnow())) if job.progress else None,
    )
    return TemplateResponse(request, "admin/django_jobs/job/job.html", context)


def _workflow(jobs: JobQueue, job: Job) -> dict[str, Any] | None:
    """A step's place in its chain or group: what it waits for, what follows it, and its
    group's progress (n of m done, the member that failed). Two round trips at most, whatever
    the size of the group; none for a job outside any workflow."""
    if not (job.after or job.then or job.group):
        return None
    refs = [ref for ref in (job.after, job.then) if ref]
    groups = {ref.removeprefix("group:") for ref in refs if ref.startswith("group:")}
    if job.group:
        groups.add(job.group)
    steps = [ref for ref in refs if not ref.startswith("group:")]
    found = jobs.get_jobs(steps) if steps else {}
    read = {gid: jobs.group(gid) for gid in groups}

    def step(ref: str) -> dict[str, Any]:
        other = found.get(ref)
        return {
            "url": url("change", ref),
            "id": ref,
            "name": other.name if other else "(deleted or expired)",
            "status": other.status.value if other else "",
        }

    def group(gid: str) -> dict[str, Any]:
        record = read[gid]
        failed = record.get("failed_member") if int(record.get("failed", "0")) > 0 else None
        follows = record.get("then")
        return {
            "id": gid,
            "done": record.get("done", "?"),
            "total": record.get("total", "?"),
            "failed": step(failed) if failed else None,
            "cancelled": record.get("cancelled"),
            "then": step(follows) if follows and not follows.startswith("group:") else None,
        }

    def place(ref: str | None) -> dict[str, Any] | None:
        if not ref:
            return None
        if ref.startswith("group:"):
            return {"group": group(ref.removeprefix("group:"))}
        return {"step": step(ref)}

    return {
        "after": place(job.after),
        "then": place(job.then),
        "group": group(job.group) if job.group else None,
        "index": job.group_index,
    }


def since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else (now - moment).total_seconds()


def _pretty(value: Any) -> str:
    """JSON as people read it (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=isinstance(value, dict))
