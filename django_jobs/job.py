"""The job record: the :class:`Job` dataclass, with its states and priorities
(:mod:`django_jobs.status`) and its Redis hash and JSON forms (:mod:`django_jobs.record`)."""

from __future__ import annotations

import json
import operator
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

from django_jobs.exceptions import InvalidJobRecord
from django_jobs.progress import Progress
from django_jobs.record import (
    HASH_READERS,
    HASH_WRITERS,
    JSON_FIELDS,
    JSON_KINDS,
    LEADING_FIELDS,
    LEFT_OUT_WHEN_DEFAULT,
    ON_END_FIELDS,
    VARYING_FIELDS,
    VARYING_NULLABLE_FIELDS,
    attempt_of,
    check_runnable,
    from_dict_value,
    refuse_constant,
    utc,
)
from django_jobs.record import JOB_ID as JOB_ID
from django_jobs.record import PAYLOAD_FIELDS as PAYLOAD_FIELDS
from django_jobs.record import TRACE_CONTEXT_KEYS as TRACE_CONTEXT_KEYS
from django_jobs.serialization import dumps
from django_jobs.status import PRIORITIES_HIGH_FIRST as PRIORITIES_HIGH_FIRST
from django_jobs.status import STORED_STATUSES as STORED_STATUSES
from django_jobs.status import JobPriority, JobStatus, new_id

__all__ = ["Job", "JobPriority", "JobStatus", "new_id"]


@dataclass
class Job:
    """One job as stored in Redis.

    ``retry_count`` counts failures that were retried; ``lost_count`` counts the times the
    job's worker died under it (its lease expired), which are redelivered without using a retry;
    ``late_count`` the times a worker thought lost finished it after all (it froze, and its
    lease was taken back): the job ran once more each time, at least once, and that loss is
    no longer counted in ``lost_count``.
    ``errors`` keeps one entry per failed attempt: ``{"attempt", "error", "traceback",
    "worker_id", "failed_at"}``. ``retry_backoff_base`` and ``retry_backoff_max`` override the
    ``DJANGO_JOBS`` settings of the same names for this job. ``meta`` is JSON kept with the job
    for the code that enqueued it (the ``django.tasks`` backend keeps the task's options there).
    ``progress`` is what the current (or last) attempt last reported of how far it is
    (:meth:`django_jobs.context.JobContext.progress`), ``None`` until it reports.
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
    late_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    lease_token: str | None = None
    cancel_requested: bool = False
    retry_backoff_base: float | None = None
    retry_backoff_max: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Flow control (django_jobs.flow): the unique key held, until when ("started", "finished",
    # "window") and at most how long; limits: [["rate", key, n, per], ["concurrency", key, n]].
    unique_key: str | None = None
    unique_until: str | None = None
    unique_for: float | None = None
    limits: list[list[Any]] = field(default_factory=list)
    progress: Progress | None = None
    # While a limit holds it back, its waiting list "<priority>|<queue>|<limit id>" (scripts').
    parked: str | None = None
    # Chains and groups (django_jobs.workflow): what the step waits for and what starts when
    # it completes (a step's id, or "group:<id>"), the group it is member ``group_index`` of,
    # and whether it does not receive the result it waited for.
    after: str | None = None
    then: str | None = None
    group: str | None = None
    group_index: int | None = None
    immutable: bool = False

    _JSON_FIELDS: ClassVar[tuple[str, ...]] = JSON_FIELDS

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def waiting_on(self) -> str | None:
        """The id of the limit that holds this pending job back (``"rate:<key>"`` or
        ``"concurrency:<key>"``), or ``None`` when none does."""
        return self.parked.split("|", 2)[-1] if self.parked else None

    @property
    def attempt(self) -> int:
        """The number of the current (or last) attempt: 1 for the first run."""
        return self.retry_count + self.lost_count + self.late_count + 1

    @classmethod
    def new(cls, **values: Any) -> Job:
        """``Job(**values)`` for a new job (``validation.build_job`` makes one per enqueue), at
        half the cost: one dict of every field, where the dataclass's ``__init__`` assigns its
        forty fields one by one. ``values`` name fields (``TypeError`` otherwise), ``id`` and
        ``name`` among them; the others take their defaults."""
        if not values.keys() <= _NEW_FIELDS:
            unknown = ", ".join(sorted(values.keys() - _NEW_FIELDS))
            raise TypeError(f"Job has no fields {unknown}.")
        found = {**_NEW_DEFAULTS, **values}
        for name, factory in _NEW_FACTORIES:
            if name not in values:
                found[name] = factory()
        job = cls.__new__(cls)
        job.__dict__ = found
        return job

    # -- dict / JSON --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: datetimes as ISO 8601 in UTC, enums by value and name."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = utc(f.name, value).isoformat()
            elif f.name == "status":
                value = value.value
            elif f.name == "priority":
                value = value.name.lower()
            elif isinstance(value, Progress):
                value = value.to_dict()
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
            values[f.name] = from_dict_value(f.name, data[f.name])
        return cls._build(values)

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        try:
            data = json.loads(text, parse_constant=refuse_constant)
        except (TypeError, ValueError) as exc:
            raise InvalidJobRecord(f"A job record is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # -- Redis hash ---------------------------------------------------------------------------

    def to_hash(self) -> dict[str, str]:
        """The Redis hash of this job: compact strings, ``None`` fields left out.

        Datetimes are epoch seconds so that the Lua scripts can compare them with scores.
        The fields come in a fixed order, ``record.LEADING_FIELDS`` first.
        ``id`` lives in the key and ``result`` in a key of its own, so neither is stored here;
        the fields of ``record.LEFT_OUT_WHEN_DEFAULT`` that hold their default (empty lists and
        dicts, zero counters, false flags, ``max_retries=3``, ``timeout=300``) are left out too
        (the scripts and :meth:`from_hash` read a missing field as its default).
        """
        values = self.__dict__
        out: dict[str, str] = {}
        for name, write, left_out, default in _HASH_FIELDS:
            value = values[name]
            if value is None or (left_out and value == default):
                continue
            out[name] = write(name, value)
        if not out.keys().isdisjoint(ON_END_FIELDS):
            out["on_end"] = "1"
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
            check_runnable(job_id, data)
        values: dict[str, Any] = {"id": job_id, "result": result}
        for key, raw in data.items():
            read = HASH_READERS.get(key)
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
        found = values.get("progress")
        if found is not None and found.attempt != attempt_of(values):
            del values["progress"]  # an earlier attempt's: this one has reported nothing yet
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
        for name, kind in JSON_KINDS.items():
            if name in values and not isinstance(values[name], kind):
                raise InvalidJobRecord(f"{where}field {name!r} must be a {kind.__name__}.")
        return cls(**values)


# What Job.new starts from: each field's default, and the fields whose default is made anew.
_NEW_FIELDS = frozenset(f.name for f in fields(Job))
_NEW_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(Job)}
_NEW_FACTORIES = tuple(
    (f.name, f.default_factory) for f in fields(Job) if f.default_factory is not MISSING
)


def _default(f: Field[Any]) -> Any:
    """A field's dataclass default (``None`` for ``id`` and ``name``, which have none)."""
    if f.default is not MISSING:
        return f.default
    return None if f.default_factory is MISSING else f.default_factory()


