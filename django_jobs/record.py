"""How each field of a job record is written to and read from its Redis hash and its JSON
form (:class:`~django_jobs.job.Job` calls these), and what makes a record unrunnable."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord
from django_jobs.progress import Progress
from django_jobs.progress import read as read_progress
from django_jobs.serialization import dumps, from_timestamp, loads_record
from django_jobs.status import JobPriority, JobStatus

# What a job id may be: printable ASCII without spaces, at most 64 characters (a worker shares
# the id of its running job with its supervisor in a fixed-size slot).
JOB_ID = re.compile(r"[!-~]{1,64}")
# The fields whose JSON is the payload that DJANGO_JOBS['MAX_PAYLOAD_BYTES'] limits.
PAYLOAD_FIELDS = ("args", "kwargs", "meta")
# The keys of a job's meta that carry its enqueue's trace context (W3C Trace Context; see
# django_jobs.tracing). They are added after the payload's size was checked, so the worker does
# not count them against the limit.
TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")

# The JSON fields and the type each must have.
JSON_KINDS = {"args": list, "kwargs": dict, "errors": list, "meta": dict, "limits": list}
# Fields whose Redis hash value is JSON text; ``result`` lives in a key of its own, or, when
# short, in the record of a completed job (see ack_job in lua/_jobs.lua), where the scripts that
# read jobs take it from.
JSON_FIELDS = tuple(JSON_KINDS)
_DATETIME_FIELDS = ("created_at", "scheduled_at", "started_at", "finished_at")
_INT_FIELDS = ("max_retries", "retry_count", "lost_count", "late_count")
_SECONDS_FIELDS = ("timeout", "retry_backoff_base", "retry_backoff_max", "unique_for")
_NULLABLE_FIELDS = (
    *_DATETIME_FIELDS,
    "retry_backoff_base",
    "retry_backoff_max",
    "user_id",
    "result",
    "error",
    "traceback",
    "worker_id",
    "lease_token",
    "unique_key",
    "unique_until",
    "unique_for",
    "progress",
    "parked",
    "after",
    "then",
    "group",
    "group_index",
)


def _text(name: str, value: Any) -> str:
    return str(value)


def _number(value: Any) -> float:
    number = float(value)
    return int(number) if number.is_integer() else number


# Longer than any timeout or backoff a job may be given (validation.MAX_SECONDS).
_MAX_RECORD_SECONDS = 100 * 365 * 24 * 3600


def _seconds(value: str) -> float:
    """A timeout or backoff of a record: a positive, finite number of seconds (no ``nan``)."""
    number = _number(value)
    if not (math.isfinite(number) and 0 < number <= _MAX_RECORD_SECONDS):
        raise ValueError("it must be a positive number of seconds, at most 100 years")
    return number


def _user_id(value: str) -> str | int:
    """A user id as it was given. It is written as JSON (``42`` or ``"42"``) so that its type
    comes back; a record of an older version holds the bare text, which is read as a string
    (or an ``int`` when it is a bare number: its type was not kept)."""
    try:
        found = json.loads(value)
    except ValueError:
        return value
    if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)):
        return found
    return value


def attempt_of(values: dict[str, Any]) -> int:
    """The attempt of a record's values, read as :attr:`Job.attempt` would read it."""
    counts = (values.get(name, 0) for name in ("retry_count", "lost_count", "late_count"))
    return sum(c for c in counts if isinstance(c, int)) + 1


