-- A worker's steady state in one round trip: record the completion of its job and lease the
-- next one (see ack_job and claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup, completed, counters
-- ARGV: prefix, now, deadline, token, worker, promote_limit, done_id, done_token, result,
-- ARGV: result_ttl, job_ttl, resend, only, *queues
-- ``only``: a JSON list of the job names to take, or '' for any job. ``worker`` is also the
-- worker id the completed job was leased to (a worker claims under one id).
-- Returns {1 or 0 (acknowledged or stale), then what claim_next returns}.
local acked = ack_job(A.prefix, A.done_id, A.done_token, A.worker, A.now, A.result, A.result_ttl, A.job_ttl, K.processing, K.completed, K.counters, K.wakeup)
local claimed = claim_next(A.prefix, K.scheduled, K.retrying, K.processing, K.dead, K.wakeup, A.now, A.deadline, A.token, A.worker, A.promote_limit, A.resend, A.queues, name_set(A.only))
return {acked, claimed[1], claimed[2], claimed[3]}
