"""What a running job knows of itself: :class:`JobContext`, given to a ``@job(takes_context=True)``
function as its first argument and returned by :func:`current_job` anywhere inside a job.

Its :meth:`~JobContext.progress` never waits for Redis and never fails the job for Redis's
sake. A report is kept in memory; a thread of the process (:class:`Writer`) writes the latest
value of each job at most every ``progress_interval`` seconds (a quarter of a second in a
worker), one script call each, which only the holder of the job's lease may make. The runner
writes the last value, if it was not written yet, before it records the job's outcome.
In the testing modes every report is written to the in-memory store at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Protocol

from django_jobs import validation
from django_jobs.job import Job
from django_jobs.progress import Progress
from django_jobs.serialization import utcnow

logger = logging.getLogger("django_jobs.worker")


class Recorder(Protocol):
    """What writes a running job's progress: the worker's ``Leases``, or the in-memory store of
    the testing modes (``progress_interval`` 0: every report, at once, in the caller's thread)."""

    progress_interval: float

    def record_progress(self, job: Job, progress: str) -> bool: ...


class JobContext:
    """One attempt of a job, as its code sees it: ``id``, ``attempt``, the ``job`` record (as
    it was claimed) and :meth:`progress`."""

    def __init__(self, job: Job, recorder: Recorder) -> None:
        self.job = job
        self._recorder = recorder
        self._reporter: Reporter | None = None  # made by the first report: none, no cost

    def __repr__(self) -> str:
        return f"<JobContext {self.job.id} {self.job.name} attempt {self.attempt}>"

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry (or the run after a lost worker), …"""
        return self.job.attempt

    def progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Report how far the job is: ``current`` of ``total`` (``None``: not known), and a
        ``message`` (cut to 200 characters). Readable from ``handle.progress`` and
        ``JobQueue.get_job()``.

        Call it as often as you like: it returns at once, without a round trip to Redis, and the
        job's record gets the latest value at most four times a second, and the last one
        before the job's outcome is recorded; ``current == total`` is written at once. Sync and
        ``async def`` jobs alike call it plainly (nothing to await). If Redis does not answer,
        the failure is logged and the job goes on. ``TypeError`` or ``ValueError`` for counts
        that are not numbers of 0 or more, or a message that is not a ``str``.
        """
        current, total, message = validation.progress(current, total, message)
        value = Progress(current, total, message, utcnow(), self.attempt)
        if self._reporter is None:
            self._reporter = Reporter(self.job, self._recorder)
        self._reporter.report(value)

    def finish(self) -> None:
        """The job ended: write its last progress if it was not written (the runner calls this
        before it records the outcome). Reports made after this are ignored.

        While Redis fails to answer (the job's last write failed) the writer thread tries it
        instead, and this returns at once: the outcome waits for Redis anyway.
        """
        reporter = self._reporter
        if reporter is not None and reporter.close():
            if reporter.failing:
                reporter.hand_over()
            else:
                reporter.flush()

    async def afinish(self) -> None:
        """:meth:`finish` for an ``async def`` job: the write runs in a thread, off the loop."""
        reporter = self._reporter
        if reporter is not None and reporter.close():
            if reporter.failing:
                reporter.hand_over()
            else:
                await asyncio.to_thread(reporter.flush)

    def abandon(self) -> None:
        """The job was stopped (cancelled, timed out): its last progress is written by the
        writer thread, without waiting for it (what is recorded of the job does not wait)."""
        reporter = self._reporter
        if reporter is not None and reporter.close():
            reporter.hand_over()


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "django_jobs_current_job", default=None
)


def current_job() -> JobContext | None:
    """The context of the job running here, or ``None`` outside a job.

    It follows the job into what it awaits and into ``sync_to_async`` calls, and each of
    the ``async def`` jobs that share a worker's event loop sees its own. A thread the job
    starts itself does not inherit it: pass the context to it.
    """
    return _current.get()


def enter(context: JobContext) -> contextvars.Token[JobContext | None]:
    """Make ``context`` the current job's (for the runner); undone by :func:`leave`."""
    return _current.set(context)


def leave(token: contextvars.Token[JobContext | None]) -> None:
    _current.reset(token)


