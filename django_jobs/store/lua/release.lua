-- Give a running job back unfinished (its worker is stopping): it goes to the head of its
-- list without using a retry. Only the holder of the lease may do so.
-- KEYS: job, processing, wakeup
-- ARGV: id, lease token, prefix
-- Returns 1, or 0 when the lease is not held.
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_token', 'queue', 'priority')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'pending')
redis.call('HDEL', KEYS[1], 'lease_token')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', list_key(ARGV[3], f[3], f[4]), ARGV[1])
wake(KEYS[3], 1)
return 1
