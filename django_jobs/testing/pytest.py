"""A pytest plugin: fixtures that switch a testing mode on for one test.

Enable it in a ``conftest.py``: ``pytest_plugins = ["django_jobs.testing.pytest"]``.

- ``jobs_immediate``: jobs run at once in the test's process (``DJANGO_JOBS['MODE']``
  ``"immediate"``); the fixture is the :class:`~django_jobs.testing.MemoryStore`.
- ``jobs_capture``: jobs are recorded, not run, until ``jobs_capture.drain()``.

With a ``MODE`` set in the test settings instead, each test still starts with no jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_jobs.testing import capture_jobs, immediate_jobs
from django_jobs.testing.store import MemoryStore, reset_default


@pytest.fixture
def jobs_immediate() -> Iterator[MemoryStore]:
    """Jobs run at once, in this process, as a worker would run them."""
    with immediate_jobs() as store:
        yield store


@pytest.fixture
def jobs_capture() -> Iterator[MemoryStore]:
    """Jobs are recorded and not run; ``drain()`` runs them."""
    with capture_jobs() as store:
        yield store


@pytest.fixture(autouse=True)
def _django_jobs_fresh_store() -> None:
    # A MODE of the test settings keeps one default store: each test starts it afresh.
    reset_default()
