"""What the console's templates show, worked out from the queue's answers: rows, ages, the
throughput chart, a job's timeline. No Redis here; the templates escape everything."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import django
from django.http import HttpRequest

from django_jobs.describe import age, first_line, limit_now, limit_size
from django_jobs.job import PRIORITIES_HIGH_FIRST, Job, JobStatus


class Console(Protocol):
    """What the console's pages need of its model admin (:class:`~.console.JobAdmin`)."""

    def context(
        self, request: HttpRequest, title: str, crumbs: list[tuple[str, str]], **extra: Any
    ) -> dict[str, Any]: ...


# (key in stats()["states"], state in the list's URL, label), in the order of a job's life.
STATES: tuple[tuple[str, str, str], ...] = (
    ("waiting", "waiting", "Waiting"),
    ("pending", "pending", "Pending"),
    ("retrying", "retrying", "Retrying"),
    ("running", "running", "Running"),
    ("failed", "failed", "Failed"),
    ("completed", "completed", "Completed"),
    ("cancelled", "cancelled", "Cancelled"),
)

# The heading of a list's "when" column (see job_row), by the list's state.
WHEN = {
    "waiting": "Created",
    "pending": "Due",
    "retrying": "Due",
    "running": "Started",
    "all": "Due, started or ended",
}

# The throughput chart's size in SVG units: one bar per minute.
BAR_WIDTH, CHART_HEIGHT = 10, 60


def _age(seconds: float | None) -> str:
    return "" if seconds is None else age(seconds)


def priority_columns() -> list[str]:
    return [p.name.lower() for p in PRIORITIES_HIGH_FIRST]


def queue_rows(stats: dict[str, Any], links: dict[str, str]) -> list[dict[str, Any]]:
    """One row per queue: each priority's pending count and oldest age, highest first."""
    rows = []
    for queue, counts in stats["queues"].items():
        ages = stats["oldest"][queue]
        cells = [(counts[p], _age(ages[p])) for p in priority_columns()]
        known = [a for a in ages.values() if a is not None]
        rows.append(
            {
                "name": queue,
                "url": links[queue],
                "cells": cells,
                "total": sum(counts.values()),
                "oldest": _age(max(known)) if known else "",
                "unserved": queue in stats["unserved"],
            }
        )
    return rows


def limit_rows(limits: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """One row per rate or concurrency limit of ``stats()["limits"]``."""
    return [
        {
            "kind": limit["kind"],
            "key": limit["key"],
            "size": limit_size(limit["kind"], limit["size"], limit["per"]),
            "now": limit_now(limit),
            "waiting": limit["waiting"],
            "last_used": age((now - datetime.fromisoformat(limit["last_used"])).total_seconds()),
        }
        for limit in limits
    ]


def chart(minutes: list[dict[str, Any]]) -> dict[str, Any]:
    """The bars of the attempts completed and failed per minute (oldest first), scaled to the
    busiest minute; each bar's title says its numbers."""
    top = max((m["completed"] + m["failed"] for m in minutes), default=0)
    scale = CHART_HEIGHT / top if top else 0
    bars = []
    for i, m in enumerate(minutes):
        done, failed = m["completed"] * scale, m["failed"] * scale
        bars.append(
            {
                "x": i * BAR_WIDTH,
                "done_y": CHART_HEIGHT - done,
                "done_height": done,
                "failed_y": CHART_HEIGHT - done - failed,
                "failed_height": failed,
                "minute": m["minute"],
                "completed": m["completed"],
                "failed": m["failed"],
                "dead": m["dead"],
            }
        )
    return {
        "bars": bars,
        "top": top,
        "width": BAR_WIDTH * max(len(minutes), 1),
        "height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH - 2,
        "completed": sum(m["completed"] for m in minutes),
        "failed": sum(m["failed"] for m in minutes),
        "dead": sum(m["dead"] for m in minutes),
    }


def job_row(job: Job, link: str) -> dict[str, Any]:
    """A job as one line of a list."""
    return {
        "id": job.id,
        "url": link,
        "name": job.name,
        "queue": job.queue,
        "priority": job.priority.name.lower(),
        "status": job.status.value,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        # The moment the list's "when" column shows: when it is due, started or finished.
        "when": {
            JobStatus.PENDING: job.scheduled_at,
            JobStatus.RETRYING: job.scheduled_at,
            JobStatus.RUNNING: job.started_at,
        }.get(job.status, job.finished_at),
        "attempt": job.attempt,
        "error": first_line(job.error),
        # A pending job that a rate or concurrency limit holds back: that limit's id.
        "waiting_on": job.waiting_on,
        "user_id": job.user_id,
    }


def breadcrumbs_context(
    context: dict[str, Any], opts: Any, crumbs: list[tuple[str, str]]
) -> dict[str, Any]:
    """``context`` with what admin/django_jobs/breadcrumbs.html needs: Django 6 writes the
    admin's breadcrumbs as a list, 5.2 as a line of links."""
    return {
        **context,
        "opts": opts,
        "app_label": opts.app_label,
        "crumbs": crumbs,
        "breadcrumb_list": django.VERSION >= (6,),
    }
