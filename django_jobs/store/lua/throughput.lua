-- Attempts completed, failed and dead-lettered per minute (counted by ack_job and fail.lua in
-- one hash per minute), for the ``count`` minutes up to the one that starts at ``last``.
-- KEYS: route
-- ARGV: prefix, last, count
-- ``route``: any key of the namespace, for Cluster routing. Returns one {completed, failed,
-- dead} per minute, oldest first (nil where nothing was counted).
local out = {}
local last = tonumber(A.last)
for i = tonumber(A.count) - 1, 0, -1 do
  local key = minute_key(A.prefix, last - 60 * i)
  out[#out + 1] = redis.call('HMGET', key, 'completed', 'failed', 'dead')
end
return out
