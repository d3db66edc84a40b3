"""Many independent plans at once: their first steps in one pipeline, one round trip.

For a caller with many calls ready at the same moment (a scheduler's due ticks), where a round
trip each would add up. What follows a first step (the recovery of a script the server does
not know yet, a plan's later steps) runs one step at a time, as :func:`~.execute.run` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisClusterException

from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.store.commands import Plan, command_of, recover
from django_jobs.store.connection import get_redis, redis_outage
from django_jobs.store.errors import translated
from django_jobs.store.execute import execute, run

T = TypeVar("T")


def run_each(plans: Sequence[Plan[T]]) -> list[T | StoreError]:
    """Run ``plans`` with the shared sync client; in order, each one's value, or the
    :class:`StoreError` it ended with (Redis refused one of its steps: a key of the wrong type,
    a script error), for a caller that deals with each plan's trouble on its own.

    The plans must not depend on one another, and their first steps must be plain script
    calls or commands (not blocking, not waiting for replicas). A step that fails raises inside
    its plan, as with :func:`~.execute.run`, which may catch it. Redis not answering
    (:class:`RedisUnavailable`), for the pipeline or any later step, is no plan's own trouble:
    it raises for all (the first steps of some plans may have been done).
    """
    if not plans:
        return []
    try:
        client = get_redis()
        steps = [next(plan) for plan in plans]
        pipe = client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*command_of(client, step))
        replies = pipe.execute(raise_on_error=False)
    except (redis.RedisError, RedisClusterException) as exc:
        raise translated(exc) from exc
    redis_outage.answered()
    values: list[T | StoreError] = []
    for plan, step, reply in zip(plans, steps, replies, strict=True):
        try:
            values.append(run(rest_of(plan, _reply(client, step, reply))))
        except RedisUnavailable:
            raise
        except StoreError as exc:
            values.append(exc)
    return values


def _reply(client: Any, step: Any, reply: Any) -> Any:
    """The reply to ``step`` from the pipeline, or its error as a :class:`StoreError`; a
    script the server did not know (or a client without functions) is called again by
    :func:`~.execute.execute`, which loads it."""
    if not isinstance(reply, redis.ResponseError):
        return reply
    try:
        if recover(client, step, reply) is None:
            raise translated(reply) from reply
        return execute(client, step)
    except StoreError as exc:
        return exc


def rest_of(plan: Plan[T], reply: Any) -> Plan[T]:
    """The rest of ``plan`` once the reply to its first step (or its error) is in, as a plan
    that :func:`~.execute.run` runs: its later steps, their errors thrown in as ``run`` does."""
    while True:
        try:
            step = plan.throw(reply) if isinstance(reply, StoreError) else plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            reply = yield step
        except StoreError as exc:
            reply = exc
