-- Record a completion. Only the holder of the current lease may do so.
-- KEYS: job, processing, result, completed, counters
-- ARGV: id, lease token, now, result JSON, result ttl, job ttl, keep_since, prefix
-- Returns 1, or 0 when the lease is not held (the stale ack is counted and ignored).
local id = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_token')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[5], 'stale_acks', 1)
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'completed', 'finished_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease_token', 'cancel_requested')
redis.call('ZREM', KEYS[2], id)
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
index_finished(KEYS[4], id, ARGV[3], ARGV[7])
notify_done(ARGV[8], id)
return 1
