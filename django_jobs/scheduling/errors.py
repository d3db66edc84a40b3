"""The error a task's invalid definition raises, shared by the cron checks and the task."""

from __future__ import annotations


class InvalidSchedule(ValueError):
    """A task's definition is invalid. ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
