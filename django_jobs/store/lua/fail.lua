-- Record a failed attempt: retry later with exponential backoff, or bury in the dead-letter set.
-- KEYS: job, processing, retrying, dead, counters, wakeup
-- ARGV: id, lease token, now, error, traceback, error entry JSON, backoff base, backoff max,
--       retry allowed ('1' or '0'), prefix
-- Returns {'retrying', due time} or {'failed', ''}, or {'stale', ''} when the lease is not held.
local id, now = ARGV[1], tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_token', 'retry_count', 'max_retries')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[5], 'stale_acks', 1)
  return {'stale', ''}
end
append_error(KEYS[1], ARGV[6])
redis.call('HSET', KEYS[1], 'error', ARGV[4], 'traceback', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_token')
redis.call('ZREM', KEYS[2], id)
local retries, max_retries = tonumber(f[3] or '0'), tonumber(f[4] or '0')
if ARGV[9] == '1' and retries < max_retries then
  retries = retries + 1
  local due = string.format('%.6f', now + math.min(tonumber(ARGV[7]) * 2 ^ retries, tonumber(ARGV[8])))
  redis.call('HSET', KEYS[1], 'status', 'retrying', 'retry_count', retries, 'scheduled_at', due)
  redis.call('ZADD', KEYS[3], due, id)
  if redis.call('ZRANGE', KEYS[3], 0, 0)[1] == id then
    wake(KEYS[6], 1)  -- due before any other retry: idle workers must learn when to look next
  end
  return {'retrying', due}
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[3], id)
notify_done(ARGV[10], id)
return {'failed', ''}
