#!/usr/bin/env python3
"""Where a job's bytes go in Redis: MEMORY USAGE per kind of key, queued and completed.

No timing, so a busy machine changes nothing (the records' sizes are the same every run; a
sorted set's varies by a byte a job: its skiplist levels are random). A private
``redis-server`` on ``--port`` is filled with ``--jobs`` plain jobs (``benchapp.jobs.noop(i)``),
measured, drained by ``manage.py runworker --burst`` and measured again, once per ``--prefix``
(default: the bench's ``{bench}`` and the default ``{django_jobs}``)::

    .venvs/dev/bin/python bench/memory.py                 # ~20 s
    .venvs/dev/bin/python bench/memory.py --jobs 5000 --port 7381

It prints, for each prefix and state, the median and largest ``MEMORY USAGE`` of each kind of
key (job records, result keys, then the shared keys divided by the number of jobs; for a
listpack hash also its listpack's bytes, against jemalloc's size classes), and the
keyspace's bytes per job (see ``keyspace``: also what MEMORY USAGE does not see, such as the
TTL table's entries). Run on demand, never from the tests; needs redis-server.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import redis  # noqa: E402
from harness.redis_server import PrivateRedis  # noqa: E402

PLAIN = "benchapp.jobs.noop"


def fill(url: str, prefix: str, jobs: int) -> None:
    """Enqueue ``jobs`` plain jobs with this checkout's code (run in a child process, so that
    each prefix gets its own settings)."""
    os.environ.update(BENCH_REDIS_URL=url, BENCH_PREFIX=prefix)
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsettings"
    import django

    django.setup()
    from django_jobs import JobQueue

    queue = JobQueue()
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        queue.enqueue_many([queue.build_job(PLAIN, [start + i]) for i in range(n)])


def kind(prefix: str, key: str) -> str:
    """A key's kind: its name after the prefix, without the job id or the minute."""
    rest = key[len(prefix) + 1 :]
    head = rest.split(":", 1)[0]
    return f"{head}:<id>" if head in ("job", "result", "done") else rest.split(":")[0]


def listpack_entry(value: bytes) -> int:
    """The bytes one value takes in a listpack (Redis's listpack.c): an integer written as text
    is stored as an integer, 1 to 9 bytes, a string as 1 to 5 bytes of length and itself; then
    the entry's length again (its "backlen", 1 byte up to 127)."""
    text = value.decode(errors="replace")
    if re.fullmatch(r"-?(0|[1-9][0-9]{0,18})", text) and -(2**63) <= int(text) < 2**63:
        number = int(text)
        size = (
            next(
                size
                for size, low, high in (
                    (1, 0, 127),
                    (2, -4096, 4095),
                    (3, -(2**15), 2**15 - 1),
                    (4, -(2**23), 2**23 - 1),
                    (5, -(2**31), 2**31 - 1),
                )
                if low <= number <= high
            )
            if -(2**31) <= number < 2**31
            else 9
        )
    else:
        size = len(value) + (1 if len(value) < 64 else 2 if len(value) < 4096 else 5)
    return size + (1 if size <= 127 else 2 if size < 16383 else 3)


def listpack_bytes(client: redis.Redis, key: str) -> int:
    """The size of a listpack hash's listpack: 6 bytes of header, its entries, 1 at the end."""
    return 7 + sum(listpack_entry(item) for pair in client.hgetall(key).items() for item in pair)


def measure(server: PrivateRedis, prefix: str, jobs: int) -> list[str]:
    """One line per kind of key: how many, median and largest MEMORY USAGE, their total per
    job, and their encodings."""
    client = server.client()
    sizes: dict[str, list[int]] = defaultdict(list)
    encodings: dict[str, set[str]] = defaultdict(set)
    packed: dict[str, list[int]] = defaultdict(list)
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        name = kind(prefix, key)
        sizes[name].append(int(client.memory_usage(key, samples=0)))
        encoding = client.object("encoding", key).decode()
        encodings[name].add(encoding)
        if encoding == "listpack" and client.type(key) == b"hash":
            packed[name].append(listpack_bytes(client, key))
    lines = [f"  {'key':<16}{'count':>7}{'median':>8}{'max':>8}{'B/job':>8}  encoding"]
    for name in sorted(sizes, key=lambda n: -sum(sizes[n])):
        found = sizes[name]
        lines.append(
            f"  {name:<16}{len(found):>7}{statistics.median(found):>8.0f}{max(found):>8}"
            f"{sum(found) / jobs:>8.1f}  {','.join(sorted(encodings[name]))}"
            + (f" of {max(packed[name])} B at most" if packed[name] else "")
        )
    return lines


def keyspace(server: PrivateRedis) -> int:
    """The bytes of the keys: ``MEMORY STATS``' dataset (used_memory less the server's own
    overhead: clients, scripts) and the keyspace's hash tables of keys and of TTLs (the table
    entries are in each key's MEMORY USAGE, the tables' slots are not)."""
    stats = server.client().memory_stats()
    tables = stats.get("db.0", {})
    return int(stats["dataset.bytes"]) + sum(
        int(tables.get(f"overhead.hashtable.{name}", 0)) for name in ("main", "expires")
    )


def run(server: PrivateRedis, prefix: str, jobs: int) -> list[str]:
    """Fill, measure, drain and measure again; the lines to print."""
    server.flush()  # a private server: this one only (the functions stay loaded)
    env = {**os.environ, "BENCH_REDIS_URL": server.url, "BENCH_PREFIX": prefix}
    empty = keyspace(server)
    subprocess.run(
        [sys.executable, __file__, "fill", server.url, prefix, str(jobs)], env=env, check=True
    )
    queued = keyspace(server)
    lines = [f"PREFIX {prefix!r}, {jobs} jobs queued: keyspace {(queued - empty) / jobs:.1f} B/job"]
    lines += measure(server, prefix, jobs)
    subprocess.run(
        [sys.executable, str(BENCH / "manage.py"), "runworker", "--burst"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = keyspace(server)
    lines.append(
        f"PREFIX {prefix!r}, {jobs} jobs completed: keyspace {(done - empty) / jobs:.1f} B/job"
    )
    return lines + measure(server, prefix, jobs)


def main() -> None:
    if sys.argv[1:2] == ["fill"]:
        fill(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--port", type=int, default=7380)
    parser.add_argument("--prefix", action="append", help="default: {bench} and {django_jobs}")
    options = parser.parse_args()
    with PrivateRedis(port=options.port) as server:
        config = server.client().config_get("hash-max-listpack-*")
        print(f"redis-server {server.info('server')['redis_version']}, {config}")
        prefixes = options.prefix or ["{bench}", "{django_jobs}"]
        # Once first, not measured: the functions loaded then are part of the dataset's bytes.
        run(server, prefixes[0], 1)
        for prefix in prefixes:
            print("\n".join(run(server, prefix, options.jobs)))


if __name__ == "__main__":
    main()
