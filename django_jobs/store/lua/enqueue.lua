-- Store jobs and make them ready (or delay them). One call may carry many jobs.
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since, user_ttl, *jobs
-- ``jobs`` as built by calls.enqueue_values: per job its id, queue, priority, due ('' = now),
-- user_id ('' = none), created_at, field count n, then n field/value pairs.
-- Returns {id, holder's id, ...} for the jobs not stored because another holds their unique key.
return enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, A.jobs, K.scheduled, K.wakeup)
