-- Store jobs and make them ready (or delay them). One call may carry many jobs.
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since, user_ttl, jobs, *job
-- ``jobs``: JSON, as built by calls.enqueue_values (see enqueue_jobs in _enqueue.lua); or '' for a
-- call of one job, then ``job`` (calls.job_values; see enqueue_job): no JSON to decode.
-- Returns {id, holder's id, ...} for the jobs not stored because another holds their unique key.
-- All or nothing: a call that Redis refuses part-way (a key of the wrong type) takes back what
-- it wrote and names the key in its error (see _enqueue.lua).
if A.jobs == '' then
  local ok, reply = pcall(enqueue_job, A.prefix, A.keep_since, A.user_ttl, A.job, K.scheduled, K.wakeup)
  if ok then return reply end
  return refusals().job_refused(reply, A.prefix, A.job, K.scheduled, K.wakeup)
end
return enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, cjson.decode(A.jobs), K.scheduled, K.wakeup)
