-- Store jobs and make them ready (or delay them). One call may carry many jobs.
-- KEYS: scheduled, wakeup
-- ARGV: as built by JobQueue.enqueue_args: prefix, keep_since, user_ttl, then per job: id,
--       queue, priority, due ('' = now), user_id ('' = none), created_at, field count n,
--       n field/value pairs.
return enqueue_jobs(KEYS[1], KEYS[2], 1)
