from django.apps import AppConfig


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_jobs import checks  # noqa: F401  (registers the system checks)
        from django_jobs.registry import registry

        # Like the admin's autodiscover: every app's jobs.py is imported, so the registry is
        # complete in web processes (for .delay() and the admin) and in workers alike.
        registry.autodiscover()
