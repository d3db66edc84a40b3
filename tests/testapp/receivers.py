"""Receivers of django-jobs' signals, for tests/test_signals.py.

With ``JOBS_TEST_SIGNALS`` set in a worker's environment, every signal it sends is written to
the ledger, one JSON line in ``signals.jsonl``, with the process that sent it. With
``JOBS_TEST_SIGNALS=raise`` each receiver raises afterwards, as a broken one would.
"""

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from django_jobs import signals

NAMES = {
    signals.job_started: "job_started",
    signals.job_succeeded: "job_succeeded",
    signals.job_failed: "job_failed",
    signals.job_dead: "job_dead",
    signals.job_cancelled: "job_cancelled",
}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def record(signal, sender, job, **arguments):
    mode = os.environ.get("JOBS_TEST_SIGNALS")
    if not mode:
        return
    entry = {
        "signal": NAMES[signal],
        "sender": getattr(sender, "name", None),
        "job": job.id,
        "attempt": job.attempt,
        "pid": os.getpid(),
        **{name: _plain(value) for name, value in arguments.items()},
    }
    with (Path(os.environ["JOBS_TEST_LEDGER"]) / "signals.jsonl").open("a") as ledger:
        ledger.write(json.dumps(entry) + "\n")
    if mode == "raise":
        raise RuntimeError(f"a broken receiver of {NAMES[signal]}")


for _signal in NAMES:
    _signal.connect(record, dispatch_uid=f"tests.testapp.receivers.{NAMES[_signal]}")
