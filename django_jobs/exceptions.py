"""Errors raised by django-jobs. All of them derive from :class:`JobsError`."""

from __future__ import annotations


class JobsError(Exception):
    """Base class of every django-jobs error."""


class RedisUnavailable(JobsError, ConnectionError):
    """Redis could not be reached. The message names the URL with its password redacted."""


class InvalidJobRecord(JobsError, ValueError):
    """A job record (dict, JSON or Redis hash) is malformed; the message names the field."""


class NotJSONSerializable(JobsError, TypeError):
    """A job argument or result does not survive a JSON round trip unchanged."""
