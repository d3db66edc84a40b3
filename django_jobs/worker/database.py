"""A worker process's database connections between jobs: Django's ``close_old_connections``,
as around a request, before and after each job; no connection outlives its ``CONN_MAX_AGE``,
an error that left it unusable, or an autocommit a job did not restore (a job that breaks its
connection does not pass it on to the next one), and a health check (``CONN_HEALTH_CHECKS``)
is due again at each job.

Until a process has opened a database connection there is nothing to close or check, and the
call is skipped: a worker whose jobs never use the database would spend more on it than on a
trivial job's own run. From the first connection opened (Django's ``connection_created``) it is
made before and after every job, as Django makes it.
"""

from __future__ import annotations

import os
from typing import Any

from django.db import close_old_connections as close_old_django_connections
from django.db import connections
from django.db.backends.signals import connection_created

# Whether a connection may be open in this process: None until asked (then it looks), True
# from the first connection opened, in any thread. A forked child looks again: its supervisor
# closes its connections before forking.
_used: bool | None = None


def _opened(**kwargs: Any) -> None:
    global _used
    _used = True


def _forget() -> None:
    global _used
    _used = None


connection_created.connect(_opened, dispatch_uid="django_jobs.worker.database")
os.register_at_fork(after_in_child=_forget)


def _may_be_open() -> bool:
    global _used
    if _used is None:
        found = any(c.connection is not None for c in connections.all(initialized_only=True))
        _used = _used or found  # True if one was opened meanwhile, in another thread
    return _used


def close_old_connections() -> None:
    """Close this thread's database connections that are past their ``CONN_MAX_AGE`` or
    unusable (Django's ``close_old_connections``), unless no connection was ever opened in this
    process."""
    if _may_be_open():
        close_old_django_connections()
