-- Cancel the steps of a workflow (a chain's, a group's), in order, as cancel_job cancels one:
-- those not started are cancelled, those running get a cancellation request.
-- KEYS: scheduled, retrying, processing, cancelled
-- ARGV: prefix, now, job_ttl, keep_since, *ids
-- Returns what cancel_job returned for each id, in order.
local replies = {}
for i, id in ipairs(A.ids) do
  replies[i] = cancel_job(A.prefix, id, A.now, A.job_ttl, A.keep_since, '', K.scheduled, K.retrying, K.processing, K.cancelled)
end
return replies
