"""The worker's own metrics: histograms of run time and wait time by job name and queue,
observed in the process that runs the job, and served by ``runworker --metrics-port P``.

A worker runs jobs in several child processes; their observations are added up through
``prometheus_client``'s multiprocess mode. :func:`serving` (around the worker's run, before any
child starts) points ``PROMETHEUS_MULTIPROC_DIR`` at a private temporary folder, where each
process writes its values to files of its own, and serves what ``MultiProcessCollector`` reads
from them. Replaced children's files stay, so nothing observed is lost; the folder is removed
when the worker exits. :func:`observe` records only while that variable is set: a worker
without ``--metrics-port`` (and with no such folder of its own) pays one dictionary look-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_jobs.job import Job
from django_jobs.metrics import prometheus_client

logger = logging.getLogger("django_jobs.worker")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: jobs take from milliseconds to an hour, and wait from a millisecond to hours.
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
)

_histograms: tuple[Any, Any] | None = None


@contextlib.contextmanager
def serving(port: int, addr: str = "0.0.0.0") -> Iterator[None]:
    """Serve the metrics of this process and of every process it starts on ``port`` while the
    block runs; the processes must be started inside it."""
    prometheus_client()  # ImproperlyConfigured, naming the extra, without it
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server, values

    folder = tempfile.mkdtemp(prefix="django-jobs-metrics-")
    previous = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = folder
    # prometheus_client picks its kind of values when it is first imported: again now, in case
    # it was imported before the variable was set (by the project, or by the check above).
    values.ValueClass = values.get_value_class()
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=folder)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except BaseException:
        _restore(previous, folder)
        raise
    logger.info(
        "metrics of this worker's processes on http://%s:%d/metrics (values in %s)",
        addr,
        port,
        folder,
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        _restore(previous, folder)


def _restore(previous: str | None, folder: str) -> None:
    if previous is None:
        os.environ.pop(MULTIPROC_DIR, None)
    else:
        os.environ[MULTIPROC_DIR] = previous
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    shutil.rmtree(folder, ignore_errors=True)


def observe(job: Job, run_seconds: float) -> None:
    """Record one attempt of ``job`` that ran ``run_seconds``, and how long it waited before it
    started (from its enqueue, or from when it was due if it was delayed or retried)."""
    if MULTIPROC_DIR not in os.environ:
        return
    histograms = _histograms or _make_histograms()
    if histograms is None:
        return
    run_time, wait_time = histograms
    run_time.labels(job.queue, job.name).observe(run_seconds)
    ready = max(filter(None, (job.created_at, job.scheduled_at)), default=None)
    if ready is not None and job.started_at is not None:
        wait_time.labels(job.queue, job.name).observe(
            max((job.started_at - ready).total_seconds(), 0.0)
        )


def _make_histograms() -> tuple[Any, Any] | None:
    """The histograms, made in the process that observes (each writes files of its own); None
    when ``prometheus_client`` is missing (the variable was set by someone else), said once."""
    global _histograms
    try:
        client = prometheus_client()
    except ImproperlyConfigured as exc:
        logger.warning("%s is set but %s; the worker records no histograms", MULTIPROC_DIR, exc)
        os.environ.pop(MULTIPROC_DIR)
        return None
    labels = ("queue", "name")
    _histograms = (
        client.Histogram(
            "django_jobs_run_seconds",
            "Run time of attempts.",
            labels,
            buckets=BUCKETS,
            registry=None,
        ),
        client.Histogram(
            "django_jobs_wait_seconds",
            "Time from enqueue (or due time) to an attempt's start.",
            labels,
            buckets=BUCKETS,
            registry=None,
        ),
    )
    return _histograms
