"""A short busy wait for a reply about to arrive (``REPLY_SPIN_MICROSECONDS``).

A thread that blocks on a socket sleeps, and the kernel must wake it when the reply comes. On
a virtual machine that wake-up can cost 20 to 40 µs: a round trip to a local
Redis takes about 50 µs blocked and about 20 µs polled (``PING`` on a 2-core VM), and an enqueue
costs Redis about 20 µs. So after sending a command on the connection it keeps
(:func:`~django_jobs.store.connection.kept`), a sync thread polls the socket for up to the
setting's time before it blocks: a reply that comes within it is read without the sleep.

What it costs is CPU, at most the setting's time per command, and it adapts so that it costs
nothing where it cannot help: a poll that times out (a remote Redis, a busy machine, a reply
held behind another client's) makes the thread skip polling for its next 1, 2, 4, ... 1,024
commands, and a reply found while polling starts that count afresh. It is for the processes
that enqueue (web requests, scripts), whose callers wait on each reply: ``runworker`` and
``runscheduler`` never poll (:func:`stop_polling`), as their CPU is better spent on other
children's jobs, and their replies are not what a job's latency waits for. The asyncio client
never polls (it would hold up its event loop), nor do blocking waits (``result()``, the
worker's idle wait). ``0`` turns it off.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

from django_jobs.conf import jobs_settings

# The most commands skipped after polls that timed out one after another.
MAX_SKIP = 1024


class ReplySpin(threading.local):
    """One thread's polling of the connection it keeps: its poller and its back-off."""

    def __init__(self) -> None:
        self.sock: Any = None
        self.poller: Any = None
        self.skip = 0  # commands still to send without polling
        self.backoff = 1  # commands to skip after the next poll that times out

    def wait(self, sock: Any, budget: float) -> bool:
        """Poll ``sock`` (a command just sent on it) for up to ``budget`` seconds, unless this
        thread is backing off; whether a reply is there to read without blocking."""
        if self.skip:
            self.skip -= 1
            return False
        if sock is not self.sock:
            # poll(), not select(): a site may have more than select()'s 1,024 descriptors.
            # gevent's monkey-patching takes poll() away: nothing is polled then.
            make = getattr(select, "poll", None)
            if make is None:
                self.skip = MAX_SKIP
                return False
            self.poller = make()
            self.poller.register(sock, select.POLLIN)
            self.sock = sock
        poll = self.poller.poll
        deadline = time.perf_counter() + budget
        while not poll(0):
            if time.perf_counter() >= deadline:
                self.skip = self.backoff
                self.backoff = min(self.backoff * 2, MAX_SKIP)
                return False
        self.backoff = 1
        return True


_spin = ReplySpin()
_polling = True


def stop_polling() -> None:
    """Never poll for replies in this process (``runworker``, ``runscheduler``)."""
    global _polling
    _polling = False


def reply_spin() -> float:
    """Seconds this process polls for a reply before it blocks (0: it does not poll): read
    before a command is sent, so that a bad setting raises before anything was sent."""
    if not _polling:
        return 0.0
    return float(jobs_settings.REPLY_SPIN_MICROSECONDS) / 1_000_000


def await_reply(connection: Any, budget: float) -> None:
    """Before ``connection.read_response()`` of a command just sent: poll for its reply for up
    to ``budget`` seconds (:func:`reply_spin`; see the module's text). The read that follows
    blocks as it always did when the reply is not there yet."""
    sock = connection._sock
    if sock is not None:
        _spin.wait(sock, budget)
