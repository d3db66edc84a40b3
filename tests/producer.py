"""A producer thread for the failover tests: it enqueues while servers die and come back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django_jobs import RedisUnavailable
from tests.testapp import jobs


class Producer(threading.Thread):
    """Enqueues ``jobs.record`` jobs one after the other until stopped (on ``queue``, or the
    job's own): what ``.delay()`` acknowledged (returned), and what it refused (raised
    ``RedisUnavailable``: unknown whether the job exists; it is not counted as accepted).
    Labels are ``job<n>``, or ``<queue>-<n>`` with a queue. ``send`` enqueues another job of
    the label instead (it returns its handle)."""

    def __init__(
        self,
        pause: float = 0.01,
        queue: str | None = None,
        send: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.pause = pause
        self.queue = queue
        self.send = send
        self.accepted: list[tuple[float, str]] = []  # (when, label)
        self.ids: dict[str, str] = {}  # label: job id
        self.refused = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        call = jobs.record.using(queue=self.queue) if self.queue else jobs.record
        send = self.send or call.delay
        n = 0
        while not self.stopping.is_set():
            n += 1
            label = f"{self.queue}-{n}" if self.queue else f"job{n}"
            try:
                self.ids[label] = send(label).id
            except RedisUnavailable:
                self.refused += 1
                time.sleep(0.05)
                continue
            self.accepted.append((time.monotonic(), label))
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