# The fields of a job's hash as :meth:`Job.to_hash` writes them: record.LEADING_FIELDS first,
# then the others in the dataclass's order, each with its writer, whether it is left out when it
# holds its default, and that default. Worked out once: an enqueue writes a hash per job.
_FIELDS = {f.name: f for f in fields(Job)}
_HASH_FIELDS = tuple(
    (name, HASH_WRITERS[name], name in LEFT_OUT_WHEN_DEFAULT, _default(_FIELDS[name]))
    for name in dict.fromkeys((*LEADING_FIELDS, *_FIELDS))
    if name in HASH_WRITERS
)


# What tells apart the records of jobs that an enqueue of many sends in one call
# (store/calls.py: enqueue_values), so that what they share is sent once: the values of the
# fields of SHARED_FIELDS, and which of record.VARYING_FIELDS each job's record holds (those
# go per job). Jobs of equal keys write the same record (Job.to_hash) but for their ids and
# the values of those fields.
SHARED_FIELDS = tuple(
    name for name, *_ in _HASH_FIELDS if name not in VARYING_FIELDS and name != "created_at"
)
_SHARED = operator.itemgetter(*SHARED_FIELDS)
_JSON = operator.itemgetter(*JSON_FIELDS)
_NULLABLE = operator.itemgetter(*VARYING_NULLABLE_FIELDS)


# ``None`` for each of record.VARYING_NULLABLE_FIELDS: compared with them in C.
_NONES = (None,) * len(VARYING_NULLABLE_FIELDS)


def shape_key(values: dict[str, Any]) -> tuple[Any, ...]:
    """The key of the shape of the record of the job of ``values`` (its ``__dict__``; see
    SHARED_FIELDS): its shared values, and whether it holds each of the varying fields (an
    empty JSON value is left out, as ``None`` is)."""
    return (
        _SHARED(values),
        *map(bool, _JSON(values)),
        *map(operator.is_not, _NULLABLE(values), _NONES),
    )
