"""``@job``: registering job functions by name, and enqueueing them with ``.delay()``.

The registry itself, what a worker may run, is :mod:`django_jobs.catalog`; its names are
re-exported here, where they have always been imported from.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, Unpack, overload

from django.db import DEFAULT_DB_ALIAS, transaction

from django_jobs import outbox, validation
from django_jobs.catalog import (
    DJANGO_TASK_PREFIX,
    DOTTED_PATH,
    JobRegistry,
    django_task_path,
    origin,
    registry,
)
from django_jobs.conf import jobs_settings
from django_jobs.context import JobContext
from django_jobs.flow import Flow, FlowOptions
from django_jobs.handle import JobHandle
from django_jobs.job import Job, JobPriority
from django_jobs.queue import JobQueue
from django_jobs.workflow import Signature

__all__ = [
    "DJANGO_TASK_PREFIX",
    "DOTTED_PATH",
    "ContextJobFunction",
    "JobCall",
    "JobFunction",
    "JobRegistry",
    "django_task_path",
    "job",
    "registry",
]

P = ParamSpec("P")
#: What the function returns (a coroutine for an ``async def`` job). Covariant, as is
#: JobHandle's: a ``JobFunction[P, bool]`` may stand where a ``JobFunction[P, int]`` is asked.
R = TypeVar("R", covariant=True)
#: What an ``async def`` job's coroutine returns: the result of its handle.
T = TypeVar("T")


class JobFunction(Generic[P, R]):
    """A registered job. Call it to run it inline; ``.delay()`` to run it on a worker.

    Typed by the function it wraps: type checkers check the arguments of ``.delay()``,
    ``.adelay()`` and ``.using(...).delay()`` against the function's parameters, and know the
    type of ``handle.result()``: what the function returns, or for an ``async def`` job what
    it returns when awaited.

    With ``takes_context`` the function's first parameter is the job's
    :class:`~django_jobs.context.JobContext`, which a worker passes; ``.delay()`` takes the
    other arguments (``P``), and a direct call passes what it is given, as the function is
    written (see :class:`ContextJobFunction`).
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: JobPriority | int | str = JobPriority.NORMAL,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        takes_context: bool = False,
        **flow: Unpack[FlowOptions],
    ) -> None:
        if not callable(func):
            raise TypeError(f"@job decorates a function, not {func!r}.")
        # Bad options fail here, at import, rather than at each .delay().
        if queue is not None:
            validation.queue_name(queue)
        if max_retries is not None:
            validation.integer(max_retries, "max_retries")
        if timeout is not None:
            timeout = validation.seconds(timeout, "timeout", positive=True)
        self.flow = Flow.of(**flow)
        self.func = func
        self.name = name or origin(func)
        self.queue = queue
        self.priority = JobPriority.parse(priority)
        self.max_retries = max_retries
        self.timeout = timeout
        self.takes_context = bool(takes_context)
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def using(
        self,
        *,
        priority: JobPriority | int | str | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        user_id: str | int | None = None,
        unique: bool | str | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
        jobs: JobQueue | None = None,
    ) -> JobCall[P, R]:
        """This job with options for one call: ``send.using(priority="high").delay(pk)``.

        ``unique``, ``unique_key`` and ``unique_for`` make this call unique (or, with
        ``unique=False``, not), over what ``@job`` says: see :mod:`django_jobs.flow`.
        """
        options: dict[str, Any] = {
            "priority": priority,
            "queue": queue,
            "delay": delay,
            "at": at,
            "max_retries": max_retries,
            "timeout": timeout,
            "user_id": user_id,
        }
        options = {k: v for k, v in options.items() if v is not None}
        if unique is not None or unique_key is not None or unique_for is not None:
            options["flow"] = self.flow.with_unique(unique, unique_key, unique_for)
        return JobCall(self, options, jobs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This job with these arguments, as a step of a chain or group (``django_jobs.workflow``):
        after another step it receives that step's result as its first argument."""
        return Signature(JobCall(self, {}, None), args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """:meth:`s`, immutable: it does not receive the result of the step before it."""
        return Signature(JobCall(self, {}, None), args, kwargs, immutable=True)

    # Two signatures each, for type checkers: an ``async def`` job's handle gives what its
    # coroutine returns (the first), any other job's what the function returns.
    @overload
    def delay(
        self: JobFunction[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[T]: ...

    @overload
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]: ...

    def delay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """Enqueue a run of this job with these arguments; return its handle at once.

        Arguments that do not fit the function's parameters raise ``TypeError`` naming the
        job and the parameter, and nothing is enqueued. Inside ``transaction.atomic()`` the
        job is written to the outbox table in that transaction and moved to Redis when it
        commits, by a worker if Redis does not answer then; after a rollback it never exists
        (:mod:`django_jobs.outbox`; ``DJANGO_JOBS['ENQUEUE_ON_COMMIT']`` turns this off).
        """
        return JobCall(self, {}, None).delay(*args, **kwargs)

    @overload
    async def adelay(
        self: JobFunction[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[T]: ...

    @overload
    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]: ...

    async def adelay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """:meth:`delay` for async code: enqueues at once with the asyncio client."""
        return await JobCall(self, {}, None).adelay(*args, **kwargs)


class JobCall(Generic[P, R]):
    """A job function with per-call options; made by :meth:`JobFunction.using`."""

    def __init__(
        self, job_function: JobFunction[P, R], options: dict[str, Any], jobs: JobQueue | None
    ) -> None:
        self.job_function = job_function
        self.options = options
        self.jobs = jobs or JobQueue()

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        # JobQueue.build_job with every option given, as it would take them, without its
        # layer of options (packed into a dict and unpacked again: an enqueue's dearest call).
        fn, options = self.job_function, self.options
        queue, flow = options.get("queue", fn.queue), options.get("flow", fn.flow)
        validation.registered_shard(registry.get(fn.name), queue, flow)
        return validation.build_job(
            fn.name,
            args,
            kwargs,
            priority=options.get("priority", fn.priority),
            queue=queue,
            delay=options.get("delay"),
            scheduled_at=options.get("at"),
            max_retries=options.get("max_retries", fn.max_retries),
            timeout=options.get("timeout", fn.timeout),
            user_id=options.get("user_id"),
            function=fn.func,
            flow=flow,
            takes_context=fn.takes_context,
        )

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """:meth:`JobFunction.s` with this call's options."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """:meth:`JobFunction.si` with this call's options."""
        return Signature(self, args, kwargs, immutable=True)

    @overload
    def delay(
        self: JobCall[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[T]: ...

    @overload
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]: ...

    def delay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """:meth:`JobFunction.delay` with this call's options."""
        job = self._build(args, kwargs)
        connection = transaction.get_connection(DEFAULT_DB_ALIAS)
        if jobs_settings.ENQUEUE_ON_COMMIT and connection.in_atomic_block:
            # In the caller's transaction: the job exists if and only if it commits.
            deferred = outbox.enqueue_on_commit(self.jobs, job, DEFAULT_DB_ALIAS)
            return JobHandle(job, self.jobs, deferred=deferred)
        # The job as stored: in the "immediate" testing mode, as its run left it; for a unique
        # job whose key another holds, that other job.
        (stored,) = self.jobs.enqueue_many([job])
        return JobHandle(stored, self.jobs, created=stored.id == job.id)

    @overload
    async def adelay(
        self: JobCall[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[T]: ...

    @overload
    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]: ...

    async def adelay(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """:meth:`JobFunction.adelay` with this call's options."""
        job = self._build(args, kwargs)
        (stored,) = await self.jobs.aenqueue_many([job])
        return JobHandle(stored, self.jobs, created=stored.id == job.id)


class ContextJobFunction(JobFunction[P, R]):
    """A registered job whose function takes the job's context first
    (``@job(takes_context=True)``): ``.delay()`` takes the other arguments; a direct call is
    the function as written, context first (as ``Task.call()`` of Django's task API is)."""

    def __call__(  # type: ignore[override]
        self, context: JobContext, /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        func: Callable[..., R] = self.func  # its parameters are the context, then P
        return func(context, *args, **kwargs)


@overload
def job(func: Callable[P, R], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    takes_context: Literal[True],
    name: str | None = None,
    queue: str | None = None,
    priority: JobPriority | int | str = JobPriority.NORMAL,
    max_retries: int | None = None,
    timeout: float | timedelta | None = None,
    **flow: Unpack[FlowOptions],
) -> Callable[[Callable[Concatenate[JobContext, P], R]], ContextJobFunction[P, R]]: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: JobPriority | int | str = JobPriority.NORMAL,
    max_retries: int | None = None,
    timeout: float | timedelta | None = None,
    takes_context: Literal[False] = False,
    **flow: Unpack[FlowOptions],
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a job, bare (``@job``) or with options (``@job(queue=...)``).

    Options: ``name`` (default: module path and function name), ``queue``, ``priority``,
    ``max_retries`` and ``timeout`` (default: the ``DJANGO_JOBS`` settings); flow control,
    shared by every worker (:mod:`django_jobs.flow`): ``unique`` (``True`` or
    ``"until_finished"``, ``"until_started"``), ``unique_key``, ``unique_for`` (seconds),
    ``rate_limit`` (``"10/s"``) and ``rate_limit_key``, ``concurrency`` and
    ``concurrency_key`` (a key is a text filled from the arguments by name,
    ``"customer:{customer_id}"``, or a function of the arguments); and ``takes_context``: the
    function's first parameter is then the job's :class:`~django_jobs.context.JobContext`
    (its id, attempt and ``progress()``), which the worker passes. A bad option raises
    ``ValueError`` here, with the message an enqueue would give (:mod:`django_jobs.validation`).
    """
    known = {*inspect.signature(JobFunction).parameters, *FlowOptions.__annotations__}
    unknown = set(options) - known - {"func", "flow"}
    if unknown:
        raise TypeError(f"@job got unknown options: {', '.join(sorted(unknown))}.")

    def register(func: Callable[..., Any]) -> JobFunction[Any, Any]:
        kind = ContextJobFunction if options.get("takes_context") else JobFunction
        job_function: JobFunction[Any, Any] = kind(func, **options)
        registry.register(job_function)
        return job_function

    return register if func is None else register(func)
