"""Sending what the store's plans ask for, with the sync or the asyncio client, and turning
Redis errors into django-jobs exceptions: the one place where that happens.

A *plan* is a generator that yields :class:`~django_jobs.store.scripts.Call` (a script) or
:class:`Command` (a plain command) objects and receives their replies, so that the logic of an
operation is written once and runs with either client: :func:`run` and :func:`arun`, or the
``sync_twin``/``async_twin`` decorators for methods that return plans.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.exceptions import NoScriptError

from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.store.connection import connection_url, get_async_redis, get_redis, redact_url
from django_jobs.store.scripts import Call

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S")


@dataclass(frozen=True)
class Command:
    """One plain Redis command, e.g. ``Command(("GET", key))``."""

    args: tuple[Any, ...]


Plan = Generator[Call | Command, Any, T]


def _send(client: Any, step: Call | Command) -> Any:
    """Make the call with a sync client, or start it (a coroutine) with an asyncio one.

    Scripts go as a plain ``EVALSHA``; :func:`_load` loads a script the server does not know
    (yet, or after a restart).
    """
    if isinstance(step, Command):
        return client.execute_command(*step.args)
    return client.execute_command(
        "EVALSHA", step.script.sha, len(step.keys), *step.keys, *step.args
    )


def _load(client: Any, step: Call | Command) -> Any:
    assert isinstance(step, Call)
    return client.script_load(step.script.source)


def _translated(exc: redis.RedisError) -> Exception:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return RedisUnavailable(f"Cannot reach Redis at {redact_url(connection_url())}: {exc}")
    return StoreError(f"Redis refused a command: {exc}")


def execute(client: Any, step: Call | Command) -> Any:
    """One step with a sync client."""
    try:
        try:
            return _send(client, step)
        except NoScriptError:
            _load(client, step)
            return _send(client, step)
    except redis.RedisError as exc:
        raise _translated(exc) from exc


async def aexecute(client: Any, step: Call | Command) -> Any:
    """One step with an asyncio client."""
    try:
        try:
            return await _send(client, step)
        except NoScriptError:
            await _load(client, step)
            return await _send(client, step)
    except redis.RedisError as exc:
        raise _translated(exc) from exc


def run(plan: Plan[T]) -> T:
    """Run ``plan`` with the shared sync client and return its value."""
    client, reply = get_redis(), None
    try:
        while True:
            reply = execute(client, plan.send(reply))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun(plan: Plan[T]) -> T:
    """Run ``plan`` with this event loop's asyncio client and return its value."""
    client, reply = get_async_redis(), None
    try:
        while True:
            reply = await aexecute(client, plan.send(reply))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def sync_twin(plan: Callable[Concatenate[S, P], Plan[T]]) -> Callable[Concatenate[S, P], T]:
    """A method that runs the plan method ``plan`` with the sync client."""

    @functools.wraps(plan)
    def method(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(plan(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = plan.__name__.lstrip("_")
    return method


def async_twin(
    plan: Callable[Concatenate[S, P], Plan[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """The ``a``-prefixed twin of :func:`sync_twin`, with the asyncio client."""

    @functools.wraps(plan)
    async def method(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(plan(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = f"a{plan.__name__.lstrip('_')}"
    return method
