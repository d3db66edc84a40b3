-- Give a running job back unfinished (its worker is stopping): it goes to the head of its
-- list without using a retry. Only the holder of the lease may do so.
-- KEYS: job, processing, wakeup
-- ARGV: id, token, prefix, now
-- Returns 1, or 0 when the lease is not held.
local f = redis.call('HMGET', K.job, 'status', 'lease_token', 'queue', 'priority', 'limits')
if f[1] ~= 'running' or f[2] ~= A.token then return 0 end
redis.call('HSET', K.job, 'status', 'pending')
redis.call('HDEL', K.job, 'lease_token')
redis.call('ZREM', K.processing, A.id)
redis.call('LPUSH', list_key(A.prefix, f[3], f[4]), A.id)
wake(K.wakeup, 1 + (f[5] and flows().free_slots(A.prefix, A.id, f[5], tonumber(A.now)) or 0))
return 1
