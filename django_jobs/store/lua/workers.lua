-- The workers whose last heartbeat is at ``since`` or later, without a scan: the index names them.
-- KEYS: workers
-- ARGV: prefix, since
-- Returns {id, last beat, record as a flat field/value list, ...}; the record is empty once it
-- expired (the worker died without a clean stop).
local out = {}
local seen = redis.call('ZRANGEBYSCORE', K.workers, A.since, '+inf', 'WITHSCORES')
for i = 1, #seen, 2 do
  out[#out + 1] = seen[i]
  out[#out + 1] = seen[i + 1]
  out[#out + 1] = redis.call('HGETALL', A.prefix .. ':worker:' .. seen[i])
end
return out
