-- A worker's steady state in one round trip: record the completion of its finished jobs and
-- lease the next one, or a batch of them (see ack_job and claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup, completed, counters
-- ARGV: prefix, now, deadline, token, worker, promote_limit, result_ttl, job_ttl, resend, only,
-- ARGV: batch, skip, queues, *done
-- ``queues``: a JSON list of the served queues; ``only`` and ``skip``: JSON lists of job names,
-- or '' for none; ``done``: the id, lease token and result of each finished job. ``worker`` is
-- also the worker id the finished jobs were leased to (a worker claims under one id).
-- Returns {{1 or 0 (acknowledged or stale) for each finished job}, then what claim_next
-- returns}.
local acked = {}
for i = 1, #A.done, 3 do
  acked[#acked + 1] = ack_job(A.prefix, A.done[i], A.done[i + 1], A.worker, A.now, A.done[i + 2], A.result_ttl, A.job_ttl, K.processing, K.completed, K.counters, K.wakeup)
end
local claimed = claim_next(A.prefix, K.scheduled, K.retrying, K.processing, K.dead, K.wakeup, A.now, A.deadline, A.token, A.worker, A.promote_limit, A.resend, cjson.decode(A.queues), name_set(A.only), tonumber(A.batch), name_set(A.skip))
table.insert(claimed, 1, acked)
return claimed
