#!/usr/bin/env python
"""``manage.py`` of the benchmark's Django settings, e.g. ``manage.py runworker --burst``.

Set ``BENCH_REDIS_URL`` to the Redis server to use; the harness does so for the workers it
starts.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
