-- Delete jobs for good: each one's record, result, notification list, user index entry and key
-- kept aside as unreadable, and its id from the list or set that holds it, found from its
-- status, queue and priority (no scan). All or nothing: when one of them is running, nothing is
-- deleted (a running job is cancelled first, so that its worker stops it).
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled, waiting
-- ARGV: prefix, now, job_ttl, result_since, *ids
-- Returns {ids of the running jobs, {}} or {{}, the deleted jobs as read_jobs reads them}.
local prefix = A.prefix
local running = {}
for _, id in ipairs(A.ids) do
  if redis.pcall('HGET', job_key(prefix, id), 'status') == 'running' then running[#running + 1] = id end
end
if #running > 0 then return {running, {}} end
local deleted = read_jobs(prefix, A.ids, A.result_since)
local sets = {K.scheduled, K.retrying, K.processing, K.dead, K.completed, K.cancelled, K.waiting}
for _, id in ipairs(A.ids) do delete_job(prefix, id, sets, false, A.now, A.job_ttl) end
return {{}, deleted}
