"""One place for the checks of what users pass in: job options, seconds, retry counts, queue
names, ids and the arguments of a job. Each mistake has one rule and one message. Priorities
are read by :meth:`~django_jobs.job.JobPriority.parse`, which reading a job record from Redis
needs too. The rules of seconds and counts (:func:`seconds`, :func:`integer`) are those of
:mod:`django_jobs.rules`, which the settings (:mod:`django_jobs.conf`) use too."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django_jobs.conf import jobs_settings
from django_jobs.flow import NO_FLOW, Flow
from django_jobs.job import STORED_STATUSES, Job, JobPriority, JobStatus, new_id
from django_jobs.progress import MESSAGE_LIMIT
from django_jobs.rules import MAX_SECONDS as MAX_SECONDS
from django_jobs.rules import integer, refused, seconds
from django_jobs.serialization import check_arguments, check_json, dumps, utcnow
from django_jobs.store import shards


def _not_configured(configured: list[str]) -> str:
    return f"not one of DJANGO_JOBS['QUEUES'] {configured!r}."


def queue_name(queue: str | None) -> str:
    """The configured queue ``queue`` (``None``: ``DEFAULT_QUEUE``); ``ValueError`` otherwise."""
    configured = jobs_settings.QUEUES
    name = jobs_settings.DEFAULT_QUEUE if queue is None else queue
    if name not in configured:
        raise ValueError(f"Unknown queue {name!r}: {_not_configured(list(configured))}")
    return name


def served_queues(queues: Iterable[str] | None) -> list[str]:
    """The queues a worker serves: all of ``QUEUES`` by default; unknown names are refused.

    Every unknown name is named at once (``runworker --queues`` may list several).
    """
    configured = list(jobs_settings.QUEUES)
    if queues is None:
        return configured
    served = list(queues)
    unknown = [str(q) for q in served if q not in configured]
    if unknown:
        raise ValueError(f"Unknown queue(s) {', '.join(unknown)}: {_not_configured(configured)}")
    if not served:
        raise ValueError("A worker must serve at least one queue.")
    return served


def ids(value: Iterable[str], what: str) -> list[str]:
    """``value``, job ids, as a list; ``TypeError`` for one id given alone or an id that is not
    a string. ``what`` names the method in the message (``"requeue_dead()"``).

    A string is iterable too: read character by character, ``"3f2a…"`` would name jobs
    ``"3"``, ``"f"``, … that do not exist, and the call would quietly do nothing.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{what} takes a list of job ids, not the single id {value!r}: pass [{value!r}]."
        )
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} takes a list of job ids, not {type(value).__name__}.")
    listed = list(value)
    for item in listed:
        job_id(item, what)
    return listed


def job_id(value: str, what: str) -> str:
    """``value`` if it is a job id (a string); ``TypeError`` naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} takes job ids as strings, not {value!r}.")
    return value


def stored_status(status: JobStatus | str) -> JobStatus:
    """``status`` as a state Redis holds jobs in; ``ValueError`` naming the states otherwise."""
    found = next((s for s in STORED_STATUSES if s == status), None)
    if found is None:
        choices = ", ".join(s.value for s in STORED_STATUSES)
        raise ValueError(f"{status!r} is not a valid JobStatus of a stored job: use {choices}.")
    return found


def name_filter(name: str | None) -> str:
    """A job-name filter: ``""`` for none; ``ValueError`` for what cannot be a job's name."""
    if name is None:
        return ""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a job's name (a non-empty string), not {name!r}.")
    return name


def user(value: str | int | None) -> str | int | None:
    """A job's ``user_id``: a non-empty string or an integer, kept as it is (a user's
    primary key comes back from Redis with its type); ``None`` for no user."""
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(
        f"user_id must be a non-empty string or an integer, not {value!r}; for another kind "
        "of key (a UUID, say) pass str(key)."
    )


@functools.lru_cache(maxsize=1024)
def _parameters(func: Callable[..., Any], skip_first: bool) -> inspect.Signature | None:
    try:
        found = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # some builtins: Python cannot tell, and the call itself will
    params = [p.replace(annotation=p.empty) for p in found.parameters.values()]
    return found.replace(
        parameters=params[1:] if skip_first else params, return_annotation=found.empty
    )


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@functools.lru_cache(maxsize=1024)
def _positional_counts(func: Callable[..., Any], skip_first: bool) -> tuple[float, float] | None:
    """The fewest and most positional arguments that bind to ``func``'s parameters (see
    :func:`arguments`) when no keyword argument is given; ``None`` when a keyword-only
    parameter must be given, or the parameters are not known."""
    signature = _parameters(func, skip_first)
    if signature is None:
        return None
    fewest, most = 0, 0.0
    for parameter in signature.parameters.values():
        if parameter.kind in _POSITIONAL:
            most += 1
            fewest += parameter.default is parameter.empty
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            most = math.inf
        elif (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.default is parameter.empty
        ):
            return None
    return fewest, most


