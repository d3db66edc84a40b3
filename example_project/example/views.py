import json
from datetime import datetime
from functools import wraps

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_http_methods, require_POST

from django_jobs import (
    GroupHandle,
    Job,
    JobQueue,
    JobStatus,
    NotJSONSerializable,
    RedisUnavailable,
    group,
)
from django_jobs.conf import jobs_settings
from example.forms import EnqueueForm
from example.jobs import (
    always_fails,
    call_partner_api,
    crunch,
    make_thumbnail,
    rebuild_report,
    send_welcome,
    slow,
    summarise,
)

LIST_LIMIT = 20
SLOW_SECONDS = 60
CRUNCH_ITEMS = 200
PARTNER_CALLS = 10
THUMBNAILS = 6

# The state tabs of the dashboard, and for each: the job time shown in the list and the order
# in which JobQueue.list_jobs() returns that state's jobs.
STATES = {
    JobStatus.PENDING: (
        "Due",
        "scheduled_at",
        "Ready jobs in the order a worker takes them (highest priority first), "
        "then delayed jobs by due time.",
    ),
    JobStatus.RUNNING: ("Started", "started_at", "By lease deadline, soonest first."),
    JobStatus.RETRYING: ("Next attempt", "scheduled_at", "By next attempt, soonest first."),
    JobStatus.WAITING: (
        "Created",
        "created_at",
        "Steps of chains and groups that wait for the steps before them, oldest first.",
    ),
    JobStatus.FAILED: ("Failed", "finished_at", "Newest first."),
    JobStatus.COMPLETED: ("Completed", "finished_at", "Newest first."),
    JobStatus.CANCELLED: ("Cancelled", "finished_at", "Newest first."),
}
PRIORITIES = ["critical", "high", "normal", "low"]  # the keys of stats()["queues"][name]
# A running job can be cancelled too: its worker stops it.
CANCELLABLE = (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING)


