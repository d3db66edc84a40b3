-- Everything the counts of a console need, in one call: jobs per queue and priority (ready
-- lists) and per state, the counters, the age of each ready list's head, the workers, and the
-- rate and concurrency limits used lately.
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled, waiting, counters, workers,
-- KEYS: *lists
-- ARGV: prefix, keep_since, workers_since, now, limits_count, parked_lists
-- ``keep_since``: finished jobs older than this have expired and are dropped from the counts.
-- ``workers_since``: the workers that beat since then are read (see read_workers).
-- ``limits_count``: the most limits to read (see read_limits in _flow.lua).
-- ``parked_lists``: the most waiting lists of jobs a limit holds back to count, the first of
-- their index, as a page of pending jobs reads them (parked_lists in _flow.lua).
-- Returns {list lengths in order, state counts in KEYS order, counters as a flat list,
-- per list {created_at, scheduled_at} of its head job ('' when unset; {} for an empty list),
-- the workers as read_workers reads them, the limits as read_limits reads them, the jobs held
-- back on those waiting lists of the queues of ``lists``}.
redis.call('ZREMRANGEBYSCORE', K.completed, '-inf', '(' .. A.keep_since)
redis.call('ZREMRANGEBYSCORE', K.cancelled, '-inf', '(' .. A.keep_since)
local lengths, heads = {}, {}
for i, list in ipairs(K.lists) do
  lengths[i] = redis.call('LLEN', list)
  heads[i] = {}
  local id = redis.call('LINDEX', list, 0)
  if id then
    -- pcall: a job key of the wrong type has no times (a worker buries it when it meets it).
    local f = redis.pcall('HMGET', job_key(A.prefix, id), 'created_at', 'scheduled_at')
    if not f.err then heads[i] = {f[1] or '', f[2] or ''} end
  end
end
-- The waiting lists of the same queue and priority as a ready list counted here (their index
-- members start with '<priority>|<queue>|', see _flow.lua).
local counted, parked = {}, 0
for _, list in ipairs(K.lists) do
  local queue, priority = string.match(list, ':queue:(.*):(%d)$')
  if queue then counted[priority .. '|' .. queue] = true end
end
for _, list in ipairs((flows().parked_lists(A.prefix, tonumber(A.parked_lists)))) do
  if counted[list[1]] then parked = parked + redis.call('LLEN', flows().waiting_key(A.prefix, list[2])) end
end
local states = {}
for i, key in ipairs({K.scheduled, K.retrying, K.processing, K.dead, K.completed, K.cancelled, K.waiting}) do
  states[i] = redis.call('ZCARD', key)
end
return {lengths, states, redis.call('HGETALL', K.counters), heads, read_workers(K.workers, A.prefix, A.workers_since),
  flows().read_limits(A.prefix, tonumber(A.now), tonumber(A.limits_count)), parked}