def check_runnable(job_id: str, data: dict[str, str]) -> None:
    """Refuse a record that a worker must not run however its fields read: an id that does not
    fit the worker's slot, or a payload over the limit (what enqueue would have refused)."""
    if not JOB_ID.fullmatch(job_id):
        raise InvalidJobRecord(
            f"Job {job_id[:80]!r}: the id must be 1 to 64 printable ASCII characters."
        )
    limit = jobs_settings.MAX_PAYLOAD_BYTES
    chars = sum(len(data.get(name, "")) for name in PAYLOAD_FIELDS)
    if chars * 4 <= limit:  # UTF-8 takes at most 4 bytes a character: surely small enough
        return
    size = sum(len(data.get(name, "").encode()) for name in PAYLOAD_FIELDS)
    if size > limit:
        size -= _trace_context_size(data.get("meta", ""))
    if size > limit:
        raise InvalidJobRecord(
            f"Job {job_id}: its payload (args, kwargs and meta) is {size} bytes of JSON, over "
            f"DJANGO_JOBS['MAX_PAYLOAD_BYTES'] ({limit}); it is not run."
        )


def _trace_context_size(meta: str) -> int:
    """The bytes the trace context takes in ``meta`` (JSON text); 0 when it has none."""
    if '"traceparent"' not in meta:
        return 0
    try:
        value = json.loads(meta)
    except ValueError:
        return 0
    if not isinstance(value, dict):
        return 0
    context = {key: value[key] for key in TRACE_CONTEXT_KEYS if key in value}
    # Each entry costs its key and value and the comma and colon around them.
    return len(dumps(context).encode()) + 1 if context else 0


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(name: str, value: datetime) -> str:
    """An aware datetime as epoch seconds with microseconds (a naive one is refused, as
    :func:`utc` does). Worked out in whole microseconds: the text ``f"{value.timestamp():.6f}"``
    gives (for the next two centuries), at a third of its cost (an enqueue writes one per job)."""
    try:
        delta = value - _UNIX_EPOCH
    except TypeError:
        utc(name, value)  # naive: refused with the field's name
        raise
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds, fraction = divmod(abs(micros), 1_000_000)
    return f"{'-' if micros < 0 else ''}{seconds}.{fraction:06d}"


# A status or priority as stored, looked up: cheaper than calling the enum (a worker reads both
# per job); other text is read by the enum, which refuses what is not one of its values.
_STATUSES = {status.value: status for status in JobStatus}
_PRIORITIES = {str(priority.value): priority for priority in JobPriority}
# And the other way, for the writers: a member's ``.value`` is a Python-level property, which
# cost an enqueue more than its dict lookup (keyed by the member's str or int hash).
_STATUS_TEXTS = {status: text for text, status in _STATUSES.items()}
_PRIORITY_TEXTS = {priority: text for text, priority in _PRIORITIES.items()}

# How each field of a Redis hash is written (an enqueue writes one per job).
HASH_WRITERS: dict[str, Callable[[str, Any], str]] = {
    **dict.fromkeys(("name", "queue", "error", "traceback", "worker_id"), _text),
    **dict.fromkeys(("lease_token", "unique_key", "unique_until", "parked"), _text),
    **dict.fromkeys((*JSON_FIELDS, "user_id"), lambda name, value: dumps(value)),
    **dict.fromkeys(_DATETIME_FIELDS, _epoch),
    **dict.fromkeys(_INT_FIELDS, _text),
    # "300", not "300.0": a whole number is stored as an integer in a compact hash, 4 bytes
    # fewer per field (``_seconds`` reads both).
    **dict.fromkeys(_SECONDS_FIELDS, lambda name, value: str(_number(value))),
    "status": lambda name, value: _STATUS_TEXTS[value],
    "priority": lambda name, value: _PRIORITY_TEXTS[value],
    "cancel_requested": lambda name, value: "1",
    "progress": lambda name, value: value.to_json(),
    **dict.fromkeys(("after", "then", "group", "group_index"), _text),
    "immutable": lambda name, value: "1",
}
# The fields that give a job something to do when it ends: a unique key or limits to release,
# the steps of a workflow to start. A record with any of them also holds ``on_end`` ("1"), the
# one field the scripts that end a job read to know whether to look for the others: a plain
# job's acknowledgement then looks up one missing field, not six (each is a scan of the hash).
ON_END_FIELDS = ("unique_key", "limits", "then", "group")

