"""A worker runs only what was registered when it started: a job's name never makes it import a
module, whatever the record in Redis says."""

import asyncio
import sys

import pytest

from django_jobs import Job, JobStatus
from django_jobs.registry import registry
from django_jobs.tasks import compat
from django_jobs.worker.execute import run_job

if compat.TASKS_API is None:
    pytest.skip("Django's task API is not installed", allow_module_level=True)

from tests.testapp import tasks

FOREIGN = {
    # A real task, in a module that no installed app's tasks or jobs module imports.
    "django.tasks:tests.testapp.foreign.steal": "module 'tests.testapp.foreign' was not imported",
    # Importing this module runs unittest's command line.
    "django.tasks:unittest.__main__.main": "module 'unittest.__main__' was not imported",
    # Plain job names are looked up among @job functions only.
    "tests.testapp.foreign.steal": "no job named",
}


def test_jobs_naming_unregistered_modules_are_dead_lettered_unimported(workers, queue, ledger):
    workers.start("--concurrency", "1")
    planted = {name: queue.enqueue(name, ["x"], max_retries=0) for name in FOREIGN}

    for name, reason in FOREIGN.items():
        job = queue.wait_for(planted[name].id, timeout=15)
        assert job.status is JobStatus.FAILED, name
        assert reason in job.error, job.error
    # A task defined on the backend, in an app's tasks module, still runs on the same worker.
    result = tasks.add.enqueue(2, 3)
    assert queue.wait_for(result.id, timeout=15).result == 5

    assert not (ledger / "foreign-imported").exists()
    assert not (ledger / "stolen.log").exists()
    logs = workers.logs()
    assert "Traceback" not in logs
    # Nor did unittest's command line run.
    assert "Ran 0 tests" not in logs
    assert "usage:" not in logs


def test_the_runner_in_this_process_does_not_import_it_either(db, ledger):
    sys.modules.pop("tests.testapp.foreign", None)
    with asyncio.Runner() as loop:
        outcome = run_job(Job(id="f", name="django.tasks:tests.testapp.foreign.steal"), loop)

    assert not outcome.ok
    assert "UnknownTask" in outcome.error
    assert "tests.testapp.foreign" not in sys.modules
    assert not (ledger / "foreign-imported").exists()


def test_tasks_of_installed_apps_are_registered_at_start_up():
    assert registry.task_function("tests.testapp.tasks.add") is tasks.add.func
    assert registry.task_function("tests.testapp.foreign.steal") is None
