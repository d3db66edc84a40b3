#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# The repository root, so that this checkout's django_jobs is importable even when it is not
# installed (``python example_project/manage.py ...`` from the root, or ``python manage.py``).
REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def main():
    """Run administrative tasks."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(1, REPO_ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Are you sure it's installed and "
            "available on your PYTHONPATH environment variable? Did you "
            "forget to activate a virtual environment?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
