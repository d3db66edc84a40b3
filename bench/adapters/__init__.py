"""One adapter per library (``lib_*.py``), all implementing :class:`adapters.base.Adapter`."""

from __future__ import annotations

import importlib

from adapters.base import Adapter

# Table order: django-jobs first, then the peers.
MODULES = {
    "django-jobs": "adapters.lib_django_jobs",
    "rq": "adapters.lib_rq",
    "celery": "adapters.lib_celery",
    "huey": "adapters.lib_huey",
    "dramatiq": "adapters.lib_dramatiq",
}


def load(key: str) -> Adapter:
    """Import one adapter module (which sets up its library) and return its adapter."""
    module = importlib.import_module(MODULES[key])
    adapter: Adapter = module.ADAPTER
    return adapter
