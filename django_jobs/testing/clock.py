"""The clock of the in-memory store of the testing modes (:mod:`django_jobs.testing.store`)."""

from __future__ import annotations

from datetime import timedelta

from django_jobs import rules
from django_jobs.serialization import utcnow


class Clock:
    """The store's time: the real time plus how far it was moved forward. Due times of
    delayed and retrying jobs, and the timestamps a run records, are read from it; the code
    of the jobs sees the real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Epoch seconds."""
        return utcnow().timestamp() + self.offset

    def advance(self, by: float | timedelta) -> None:
        """Move forward by ``by`` (seconds or a ``timedelta``, not negative)."""
        seconds = rules.seconds(by, "advance()")
        if seconds < 0:
            raise rules.refused("advance()", "0 seconds or more (the clock only goes forward)", by)
        self.offset += seconds

    def advance_to(self, when: float) -> None:
        """Move forward to ``when`` (epoch seconds), if it is later than now."""
        self.offset += max(when - self.now(), 0.0)
