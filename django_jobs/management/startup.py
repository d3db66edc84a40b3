"""What ``runworker`` and ``runscheduler`` share: a stop on SIGTERM or SIGINT, and waiting until
Redis lets them in before they start."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

from django.core.management.base import CommandError

from django_jobs.exceptions import RedisAccessDenied
from django_jobs.store.access import wait_for_access
from django_jobs.store.keys import Keys

#: A signal of another kind this soon (seconds) after the first is part of the same request.
SAME_REQUEST = 1.0


class StopRequests:
    """Counts the requests to stop that signals make.

    Ctrl-C reaches the whole process group, and a process manager (or the ``--reload`` parent)
    may forward a SIGTERM right after: a signal of another kind within :data:`SAME_REQUEST`
    seconds of the last one counted is the same request, not a second one.
    """

    def __init__(self) -> None:
        self.count = 0
        self._last, self._last_at = 0, 0.0

    def add(self, signum: int) -> bool:
        """Count ``signum``; ``False`` if it belongs to the request counted before it."""
        now = time.monotonic()
        if self.count and signum != self._last and now - self._last_at < SAME_REQUEST:
            return False
        self.count += 1
        self._last, self._last_at = signum, now
        return True


class StopSignals:
    """``with StopSignals() as stop:`` the first SIGTERM or SIGINT sets the event ``stop``; a
    second one exits at once, with status 1 (a SIGTERM right after a SIGINT, or the reverse,
    is one request: see :class:`StopRequests`). The handlers before are restored after, but for
    a default one after a stop: the process is ending, and the rest of the request must not
    kill it on the way.

    The handler only sets the event: the main thread waits on it (or on a thread) in short
    steps, so that a signal is answered within a fraction of a second even while another
    thread waits for a frozen Redis.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.requests = StopRequests()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.requests.add(signum):
            return
        if self.requests.count > 1:
            os._exit(1)
        self.signum = signum
        self.event.set()

    @property
    def name(self) -> str:
        """The name of the signal that came (``SIGTERM``), for the log."""
        return signal.Signals(self.signum).name if self.signum else "stop"

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            # After a stop the rest of its request may still come (the SIGTERM that a --reload
            # parent forwards right after Ctrl-C): the default action would kill the process
            # as it exits cleanly, so the handler stays while the process ends, until the
            # interpreter's last steps reset it (the --reload parent allows for that).
            if not (self.requests.count and handler == signal.SIG_DFL):
                signal.signal(signum, handler)


def wait_for_redis(keys: Keys, stop: threading.Event, who: str) -> bool:
    """Wait until Redis answers the access check (:func:`~django_jobs.store.access.wait_for_access`,
    which logs each failed attempt): ``True`` then, ``False`` if ``stop`` was set first.

    The check runs in a thread of its own, so that a stop is not held up by a call waiting for
    a frozen Redis. :class:`CommandError` with the reason (one line, the password redacted) if
    Redis refuses access: a wrong password or user, or missing permissions.
    """
    outcome: dict[str, Any] = {}

    def check() -> None:
        try:
            outcome["ok"] = wait_for_access(keys, stop, who)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=check, name=f"{who}: Redis access check", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.is_set():
        thread.join(0.2)
    error = outcome.get("error")
    if isinstance(error, RedisAccessDenied):
        raise CommandError(f"{who}: {error}")
    if error is not None:
        raise error
    return bool(outcome.get("ok")) and not stop.is_set()
