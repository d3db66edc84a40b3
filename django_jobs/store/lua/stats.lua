-- Count jobs per queue and priority (ready lists) and per state.
-- KEYS: scheduled, retrying, processing, dead, completed, cancelled, counters, then the lists
-- ARGV: keep_since (finished jobs older than this have expired and are dropped from the counts)
-- Returns {list lengths in KEYS order, state counts in KEYS order, counters as a flat list}.
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[1])
local lists, states = {}, {}
for i = 8, #KEYS do lists[#lists + 1] = redis.call('LLEN', KEYS[i]) end
for i = 1, 6 do states[i] = redis.call('ZCARD', KEYS[i]) end
return {lists, states, redis.call('HGETALL', KEYS[7])}
