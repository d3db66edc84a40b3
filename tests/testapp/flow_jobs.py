"""Jobs with flow control that real worker processes run (tests/test_flow_workers.py).

Each writes when it ran to the ledger folder (outside Redis), with ``time.time()`` (one clock
for every process of the machine): ``starts.log`` gets ``<label> <start>`` per run of
``metered``, ``spans.log`` ``<label> <start> <end>`` per finished run of the others, and
``<label>.runs`` a line ``start`` as each run of ``exclusive`` starts.
"""

import time

from django_jobs import job
from tests.testapp.jobs import _ledger


def _span(label: str, started: float) -> None:
    with _ledger("spans.log").open("a") as spans:
        spans.write(f"{label} {started} {time.time()}\n")


@job(rate_limit="20/s")
def metered(label: str) -> None:
    """Rate-limited to 20 starts a second across all workers; writes when it started."""
    started = time.time()
    with _ledger("starts.log").open("a") as starts:
        starts.write(f"{label} {started}\n")


@job(concurrency=2, concurrency_key="pair:{group}")
def paired(group: str, label: str, seconds: float) -> None:
    """At most two of a ``group`` at once, across all workers."""
    started = time.time()
    time.sleep(seconds)
    _span(f"{group}/{label}", started)


@job(unique=True, concurrency=1, concurrency_key="slot:{slot}")
def exclusive(slot: str, label: str, seconds: float) -> str:
    """Unique until it finishes, and one of a ``slot`` at once."""
    started = time.time()
    with _ledger(f"{label}.runs").open("a") as runs:
        runs.write("start\n")
    time.sleep(seconds)
    _span(label, started)
    return label


@job(unique=True)
def singleton(n: int) -> int:
    """Unique until it finishes (the key: its name and arguments)."""
    return n
