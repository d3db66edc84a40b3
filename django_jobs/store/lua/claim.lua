-- Lease the next job of the served queues (see claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup
-- ARGV: prefix, now, deadline, token, worker, promote_limit, resend, only, *queues
-- ``only``: a JSON list of the job names to take, or '' for any job.
return claim_next(A.prefix, K.scheduled, K.retrying, K.processing, K.dead, K.wakeup, A.now, A.deadline, A.token, A.worker, A.promote_limit, A.resend, A.queues, name_set(A.only))
