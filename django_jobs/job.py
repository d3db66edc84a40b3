"""The job record: its states, its priorities and the :class:`Job` dataclass."""

from __future__ import annotations

import enum
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import InvalidJobRecord
from django_jobs.serialization import dumps, from_timestamp, loads_record


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    #: A step of a chain or group waiting for the steps before it (django_jobs.workflow).
    WAITING = "waiting"
    #: Made by ``.delay()`` inside ``transaction.atomic()``: in the outbox table, not yet in
    #: Redis (a handle's status only; Redis never holds it).
    WAITING_FOR_COMMIT = "waiting_for_commit"

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


#: The statuses a job in Redis can have (WAITING_FOR_COMMIT is only a handle's).
STORED_STATUSES: tuple[JobStatus, ...] = tuple(
    s for s in JobStatus if s is not JobStatus.WAITING_FOR_COMMIT
)


class JobPriority(enum.IntEnum):
    """Strict priorities: a worker always takes CRITICAL before HIGH before NORMAL before LOW."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: JobPriority | int | str) -> JobPriority:
        """Accept a member, its value or its name in any case; raise ``ValueError`` otherwise."""
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(f"{p.name} ({p.value})" for p in cls)
        raise ValueError(f"Unknown priority {value!r}; use one of {choices}.")


def new_id() -> str:
    """A random 128-bit id in hex, for jobs and lease tokens (like ``uuid4().hex``, faster)."""
    return os.urandom(16).hex()


# Highest first: the order in which a worker looks at the lists of a queue.
PRIORITIES_HIGH_FIRST: tuple[JobPriority, ...] = tuple(sorted(JobPriority, reverse=True))

# What a job id may be: printable ASCII without spaces, at most 64 characters (a worker shares
# the id of its running job with its supervisor in a fixed-size slot).
JOB_ID = re.compile(r"[!-~]{1,64}")
# The fields whose JSON is the payload that DJANGO_JOBS['MAX_PAYLOAD_BYTES'] limits.
PAYLOAD_FIELDS = ("args", "kwargs", "meta")
# The keys of a job's meta that carry its enqueue's trace context (W3C Trace Context; see
# django_jobs.tracing). They are added after the payload's size was checked, so the worker does
# not count them against the limit.
TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")

_DATETIME_FIELDS = ("created_at", "scheduled_at", "started_at", "finished_at")
_INT_FIELDS = ("max_retries", "retry_count", "lost_count")
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
    "after",
    "then",
    "group",
    "group_index",
)


@dataclass
class Job:
    """One job as stored in Redis.

    ``retry_count`` counts failures that were retried; ``lost_count`` counts the times the
    job's worker died under it (its lease expired), which are redelivered without using a retry.
    ``errors`` keeps one entry per failed attempt: ``{"attempt", "error", "traceback",
    "worker_id", "failed_at"}``. ``retry_backoff_base`` and ``retry_backoff_max`` override the
    ``DJANGO_JOBS`` settings of the same names for this job. ``meta`` is JSON kept with the job
    for the code that enqueued it (the ``django.tasks`` backend keeps the task's options there).
    ``user_id`` comes back as it was given: an ``int`` as an ``int``, a ``str`` as a ``str``.
    """

    id: str
    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    priority: JobPriority = JobPriority.NORMAL
    queue: str = "default"
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    max_retries: int = 3
    retry_count: int = 0
    timeout: float = 300
    user_id: str | int | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    worker_id: str | None = None
    lost_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    lease_token: str | None = None
    cancel_requested: bool = False
    retry_backoff_base: float | None = None
    retry_backoff_max: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Flow control (django_jobs.flow): the unique key the job holds, until when ("started",
    # "finished" or "window") and for how many seconds at most; its rate and concurrency
    # limits, as the scripts read them: [["rate", key, count, per], ["concurrency", key, max]].
    unique_key: str | None = None
    unique_until: str | None = None
    unique_for: float | None = None
    limits: list[list[Any]] = field(default_factory=list)
    # Chains and groups (django_jobs.workflow): what the step waits for and what starts when
    # it completes (a step's id, or "group:<id>"), the group it is member ``group_index`` of,
    # and whether it does not receive the result it waited for.
    after: str | None = None
    then: str | None = None
    group: str | None = None
    group_index: int | None = None
    immutable: bool = False

    # Fields whose Redis hash value is JSON text; ``result`` lives in a key of its own.
    _JSON_FIELDS: ClassVar[tuple[str, ...]] = ("args", "kwargs", "errors", "meta", "limits")

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def attempt(self) -> int:
        """The number of the current (or last) attempt: 1 for the first run."""
        return self.retry_count + self.lost_count + 1

    # -- dict / JSON --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: datetimes as ISO 8601 in UTC, enums by value and name."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = _utc(f.name, value).isoformat()
            elif f.name == "status":
                value = value.value
            elif f.name == "priority":
                value = value.name.lower()
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Job:
        """Build a job from :meth:`to_dict` output; raise :class:`InvalidJobRecord` if malformed."""
        if not isinstance(data, dict):
            raise InvalidJobRecord(f"A job record must be a dict, not {type(data).__name__}.")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            values[f.name] = _from_dict_value(f.name, data[f.name])
        return cls._build(values)

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (TypeError, ValueError) as exc:
            raise InvalidJobRecord(f"A job record is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # -- Redis hash ---------------------------------------------------------------------------

    def to_hash(self) -> dict[str, str]:
        """The Redis hash of this job: compact strings, ``None`` fields left out.

        Datetimes are epoch seconds so that the Lua scripts can compare them with scores.
        ``id`` lives in the key and ``result`` in a key of its own, so neither is stored here;
        empty lists and dicts, zero counters and false flags are left out too (the scripts and
        :meth:`from_hash` read a missing field as its default).
        """
        out: dict[str, str] = {}
        for name, value in self.__dict__.items():
            write = _HASH_WRITERS.get(name)
            if write is None or value is None or (not value and name in _LEFT_OUT_WHEN_EMPTY):
                continue
            out[name] = write(name, value)
        return out

    @classmethod
    def from_hash(
        cls, job_id: str, data: dict[str, str], result: Any = None, *, strict: bool = True
    ) -> Job:
        """Build a job from its Redis hash (str values); raise :class:`InvalidJobRecord`.

        Strict (a worker about to run the job) also refuses an id that is not 1 to 64 printable
        ASCII characters and a payload over ``DJANGO_JOBS['MAX_PAYLOAD_BYTES']``. With
        ``strict=False`` fields that cannot be read keep their defaults instead, so that a
        corrupt record in the dead-letter queue can still be listed and inspected.
        """
        if strict:
            _check_runnable(job_id, data)
        values: dict[str, Any] = {"id": job_id, "result": result}
        for key, raw in data.items():
            read = _HASH_READERS.get(key)
            if read is None:
                continue  # written by a newer version, or by the scripts for their own use
            try:
                values[key] = read(raw)
            except (TypeError, ValueError, OverflowError) as exc:
                if strict:
                    problem = (
                        "is not JSON"
                        if isinstance(exc, json.JSONDecodeError)
                        else f"has the invalid value {raw[:80]!r} ({exc})"
                    )
                    raise InvalidJobRecord(f"Job {job_id}: field {key!r} {problem}.") from None
        if not strict:
            for key, default in (
                ("name", "(unreadable)"),
                ("args", []),
                ("kwargs", {}),
                ("meta", {}),
                ("limits", []),
            ):
                if not isinstance(values.get(key), type(default)) or values.get(key) == "":
                    values[key] = default
            if not isinstance(values.get("errors", []), list):
                values["errors"] = []
        return cls._build(values, job_id)

    @classmethod
    def _build(cls, values: dict[str, Any], job_id: str | None = None) -> Job:
        where = f"Job {job_id}: " if job_id else ""
        for required in ("id", "name"):
            if not isinstance(values.get(required), str) or not values[required]:
                raise InvalidJobRecord(f"{where}field {required!r} is missing or not a string.")
        if not isinstance(values.get("args", []), list):
            raise InvalidJobRecord(f"{where}field 'args' must be a list.")
        if not isinstance(values.get("kwargs", {}), dict):
            raise InvalidJobRecord(f"{where}field 'kwargs' must be a dict.")
        if not isinstance(values.get("errors", []), list):
            raise InvalidJobRecord(f"{where}field 'errors' must be a list.")
        if not isinstance(values.get("meta", {}), dict):
            raise InvalidJobRecord(f"{where}field 'meta' must be a dict.")
        if not isinstance(values.get("limits", []), list):
            raise InvalidJobRecord(f"{where}field 'limits' must be a list.")
        return cls(**values)


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


def _check_runnable(job_id: str, data: dict[str, str]) -> None:
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


# How each field of a Redis hash is written (an enqueue writes one per job).
_HASH_WRITERS: dict[str, Callable[[str, Any], str]] = {
    **dict.fromkeys(("name", "queue", "error", "traceback", "worker_id"), _text),
    **dict.fromkeys(("lease_token", "unique_key", "unique_until"), _text),
    **dict.fromkeys((*Job._JSON_FIELDS, "user_id"), lambda name, value: dumps(value)),
    **dict.fromkeys(_DATETIME_FIELDS, lambda name, value: f"{_utc(name, value).timestamp():.6f}"),
    **dict.fromkeys((*_INT_FIELDS, *_SECONDS_FIELDS), _text),
    "status": lambda name, value: value.value,
    "priority": lambda name, value: str(value.value),
    "cancel_requested": lambda name, value: "1",
    **dict.fromkeys(("after", "then", "group", "group_index"), _text),
    "immutable": lambda name, value: "1",
}
_LEFT_OUT_WHEN_EMPTY = frozenset(
    (*Job._JSON_FIELDS, "retry_count", "lost_count", "cancel_requested", "immutable")
)

# How each field of a Redis hash is read (a worker reads one per claim: this is a hot path).
_HASH_READERS: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("name", "queue", "error", "traceback", "worker_id"), str),
    **dict.fromkeys(("lease_token", "unique_key", "unique_until"), str),
    "user_id": _user_id,
    **dict.fromkeys(Job._JSON_FIELDS, loads_record),
    **dict.fromkeys(_DATETIME_FIELDS, from_timestamp),
    **dict.fromkeys(_INT_FIELDS, int),
    **dict.fromkeys(_SECONDS_FIELDS, _seconds),
    "status": JobStatus,
    "priority": lambda value: JobPriority(int(value)),
    "cancel_requested": lambda value: value == "1",
    **dict.fromkeys(("after", "then", "group"), str),
    "group_index": int,
    "immutable": lambda value: value == "1",
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _utc(name: str, value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise InvalidJobRecord(f"Field {name!r} is a naive datetime; job times must be aware.")
    return value.astimezone(UTC)


def _parse_iso(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("it has no time zone")
    return parsed


def _from_dict_value(name: str, value: Any) -> Any:
    """Turn one :meth:`Job.to_dict` value into the dataclass's type, naming the field when it
    cannot (Redis hashes are read through ``_HASH_READERS``)."""
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
        if name == "group_index":
            return int(value)
        if value is None:
            raise ValueError("it must not be null")
    except (TypeError, ValueError) as exc:
        raise InvalidJobRecord(f"field {name!r} has the invalid value {value!r} ({exc}).") from None
    return value
