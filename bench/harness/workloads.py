"""The workloads. Each runs one library (or plain redis-py) and returns JSON-ready results;
repetitions are kept as lists (the report takes medians and min-max)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from adapters.base import Adapter, DrainMode

from harness.config import Config
from harness.floor import incr_rate, paced
from harness.monitor import Monitor, snapshot
from harness.redis_server import PrivateRedis
from harness.stats import distribution, percentile
from harness.workers import Workers, worker_env

Log = Callable[[str], None]


class BenchError(Exception):
    """A workload could not finish (a worker died, jobs never finished)."""


@dataclass
class Context:
    server: PrivateRedis
    config: Config
    logs: Path  # worker logs go here
    log: Log

    def fresh(self) -> None:
        """An empty server (ours: the harness never flushes another)."""
        self.server.flush()

    def start(self, adapter: Adapter, mode: DrainMode, label: str) -> Workers:
        env = worker_env(self.server.url, mode.env)
        slug = label.replace(" ", "_").replace("/", "_")
        return Workers(mode.commands, env, self.logs / f"{adapter.name}-{slug}.log")

    def skipped(self, adapter: Adapter, mode: DrainMode) -> bool:
        name = f"{adapter.name}:{mode.name}".lower()
        return any(name.startswith(skip.lower()) for skip in self.config.skip_modes)


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def wait_done(
    ctx: Context,
    adapter: Adapter,
    probe: redis.Redis,
    n: int,
    workers: Workers,
    timeout: float,
    on_poll: Callable[[int], None] | None = None,
) -> float:
    """Poll the adapter's counter until all ``n`` jobs are done; return ``perf_counter()`` then.

    ``on_poll(done)`` is called after each look that finds jobs left.
    """
    deadline = time.perf_counter() + timeout
    while True:
        left = adapter.unfinished(probe, n)
        now = time.perf_counter()
        if left <= 0:
            return now
        failure = workers.failed()
        if failure:
            raise BenchError(failure)
        if workers.exited() and adapter.unfinished(probe, n) > 0:
            raise BenchError(f"the workers exited with {left} of {n} jobs unfinished")
        if now > deadline:
            raise BenchError(f"{left} of {n} jobs unfinished after {timeout:.0f} s")
        if on_poll is not None:
            on_poll(n - left)
        time.sleep(ctx.config.poll_interval)


class CpuMeter:
    """CPU use during a drain, sampled every tenth of a second while jobs are left (often
    enough for two samples in a drain of a second: 10,000 jobs at django-jobs' rate).

    Per job it takes the steady state: between the first sample after 10% of the jobs were
    done and the last one (so neither the start-up nor the exit counts). It also tells how much
    CPU other processes of the machine took meanwhile (``background_cores``): on a shared
    machine that is the first thing to look at when numbers jump.
    """

    EVERY = 0.1

    def __init__(self, workers: Workers, probe: redis.Redis, n: int) -> None:
        self.workers, self.probe, self.n = workers, probe, n
        self.samples: list[tuple[int, dict[str, float]]] = []
        self.next = time.perf_counter() + self.EVERY
        self.start = self._totals()

    def _totals(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        me = psutil.Process().cpu_times()
        return {
            **self.workers.cpu_seconds(),
            "redis": _redis_cpu(self.probe),
            "harness": me.user + me.system,
            "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
            "wall": time.perf_counter(),
        }

    def __call__(self, done: int) -> None:
        if time.perf_counter() >= self.next and done >= self.n * 0.1:
            self.samples.append((done, self._totals()))
            self.next = time.perf_counter() + self.EVERY

    def result(self) -> dict[str, float]:
        nan = float("nan")
        out = {"cpu_main_us": nan, "cpu_children_us": nan, "cpu_redis_us": nan}
        if len(self.samples) >= 2:
            (done0, first), (done1, last) = self.samples[0], self.samples[-1]
            if done1 > done0:
                for key in ("main", "children", "redis"):
                    out[f"cpu_{key}_us"] = (last[key] - first[key]) * 1e6 / (done1 - done0)
        if self.samples:
            _, last = self.samples[-1]
            ours = sum(last[k] - self.start[k] for k in ("main", "children", "redis", "harness"))
            other = last["machine"] - self.start["machine"] - ours
            out["background_cores"] = max(other, 0.0) / (last["wall"] - self.start["wall"])
        else:
            out["background_cores"] = nan
        return out


# INCRs timed before each drain run: the machine's speed at that moment.
FLOOR_CHECK = 2_000


def drain_timeout(n: int) -> float:
    return 120 + n / 20  # no library here is slower than 20 jobs/s


# -- enqueue ----------------------------------------------------------------------------------


def _command_seconds(client: redis.Redis) -> float:
    """Time redis-server spent running commands so far (``INFO commandstats``), the probe's
    own ``INFO`` left out."""
    stats = client.info("commandstats")
    return (
        sum(float(v["usec"]) for name, v in stats.items() if not name.startswith("cmdstat_info"))
        / 1e6
    )


# The CPU per job that the enqueue, bulk and latency workloads keep (CpuSplit.per_job): the
# enqueuing process's, redis-server's, and how long the server's commands ran.
CPU_KEYS = ("cpu_client_us", "cpu_redis_us", "redis_commands_us")


class CpuSplit:
    """Where the CPU of a stretch of calls from this process went, per job: this process (the
    enqueuer's Python, its client library and its system calls) and redis-server (``INFO
    cpu``), and how long the server's commands ran (``INFO commandstats``, scripts included:
    wall-clock time, which counts a script descheduled part-way). With the wall time per job
    and a round trip's cost (the floor), it says why a call is slower than a peer's: on the
    client, in Redis, or in neither (waits)."""

    def __init__(self, probe: redis.Redis) -> None:
        self.probe = probe
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        return time.process_time(), _redis_cpu(self.probe), _command_seconds(self.probe)

    def per_job(self, n: int) -> dict[str, float]:
        spent = ((b - a) * 1e6 / n for a, b in zip(self.start, self._now(), strict=True))
        return dict(zip(CPU_KEYS, spent, strict=True))


def fill(ctx: Context, adapter: Adapter, n: int) -> dict[str, float]:
    """Enqueue ``n`` jobs one by one on an empty server: jobs/s, Redis bytes per queued job,
    the server's ``used_memory`` before (``empty``) and the CPU per job (:class:`CpuSplit`)."""
    ctx.fresh()
    with ctx.server.client() as probe:
        before = _used_memory(probe)
        split = CpuSplit(probe)
        start = time.perf_counter()
        for i in range(n):
            adapter.enqueue(i)
        elapsed = time.perf_counter() - start
        return {
            "per_second": n / elapsed,
            **split.per_job(n),
            "memory_per_job": (_used_memory(probe) - before) / n,
            "empty": before,
        }


