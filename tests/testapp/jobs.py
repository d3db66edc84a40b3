"""Jobs the worker tests run in real worker processes."""

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from django_jobs import JobQueue, job
from django_jobs.store.connection import get_redis
from django_jobs.store.spin import reply_spin


def _ledger(name: str) -> Path:
    return Path(os.environ["JOBS_TEST_LEDGER"]) / name


@job
def add(a, b):
    return a + b


@job
def frozen_objects():
    """How many objects its process keeps out of the garbage collector's sight."""
    return gc.get_freeze_count()


@job
def reply_poll():
    """Seconds its process polls for a reply before it blocks (0: it does not poll)."""
    return reply_spin()


def append_to_ledger(label, name="record.log"):
    """Append ``label`` to a ledger file, outside Redis, so tests can see what ran in what order."""
    with _ledger(name).open("a") as ledger:
        ledger.write(f"{label}\n")
    return label


@job(name="tests.record")
def record(label):
    return append_to_ledger(label)


@job(name="tests.record_slowly")
def record_slowly(label, seconds):
    """``record`` after ``seconds``: a job that a fault can meet while it runs."""
    time.sleep(seconds)
    return append_to_ledger(label)


@job(name="tests.link")
def link(labels, label):
    """A step of a chain or a group member (tests/test_chaos.py): ``record`` that returns the
    labels it received with its own added."""
    append_to_ledger(label)
    return [*labels, label]


@job(name="tests.link_all")
def link_all(results, label):
    """A group's callback: ``link`` of every member's labels."""
    return link([label for labels in results for label in labels], label)


@job(name="tests.record_host")
def record_host(label):
    """``record`` with the name of the host (tests/test_many_hosts.py) that ran it."""
    return append_to_ledger(f"{label}@{socket.gethostname()}")


@job
def fail(message):
    raise ValueError(message)


@job
def sleep(seconds, label=None):
    if label is not None:
        _ledger(f"{label}.started").touch()
    time.sleep(seconds)
    if label is not None:
        _ledger(f"{label}.finished").touch()
    return seconds


@job
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


@job
def not_json():
    return {1, 2, 3}


@job
def crash():
    os._exit(3)


@job
def spin(seconds, label):
    """Busy CPU-bound loop; writes when it starts and when it ends."""
    _ledger(f"{label}.started").touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    _ledger(f"{label}.finished").touch()
    return label


@job(name="tests.report", queue="reports", priority="high", max_retries=1, timeout=30)
def report(label):
    """A job with a queue and options of its own (for the scheduler tests)."""
    return label


@job
def kill_self():
    """Kill its own process, as the kernel's OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


@job
def kill_worker():
    """Kill its whole worker, its supervisor first, then its own process, as a container's
    OOM kill would: no process is left to record what happened."""
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


@job
def spawn_and_hang(seconds, label):
    """Start a grandchild (``sleep 300``), write its pid to the ledger, then sleep ``seconds``."""
    grandchild = subprocess.Popen(["sleep", "300"])
    _ledger(f"{label}.pid").write_text(str(grandchild.pid))
    time.sleep(seconds)
    return label


@job
def kill_self_unrecordable(label):
    """Make its own record unreadable (a value that is not UTF-8), then kill its own process:
    its supervisor cannot record the crash, so the job stays RUNNING until its lease expires."""
    queue = JobQueue()
    (me,) = [j for j in queue.list_jobs("running") if j.args == [label]]
    get_redis().hset(queue.keys.job(me.id), "meta", b"\xff")
    os.kill(os.getpid(), signal.SIGKILL)


@job(max_retries=0)
def fail_until_fixed(label):
    """Fails with a traceback until the test writes ``<label>.fixed`` in the ledger folder."""
    if not _ledger(f"{label}.fixed").exists():
        raise RuntimeError(f"{label} is not fixed yet")
    return append_to_ledger(label)


# The database connections that jobs of this process used, kept so that a new connection cannot
# be taken for an earlier one at a freed address (tests/test_worker_database.py).
_DB_CONNECTIONS = []


@job
def use_database(break_it=False):
    """Run a query; return whether the connection is one an earlier job of this process used,
    and whether it is in autocommit mode. ``break_it`` then turns autocommit off and leaves it
    so, as a job that forgot to restore it would: Django must not hand that connection on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raw = connection.connection
    found = {"reused": any(raw is seen for seen in _DB_CONNECTIONS)}
    found["autocommit"] = connection.get_autocommit()
    _DB_CONNECTIONS.append(raw)
    if break_it:
        connection.set_autocommit(False)
    return found


# -- chains and groups (tests/test_workflow_faults.py) -------------------------------------------


@job
def member(index):
    """A group member: a short run, noted in the ledger (outside Redis)."""
    time.sleep(0.002)
    append_to_ledger(index, "members.log")
    return index * 3


@job
def gather(results):
    """A group's callback: writes what it received, once per run."""
    append_to_ledger(json.dumps(results), "callback.log")
    return len(results)


@job
def step(previous, n, slow_at=None):
    """A chain step: adds ``n`` to the result before it; step ``slow_at`` marks its start in
    the ledger and sleeps, for a test to kill its worker there."""
    if n == slow_at:
        append_to_ledger(f"{n} {os.getpid()}", "slow.log")
        time.sleep(1.5)
    append_to_ledger(n, "steps.log")
    return previous + n


# Registered with the jobs of this module, in every process that loads it.
from tests.testapp import async_jobs, flow_jobs, progress_jobs  # noqa: E402, F401
