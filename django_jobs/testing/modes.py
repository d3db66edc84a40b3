"""Switching a testing mode on for a test: a context manager, and a decorator of test
functions, methods and ``TestCase`` classes (each test then gets a fresh store)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test.utils import TestContextDecorator, override_settings

from django_jobs.conf import MODES
from django_jobs.testing import store as stores
from django_jobs.testing.store import MemoryStore

TESTING_MODES = tuple(mode for mode in MODES if mode != "redis")


class jobs_mode(TestContextDecorator):  # lower case, as override_settings
    """``DJANGO_JOBS['MODE']`` set to ``mode`` (``"immediate"`` or ``"capture"``), with a
    fresh :class:`~django_jobs.testing.store.MemoryStore`, which entering it returns.

    As a context manager: ``with jobs_mode("capture") as jobs:``. As a decorator of a test
    function or method, or of a ``TestCase`` class (then for each of its tests): with
    ``attr_name="jobs"`` the store is ``self.jobs`` in the tests of a class, with
    ``kwarg_name="jobs"`` it is passed to a decorated method as that argument (not to a pytest
    test function, whose arguments are fixtures: use the fixtures of
    :mod:`django_jobs.testing.pytest`). The other ``DJANGO_JOBS`` settings stay as they are.
    """

    def __init__(
        self, mode: str, *, attr_name: str | None = None, kwarg_name: str | None = None
    ) -> None:
        if mode not in TESTING_MODES:
            raise ValueError(
                f"jobs_mode() takes one of {', '.join(map(repr, TESTING_MODES))}, not {mode!r}."
            )
        self.mode = mode
        # One (settings override, store) per entry: a class decorator enters once per test.
        self._entered: list[tuple[override_settings, MemoryStore]] = []
        super().__init__(attr_name=attr_name, kwarg_name=kwarg_name)

    def __repr__(self) -> str:
        return f"<jobs_mode {self.mode}>"

    def enable(self) -> MemoryStore:
        current = getattr(settings, "DJANGO_JOBS", {})
        merged = {**(current if isinstance(current, dict) else {}), "MODE": self.mode}
        override = override_settings(DJANGO_JOBS=merged)
        override.enable()
        store = stores.push()
        self._entered.append((override, store))
        return store

    def disable(self) -> None:
        override, store = self._entered.pop()
        stores.pop(store)
        override.disable()


def immediate_jobs(**options: Any) -> jobs_mode:
    """:class:`jobs_mode` ``"immediate"``: each job runs at once in this process, as a
    worker would run it, and its handle answers without Redis."""
    return jobs_mode("immediate", **options)


def capture_jobs(**options: Any) -> jobs_mode:
    """:class:`jobs_mode` ``"capture"``: jobs are recorded, not run, until ``drain()``."""
    return jobs_mode("capture", **options)
