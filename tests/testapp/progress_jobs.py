"""Jobs that report their progress (tests/test_progress.py). Each writes what it saw to the
ledger folder (outside Redis) where a test needs to know it."""

import asyncio
import time

from django_jobs import JobQueue, current_job, job
from tests.testapp.jobs import _ledger


@job(takes_context=True)
def count(context, total, pause=0.0):
    """Report each step of ``total``, ``pause`` seconds apart."""
    for step in range(1, total + 1):
        context.progress(step, total, f"step {step} of {total}")
        if pause:
            time.sleep(pause)
    return total


@job
def count_without_context(total):
    """The same through current_job(): a plain job reaches its context too."""
    for step in range(1, total + 1):
        current_job().progress(step, total)
    return current_job().id


@job(takes_context=True)
def report_then_wait(context, label, reports=2, seconds=20.0):
    """Report ``reports`` values at once (``1..reports`` of ``10``), then wait until the
    test writes ``<label>.go`` (or ``seconds`` pass): the last value must reach the record
    while the job still runs."""
    for step in range(1, reports + 1):
        context.progress(step, 10, f"{label} {step}")
    _ledger(f"{label}.reported").touch()
    deadline = time.monotonic() + seconds
    while not _ledger(f"{label}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return label


@job(takes_context=True)
def read_back(context):
    """Report, then read its own record: in the immediate mode each report is written at once."""
    context.progress(1, 2, "half")
    return JobQueue().get_job(context.id).progress.to_dict()


@job
async def async_count(label, steps=20, pause=0.05):
    """An async job beside others: each step checks that current_job() is its own, and reports
    it; its ledger line says whether it always was."""
    me = current_job().id
    own = True
    for step in range(1, steps + 1):
        own = own and current_job().id == me
        current_job().progress(step, steps, label)
        await asyncio.sleep(pause)
    with _ledger("async_count.log").open("a") as log:
        log.write(f"{label} {me} {own}\n")
    return label
