-- Delete for good (see delete_job) the jobs of one state structure, one bounded batch a call.
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled, waiting, source
-- ARGV: prefix, kind, start, batch, max_score, queue, name, now, job_ttl
-- ``source``: a ready list (``kind`` 'L'), a waiting list of parked jobs ('W', see _flow.lua)
-- or a zset (any other kind: scheduled, retrying, dead, completed, cancelled or waiting) whose
-- entries scored ``max_score`` or less are purged, oldest first. ``batch`` entries are looked
-- at from rank ``start``; those of ``queue`` (zsets only: a list is of one queue) and named
-- ``name`` ('' = any) are deleted, the others stay.
-- Returns {how many were deleted, the rank to go on from (-1 when the source was all looked at)}.
local prefix, batch, start = A.prefix, tonumber(A.batch), tonumber(A.start)
local sets = {K.scheduled, K.retrying, K.processing, K.dead, K.completed, K.cancelled, K.waiting}
local in_list = A.kind == 'L' or A.kind == 'W'
local window
if in_list then
  window = redis.call('LRANGE', K.source, start, start + batch - 1)
else
  window = redis.call('ZRANGEBYSCORE', K.source, '-inf', A.max_score, 'LIMIT', start, batch)
end
-- Cannot be a job id (those are printable ASCII): marks the list entries to take off at once.
local GONE = '\0purged'
local deleted = 0
for i, id in ipairs(window) do
  local keep = false
  if A.queue ~= '' or A.name ~= '' then
    -- pcall: a job key of the wrong type matches no filter.
    local f = redis.pcall('HMGET', job_key(prefix, id), 'queue', 'name')
    keep = f.err or (not in_list and A.queue ~= '' and f[1] ~= A.queue) or (A.name ~= '' and f[2] ~= A.name)
  end
  if not keep then
    if in_list then redis.call('LSET', K.source, start + i - 1, GONE) end
    delete_job(prefix, id, sets, in_list, A.now, A.job_ttl)
    deleted = deleted + 1
  end
end
if in_list and deleted > 0 then redis.call('LREM', K.source, deleted, GONE) end
if A.kind == 'W' then
  -- Its name after '<prefix>:waiting:' is its entry in the parked index.
  flows().forget_waiting(prefix, string.sub(K.source, string.len(flows().waiting_key(prefix, '')) + 1))
end
if #window < batch then return {deleted, -1} end
return {deleted, start + batch - deleted}
