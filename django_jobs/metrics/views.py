"""The metrics view: ``path("metrics/", django_jobs.metrics.views.metrics)`` in the project's urls.

Who may read it: a request with ``Authorization: Bearer <DJANGO_JOBS["METRICS_TOKEN"]>`` (for
Prometheus), or a logged-in user with the ``django_jobs.view_job`` permission. Anyone else gets
403 Forbidden.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.metrics import prometheus_client
from django_jobs.metrics.collector import JobsCollector
from django_jobs.store.errors import trouble


def allowed(request: HttpRequest) -> bool:
    """Whether ``request`` may read the metrics: the bearer token, or the permission."""
    token = jobs_settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token is not None and scheme.lower() == "bearer":
        return hmac.compare_digest(given.strip().encode(), token.encode())
    user = getattr(request, "user", None)
    return user is not None and user.has_perm("django_jobs.view_job")


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The gauges and counters of the namespace (see docs/metrics.md), in Prometheus' text
    format (or OpenMetrics when the scraper asks for it). Two Redis round trips."""
    prometheus_client()  # ImproperlyConfigured, naming the extra, without it
    from prometheus_client import CollectorRegistry, exposition

    if not allowed(request):
        return HttpResponseForbidden(
            "Metrics need a bearer token or the django_jobs.view_job permission."
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector())
    accept = request.headers.get("Accept", "")
    encoder, content_type = exposition.choose_encoder(accept)
    try:
        body = encoder(registry)
    except StoreError as exc:
        # 503, not a half-filled page: the scrape fails (up == 0) and the alert on it fires.
        return HttpResponse(trouble(exc), status=503, content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