# What each repetition of the enqueue workload keeps of a fill.
ENQUEUE_KEYS = ("per_second", *CPU_KEYS, "memory_per_job")


def enqueue(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    """Enqueue repetitions on their own (when the drain workload, whose fills are enqueue
    repetitions too, does not run)."""
    n = ctx.config.drain_jobs
    runs = [fill(ctx, adapter, n) for _ in range(ctx.config.reps)]
    return {"jobs": n, **{key: [r[key] for r in runs] for key in ENQUEUE_KEYS}}


def bulk(ctx: Context, adapter: Any) -> dict[str, Any]:
    """django-jobs' ``enqueue_many``: ``bulk_jobs`` jobs, ``bulk_batch`` per call (a round
    trip each), with the CPU per job of those calls (:class:`CpuSplit`); and the same jobs in
    one call (whose chunks go one behind another)."""
    n, batch = ctx.config.bulk_jobs, ctx.config.bulk_batch
    runs: dict[int, list[dict[str, float]]] = {batch: [], n: []}
    for _ in range(ctx.config.reps):
        for size, out in runs.items():
            ctx.fresh()
            with ctx.server.client() as probe:
                split = CpuSplit(probe)
                start = time.perf_counter()
                for first in range(0, n, size):
                    adapter.enqueue_bulk(first, min(size, n - first))
                out.append({"per_second": n / (time.perf_counter() - start), **split.per_job(n)})
    batches = runs[batch]
    return {
        "jobs": n,
        "batch": batch,
        "per_second": [r["per_second"] for r in batches],
        **{key: [r[key] for r in batches] for key in CPU_KEYS},
        "one_call_per_second": [r["per_second"] for r in runs[n]],
    }


# -- drain ------------------------------------------------------------------------------------


def drain_once(ctx: Context, adapter: Adapter, mode: DrainMode, label: str) -> dict[str, float]:
    """Fill the queue, start the workers, time them until all jobs are done."""
    n = ctx.config.drain_size(mode.processes, mode.share)
    filled = fill(ctx, adapter, n)
    # How fast the machine is just now (it drifts, on a shared or virtual machine).
    floor_rate = incr_rate(ctx.server.url, FLOOR_CHECK)
    with ctx.server.client(adapter.counter_db) as probe:
        start = time.perf_counter()
        workers = ctx.start(adapter, mode, label)
        try:
            meter = CpuMeter(workers, probe, n)
            done = wait_done(ctx, adapter, probe, n, workers, drain_timeout(n), meter)
        finally:
            workers.stop()
        # What the finished jobs leave in Redis (records, results, indexes), per job.
        finished = (_used_memory(probe) - filled["empty"]) / n
        with ctx.server.client() as client:
            record = adapter.finished_record_bytes(client)
    return {
        "per_second": n / (done - start),
        **{f"enqueue_{key}": filled[key] for key in ENQUEUE_KEYS},
        "finished_memory_per_job": finished,
        **({"finished_record_bytes": record} if record is not None else {}),
        "floor_per_second": floor_rate,
        **meter.result(),
    }


def drain(ctx: Context, adapter: Adapter) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every drain mode, repetitions interleaved; returns (drain results, enqueue results:
    each run's fill is one repetition of the enqueue workload)."""
    modes = [
        mode
        for processes in ctx.config.processes
        for mode in adapter.drain_modes(processes)
        if not ctx.skipped(adapter, mode)
    ]
    runs: dict[str, list[dict[str, float]]] = {mode.name: [] for mode in modes}
    for rep in range(ctx.config.reps):
        for mode in modes:
            label = f"drain {mode.name} rep{rep + 1}"
            ctx.log(f"  {adapter.name}: {label}")
            run = drain_once(ctx, adapter, mode, label)
            busy = ctx.config.retry_busy
            if busy and run["background_cores"] > busy:
                ctx.log(
                    f"    {run['per_second']:,.0f} jobs/s, but other processes used "
                    f"{run['background_cores']:.2f} cores meanwhile: once more"
                )
                again = drain_once(ctx, adapter, mode, label)
                run = min(run, again, key=lambda r: r["background_cores"])
            runs[mode.name].append(run)
            ctx.log(
                f"    {run['per_second']:,.0f} jobs/s (other load {run['background_cores']:.2f} "
                "cores)"
            )
    results = [
        {
            "mode": mode.name,
            "processes": mode.processes,
            "jobs": ctx.config.drain_size(mode.processes, mode.share),
            **{key: [r[key] for r in runs[mode.name]] for key in runs[mode.name][0]},
        }
        for mode in modes
    ]
    # Enqueue repetitions: the fills of the drains of the configured size.
    n = ctx.config.drain_jobs
    full = [m.name for m in modes if ctx.config.drain_size(m.processes, m.share) == n]
    fills = [r for name in full for r in runs[name]]
    enqueued = {"jobs": n, **{key: [r[f"enqueue_{key}"] for r in fills] for key in ENQUEUE_KEYS}}
    return {"modes": results}, enqueued


# -- latency ----------------------------------------------------------------------------------


def stamped_job(adapter: Adapter) -> tuple[float, float, float, float]:
    """One job of the latency workload, waited for: when it was sent, the enqueue call
    returned, the job started (its own clock) and the enqueuer had its result (``time.time()``
    seconds)."""
    sent = time.time()
    handle = adapter.submit_stamp()
    returned = time.time()
    started = adapter.wait_stamp(handle, timeout=30)
    return sent, returned, started, time.time()


def latency(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    """An idle worker; jobs one after another, 10-30 ms apart: enqueue -> start (the job's
    own clock) and enqueue -> done (when the enqueuer has the result): p50 and p99 per
    repetition, and the distribution of all the repetitions' jobs together. Also, to tell
    where the time goes: when the enqueue call returned (p50), and the CPU per job of the
    enqueuer (its wait for the result included) and of redis-server."""
    n = ctx.config.latency_jobs
    mode = adapter.idle_worker()
    out: dict[str, Any] = {"mode": mode.name, "jobs": n}
    keys = ("start_p50_ms", "start_p99_ms", "done_p50_ms", "done_p99_ms", "submit_p50_ms")
    for key in (*keys, *CPU_KEYS):
        out[key] = []
    pooled: dict[str, list[float]] = {"start": [], "done": []}
    for rep in range(ctx.config.reps):
        ctx.fresh()
        workers = ctx.start(adapter, mode, f"latency rep{rep + 1}")
        try:
            adapter.wait_stamp(adapter.submit_stamp(), timeout=60)  # the worker is up
            starts, dones, submits = [], [], []
            with ctx.server.client() as probe:
                split = CpuSplit(probe)
                for _ in paced(n, rep):
                    sent, returned, started, done = stamped_job(adapter)
                    submits.append(returned - sent)
                    dones.append(done - sent)
                    starts.append(started - sent)
                cpu = split.per_job(n)
        finally:
            workers.stop()
        for key, values in (("start", starts), ("done", dones)):
            out[f"{key}_p50_ms"].append(percentile(values, 50) * 1000)
            out[f"{key}_p99_ms"].append(percentile(values, 99) * 1000)
            pooled[key] += [v * 1000 for v in values]
        out["submit_p50_ms"].append(percentile(submits, 50) * 1000)
        for key, value in cpu.items():
            out[key].append(value)
    # Every repetition's jobs together, as percentiles (ms): the chart draws their CDF.
    out["distribution_ms"] = {key: distribution(values) for key, values in pooled.items()}
    return out


# -- round trips ------------------------------------------------------------------------------


def roundtrips(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    """Commands and round trips per enqueue and per processed job (one-process worker)."""
    n = ctx.config.roundtrip_jobs
    mode = adapter.drain_modes(1)[0]
    ctx.fresh()
    with ctx.server.client(adapter.counter_db) as probe:
        monitor = Monitor(ctx.server.port, ctx.logs / f"{adapter.name}-monitor.txt", probe)
        try:
            snapshots = [snapshot(probe)]
            for i in range(n):
                adapter.enqueue(i)
            snapshots.append(snapshot(probe))
            workers = ctx.start(adapter, mode, "roundtrips")
            try:
                wait_done(ctx, adapter, probe, n, workers, drain_timeout(n) * 3)
                snapshots.append(snapshot(probe))
            finally:
                workers.stop()
        finally:
            monitor.stop()
        enqueue_phase, drain_phase = monitor.phases(snapshots)
    monitor.path.unlink()  # large; the counts are in the results
    return {
        "jobs": n,
        "mode": mode.name,
        "enqueue": enqueue_phase.per(n),
        "job": drain_phase.per(n),
    }


# -- scale (django-jobs) ----------------------------------------------------------------------


def _window_rate(finished: list[float], n: int) -> float:
    """Jobs/s between the jobs that finished at 10% and 90% of ``n`` (no start-up, no tail)."""
    first, last = int(n * 0.1), int(n * 0.9) - 1
    if len(finished) <= last:
        raise BenchError(f"only {len(finished)} of {n} jobs finished")
    return (last - first) / (finished[last] - finished[first])


def scale(ctx: Context, adapter: Any) -> dict[str, Any]:
    """One-process drain rate with ``backlog_small`` jobs queued, then with ``backlog_large``
    queued (each repetition takes ``backlog_small`` of them), from the jobs' own finish times;
    and Redis memory per queued job with the large backlog."""
    small, large, batch = ctx.config.backlog_small, ctx.config.backlog_large, ctx.config.bulk_batch
    worker = DrainMode("--concurrency 1", 1, (adapter.scale_worker(small),))
    out: dict[str, Any] = {"small": small, "large": large, "window": "10%-90%"}
    with ctx.server.client() as probe:
        rates = []
        for rep in range(ctx.config.scale_reps):
            ctx.fresh()
            adapter.enqueue_bulk(0, small)
            since = time.time()
            rates.append(
                _scale_run(ctx, adapter, worker, probe, since, f"scale small rep{rep + 1}")
            )
        out["small_per_second"] = rates

        ctx.fresh()
        before = _used_memory(probe)
        start = time.perf_counter()
        for first in range(0, large, batch):
            adapter.enqueue_bulk(first, min(batch, large - first))
        out["fill_seconds"] = time.perf_counter() - start
        out["memory_per_job"] = (_used_memory(probe) - before) / large
        rates = []
        for rep in range(ctx.config.scale_reps):
            since = time.time()
            rates.append(
                _scale_run(ctx, adapter, worker, probe, since, f"scale large rep{rep + 1}")
            )
        out["large_per_second"] = rates
    ctx.fresh()  # frees the large backlog's memory
    return out


def _scale_run(
    ctx: Context, adapter: Any, worker: DrainMode, probe: redis.Redis, since: float, label: str
) -> float:
    small = ctx.config.backlog_small
    workers = ctx.start(adapter, worker, label)
    try:
        if not workers.wait(drain_timeout(small)):
            raise BenchError(f"{label}: the worker did not finish")
        failure = workers.failed()
        if failure:
            raise BenchError(failure)
    finally:
        workers.stop()
    rate = _window_rate(adapter.finish_times(probe, since), small)
    ctx.log(f"    {label}: {rate:,.0f} jobs/s")
    return rate
