-- Lease the next job of the served queues, or a batch of them (see claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup
-- ARGV: prefix, now, deadline, token, worker, promote_limit, resend, only, batch, skip, *queues
-- ``only`` and ``skip``: JSON lists of job names, or '' for none.
return claim_next(A.prefix, K.scheduled, K.retrying, K.processing, K.dead, K.wakeup, A.now, A.deadline, A.token, A.worker, A.promote_limit, A.resend, A.queues, name_set(A.only), tonumber(A.batch), name_set(A.skip))
