"""Django settings of the benchmark's django-jobs worker and enqueuer.

``BENCH_REDIS_URL`` is the harness's private redis-server; nothing else is used.
"""

import os

SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_jobs", "benchapp"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJANGO_JOBS = {
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    "PREFIX": os.environ.get("BENCH_PREFIX", "{bench}"),
    "QUEUES": ["default"],
}
# For a side-by-side comparison of the reply poll (store/spin.py): the default otherwise.
if "BENCH_REPLY_SPIN_MICROSECONDS" in os.environ:
    DJANGO_JOBS["REPLY_SPIN_MICROSECONDS"] = int(os.environ["BENCH_REPLY_SPIN_MICROSECONDS"])
