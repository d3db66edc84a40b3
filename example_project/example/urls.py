from django.contrib import admin
from django.urls import path

from django_jobs.metrics.views import metrics
from example import views

urlpatterns = [
    path("", views.home, name="home"),
    path("enqueue/always-fails/", views.enqueue_always_fails, name="enqueue_always_fails"),
    path("enqueue/slow/", views.enqueue_slow, name="enqueue_slow"),
    path("enqueue/crunch/", views.enqueue_crunch, name="enqueue_crunch"),
    path("enqueue/partner-calls/", views.enqueue_partner_calls, name="enqueue_partner_calls"),
    path("enqueue/rebuild-report/", views.enqueue_rebuild_report, name="enqueue_rebuild_report"),
    path("enqueue/thumbnails/", views.enqueue_thumbnails, name="enqueue_thumbnails"),
    path("partner-calls/", views.partner_calls, name="partner_calls"),
    path("jobs/<str:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<str:job_id>/cancel/", views.cancel_job, name="cancel_job"),
    path("admin/", admin.site.urls),
    # Prometheus metrics, for logged-in users with django_jobs.view_job (or METRICS_TOKEN).
    path("metrics/", metrics, name="metrics"),
]