def positional_counts(
    func: Callable[..., Any], kwargs: dict[str, Any], *, skip_first: bool = False
) -> tuple[float, float] | None:
    """For a caller that checks the arguments of many jobs of ``func`` with ``kwargs``: the
    counts that :func:`binds` takes, read once (``None``: each job needs :func:`arguments`)."""
    try:
        return None if kwargs else _positional_counts(func, skip_first)
    except TypeError:  # an unhashable callable object
        return None


def binds(counts: tuple[float, float] | None, args: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``args`` bind for sure, with no keyword argument, to parameters that take
    ``counts`` (:func:`positional_counts`) positional arguments: as many as they take (binding
    costs more than the rest of an enqueue's checks). ``False``: :func:`arguments` tells."""
    return counts is not None and counts[0] <= len(args) <= counts[1]


def arguments(
    name: str,
    func: Callable[..., Any],
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    skip_first: bool = False,
) -> inspect.Signature | None:
    """``TypeError`` naming the job and the parameter when ``func(*args, **kwargs)`` would not
    bind to ``func``'s parameters (``inspect.Signature.bind``), e.g.
    ``Job shop.jobs.charge(order_id, amount): missing a required argument: 'amount'.``

    ``skip_first`` leaves out the first parameter, which the caller fills itself (the context
    of a Django task that ``takes_context``). Signatures are read once per function. Returns
    the parameters checked against (``None``: not known).
    """
    try:
        signature = _parameters(func, skip_first)
    except TypeError:  # an unhashable callable object: read it each time
        signature = _parameters.__wrapped__(func, skip_first)
    if signature is None:
        return None
    if binds(positional_counts(func, kwargs, skip_first=skip_first), args):
        return signature
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"Job {name}{signature}: {exc}.") from None
    return signature


def progress(current: Any, total: Any, message: Any) -> tuple[float, float | None, str]:
    """The arguments of ``progress()`` in a job (:class:`~django_jobs.context.JobContext`):
    ``current`` and ``total`` (``None``: not known) finite numbers of 0 or more;
    ``message`` a ``str``, cut to ``MESSAGE_LIMIT`` characters. ``TypeError`` for the wrong
    kind of value, ``ValueError`` for a wrong number."""
    if not isinstance(message, str):
        raise TypeError(f"progress() takes message as a str, not {type(message).__name__}.")
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return _count(current, "current"), None if total is None else _count(total, "total"), message


def _count(value: Any, what: str) -> float:
    """A count of :func:`progress` as a plain ``int`` or ``float`` (JSON writes those)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"progress() takes {what} as a number, not {value!r}.")
    number = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not math.isfinite(number) or number < 0:
        raise refused(f"progress() {what}", "a finite number of 0 or more", value)
    return number


def payload_size(args: list[Any], kwargs: dict[str, Any], meta: dict[str, Any]) -> int:
    """The bytes of JSON that ``args``, ``kwargs`` and ``meta`` take in the job's record;
    ``ValueError`` naming the size and the limit if that is over ``MAX_PAYLOAD_BYTES``."""
    return checked_payload(json_size(args) + json_size(kwargs) + json_size(meta))


def json_size(value: list[Any] | dict[str, Any]) -> int:
    """The bytes of JSON that ``value`` (a job's args, kwargs or meta) takes in its record: 0
    when it is empty, which the record leaves out."""
    if not value:
        return 0
    text = dumps(value)
    # ASCII text (most arguments) is as many bytes as characters: no copy to count.
    return len(text) if text.isascii() else len(text.encode())


def checked_payload(size: int, limit: int | None = None) -> int:
    """``size`` (a job's :func:`payload_size`), or ``ValueError`` naming it and the limit
    (``MAX_PAYLOAD_BYTES``, read once by a caller that checks many jobs) if it is over."""
    if limit is None:
        limit = int(jobs_settings.MAX_PAYLOAD_BYTES)
    if size > limit:
        raise ValueError(
            f"The job's arguments take {size} bytes as JSON (args, kwargs and meta), over the "
            f"limit of {limit} bytes (DJANGO_JOBS['MAX_PAYLOAD_BYTES']). Store large data "
            "elsewhere (a file, a database row) and pass its key."
        )
    return size


def registered_shard(registered: Any, queue: str | None, flow: Flow | None) -> None:
    """``ValueError`` when a job of the ``registered`` job function (``None``: one not
    registered here) with ``flow`` control would go to ``queue`` in another shard than its
    ``@job`` queue's (see :func:`django_jobs.store.shards.same_shard`)."""
    # Only SHARDS puts queues on two shards: without it, no compare.
    if registered is not None and jobs_settings.SHARDS and flow not in (None, NO_FLOW):
        shards.same_shard(registered.name, registered.queue, queue)


def build_job(
    name: str,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    priority: JobPriority | int | str = JobPriority.NORMAL,
    queue: str | None = None,
    delay: float | timedelta | None = None,
    scheduled_at: datetime | None = None,
    max_retries: int | None = None,
    timeout: float | timedelta | None = None,
    user_id: str | int | None = None,
    retry_backoff_base: float | timedelta | None = None,
    retry_backoff_max: float | timedelta | None = None,
    meta: dict[str, Any] | None = None,
    function: Callable[..., Any] | None = None,
    flow: Flow | None = None,
    takes_context: bool = False,
) -> Job:
    """Check every option and argument and return the job ``JobQueue.enqueue`` would store.

    ``timeout``, ``retry_backoff_base`` and ``retry_backoff_max`` (seconds or a
    ``timedelta``, stored as seconds) override the settings of the same names for this job;
    ``meta`` is JSON kept with the job for the caller's own use; ``function`` is the function
    the job runs, when known: the arguments must fit its parameters (after the first with
    ``takes_context``, where the worker passes the job's context).
    Raises ``ValueError`` for a bad option or arguments over ``MAX_PAYLOAD_BYTES``,
    :class:`~django_jobs.exceptions.NotJSONSerializable` naming the argument that would not
    survive JSON, and ``TypeError`` naming the job and the parameter when the arguments do not
    fit ``function`` (see :func:`arguments`). ``flow`` is the job's flow control (unique key,
    limits; :mod:`django_jobs.flow`), to which the limits of its queue are added. Nothing is
    written.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A job name must be a non-empty string, not {name!r}.")
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or a tuple, not {type(args).__name__}.")
    args = list(args)
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}.")
    check_arguments(args)
    if kwargs:
        check_json(kwargs, "kwargs")
    signature = None
    if function is not None:
        signature = arguments(name, function, args, kwargs, skip_first=takes_context)

    now = utcnow()
    if delay is not None and scheduled_at is not None:
        raise ValueError("Pass either delay or scheduled_at, not both.")
    if delay is not None:
        secs = seconds(delay, "delay")
        if secs < 0:
            raise ValueError(f"delay must not be negative, got {delay!r}.")
        scheduled_at = now + timedelta(seconds=secs) if secs > 0 else None
    elif scheduled_at is not None:
        if not isinstance(scheduled_at, datetime):
            raise ValueError(f"scheduled_at must be a datetime, not {scheduled_at!r}.")
        if scheduled_at.tzinfo is None or scheduled_at.utcoffset() is None:
            raise ValueError(
                f"scheduled_at {scheduled_at.isoformat()} has no time zone; pass an aware "
                "datetime, e.g. django.utils.timezone.now() + timedelta(minutes=5)."
            )
    max_retries = integer(
        jobs_settings.MAX_RETRIES if max_retries is None else max_retries, "max_retries"
    )
    given_timeout = jobs_settings.DEFAULT_TIMEOUT if timeout is None else timeout
    timeout = seconds(given_timeout, "timeout")
    if timeout <= 0:
        # Not seconds(positive=True): this wording predates the shared one, and callers
        # (test_enqueue among them) match on "timeout must be positive".
        raise ValueError(f"timeout must be positive, not {given_timeout!r}.")
    if retry_backoff_base is not None:
        retry_backoff_base = seconds(retry_backoff_base, "retry_backoff_base", positive=True)
    if retry_backoff_max is not None:
        retry_backoff_max = seconds(retry_backoff_max, "retry_backoff_max", positive=True)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, not {type(meta).__name__}.")
    if meta:
        check_json(meta, "meta")
    payload_size(args, kwargs, meta)

    queue = queue_name(queue)
    job = Job.new(
        # The id names the job's shard (see store/shards.py): lookups by id go there first.
        id=shards.tag_id(new_id(), queue),
        name=name,
        args=args,
        kwargs=kwargs,
        priority=JobPriority.parse(priority),
        queue=queue,
        created_at=now,
        scheduled_at=scheduled_at,
        max_retries=max_retries,
        timeout=timeout,
        user_id=user(user_id),
        retry_backoff_base=retry_backoff_base,
        retry_backoff_max=retry_backoff_max,
        meta=meta,
    )
    flow = flow or NO_FLOW
    # A job without flow control in a queue without limits has none: nothing to add.
    if flow is not NO_FLOW or queue in jobs_settings.QUEUE_LIMITS:
        flow.apply(job, signature)
    return job
