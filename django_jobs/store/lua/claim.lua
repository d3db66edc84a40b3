-- Lease the next job of the served queues, or a batch of them (see claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup
-- ARGV: prefix, now, deadline, lease, token, worker, promote_limit, resend, only, batch, skip,
-- ARGV: *queues
-- ``only`` and ``skip``: JSON lists of job names, or '' for none. ``now`` and ``deadline``
-- come from the worker's clock; both '' (a claim sent behind a blocking wait) take the server's
-- (server_clock), the lease ending ``lease`` seconds later ('' otherwise). Such a claim is never
-- resent: its deadline, which a resend finds its jobs by, is the server's.
local now, deadline = A.now, A.deadline
if now == '' then now, deadline = server_clock(A.lease) end
return claim_next(A.prefix, K.scheduled, K.retrying, K.processing, K.dead, K.wakeup, now, deadline, A.token, A.worker, A.promote_limit, A.resend, A.queues, name_set(A.only), tonumber(A.batch), name_set(A.skip))
