-- Store jobs and make them ready (or delay them). One call may carry many jobs.
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since, user_ttl, jobs
-- ``jobs``: JSON, as built by calls.enqueue_values (see enqueue_jobs in _jobs.lua).
-- Returns {id, holder's id, ...} for the jobs not stored because another holds their unique key.
return enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, cjson.decode(A.jobs), K.scheduled, K.wakeup)
