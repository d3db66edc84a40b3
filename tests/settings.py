import importlib.util
import json
import os
import tempfile

SECRET_KEY = "tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "tests.testapp",
]
# The test database is a file, not ":memory:", so that scheduler processes started by a test can
# share it: JOBS_TEST_DB names it for them (see tests/test_runscheduler.py). Writers queue
# behind each other (IMMEDIATE transactions, a long busy timeout) instead of failing.
_TEST_DB = os.environ.get("JOBS_TEST_DB") or os.path.join(
    tempfile.gettempdir(), f"django-jobs-tests-{os.getpid()}.sqlite3"
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("JOBS_TEST_DB", ":memory:"),
        "TEST": {"NAME": _TEST_DB},
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        # JSON: "null" keeps connections open (tests/test_worker_database.py).
        "CONN_MAX_AGE": json.loads(os.environ.get("JOBS_TEST_CONN_MAX_AGE", "0")),
    }
}
# JOBS_TEST_POSTGRES=1 runs the suite on PostgreSQL instead (CI does it on one matrix entry;
# psycopg must be installed). The server is PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres);
# each test run creates a database of its own (its pid in the name), so that runs side by side
# do not share one; processes started by a test get its name in JOBS_TEST_DB. A test that gives
# its processes a SQLite file of their own (a path in JOBS_TEST_DB) keeps SQLite for them.
if os.environ.get("JOBS_TEST_POSTGRES") and "/" not in os.environ.get("JOBS_TEST_DB", ""):
    _pg_name = f"django_jobs_{os.getpid()}"
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("JOBS_TEST_DB", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "TEST": {"NAME": os.environ.get("JOBS_TEST_DB", f"test_{_pg_name}")},
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
# The live server of the browser tests serves the admin's and the console's static files.
STATIC_URL = "/static/"
# Fast password hashing for the admin tests' users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DJANGO_JOBS = {
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "PREFIX": os.environ.get("JOBS_TEST_PREFIX", "{django_jobs_tests}"),
    "QUEUES": ["default", "emails", "reports"],
    # Worker processes started by the tests get the test's time-compressed settings here.
    **json.loads(os.environ.get("JOBS_TEST_SETTINGS", "{}")),
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# Django's task API on django-jobs (django.tasks on Django 6, the django-tasks backport on 5.2),
# for tests/test_tasks_backend.py; tests/testapp/tasks.py defines the tasks.
if importlib.util.find_spec("django.tasks") is None and importlib.util.find_spec("django_tasks"):
    INSTALLED_APPS.append("django_tasks")
TASKS = {
    "default": {
        "BACKEND": "django_jobs.backends.RedisBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {
            "TASKS": {
                "tests.testapp.tasks.flaky": {
                    "MAX_RETRIES": 2,
                    "RETRY_BACKOFF_BASE": 0.3,
                    "RETRY_BACKOFF_MAX": 1.0,
                },
                "tests.testapp.tasks.boom": {"MAX_RETRIES": 1},
            },
        },
    },
    # Without QUEUES: every queue of DJANGO_JOBS["QUEUES"]; no retries.
    "once": {"BACKEND": "django_jobs.backends.RedisBackend", "OPTIONS": {"MAX_RETRIES": 0}},
}
