-- Count jobs per queue and priority (ready lists) and per state.
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled, counters, *lists
-- ARGV: keep_since
-- ``keep_since``: finished jobs older than this have expired and are dropped from the counts.
-- Returns {list lengths in order, state counts in KEYS order, counters as a flat list}.
redis.call('ZREMRANGEBYSCORE', K.completed, '-inf', '(' .. A.keep_since)
redis.call('ZREMRANGEBYSCORE', K.cancelled, '-inf', '(' .. A.keep_since)
local lengths = {}
for i, list in ipairs(K.lists) do lengths[i] = redis.call('LLEN', list) end
local states = {}
for i, key in ipairs({K.scheduled, K.retrying, K.processing, K.dead, K.completed, K.cancelled}) do
  states[i] = redis.call('ZCARD', key)
end
return {lengths, states, redis.call('HGETALL', K.counters)}
