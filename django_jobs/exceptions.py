"""Errors raised by django-jobs. All of them derive from :class:`JobsError`."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base class of every django-jobs error."""


class StoreError(JobsError):
    """Redis refused a command (a key of the wrong type, a script error) or could not be reached."""


class RedisUnavailable(StoreError, ConnectionError):
    """Redis could not be reached. The message names the URL with its password redacted."""


class RedisAccessDenied(StoreError):
    """Redis answered but refused this client: a wrong or missing password, an unknown or
    disabled ACL user, or a user without permission for a command or key django-jobs uses
    (``NOPERM``). The message names the URL with its password redacted.

    Unlike :class:`RedisUnavailable` it is not a ``ConnectionError``: waiting does not help, so
    ``runworker`` and ``runscheduler`` exit with it at start-up instead of waiting for Redis.
    """


class InvalidJobRecord(JobsError, ValueError):
    """A job record (dict, JSON or Redis hash) is malformed; the message names the field."""


class NotJSONSerializable(JobsError, TypeError):
    """A job argument or result does not survive a JSON round trip unchanged."""


class JobNotFound(JobsError, LookupError):
    """No job has this id: it never existed, or its record expired."""


class JobFailed(JobsError):
    """The job ended in the dead-letter queue. ``job`` holds every attempt's error.

    ``error`` is the remote exception as ``"Type: message"`` and ``remote_traceback`` its
    traceback, as the worker recorded them.
    """

    def __init__(self, job: Any) -> None:
        self.job = job
        self.error = job.error or ""
        self.remote_traceback = job.traceback or ""
        super().__init__(f"Job {job.id} ({job.name}) failed: {self.error}")

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += f"\n\nRemote traceback:\n{self.remote_traceback}"
        return text


class JobCancelled(JobsError):
    """The job was cancelled before it finished."""

    def __init__(self, job: Any) -> None:
        self.job = job
        super().__init__(f"Job {job.id} ({job.name}) was cancelled.")


class JobIsRunning(JobsError, ValueError):
    """The job is running, and what was asked (deleting it) needs it stopped: cancel it first."""
