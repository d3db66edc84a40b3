"""How far a running job is: the value :meth:`JobContext.progress
<django_jobs.context.JobContext.progress>` reports and ``Job.progress`` reads back.

It is kept on the job's record as one small JSON object (the hash field ``progress``):
``{"current": 40, "total": 100, "message": "…", "at": <epoch seconds>, "attempt": 1}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_jobs.serialization import dumps, from_timestamp

#: The longest message kept; a longer one is cut to this many characters (ending in "…").
MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class Progress:
    """One report of a job's progress: ``current`` of ``total`` (``None``: unknown) with a
    ``message``, reported at ``at`` (aware, UTC) by attempt ``attempt`` of the job."""

    current: float
    total: float | None = None
    message: str = ""
    at: datetime | None = None
    attempt: int = 1

    @property
    def fraction(self) -> float | None:
        """``current / total`` from 0 to 1 (1 for a total of 0); ``None`` without a total."""
        if self.total is None:
            return None
        if self.total == 0:
            return 1.0
        return min(self.current / self.total, 1.0)

    @property
    def percent(self) -> int | None:
        """The :attr:`fraction` in whole percent, rounded down (so 100 only when done)."""
        fraction = self.fraction
        return None if fraction is None else math.floor(fraction * 100)

    @property
    def is_final(self) -> bool:
        """``current`` reached ``total``: the last report of a job that counts to a total."""
        return self.total is not None and self.current >= self.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as ``Job.to_dict`` gives it: ``at`` in ISO 8601."""
        return {
            "current": self.current,
            "total": self.total,
            "message": self.message,
            "at": self.at.isoformat() if self.at else None,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Progress:
        """The progress of :meth:`to_dict` output; ``ValueError`` when it cannot be one."""
        if not isinstance(data, dict):
            raise ValueError("progress must be a dict")
        at = data.get("at")
        return _checked(
            data.get("current"),
            data.get("total"),
            data.get("message", ""),
            datetime.fromisoformat(at) if isinstance(at, str) else None,
            data.get("attempt", 1),
        )

    def to_json(self) -> str:
        """The text stored on the job's record (``at`` in epoch seconds)."""
        return dumps(
            {
                "current": self.current,
                "total": self.total,
                "message": self.message,
                "at": round(self.at.timestamp(), 6) if self.at else None,
                "attempt": self.attempt,
            }
        )


def read(text: str) -> Progress | None:
    """The progress stored on a record, or ``None`` when the text is not one: a corrupt value
    must not make the job unreadable, let alone unrunnable."""
    try:
        data = json.loads(text)
        at = data.get("at")
        return _checked(
            data["current"],
            data.get("total"),
            data.get("message", ""),
            from_timestamp(at) if at is not None else None,
            data.get("attempt", 1),
        )
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return None


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _checked(current: Any, total: Any, message: Any, at: Any, attempt: Any) -> Progress:
    if not _number(current) or not (total is None or _number(total)):
        raise ValueError("progress must count with numbers of 0 or more")
    if not isinstance(message, str) or not isinstance(attempt, int) or isinstance(attempt, bool):
        raise ValueError("progress has a message that is not text, or a bad attempt")
    if at is not None and (not isinstance(at, datetime) or at.utcoffset() is None):
        raise ValueError("progress has a bad time")
    return Progress(current, total, message[:MESSAGE_LIMIT], at, attempt)
