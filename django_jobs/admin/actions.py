"""The console's actions: cancel, requeue, delete, requeue every dead job, empty a queue.

Every action is a POST to one view, :func:`act`, with the admin's CSRF protection and the
``change_job`` permission (a view-only user's forged POST gets 403 before anything is read).
The first POST shows a confirmation page, like the admin's delete; the POST from that page,
which carries ``confirmed``, acts and goes back where the user came from with a message.
Bulk actions go through the queue's batch calls: a requeue of every dead job or an emptied
queue is one script call per thousand jobs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from django_jobs.admin.display import Console, job_row
from django_jobs.admin.pages import url
from django_jobs.describe import plural
from django_jobs.exceptions import JobIsRunning, StoreError
from django_jobs.job import JOB_ID
from django_jobs.queue import JobQueue
from django_jobs.store.errors import trouble

# A selection is a page of a list at most; more ids in one POST are refused.
MAX_SELECTED = 500


@dataclass(frozen=True)
class Action:
    """What an action is called, what the confirmation page asks, and what it does."""

    label: str
    question: str
    needs: str  # "ids", "queue" or "" (all dead jobs, optionally of one name)
    perform: Callable[[HttpRequest, JobQueue, list[str], str], None]


def _cancel(request: HttpRequest, jobs: JobQueue, ids: list[str], _: str) -> None:
    outcomes = Counter(jobs.cancel_job(job_id) for job_id in ids)
    if outcomes["cancelled"]:
        messages.success(request, f"Cancelled {plural(outcomes['cancelled'], 'job')}.")
    if outcomes["requested"] == 1:
        messages.success(
            request,
            "Asked the worker of 1 running job to stop it; it becomes cancelled once stopped.",
        )
    elif outcomes["requested"]:
        messages.success(
            request,
            f"Asked the workers of {outcomes['requested']} running jobs to stop them; they "
            "become cancelled once stopped.",
        )
    left = {k: n for k, n in outcomes.items() if k not in ("cancelled", "requested", "missing")}
    for status, count in left.items():
        messages.warning(request, f"Left {plural(count, 'job')} alone: already {status}.")
    if outcomes["missing"]:
        missing = outcomes["missing"]
        verb = "exists" if missing == 1 else "exist"
        messages.warning(request, f"{plural(missing, 'job')} no longer {verb}.")


def _requeue(request: HttpRequest, jobs: JobQueue, ids: list[str], _: str) -> None:
    outcome = jobs.requeue_dead_outcome(ids)
    done, held = outcome.requeued, outcome.held
    messages.success(request, f"Requeued {plural(len(done), 'job')}.")
    _held_messages(request, held)
    if len(done) + len(held) < len(ids):
        messages.warning(
            request,
            f"Left {plural(len(ids) - len(done) - len(held), 'job')} alone: not in the dead "
            "letters (requeued already, or deleted).",
        )


# Held jobs named one by one at most (a requeue of every dead job may leave many behind).
HELD_NAMED = 10


def _held_messages(request: HttpRequest, held: dict[str, str]) -> None:
    """Say which dead jobs stayed because another job holds their unique key, and which."""
    for job_id, holder in list(held.items())[:HELD_NAMED]:
        messages.warning(
            request,
            f"Left job {job_id} in the dead letters: its unique key is held by job {holder}.",
        )
    if len(held) > HELD_NAMED:
        messages.warning(
            request,
            f"Left {plural(len(held) - HELD_NAMED, 'other job')} in the dead letters: their "
            "unique keys are held by other jobs.",
        )


def _delete(request: HttpRequest, jobs: JobQueue, ids: list[str], _: str) -> None:
    try:
        deleted = jobs.delete_jobs(ids)
    except JobIsRunning as exc:
        messages.error(request, str(exc))
        return
    messages.success(request, f"Deleted {plural(len(deleted), 'job')}.")


def _requeue_all(request: HttpRequest, jobs: JobQueue, _: list[str], name: str) -> None:
    outcome = jobs.requeue_dead_outcome(name=name or None)
    which = f" named {name}" if name else ""
    messages.success(request, f"Requeued {plural(len(outcome.requeued), 'dead job')}{which}.")
    _held_messages(request, outcome.held)


def _empty_queue(request: HttpRequest, jobs: JobQueue, _: list[str], queue: str) -> None:
    count = jobs.purge("pending", queue=queue)
    messages.success(request, f"Emptied queue {queue}: deleted {plural(count, 'pending job')}.")


ACTIONS: dict[str, Action] = {
    "cancel": Action(
        "Cancel", "Cancel these jobs? Running ones are stopped by their workers.", "ids", _cancel
    ),
    "requeue": Action(
        "Requeue", "Requeue these dead jobs with a fresh retry budget?", "ids", _requeue
    ),
    "delete": Action(
        "Delete", "Delete these jobs for good, with their results and errors?", "ids", _delete
    ),
    "requeue_all": Action(
        "Requeue all dead jobs",
        "Requeue every job in the dead letters with a fresh retry budget?",
        "",
        _requeue_all,
    ),
    "empty_queue": Action(
        "Empty queue",
        "Delete every pending job of this queue (ready and delayed) for good?",
        "queue",
        _empty_queue,
    ),
}


def act(admin: Console, request: HttpRequest) -> HttpResponse:
    """Confirm, then perform, the action named by the POST's ``action``."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action = ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        return HttpResponseBadRequest("Unknown action.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = url("changelist")
    ids = list(dict.fromkeys(request.POST.getlist("ids")))
    argument = request.POST.get("queue" if action.needs == "queue" else "name", "").strip()
    if action.needs == "ids":
        bad = [job_id for job_id in ids if not JOB_ID.fullmatch(job_id)]
        if bad or len(ids) > MAX_SELECTED:
            return HttpResponseBadRequest("Not a selection of job ids.")
        if not ids:
            messages.warning(request, "Select jobs first: no job was selected.")
            return HttpResponseRedirect(back)
    jobs = JobQueue()
    if action.needs == "queue" and argument not in jobs.queues:
        return HttpResponseBadRequest("Unknown queue.")
    try:
        if request.POST.get("confirmed") != "yes":
            return _confirmation(admin, request, action, jobs, ids, argument, back)
        action.perform(request, jobs, ids, argument)
    except StoreError as exc:
        # Cancelling a selection is a call per job, and the bulk actions a call per batch:
        # what was sent before Redis stopped answering stays done.
        messages.error(
            request,
            f"{trouble(exc)}. The action may have been done in part; the lists "
            "show where things stand.",
        )
    return HttpResponseRedirect(back)


def _confirmation(
    admin: Console,
    request: HttpRequest,
    action: Action,
    jobs: JobQueue,
    ids: list[str],
    argument: str,
    back: str,
) -> HttpResponse:
    found = list(jobs.get_jobs(ids).values())
    context = admin.context(
        request,
        "Are you sure?",
        [("Jobs", url("changelist")), (action.label, "")],
        action=action,
        action_name=request.POST["action"],
        rows=[job_row(job, url("change", job.id)) for job in found],
        missing=len(ids) - len(found),
        ids=ids,
        argument=argument,
        argument_field="queue" if action.needs == "queue" else "name",
        back=back,
        dead=jobs.stats()["states"]["failed"] if action.needs == "" else None,
    )
    return TemplateResponse(request, "admin/django_jobs/job/confirm.html", context)
