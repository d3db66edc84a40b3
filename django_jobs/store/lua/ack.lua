-- Record a completion (see ack_job). The job and result keys are declared for Cluster routing.
-- KEYS: job, result_key, processing, completed, counters, wakeup
-- ARGV: prefix, id, token, worker, now, result, result_ttl, job_ttl
-- ``worker``: the worker id the job was leased to (its record's worker_id).
return ack_job(A.prefix, A.id, A.token, A.worker, A.now, A.result, A.result_ttl, A.job_ttl, K.processing, K.completed, K.counters, K.wakeup)
