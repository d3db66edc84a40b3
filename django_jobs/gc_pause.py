"""Python's cyclic garbage collector held off while many objects that live on are made."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector for the block, and resume it after, unless it was
    off already (by its owner, or by another such block meanwhile).

    What the block makes lives on (jobs that are returned, the scheduler's tasks), and the
    collector, set off every 2,000 or so new containers, goes over every one of them still
    alive each time, and now and then over every object of the process: building 100,000 jobs
    in one call (``JobQueue.build_jobs``) spent 65% of its time in it, 4.8 µs a job against 1.7
    held off, and loading 100,000 scheduled tasks a fifth of its CPU (issue 18). These blocks
    make no reference cycles (but for an error's traceback): reference counting frees the rest
    as ever, and once resumed the collector has nothing to catch up on but one look at the new
    objects. The collector is the process's: other threads' collections wait for the same time
    (a fifth of a second for 100,000 jobs).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
