"""What transactional enqueue costs: ``.delay()`` outside ``transaction.atomic()``, and what it
adds to a transaction that saves a row (there the job goes through the outbox table), side by
side in one run.

    python3 bench/outbox.py                       # SQLite (a file), and PostgreSQL if it answers
    python3 bench/outbox.py --jobs 5000 --postgres postgresql://postgres@127.0.0.1:5432/test

Run it with a Python that has django-jobs installed (``pip install -e .``); PostgreSQL needs
``psycopg``. It starts a private redis-server (``harness/redis_server.py``) and creates a
throw-away SQLite file or PostgreSQL database of its own. Each line is the median of 3 runs of
``--jobs`` calls, one per transaction: ``.delay()`` alone (no transaction), a transaction that
inserts one row, and the same transaction with a ``.delay()`` in it. "extra" is what the
``.delay()`` adds to the transaction, and "ratio" compares it with ``.delay()`` alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]


def database(kind: str, folder: str, postgres: str) -> dict[str, object]:
    if kind == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(Path(folder) / "b.sqlite3")}
    url = urlparse(postgres)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/") or "postgres",
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "",
        "PORT": str(url.port or ""),
        "TEST": {"NAME": "django_jobs_bench_outbox"},
    }


def configure(redis_url: str, db: dict[str, object]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=["django_jobs", "benchapp"],
        DATABASES={"default": db},
        DJANGO_JOBS={"REDIS_URL": redis_url, "PREFIX": "{bench-outbox}", "QUEUES": ["default"]},
        LOGGING_CONFIG=None,
    )
    django.setup()


def timed(calls: int, call: Callable[[int], object]) -> float:
    """Microseconds per call."""
    started = time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.perf_counter() - started) / calls * 1e6


def measure(calls: int) -> dict[str, float]:
    from benchapp.jobs import noop
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_row (n integer)")

    def save(i: int) -> None:  # the caller's own data
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_row (n) VALUES (%s)", [i])

    def outside(i: int) -> None:
        noop.delay(i)

    def row(i: int) -> None:
        with transaction.atomic():
            save(i)

    def row_and_job(i: int) -> None:
        with transaction.atomic():
            save(i)
            noop.delay(i)

    cases = {"outside": outside, "row": row, "row_and_job": row_and_job}
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for name, call in cases.items():
            runs[name].append(timed(calls, call))
    return {name: statistics.median(values) for name, values in runs.items()}


def run_one(kind: str, calls: int, postgres: str) -> None:
    """Measure on one database, in a process of its own (Django is configured once)."""
    from harness.redis_server import PrivateRedis

    with PrivateRedis() as server, tempfile.TemporaryDirectory() as folder:
        configure(server.url, database(kind, folder, postgres))
        from django.test.utils import setup_databases, teardown_databases

        names = setup_databases(verbosity=0, interactive=False)
        try:
            result = measure(calls)
        finally:
            teardown_databases(names, verbosity=0)
    extra = result["row_and_job"] - result["row"]
    print(
        f"{kind:<12}{result['outside']:>14.0f}{result['row']:>10.0f}{result['row_and_job']:>16.0f}"
        f"{extra:>12.0f}{extra / result['outside']:>8.1f}x",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="calls per run (default 2000)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server to create the bench database on ('' to skip)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.database:
        run_one(args.database, args.jobs, args.postgres)
        return
    kinds = ["sqlite"]
    if args.postgres:
        try:
            import psycopg  # noqa: F401

            kinds.append("postgresql")
        except ImportError:
            print("psycopg is not installed: PostgreSQL skipped (pip install 'psycopg[binary]')")
    print(f"{args.jobs} calls per run, median of 3; microseconds per call")
    print(
        f"{'database':<12}{'.delay() alone':>14}{'a row':>10}{'row + .delay()':>16}"
        f"{'extra':>12}{'ratio':>8}"
    )
    for kind in kinds:
        command = [sys.executable, __file__, "--database", kind, "--jobs", str(args.jobs)]
        subprocess.run([*command, "--postgres", args.postgres], check=True)


if __name__ == "__main__":
    main()
