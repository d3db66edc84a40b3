"""Settings of the django-jobs example site. For local development only."""

import os
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-example-only-do-not-use-in-production"
)
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_jobs",
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        # Each view runs in a transaction: its .delay() calls go through the outbox, so a job
        # exists if and only if the view's data is committed (README, "Transactional enqueue").
        "ATOMIC_REQUESTS": True,
        # The web server, the worker (which sweeps the outbox) and the scheduler share this file:
        # readers do not block the writer (WAL), and writers wait for each other instead of
        # failing with "database is locked".
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# Mail "sent" by the jobs is printed by the worker process (in example_project/run's output).
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "welcome@example.com"

DJANGO_JOBS = {
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    # Each project needs a prefix of its own; the braces are a Redis Cluster hash tag.
    "PREFIX": os.environ.get("DJANGO_JOBS_PREFIX", "{example}"),
    "QUEUES": ["default", "emails"],
    # Demo values, small so that you can watch retries and cancellation happen; a real project
    # keeps the defaults (60, 60 and 3600 seconds). A worker renews its leases, and notices that
    # a running job was cancelled, every LEASE_TIMEOUT / 3 seconds (here 5). The n-th retry
    # waits min(RETRY_BACKOFF_BASE * 2**n, RETRY_BACKOFF_MAX) seconds (here 4, 8, 10, 10, ...).
    "LEASE_TIMEOUT": 15,
    "RETRY_BACKOFF_BASE": 2,
    "RETRY_BACKOFF_MAX": 10,
    # Periodic tasks, written into the ScheduledTask table when `manage.py runscheduler` starts.
    # Switch them off or change them in the admin (Jobs > Scheduled tasks): the admin's changes
    # stay when the scheduler restarts.
    "SCHEDULES": {
        "heartbeat": {
            "job": "example.jobs.heartbeat",
            "interval": 30,
            "description": "Every 30 seconds: shows the scheduler is alive.",
        },
        "nightly-digest": {
            "job": "example.jobs.send_digest",
            "cron": "0 7 * * MON-FRI",
            "timezone": "Europe/Berlin",
            "args": ["team@example.com"],
            "description": "Weekdays at 7:00 Berlin time, through DST changes.",
        },
        "launch-announcement": {
            "job": "example.jobs.send_digest",
            "run_at": datetime(2027, 1, 1, 9, 0, tzinfo=UTC),
            "args": ["everyone@example.com"],
            "priority": "high",
            "description": "Once, on New Year's morning 2027.",
        },
    },
}
