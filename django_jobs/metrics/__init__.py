"""Prometheus metrics (the ``prometheus`` extra: ``pip install "django-jobs[prometheus]"``).

- :mod:`~django_jobs.metrics.views`: ``metrics``, a view for the project's urls that serves the
  cluster's numbers: gauges from one :meth:`JobQueue.stats` call and the job event counters the
  scripts keep in Redis (:mod:`~django_jobs.metrics.collector`).
- ``runworker --metrics-port P`` (:mod:`django_jobs.worker.metrics`): the worker's own run-time
  and wait-time histograms, its processes' counts added up.

See docs/metrics.md for every metric. This package imports without ``prometheus_client``; using
the view or ``--metrics-port`` without it raises ``ImproperlyConfigured`` naming the extra.
"""

from __future__ import annotations

from types import ModuleType

from django.core.exceptions import ImproperlyConfigured


def prometheus_client() -> ModuleType:
    """The ``prometheus_client`` module, or ``ImproperlyConfigured`` naming the extra."""
    try:
        import prometheus_client
    except ImportError:
        raise ImproperlyConfigured(
            "django-jobs' metrics need prometheus_client: pip install 'django-jobs[prometheus]'."
        ) from None
    return prometheus_client
