"""Async jobs the worker tests run side by side in real worker processes
(tests/test_async_concurrency.py and tests/test_async_concurrency_faults.py).

Each writes what it did to the ledger folder (outside Redis): ``<label>.runs`` gets a line
``start`` when an attempt starts and ``finish`` when it ends, ``spans.log`` a line
``<label> <start> <end>`` (epoch seconds) per finished attempt, and ``record.log`` (shared with
the sync ``tests.record`` job) ``<label>`` when it starts and ``<label>/done`` when it ends.
"""

import asyncio
import time

from django_jobs import job
from tests.testapp.jobs import _ledger, append_to_ledger


def _run(label: str, line: str) -> None:
    with _ledger(f"{label}.runs").open("a") as runs:
        runs.write(f"{line}\n")


@job
async def nap(seconds, label=None):
    """Sleep ``seconds`` on the event loop; with a ``label``, write each start and finish."""
    started = time.time()
    if label is not None:
        _run(label, "start")
    await asyncio.sleep(seconds)
    if label is not None:
        _run(label, "finish")
        with _ledger("spans.log").open("a") as spans:
            spans.write(f"{label} {started} {time.time()}\n")
    return label if label is not None else seconds


@job
async def block(seconds, label):
    """Block the event loop (a blocking call in async code) for ``seconds``."""
    _run(label, "start")
    time.sleep(seconds)
    _run(label, "finish")
    return label


@job
async def async_record(label, seconds=0.2):
    """Write ``label`` to record.log when it starts and ``label/done`` when it ends."""
    append_to_ledger(label)
    await asyncio.sleep(seconds)
    append_to_ledger(f"{label}/done")
    return label


@job
async def stubborn(seconds, label):
    """Ignore cancellation: go on sleeping when cancelled, until ``seconds`` have passed."""
    _run(label, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(deadline - time.monotonic())
        except asyncio.CancelledError:
            _run(label, "ignored")
    _run(label, "finish")
    return label


@job
async def async_fail(message):
    await asyncio.sleep(0.05)
    raise ValueError(message)
