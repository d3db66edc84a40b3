"""A module that no worker may import: nothing of the project imports it, so a job naming it
must not make a worker load it (tests/test_foreign_code.py). Importing it leaves a mark in the
ledger folder, outside Redis, and defines a real task of Django's task API."""

import os
from pathlib import Path

from tests.testapp.jobs import append_to_ledger

if os.environ.get("JOBS_TEST_LEDGER"):
    (Path(os.environ["JOBS_TEST_LEDGER"]) / "foreign-imported").touch()

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task


@task
def steal(label):
    """Would record that it ran; a worker must refuse it unimported."""
    return append_to_ledger(label, "stolen.log")
