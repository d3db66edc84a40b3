"""The Redis key layout. Every key starts with the prefix, whose ``{...}`` is the hash tag."""

from __future__ import annotations

import functools

from django_jobs.conf import jobs_settings
from django_jobs.job import PRIORITIES_HIGH_FIRST, JobPriority
from django_jobs.store import shards


class Keys:
    """Names of the keys of one namespace.

    The Lua scripts build job, result and list keys from the prefix themselves (all in the same
    hash slot), with the same patterns as here: ``<prefix>:job:<id>``,
    ``<prefix>:queue:<queue>:<priority>``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.scheduled = f"{prefix}:scheduled"  # delayed PENDING jobs, score = due time
        self.retrying = f"{prefix}:retrying"  # RETRYING jobs, score = due time
        self.processing = f"{prefix}:processing"  # RUNNING jobs, score = lease deadline
        self.dead = f"{prefix}:dead"  # FAILED jobs, score = failed at
        self.completed = f"{prefix}:completed"  # COMPLETED jobs, score = finished at
        self.cancelled = f"{prefix}:cancelled"  # CANCELLED jobs, score = finished at
        # The finished time up to which recovery took expired results out of their records.
        self.results_swept = f"{prefix}:results_swept"
        # WAITING jobs: steps of a chain or group waiting for others, score = created at
        # (``<prefix>:waiting:...`` are flow control's lists of jobs a limit holds back).
        self.waiting_jobs = f"{prefix}:waiting_jobs"
        self.wakeup = f"{prefix}:wakeup"  # idle workers block on this list
        self.counters = f"{prefix}:counters"  # hash of event counters (stale acks, ...)
        # Hash of job events by queue and name, field "<event>|<queue>|<name>" (see count_event
        # in lua/_lib.lua, which builds this name from the prefix itself).
        self.events = f"{prefix}:events"
        # Bumped when a periodic task changes, so that running schedulers load the tasks again.
        self.schedules_version = f"{prefix}:schedules:version"
        self.schedulers = f"{prefix}:schedulers"  # running schedulers, score = last seen
        # runworker supervisors seen lately, score = last heartbeat (see worker(): the record).
        self.workers = f"{prefix}:workers"
        # Flow control (lua/_flow.lua, which builds these names from the prefix itself): the
        # waiting lists of parked jobs, member "<priority>|<queue>|<limit id>" -> when to look
        # again (see waiting()); the limits used lately, limit id -> last used.
        self.parked = f"{prefix}:parked"
        self.limits = f"{prefix}:limits"

    @property
    def state_sets(self) -> dict[str, str]:
        """The seven sorted sets that hold jobs by state, by the names scripts give them in their
        ``-- KEYS:`` headers (stats, purge and delete read or clean them all)."""
        return {
            "scheduled": self.scheduled,
            "retrying": self.retrying,
            "processing": self.processing,
            "dead": self.dead,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "waiting": self.waiting_jobs,
        }

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    def done(self, job_id: str) -> str:
        """A list pushed to when a watched job reaches a final state."""
        return f"{self.prefix}:done:{job_id}"

    def unreadable(self, job_id: str) -> str:
        """Where a job key of the wrong Redis type is moved when its job is buried."""
        return f"{self.prefix}:unreadable:{job_id}"

    def group(self, group_id: str) -> str:
        """A group of a workflow (a hash: total, done, members, ...; see lua/_workflow.lua)."""
        return f"{self.prefix}:group:{group_id}"

    def group_results(self, group_id: str) -> str:
        """A group's results so far (a hash: member index -> result JSON)."""
        return f"{self.prefix}:group:{group_id}:results"

    def worker(self, worker_id: str) -> str:
        """A runworker supervisor's heartbeat record (a hash); it expires unless refreshed."""
        return f"{self.prefix}:worker:{worker_id}"

    def minute(self, start: int) -> str:
        """A hash of the attempts that completed, failed and went dead in the minute that starts
        at ``start`` (epoch seconds, a multiple of 60); it expires after a little over an hour."""
        return f"{self.prefix}:minute:{start}"

    def waiting(self, member: str) -> str:
        """The list of the jobs parked on one limit, of one queue and priority (``member`` of
        :attr:`parked`)."""
        return f"{self.prefix}:waiting:{member}"

    def queue(self, queue: str, priority: JobPriority) -> str:
        return f"{self.prefix}:queue:{queue}:{priority.value}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"

    def tick(self, task: str, due: float) -> str:
        """Set (with a TTL) once the run of periodic task ``task`` due at ``due`` (epoch
        seconds) was enqueued; holds that job's id."""
        return f"{self.prefix}:tick:{task}:{int(due)}"

    def task_runs(self, task: str) -> str:
        """A zset of the jobs enqueued for the runs of periodic task ``task`` (id -> due time),
        the newest ones only; it expires with the job records (``JOB_TTL``)."""
        return f"{self.prefix}:task_runs:{task}"

    def queues_high_first(self, queues: list[str]) -> list[str]:
        """The lists a worker serving ``queues`` pops from, in strict priority order.

        Every CRITICAL list of the served queues comes before any HIGH list, and so on; within a
        priority the queues keep the order they were given in.
        """
        return [self.queue(q, p) for p in PRIORITIES_HIGH_FIRST for q in queues]


@functools.lru_cache(maxsize=64)
def keys_for(prefix: str) -> Keys:
    """The (cached) :class:`Keys` of ``prefix``."""
    return Keys(prefix)


class Namespace:
    """Something that works on the keys of one prefix: ``DJANGO_JOBS['PREFIX']``, read at each
    use so that ``override_settings`` applies, unless a ``prefix`` is given."""

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix or jobs_settings.PREFIX

    @property
    def keys(self) -> Keys:
        """The keys of the default shard: all of them without ``SHARDS``, and always the
        workers', the schedulers' and the schedules' version (see :mod:`.shards`)."""
        return keys_for(self.prefix)

    def shard_keys(self, shard: str) -> Keys:
        """The keys of ``shard`` (``""``: the default shard)."""
        return keys_for(shards.shard_prefix(self.prefix, shard))

    def queue_keys(self, queue: str) -> Keys:
        """The keys of the shard that holds ``queue``'s jobs."""
        return self.shard_keys(shards.of_queue(queue))

    def all_keys(self) -> list[Keys]:
        """The keys of every shard, the default shard's first."""
        return [self.shard_keys(shard) for shard in shards.names()]
