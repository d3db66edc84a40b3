-- Delete jobs for good: each one's record, result, notification list, user index entry and key
-- kept aside as unreadable, and its id from the list or set that holds it, found from its
-- status, queue and priority (no scan). All or nothing: when one of them is running, nothing is
-- deleted (a running job is cancelled first, so that its worker stops it).
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled
-- ARGV: prefix, *ids
-- Returns {ids of the running jobs, {}} or {{}, the deleted jobs as read_jobs reads them}.
local prefix = A.prefix
local running = {}
for _, id in ipairs(A.ids) do
  if redis.pcall('HGET', job_key(prefix, id), 'status') == 'running' then running[#running + 1] = id end
end
if #running > 0 then return {running, {}} end
local deleted = read_jobs(prefix, A.ids)
local sets = {K.scheduled, K.retrying, K.processing, K.dead, K.completed, K.cancelled}
for _, id in ipairs(A.ids) do
  local jkey = job_key(prefix, id)
  local f = redis.pcall('HMGET', jkey, 'status', 'queue', 'priority', 'user_id')
  if f.err then f = {} end
  -- An id is in one set at most; looking in each costs little and also drops the entry of a
  -- record that expired already.
  local removed = 0
  for _, zkey in ipairs(sets) do removed = removed + redis.call('ZREM', zkey, id) end
  if removed == 0 and f[1] == 'pending' and f[2] and f[3] then
    redis.call('LREM', list_key(prefix, f[2], f[3]), 1, id)
  end
  if f[4] then
    -- user_id is JSON: 42 or "name" (see job.py); the index key holds it as text.
    local user = f[4]
    if string.sub(user, 1, 1) == '"' then user = cjson.decode(user) end
    redis.call('ZREM', prefix .. ':user:' .. user, id)
  end
  redis.call('DEL', jkey, result_key(prefix, id), done_key(prefix, id), prefix .. ':unreadable:' .. id)
end
return {{}, deleted}
