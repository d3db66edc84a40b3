"""The child side of the worker: a process that runs the jobs its supervisor sends, one at a time.

Messages on the pipe are JSON both ways. The supervisor owns everything that touches the
job's state in Redis; the child only runs the function and reports what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import json
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

from django_jobs.exceptions import NotJSONSerializable
from django_jobs.registry import registry
from django_jobs.serialization import check_json, dumps

_PR_SET_PDEATHSIG = 1


def failure(error: str, tb: str = "", *, retry: bool = True) -> dict[str, Any]:
    return {"ok": False, "error": error, "traceback": tb, "retry": retry}


def run_job(
    name: str, args: list[Any], kwargs: dict[str, Any], loop: asyncio.Runner
) -> dict[str, Any]:
    """Run one registered job and describe its outcome as a JSON-ready dict."""
    from django.db import close_old_connections

    job_function = registry.get(name)
    if job_function is None:
        return failure(f"UnregisteredJob: no job named {name!r} is registered in this worker.")
    # As Django does around a request: no connection outlives its CONN_MAX_AGE or an error.
    close_old_connections()
    try:
        result = job_function.func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = loop.run(_awaited(result))
    except BaseException as exc:  # a job calling sys.exit() must not end the process
        return failure(f"{type(exc).__qualname__}: {exc}", traceback.format_exc())
    finally:
        close_old_connections()
    try:
        check_json(result, "the return value")
    except NotJSONSerializable as exc:
        # Running it again would return the same value: straight to the dead-letter queue.
        return failure(f"NotJSONSerializable: {exc}", retry=False)
    return {"ok": True, "result": result}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _become_child() -> None:
    # The supervisor decides when a job stops: Ctrl-C in a terminal, or systemd signalling the
    # whole group, must not interrupt the job in the middle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    if sys.platform == "linux":
        # Die with the supervisor rather than finish a job that is being handed to another worker.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    from django_jobs.connection import reset_connections

    reset_connections()


def child_main(conn: Connection, inherited: list[Connection], setup_django: bool) -> None:
    """Entry point of a worker child process.

    ``inherited`` are the supervisor's ends of the pipes, which a forked child holds copies of;
    closing them lets every child see EOF when the supervisor goes away.
    """
    for other in inherited:
        other.close()
    _become_child()
    if setup_django:  # a spawned (not forked) child starts from nothing
        import django

        django.setup()
    with asyncio.Runner() as loop:
        while True:
            try:
                request = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the supervisor is gone
            if request is None:
                return  # the supervisor asks us to stop
            reply = run_job(request["name"], request["args"], request["kwargs"], loop)
            try:
                conn.send_bytes(dumps(reply).encode())
            except (BrokenPipeError, OSError):
                return
