"""Jobs and durations in words, the same in the admin console and in ``manage.py jobs``:
ages, the first line of an error, a job's progress, its failed attempts and its timeline. No
Redis, no Django; the callers escape what they print."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django_jobs.job import Job, JobStatus
from django_jobs.progress import Progress
from django_jobs.serialization import from_timestamp


def plural(count: int, word: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def age(seconds: float | None) -> str:
    """A duration to two units, as ``manage.py jobs`` reads durations: ``42s``, ``3m 12s``,
    ``2h 5m``, ``3d 4h``; ``-`` for none."""
    if seconds is None:
        return "-"
    left = max(int(seconds), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def progress(value: Progress) -> str:
    """``40 of 100 (40%): copying``, ``7 (no total)``, ``12.5 of 20 (62%)``."""
    counted = (
        f"{value.current} (no total)"
        if value.total is None
        else f"{value.current} of {value.total} ({value.percent}%)"
    )
    return f"{counted}: {value.message}" if value.message else counted


def first_line(text: str | None, limit: int = 80) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def moment(value: Any) -> datetime | None:
    """Epoch seconds (a ``failed_at`` of ``Job.errors``) as a UTC datetime; ``None`` for what
    is not one (a record of another version)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return from_timestamp(value)
    except ValueError:
        return None


def attempts(job: Job) -> list[dict[str, Any]]:
    """The job's failed attempts, newest first: attempt, error, traceback, worker_id and
    failed_at (a datetime or ``None``)."""
    return [
        {
            "attempt": entry.get("attempt"),
            "error": entry.get("error") or "",
            "traceback": entry.get("traceback") or "",
            "worker_id": entry.get("worker_id") or "",
            "failed_at": moment(entry.get("failed_at")),
        }
        for entry in reversed(job.errors)
        if isinstance(entry, dict)
    ]


def timeline(job: Job) -> list[tuple[datetime, str, str]]:
    """What happened to ``job``, oldest first: (when, event, detail)."""
    events: list[tuple[datetime, str, str]] = []
    if job.created_at:
        events.append((job.created_at, "enqueued", f"{job.queue}, {job.priority.name.lower()}"))
    if job.scheduled_at and (job.created_at is None or job.scheduled_at > job.created_at):
        events.append((job.scheduled_at, "retry due" if job.errors else "due", ""))
    for entry in attempts(job):
        if entry["failed_at"] is not None:
            where = f" on {entry['worker_id']}" if entry["worker_id"] else ""
            error = first_line(entry["error"], 120)
            events.append((entry["failed_at"], f"attempt {entry['attempt']} failed", error + where))
    if job.started_at:
        where = f"on {job.worker_id}" if job.worker_id else ""
        # A job waiting for its next attempt still holds the start of the one that failed.
        waiting = job.status in (JobStatus.PENDING, JobStatus.RETRYING)
        label = "last attempt started" if waiting else f"attempt {job.attempt} started"
        events.append((job.started_at, label, where))
    if job.finished_at:
        events.append((job.finished_at, job.status.value, first_line(job.error, 120)))
    return sorted(events, key=lambda event: event[0])


# How long a unique job holds its key, by its record's ``unique_until`` (see django_jobs.flow).
_UNIQUE_UNTIL = {"started": "until it starts", "finished": "until it finishes"}


def unique(job: Job) -> str:
    """A unique job's key and how long it holds it, ``report:7 (until it finishes, 1h at
    most)``; ``""`` for a job that is not unique."""
    if not job.unique_key:
        return ""
    if job.unique_until == "window":
        how = f"for {age(job.unique_for)} from its enqueue"
    else:
        how = _UNIQUE_UNTIL.get(job.unique_until or "", str(job.unique_until))
        if job.unique_for:
            how += f", {age(job.unique_for)} at most"
    return f"{job.unique_key} ({how})"


def limit_size(kind: str, size: Any, per: Any = None) -> str:
    """A limit's size in words: ``10 per 1s`` (a rate), ``2 at once`` (a concurrency); ``""``
    when it is not known."""
    if size is None:
        return ""
    return f"{size} per {age(per)}" if kind == "rate" else f"{size} at once"


def limits(job: Job) -> list[str]:
    """A job's rate and concurrency limits in words: ``rate customer:7, 10 per 1s``."""
    return [
        f"{spec[0]} {spec[1]}, {limit_size(spec[0], spec[2], spec[3] if len(spec) > 3 else None)}"
        for spec in job.limits
        if isinstance(spec, list) and len(spec) >= 3
    ]


def limit_now(limit: Mapping[str, Any]) -> str:
    """What a limit of ``stats()["limits"]`` has now: ``3.5 tokens`` (``full`` when its bucket
    has been full a while), ``1 running``."""
    if limit["kind"] == "rate":
        return "full" if limit["tokens"] is None else f"{limit['tokens']:.1f} tokens"
    return f"{limit['running']} running"
