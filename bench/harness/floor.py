"""The machine's floors, measured with plain redis-py and no job library: what one round trip
costs, and what the bare wake-up of a blocked process costs, paced like the latency workload.
Every library's numbers sit above these; a target below a floor cannot be met on the machine."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import redis

from harness.stats import percentile

# A process blocked in BLPOP: each item pushed to "bench:wake" wakes it, and it pushes back
# when it woke (its own clock, as the latency workload's job returns when it started).
WAKER = """
import sys, time, redis
client = redis.Redis.from_url(sys.argv[1])
while client.blpop("bench:wake")[1] != b"stop":
    client.rpush("bench:woke", repr(time.time()))
"""


def incr_rate(url: str, n: int) -> float:
    """Single INCRs per second from one new redis-py client."""
    with redis.Redis.from_url(url) as client:
        client.ping()
        start = time.perf_counter()
        for _ in range(n):
            client.incr("bench:floor")
        rate = n / (time.perf_counter() - start)
        client.delete("bench:floor")
    return rate


def paced(n: int, rep: int) -> Iterator[int]:
    """``n`` steps 10-30 ms apart (the same pauses for the same repetition): the latency
    workload's pace, at which a worker is idle, blocked, when each job comes."""
    pause = random.Random(rep)
    for i in range(n):
        time.sleep(pause.uniform(0.01, 0.03))
        yield i


def wakeups(url: str, n: int, rep: int) -> tuple[list[float], list[float]]:
    """``n`` wake-ups of a blocked redis-py process: (send -> it woke, send -> its answer
    read), in seconds."""
    waker = subprocess.Popen([sys.executable, "-c", WAKER, url])
    starts, dones = [], []
    try:
        with redis.Redis.from_url(url) as client:
            client.rpush("bench:wake", "first")  # it is up once it answers
            client.blpop("bench:woke", timeout=60)
            for _ in paced(n, rep):
                sent = time.time()
                client.rpush("bench:wake", "go")
                _, woke = client.blpop("bench:woke")
                dones.append(time.time() - sent)
                starts.append(float(woke) - sent)
            client.rpush("bench:wake", "stop")
            waker.wait(timeout=30)
            client.delete("bench:wake", "bench:woke")
    finally:
        waker.kill()
    return starts, dones


def floor(server_url: str, reps: int, commands: int, latency_jobs: int) -> dict[str, Any]:
    """Per repetition: single INCRs per second from one redis-py client (the cost of one round
    trip from Python), and the wake-up latencies of a blocked process, p50 and p99 in ms."""
    out: dict[str, Any] = {"commands": commands, "per_second": [], "wakeup_jobs": latency_jobs}
    for key in ("wakeup_start_p50_ms", "wakeup_start_p99_ms", "wakeup_done_p50_ms"):
        out[key] = []
    for rep in range(reps):
        out["per_second"].append(incr_rate(server_url, commands))
        starts, dones = wakeups(server_url, latency_jobs, rep)
        out["wakeup_start_p50_ms"].append(percentile(starts, 50) * 1000)
        out["wakeup_start_p99_ms"].append(percentile(starts, 99) * 1000)
        out["wakeup_done_p50_ms"].append(percentile(dones, 50) * 1000)
    return out
