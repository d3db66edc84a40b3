"""Whether Redis lets this process do its work, asked before a worker or a scheduler starts.

A wrong password, an unknown ACL user or a user without the permissions django-jobs needs is
a mistake that waiting does not mend: ``runworker`` and ``runscheduler`` ask first, wait while
Redis does not answer (as they always did), and exit with the reason when it refuses them.
"""

from __future__ import annotations

import logging
import threading

from django_jobs.exceptions import RedisUnavailable
from django_jobs.store import console_calls
from django_jobs.store.commands import Plan
from django_jobs.store.connection import Backoff, redis_outage
from django_jobs.store.execute import run
from django_jobs.store.keys import Keys

logger = logging.getLogger("django_jobs")


def check_access(keys: Keys) -> Plan[None]:
    """Calls that need what every worker and scheduler needs, and change nothing.

    The first command of a connection authenticates it; the ``stats`` script runs as a script
    (``EVALSHA``, ``SCRIPT LOAD``) that reads the keys under the prefix and writes them (it
    trims finished jobs older than ``keep_since`` and limits unused since a day before ``now``:
    with 0, none). A refusal raises :class:`~django_jobs.exceptions.RedisAccessDenied`.
    """
    yield from console_calls.stats(
        keys,
        lists=[],
        keep_since=0.0,
        workers_since=0.0,
        now=0.0,
        limits_count=1,
        parked_lists=1,
    )


def wait_for_access(keys: Keys, stop: threading.Event, who: str) -> bool:
    """Run :func:`check_access` until Redis answers it: ``True`` then, ``False`` if ``stop``
    was set first.

    While Redis does not answer (:class:`RedisUnavailable`) this tries again after a pause, up
    to 10 s, and reports the outage (:data:`~django_jobs.store.connection.redis_outage`: a line
    at first, then one a minute); a refusal (:class:`~django_jobs.exceptions.RedisAccessDenied`)
    or any other error is raised. ``who`` names the process in the log.
    """
    backoff = Backoff(limit=10.0)
    while not stop.is_set():
        try:
            run(check_access(keys))
            return True
        except RedisUnavailable as exc:
            redis_outage.failed(logger, exc, f"{who}: ")
            stop.wait(backoff.next())
    return False
