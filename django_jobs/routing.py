"""Which store answers a :class:`~django_jobs.queue.JobQueue` method: Redis, or, while
``DJANGO_JOBS['MODE']`` is a testing mode, the in-process store of :mod:`django_jobs.testing`.

The methods that enqueue (jobs and workflows), those a handle calls (get, watch, wait for,
cancel, a workflow's group), the reads (pages, lists, counts, workers, throughput, limits) and
the operations on many jobs (requeue, purge, delete) are made by :func:`routed`; every enqueue
of django-jobs (``.delay()``, ``.adelay()``, the outbox after a commit, Django's task API) goes
through them. So no method of ``JobQueue`` reads or writes Redis while a testing mode is on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from importlib import import_module
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from asgiref.sync import sync_to_async

from django_jobs.conf import jobs_settings
from django_jobs.job import Job
from django_jobs.store.commands import Plan
from django_jobs.store.execute import arun, run
from django_jobs.store.keys import Namespace

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


def checked_jobs(jobs: Iterable[Job]) -> list[Job]:
    """``jobs`` as a list, if it is an iterable of jobs made by ``JobQueue.build_job()``."""
    # A list first: the common case, which skips the slower check against Iterable.
    if not isinstance(jobs, list) and (isinstance(jobs, Job) or not isinstance(jobs, Iterable)):
        raise TypeError(f"enqueue_many() takes a list of jobs, not {type(jobs).__name__}.")
    jobs = list(jobs)
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(
                f"enqueue_many() takes jobs made by build_job(), not {type(job).__name__}."
            )
    return jobs


class LocalJobs(Protocol):
    """What answers instead of Redis while ``DJANGO_JOBS['MODE']`` is ``"immediate"`` or
    ``"capture"``: the in-process store of :mod:`django_jobs.testing`. It has a method of the
    same name and arguments (after the queue, a :class:`~django_jobs.queue.JobQueue`) for each
    routed method of the queue."""

    def enqueue_many(self, queue: Namespace, jobs: Iterable[Job]) -> list[Job]: ...


def local_jobs() -> LocalJobs | None:
    """The in-process store that stands in for Redis in a testing ``MODE``; ``None`` in
    ``"redis"`` mode. Imported only when a testing mode is on."""
    if jobs_settings.MODE == "redis":
        return None
    store: LocalJobs = import_module("django_jobs.testing.store").current()
    return store


def refuse_in_testing_mode(what: str) -> None:
    """Raise ``RuntimeError`` naming ``what`` and the mode while a testing ``MODE`` is on:
    ``what`` works on Redis's own layout (its shards), which the in-process store has no
    counterpart of, and it must not reach a real Redis from a test either."""
    if jobs_settings.MODE != "redis":
        raise RuntimeError(
            f"{what} works on Redis's shards, which DJANGO_JOBS['MODE'] "
            f"{jobs_settings.MODE!r} has none of: its jobs live in this process "
            "(django_jobs.testing), and it does not read Redis."
        )


def routed(
    plan: Callable[Concatenate[S, P], Plan[T]],
) -> tuple[Callable[Concatenate[S, P], T], Callable[Concatenate[S, P], Coroutine[Any, Any, T]]]:
    """The sync and ``a``-prefixed methods of ``plan``, like :func:`sync_twin` and
    :func:`async_twin`, with the one switch of the testing modes: while one is on, the
    in-process store's method of the same name answers instead of Redis (from async code in a
    thread, as Django runs sync code there, since it may run jobs)."""
    name = plan.__name__.lstrip("_")

    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        local = local_jobs()
        if local is None:
            return run(plan(self, *args, **kwargs))
        answer: T = getattr(local, name)(self, *args, **kwargs)
        return answer

    async def amethod(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        local = local_jobs()
        if local is None:
            return await arun(plan(self, *args, **kwargs))
        answer: T = await sync_to_async(getattr(local, name))(self, *args, **kwargs)
        return answer

    for twin in (method, amethod):
        functools.update_wrapper(twin, plan)
    method.__name__ = method.__qualname__ = name
    amethod.__name__ = amethod.__qualname__ = f"a{name}"
    return method, amethod
