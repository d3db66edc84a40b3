from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connected in every process that loads the app, workers included, as a project would
        # connect its receivers; they record only when a test asks (tests/test_signals.py).
        from tests.testapp import receivers  # noqa: F401
