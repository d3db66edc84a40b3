"""How the worker keeps going: Redis not answering is waited out, and a loop that fails for any
other reason logs it and carries on. The child (sync) and the supervisor (asyncio) both use this.

An outage is logged as the process's :data:`~django_jobs.store.connection.redis_outage` says:
a line at the first failure, then one a minute, however many loops retry how often; and one
line when Redis answers again (the store tells it when a call works).

Redis refusing access (a password rotated, an ACL changed while the worker runs) is waited out
the same way, with an error logged at each attempt: it was let in at start-up, and crashing
its processes would only restart them into the same refusal.

Waiting has limits: a stopping worker does not wait for Redis for ever. The ``give_up`` and
``until`` arguments end a wait by re-raising the last error (one of :data:`WAITED_OUT`);
what was not recorded then is left to lease recovery (the job's lease expires and a worker
takes it up again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable
from django_jobs.store.connection import Backoff, redis_outage

logger = logging.getLogger("django_jobs.worker")
T = TypeVar("T")

# What the worker waits out rather than fail on.
WAITED_OUT = (RedisUnavailable, RedisAccessDenied)


def redis_pause(backoff: Backoff, exc: Exception) -> float:
    """The next pause while Redis does not answer (the outage is reported) or refuses access
    (logged each time)."""
    seconds = backoff.next()
    if isinstance(exc, RedisAccessDenied):
        logger.error("%s; trying again in %.1fs", exc, seconds)
    else:
        redis_outage.failed(logger, exc)
    return seconds


def until_redis_answers(
    call: Callable[[], T],
    *,
    again: Callable[[], T] | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> T:
    """``call()``; while Redis does not answer, ``again()`` (default ``call()``) after a pause.

    ``again`` sends the same request marked as a resend: the first send may have run with only
    its reply lost (see ``Leases.claim``). When ``give_up()`` is true after a failure, that
    error is raised.
    """
    backoff = Backoff()
    try:
        return call()
    except WAITED_OUT as exc:
        error = exc
    while True:
        if give_up():
            raise error
        time.sleep(redis_pause(backoff, error))
        try:
            return (again or call)()
        except WAITED_OUT as exc:
            error = exc


async def pause(seconds: float, until: asyncio.Event) -> None:
    """Sleep, but return early when ``until`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until.wait(), seconds)


async def auntil_redis_answers(
    call: Callable[[], Awaitable[T]],
    *,
    until: asyncio.Event | None = None,
    again: Callable[[], Awaitable[T]] | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> T:
    """``await call()``, called again (``again()`` if given, as for :func:`until_redis_answers`)
    after a pause while Redis does not answer.

    Once ``until`` is set, or ``give_up()`` is true after a failure, the error is raised
    instead of waiting again.
    """
    backoff = Backoff()
    attempt = call
    while True:
        try:
            return await attempt()
        except WAITED_OUT as exc:
            if (until is not None and until.is_set()) or give_up():
                raise
            seconds = redis_pause(backoff, exc)
            if until is None:
                await asyncio.sleep(seconds)
            else:
                await pause(seconds, until)
        attempt = again or call


async def keep_going(
    name: str,
    step: Callable[[], Awaitable[object]],
    done: Callable[[], bool],
    pauses: asyncio.Event,
) -> None:
    """Await ``step()`` again and again until ``done()``.

    Whatever a step raises is logged with its traceback and followed by a short pause (cut short
    by ``pauses``), never the end of the loop: one record or bug nobody foresaw must not switch
    off lease renewal, recovery, wake-ups or timeouts for the rest of the worker's life. Redis
    not answering is waited out inside the steps (one that does not wait reports it to the
    outage log, without a traceback); a step that gave up waiting because the worker is
    stopping ends the loop quietly.
    """
    backoff = Backoff()
    while not done():
        try:
            await step()
        except Exception as exc:
            if isinstance(exc, WAITED_OUT) and done():
                return
            if isinstance(exc, WAITED_OUT):  # a step that does not wait for Redis
                seconds = redis_pause(backoff, exc)
            else:
                seconds = backoff.next()
                logger.exception("%s failed; going on in %.1fs", name, seconds)
            await pause(seconds, pauses)
        else:
            backoff.reset()