class Reporter:
    """The progress of one attempt: the latest report, and when it may be written next.

    ``lock`` guards the values; ``writing`` makes the writes of one job go one at a time, in
    order, whichever thread makes them (the writer thread, or the runner's last one).
    """

    def __init__(self, job: Job, recorder: Recorder) -> None:
        self.job = job
        self.recorder = recorder
        self.interval = float(recorder.progress_interval)
        self.lock = threading.Lock()
        self.writing = threading.Lock()
        self.latest: Progress | None = None
        self.written: Progress | None = None
        self.next_write = 0.0  # time.monotonic() before which it writes nothing
        self.scheduled: float | None = None  # when the writer thread writes it next
        self.closed = False
        self.failures = 0
        self.failing = False  # the last write failed

    def report(self, value: Progress) -> None:
        if self.interval <= 0:  # the in-memory store of the testing modes
            with self.lock:
                self.latest = value
            self.flush()
            return
        now = time.monotonic()
        with self.lock:
            if self.closed:
                return
            self.latest = value
            when = now if value.is_final else max(now, self.next_write)
            if self.scheduled is not None and self.scheduled <= when:
                return  # the write already planned takes this value: no work here
            self.scheduled = when
        writer.schedule(self, when)

    def close(self) -> bool:
        """Take no more reports; whether the latest one still has to be written."""
        with self.lock:
            self.closed = True
            self.scheduled = None
            return self.latest is not self.written

    def hand_over(self) -> None:
        """Let the writer thread write the latest report now (the job ended)."""
        when = time.monotonic()
        with self.lock:
            self.scheduled = when
        writer.schedule(self, when)

    def fire(self, when: float) -> None:
        """The writer thread's turn planned for ``when``: write, unless it was planned again."""
        with self.lock:
            if self.scheduled != when:
                return
        self.flush()

    def flush(self) -> None:
        """Write the latest report if it was not written; log a failure, never raise."""
        with self.writing:
            with self.lock:
                value, self.scheduled = self.latest, None
                if value is None or value is self.written:
                    return
                # Counted from the start of this write: a report meanwhile waits its turn.
                self.next_write = time.monotonic() + self.interval
            try:
                recorded = self.recorder.record_progress(self.job, value.to_json())
            except Exception as exc:
                self.failing = True
                self.failed(exc)
                return
            with self.lock:
                self.written, self.failing = value, False
            if not recorded:
                logger.debug("job %s: progress not recorded (its lease is lost)", self.job.id)

    def failed(self, exc: Exception) -> None:
        """Log the first failure of a job's writes as a warning, the next ones for debugging,
        and try again at the next turn (unless the job ended)."""
        self.failures += 1
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        logger.log(
            level,
            "job %s %s: its progress could not be recorded (%s: %s); the job goes on",
            self.job.id,
            self.job.name,
            type(exc).__name__,
            exc,
        )
        with self.lock:
            if self.closed or self.scheduled is not None:
                return
            self.scheduled = when = self.next_write
        writer.schedule(self, when)


class Writer:
    """The thread of a process that writes its jobs' progress, each at its planned time."""

    def __init__(self) -> None:
        self.forked()

    def forked(self) -> None:
        """Start afresh: in a forked process (a worker child) the thread of its parent does not
        run, and its lock may have been held at the fork."""
        self.condition = threading.Condition()
        self.planned: list[tuple[float, int, Reporter]] = []
        self.order = itertools.count()
        self.thread: threading.Thread | None = None

    def schedule(self, reporter: Reporter, when: float) -> None:
        with self.condition:
            heapq.heappush(self.planned, (when, next(self.order), reporter))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.run, name="django-jobs progress", daemon=True
                )
                self.thread.start()
            if self.planned[0][2] is reporter:
                self.condition.notify()

    def run(self) -> None:
        while True:
            with self.condition:
                while not self.planned or self.planned[0][0] > time.monotonic():
                    wait = self.planned[0][0] - time.monotonic() if self.planned else None
                    self.condition.wait(wait)
                when, _, reporter = heapq.heappop(self.planned)
            try:
                reporter.fire(when)
            except Exception:  # never let one job's trouble stop the others' progress
                logger.exception("job %s: writing its progress failed", reporter.job.id)


writer = Writer()
os.register_at_fork(after_in_child=writer.forked)
