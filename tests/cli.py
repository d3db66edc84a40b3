"""Running ``manage.py jobs`` in tests: in this process (``call_command``) or as a real command
line in a process of its own, and jobs to run it on."""

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_jobs.worker.leases import Leases
from tests.processes import REPO, Processes

ADD = "tests.testapp.jobs.add"


def jobs_cli(*args):
    """``manage.py jobs *args`` in this process: its stdout."""
    out = StringIO()
    call_command("jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def jobs_json(*args):
    return json.loads(jobs_cli(*args, "--json"))


def jobs_cli_error(*args):
    """``manage.py jobs *args``, which must fail: (its stdout, the :class:`CommandError`)."""
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue(), raised.value


class CommandLine:
    """``python -m django jobs ...`` in a process of its own, under a test's prefix."""

    def __init__(self, folder, prefix):
        self.procs = Processes(folder, prefix)

    def popen(self, *args):
        return subprocess.Popen(
            [sys.executable, "-m", "django", "jobs", *args],
            cwd=REPO,
            env=self.procs.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args, stdin="", settings=None):
        self.procs.settings = dict(settings or {})
        return subprocess.run(
            [sys.executable, "-m", "django", "jobs", *args],
            cwd=REPO,
            env=self.procs.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def failed_job(queue, name=ADD, error="ValueError: boom", worker_id="w-1"):
    """A job of queue ``reports`` in the dead-letter queue after one failed attempt."""
    queue.enqueue(name, [1, 2], max_retries=0, queue="reports")
    leases = Leases(queue.prefix)
    job = leases.dequeue(queues=["reports"], worker_id=worker_id)
    traceback = f'Traceback (most recent call last):\n  File "jobs.py", line 3\n{error}'
    leases.fail_job(job, error, traceback)
    return queue.get_job(job.id)