# The fields a hash leaves out while they hold the :class:`~django_jobs.job.Job` dataclass's
# default (empty lists and dicts, zero counters, false flags, 3 retries, a 300 s timeout):
# absent means the default, to every reader (``Job.from_hash``; the scripts, e.g. MAX_RETRIES in
# _lib.lua). A queued plain job's record then fits a smaller block of Redis's allocator.
LEFT_OUT_WHEN_DEFAULT = frozenset(
    (
        *JSON_FIELDS,
        "retry_count",
        "lost_count",
        "late_count",
        "cancel_requested",
        "immutable",
        "max_retries",
        "timeout",
    )
)
# The fields a hash starts with (``Job.to_hash``), in this order: every job an enqueue stores has
# them, and the enqueue scripts take their values at these places and write their names
# themselves (``enqueue_job`` and ``enqueue_jobs`` in _enqueue.lua): a call sends no name of them.
LEADING_FIELDS = ("name", "queue", "priority", "created_at", "status")

# The fields whose values differ from job to job of one enqueue (or that cannot be compared),
# which an enqueue of many jobs sends per job, and what jobs share once per shape
# (calls.enqueue_values): the JSON fields, left out of a record when empty, and the others, left
# out when ``None``.
VARYING_NULLABLE_FIELDS = ("scheduled_at", "user_id", "progress")
VARYING_FIELDS = (*JSON_FIELDS, *VARYING_NULLABLE_FIELDS)


def _status(value: str) -> JobStatus:
    found = _STATUSES.get(value)
    return found if found is not None else JobStatus(value)


def _priority(value: str) -> JobPriority:
    found = _PRIORITIES.get(value)
    return found if found is not None else JobPriority(int(value))


# How each field of a Redis hash is read (a worker reads one per claim: this is a hot path).
HASH_READERS: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("name", "queue", "error", "traceback", "worker_id"), str),
    **dict.fromkeys(("lease_token", "unique_key", "unique_until", "parked"), str),
    "user_id": _user_id,
    **dict.fromkeys(JSON_FIELDS, loads_record),
    **dict.fromkeys(_DATETIME_FIELDS, from_timestamp),
    **dict.fromkeys(_INT_FIELDS, int),
    **dict.fromkeys(_SECONDS_FIELDS, _seconds),
    "status": _status,
    "priority": _priority,
    "cancel_requested": lambda value: value == "1",
    # A corrupt value reads as None, even for a worker: it is not needed to run the job.
    "progress": read_progress,
    **dict.fromkeys(("after", "then", "group"), str),
    "group_index": int,
    "immutable": lambda value: value == "1",
}


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def utc(name: str, value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise InvalidJobRecord(f"Field {name!r} is a naive datetime; job times must be aware.")
    return value.astimezone(UTC)


def _parse_iso(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("it has no time zone")
    return parsed


def from_dict_value(name: str, value: Any) -> Any:
    """Turn one :meth:`Job.to_dict` value into the dataclass's type, naming the field when it
    cannot (Redis hashes are read through ``HASH_READERS``)."""
    if value is None and name in _NULLABLE_FIELDS:
        return None
    try:
        if name in _DATETIME_FIELDS:
            return _parse_iso(value)
        if name == "status":
            return JobStatus(value)
        if name == "priority":
            return JobPriority.parse(
                int(value) if isinstance(value, str) and value.isdigit() else value
            )
        if name in _INT_FIELDS:
            return int(value)
        if name in _SECONDS_FIELDS:
            return _number(value)
        if name in ("cancel_requested", "immutable"):
            return value in (True, "1")
        if name == "progress":
            return Progress.from_dict(value)
        if name == "group_index":
            return int(value)
        if value is None:
            raise ValueError("it must not be null")
    except (TypeError, ValueError) as exc:
        raise InvalidJobRecord(f"field {name!r} has the invalid value {value!r} ({exc}).") from None
    return value