def redis_required(view):
    """Render a clear page instead of a traceback when Redis cannot be reached."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except RedisUnavailable as exc:
            context = {"error": str(exc)}
            return render(request, "example/redis_unavailable.html", context, status=503)

    return wrapper


def when(value: datetime | None) -> dict[str, object] | None:
    """A time as shown on the pages: the datetime (aware, UTC) and how long from now."""
    if value is None:
        return None
    now = timezone.now()
    seconds = (value - now).total_seconds()
    if seconds >= 60:
        relative = f"in {timeuntil(value, now)}"
    elif seconds > 0:
        relative = "in less than a minute"
    elif seconds > -60:
        relative = "just now"
    else:
        relative = f"{timesince(value, now)} ago"
    return {"value": value, "relative": relative}


def as_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def check_every() -> int:
    """How often a worker renews its leases and so notices cancelled running jobs (seconds)."""
    return round(jobs_settings.LEASE_TIMEOUT / 3)


@require_http_methods(["GET", "POST"])
@redis_required
def home(request):
    form = EnqueueForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            # .using() sets options for this one call; .delay() checks them and the arguments,
            # enqueues the job and returns a handle at once (a worker runs the job later).
            handle = send_welcome.using(
                priority=data["priority"], queue=data["queue"], delay=data["delay"]
            ).delay(data["email"])
        except (ValueError, NotJSONSerializable) as exc:
            form.add_error(None, str(exc))
        else:
            return enqueued(request, handle)

    jobs = JobQueue()  # the queue API, for this dashboard

    status = request.GET.get("status", JobStatus.PENDING)
    status = JobStatus(status) if status in STATES else JobStatus.PENDING
    when_label, when_field, order = STATES[status]

    stats = jobs.stats()
    queues = [
        {
            "name": name,
            "counts": [counts.get(p, 0) for p in PRIORITIES],
            "total": sum(counts.values()),
        }
        for name, counts in stats["queues"].items()
    ]
    tabs = [{"status": s, "count": stats["states"][s.value]} for s in STATES]
    rows = [
        {"job": job, "created": when(job.created_at), "when": when(getattr(job, when_field))}
        for job in jobs.list_jobs(status, limit=LIST_LIMIT)
    ]
    context = {
        "form": form,
        "stats": stats,
        "priorities": PRIORITIES,
        "queues": queues,
        "tabs": tabs,
        "status": status,
        "rows": rows,
        "when_label": when_label,
        "order": order,
        "limit": LIST_LIMIT,
        "slow_seconds": SLOW_SECONDS,
        "crunch_items": CRUNCH_ITEMS,
        "partner_calls": PARTNER_CALLS,
        "thumbnails": THUMBNAILS,
    }
    return render(request, "example/home.html", context)


def enqueued(request, handle):
    messages.success(request, f"Enqueued {handle.job.name} as job {handle.id}.")
    return redirect("job_detail", job_id=handle.id)


@require_POST
@redis_required
def enqueue_always_fails(request):
    return enqueued(request, always_fails.delay("This job always fails."))


@require_POST
@redis_required
def enqueue_slow(request):
    return enqueued(request, slow.delay(SLOW_SECONDS))


@require_POST
@redis_required
def enqueue_crunch(request):
    return enqueued(request, crunch.delay(CRUNCH_ITEMS))


@require_POST
@redis_required
def enqueue_partner_calls(request):
    # Ten plain .delay() calls: the job's rate_limit, not this view, spaces out their starts.
    handles = [call_partner_api.delay(order_id) for order_id in range(1, PARTNER_CALLS + 1)]
    # The page that follows shows this batch: the visitor's session keeps its ids.
    request.session["partner_calls"] = [handle.id for handle in handles]
    messages.success(request, f"Enqueued {len(handles)} call_partner_api jobs.")
    return redirect("partner_calls")


@redis_required
def partner_calls(request):
    ids = request.session.get("partner_calls", [])
    found = JobQueue().get_jobs(ids)  # one round trip for the whole batch
    batch = [found[job_id] for job_id in ids if job_id in found]
    first = min((job.started_at for job in batch if job.started_at), default=None)
    rows = [
        {"job": job, "after": (job.started_at - first).total_seconds() if job.started_at else None}
        for job in batch
    ]
    finished = all(job.is_finished for job in batch)
    return render(request, "example/partner_calls.html", {"rows": rows, "finished": finished})


# Outside the request's transaction (ATOMIC_REQUESTS): inside one, .delay() only writes the job
# to the outbox, its unique key is checked at the commit, and handle.created is None.
@transaction.non_atomic_requests
@require_POST
@redis_required
def enqueue_rebuild_report(request):
    handle = rebuild_report.delay()
    if handle.created:
        return enqueued(request, handle)
    messages.warning(
        request,
        f"Already queued: this is the same job ({handle.status}). rebuild_report is unique, so "
        "a second .delay() enqueues nothing while one is pending or running.",
    )
    return redirect("job_detail", job_id=handle.id)


@require_POST
@redis_required
def enqueue_thumbnails(request):
    images = range(1, THUMBNAILS + 1)
    # One round trip stores the whole workflow; summarise waits until every thumbnail is done.
    handle = group(make_thumbnail.s(image_id) for image_id in images).then(summarise.s()).delay()
    thumbnails, summary = handle.steps
    messages.success(
        request,
        f"Enqueued a group of {thumbnails.total} make_thumbnail jobs, then summarise "
        f"(job {summary.id}), which gets their results.",
    )
    return redirect("job_detail", job_id=summary.id)


def workflow_of(jobs: JobQueue, job: Job) -> dict[str, object] | None:
    """The group a job is a member of, or waits for: its members, how many are done, and the
    step that follows it. ``None`` for a job outside any group."""
    group = GroupHandle.of(job, jobs)  # None outside a group, or once it expired
    if group is None:
        return None
    then = jobs.get_job(group.then) if group.then and ":" not in group.then else None
    steps = [(f"member {n}", member.job) for n, member in enumerate(group.members, 1)]
    if then is not None:
        steps.append(("then", then))
    return {
        "done": group.done,
        "total": group.total,
        "then": then,
        "steps": [
            {"place": place, "id": step.id, "job": step, "result": json.dumps(step.result)}
            for place, step in steps
        ],
    }


@redis_required
def job_detail(request, job_id):
    jobs = JobQueue()
    job = jobs.get_job(job_id)
    if job is None:
        return render(request, "example/job_missing.html", {"job_id": job_id}, status=404)
    context = {
        "job": job,
        "times": [
            ("Created", when(job.created_at)),
            (
                "Next attempt" if job.status == JobStatus.RETRYING else "Scheduled for",
                when(job.scheduled_at),
            ),
            ("Started", when(job.started_at)),
            ("Finished", when(job.finished_at)),
        ],
        "args": as_json(job.args),
        "kwargs": as_json(job.kwargs),
        "result": as_json(job.result),
        "progress_at": when(job.progress.at) if job.progress else None,
        "can_cancel": job.status in CANCELLABLE and not job.cancel_requested,
        "check_every": check_every(),
        "workflow": workflow_of(jobs, job),
    }
    return render(request, "example/job_detail.html", context)


@require_POST
@redis_required
def cancel_job(request, job_id):
    outcome = JobQueue().cancel_job(job_id)
    if outcome == "missing":
        messages.error(request, f"There is no job {job_id}; it may have expired.")
        return redirect("home")
    if outcome == "cancelled":
        messages.success(request, "The job is cancelled.")
    elif outcome == "requested":
        messages.info(
            request,
            "The job is running: cancellation requested. Its worker stops it within about "
            f"{check_every()} seconds.",
        )
    else:
        messages.warning(request, f"The job had already finished ({outcome}); it was left alone.")
    return redirect("job_detail", job_id=job_id)
