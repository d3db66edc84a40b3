-- Cancel a job (see cancel_job). The job key is declared for Cluster routing.
-- KEYS: job, scheduled, retrying, processing, cancelled
-- ARGV: id, prefix, now, job_ttl, keep_since, token
-- ``token``: '' unless the worker confirms.
-- Returns 'cancelled', 'requested', 'missing' or the finished status it already had.
return cancel_job(A.prefix, A.id, A.now, A.job_ttl, A.keep_since, A.token, K.scheduled, K.retrying, K.processing, K.cancelled)
