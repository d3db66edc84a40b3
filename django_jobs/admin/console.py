"""The operations console: the "Jobs" entry of the admin.

The jobs live in Redis, not in a table, so :class:`JobAdmin` replaces the model admin's pages
with its own: the dashboard (:func:`~django_jobs.admin.pages.dashboard`), the list of the jobs
in each state, one job's page, and the actions (:mod:`django_jobs.admin.actions`), each a POST
with a confirmation page. The unmanaged :class:`django_jobs.models.Job` model gives it its place
in the admin index and sidebar and its permissions: ``view_job`` to look, ``change_job`` to act.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from django_jobs.admin import actions, pages
from django_jobs.admin.display import breadcrumbs_context
from django_jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """The console's pages, under the admin's URL of the ``Job`` model."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are enqueued by code (or `manage.py jobs enqueue`), not typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting is an action with its own confirmation (see actions.py)

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"

        def view(page: Callable[..., HttpResponse], need: str) -> Callable[..., HttpResponse]:
            def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                allowed = (
                    self.has_change_permission(request)
                    if need == "change"
                    else self.has_view_or_change_permission(request)
                )
                if not allowed:
                    raise PermissionDenied
                return page(self, request, *args, **kwargs)

            return self.admin_site.admin_view(checked)

        return [
            path("", view(pages.dashboard, "view"), name=f"{prefix}_changelist"),
            path("state/<str:state>/", view(pages.job_list, "view"), name=f"{prefix}_list"),
            path("act/", view(actions.act, "change"), name=f"{prefix}_act"),
            # A job id is printable ASCII and may hold a slash: the path converter takes it all.
            path("<path:job_id>/", view(pages.job_page, "view"), name=f"{prefix}_change"),
        ]

    def context(
        self, request: HttpRequest, title: str, crumbs: list[tuple[str, str]], **extra: Any
    ) -> dict[str, Any]:
        """What every console page gives its template: the admin's own context (the sidebar,
        the user links, dark mode), the breadcrumbs after the app's (label, link; the last
        one without a link), and whether this user may act."""
        return {
            **breadcrumbs_context(self.admin_site.each_context(request), self.opts, crumbs),
            "title": title,
            "can_change": self.has_change_permission(request),
            **extra,
        }
