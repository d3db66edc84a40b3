"""The start of a worker child process (:func:`child_main`): what it sets up once, before its
loop (:class:`~django_jobs.worker.child.ChildLoop`) claims and runs jobs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from django_jobs.store import connection as store_connection
from django_jobs.store import spin
from django_jobs.worker.child import ChildConfig, ChildLoop, Shared
from django_jobs.worker.slots import Board

_PR_SET_PDEATHSIG = 1

# The supervisor's asyncio Redis clients, as a forked child inherits them: kept, never used.
_INHERITED_CLIENTS: list[Any] = []


def _become_child() -> None:
    # The supervisor decides when a job stops: Ctrl-C in a terminal, or systemd signalling the
    # whole group, must not interrupt the job in the middle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    # A process group of its own, which the supervisor ends as a whole (worker/children.py):
    # the subprocesses a job starts die with it on a timeout, a cancellation or a shutdown.
    # Ctrl-C in a terminal no longer reaches the job's subprocesses either; like the job, they
    # stop when the supervisor says so.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if sys.platform == "linux":
        # Die with the supervisor rather than finish a job that is being handed to another worker.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # A forked child shares the supervisor's epoll instance, in which the sockets of the
    # supervisor's asyncio clients are registered. Closing those clients here (which forgetting
    # them does, once they are collected) would unregister the sockets for the supervisor too:
    # it would never hear the reply it waits for, and time out. So they are kept, unused.
    _INHERITED_CLIENTS.extend(store_connection._async_clients.values())
    store_connection.reset_connections()


def child_main(
    conn: Connection,
    board: Board,
    shared: Shared,
    config: ChildConfig,
    inherited: list[Connection],
) -> None:
    """Entry point of a worker child process.

    ``inherited`` are the supervisor's ends of the other children's pipes, which a forked
    child holds copies of; closing them lets every child see EOF when the supervisor is gone.
    """
    for other in inherited:
        other.close()
    _become_child()
    if not config.forked:  # a spawned child starts from nothing: as runworker's handle() did
        import django

        from django_jobs.log import configure_command_logging

        django.setup()
        configure_command_logging("django_jobs", config.verbosity)
        spin.stop_polling()
    # What exists now lives as long as the process: out of the garbage collector's sight, so
    # that no collection walks it again. Otherwise the first collections of the older
    # generations, among the first jobs, take milliseconds each (what a forked child inherits
    # of its supervisor), as would every full one later.
    gc.freeze()
    ChildLoop(conn, board, shared, config).run()
